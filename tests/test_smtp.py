"""The sans-I/O engine, driven directly: no process, no socket."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfront import smtp
from smtpfront.smtp import Engine, Reply

OK250 = Reply(250, "2.1.0 ok")


def feed(engine: Engine, data: bytes, answers=None) -> list:
    """Feed bytes, answer every event with `answers(event)` (default: accept), collect events."""
    answers = answers or accept
    engine.receive_data(data)
    events = []
    while True:
        event = engine.next_event()
        if event is None:
            return events
        events.append(event)
        if event.needs_reply:
            engine.respond(answers(event))


def accept(event):
    if isinstance(event, smtp.Data):
        return Reply(354, "go ahead")
    if isinstance(event, smtp.Auth):
        return Reply(334, "")
    if isinstance(event, smtp.AuthResponse):
        return Reply(235, "2.7.0 ok")
    return OK250


def replies(engine: Engine) -> list[str]:
    return engine.data_to_send().decode().split("\r\n")[:-1]


def body_of(events) -> bytes:
    return b"".join(e.block for e in events if isinstance(e, smtp.Body))


def test_fixed_replies_answered_by_the_engine():
    e = Engine()
    feed(e, b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nEXPN x\r\n\r\nQUIT\r\n")
    assert replies(e) == [
        "250 2.3.0 OK",
        "250 2.3.0 OK",
        "252 2.5.2 Send some mail, I'll try my best.",
        "214 2.0.0 Help not available.",
        "500 5.5.1 Not implemented.",
        "500 5.5.1 Not implemented.",
        "221 2.0.0 Good bye.",
    ]
    assert e.mode == smtp.CLOSED


def test_order_is_enforced():
    e = Engine()
    events = feed(e, b"RCPT TO:<a@b.c>\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nDATA\r\n")
    assert [type(x) for x in events] == [smtp.Mail]
    assert replies(e) == [
        "503 5.5.1 You must send MAIL FROM: first",
        "503 5.5.1 You must send MAIL FROM: first",
        "250 2.1.0 ok",
        "503 5.5.1 You must send RCPT TO: first",
    ]


def test_refused_recipient_does_not_open_data():
    e = Engine()
    feed(e, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n",
         lambda ev: Reply(550, "no") if isinstance(ev, smtp.Rcpt) else accept(ev))
    assert replies(e)[-1] == "503 5.5.1 You must send RCPT TO: first"


def test_mail_parameters_and_source_route():
    e = Engine()
    events = feed(e, b"mail from: <@r.example,@s.example:a@b.example> size=100 BODY=8BITMIME\r\n")
    assert events == [smtp.Mail("a@b.example", ("size=100", "BODY=8BITMIME"))]


def test_null_sender_and_bad_addresses():
    e = Engine()
    assert feed(e, b"MAIL FROM:<>\r\n") == [smtp.Mail("", ())]
    e = Engine()
    feed(e, b"MAIL FROM<x\r\nMAIL FROM:<a\0b@c.d>\r\nMAIL FROM:<a@b.c> SIZE=big\r\n")
    assert replies(e) == [
        "501 5.5.2 Syntax error in address parameter.",
        "501 5.5.2 Syntax error in address parameter.",
        "501 5.5.4 Invalid SIZE parameter.",
    ]


def test_address_forms_as_mailfront_2_13_reads_them():
    """`MAIL FROM:me`, `MAIL FROM me`, `MAIL FROM<me>` are `me`; without an address, 501 5.5.2."""
    for line, address in [(b"MAIL FROM:me", "me"), (b"MAIL FROM me", "me"), (b"MAIL FROM<me>", "me"),
                          (b"MAIL FROM:  me SIZE=5", "me"), (b"mail from: <me@x.y>", "me@x.y"),
                          (b'MAIL FROM:<"j doe"@x.y>', "j doe@x.y"), (b"MAIL FROM:<a\\>b@x.y>", "a>b@x.y"),
                          (b"MAIL FROM:<@r.example:me@x.y>", "me@x.y")]:
        events = feed(Engine(), line + b"\r\n")
        assert [e.address for e in events] == [address], line
    for line in [b"MAIL FROM", b"MAIL FROM:", b"MAIL FROM<", b"MAIL FROM:<me", b"MAIL FROMme", b"MAIL TO:<me>"]:
        e = Engine()
        events = feed(e, line + b"\r\n")
        assert events == [smtp.Reset()] and replies(e) == ["501 5.5.2 Syntax error in address parameter."], line


def test_control_characters_in_an_address_are_refused():
    """A NUL would cut the qmail-queue envelope short; a bare CR would reach Return-Path: at delivery."""
    for address in (b"a\rb@c.d", b"a@c.d\r", b"a\x00b@c.d", b"a\x1bb@c.d", b"a\x7fb@c.d"):
        e = Engine()
        feed(e, b"MAIL FROM:<" + address + b">\r\nMAIL FROM:<a@c.d>\r\nRCPT TO:<" + address + b">\r\n")
        assert replies(e) == ["501 5.5.2 Syntax error in address parameter.", "250 2.1.0 ok",
                              "501 5.5.2 Syntax error in address parameter."], address


def test_a_refused_mail_command_ends_the_transaction():
    """As in mailfront, MAIL starts over before its argument is read: a RCPT after a bad MAIL needs a new one."""
    e = Engine()
    feed(e, b"MAIL FROM:<a@b.c>\r\nMAIL FROM:<\r\nRCPT TO:<x@y.z>\r\n")
    assert replies(e)[1:] == ["501 5.5.2 Syntax error in address parameter.",
                              "503 5.5.1 You must send MAIL FROM: first"]


def test_maxnotimpl_counts_unimplemented_commands_in_a_row():
    e = Engine(max_notimpl=2)
    feed(e, b"A\r\nB\r\nNOOP\r\nC\r\nD\r\nNOOP\r\n")
    assert replies(e)[-1] == "250 2.3.0 OK" and e.mode != smtp.CLOSED


def test_body_is_dot_unstuffed_and_lf_terminated():
    e = Engine()
    events = feed(e, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n.hidden\r\n..two\r\nx\r\n.\r\nNOOP\r\n")
    assert body_of(events) == b"hidden\n.two\nx\n"
    end = [x for x in events if isinstance(x, smtp.BodyEnd)]
    assert end == [smtp.BodyEnd(bare_eol=False)]
    assert replies(e)[-1] == "250 2.3.0 OK"


def test_body_split_at_every_byte_gives_the_same_message():
    message = b"Subject: x\r\n\r\n.a\r\nb\r\n..\r\n" + b"y" * 70 + b"\r\n"
    dialogue = b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n" + message + b".\r\nQUIT\r\n"
    expected = b"Subject: x\n\na\nb\n.\n" + b"y" * 70 + b"\n"
    for size in (1, 2, 3, 5, 7, 64):
        e = Engine()
        events = []
        for i in range(0, len(dialogue), size):
            events += feed(e, dialogue[i : i + size])
        assert body_of(events) == expected, size
        assert any(isinstance(x, smtp.Quit) for x in events)


def test_long_body_line_passes_in_pieces():
    e = Engine()
    line = b"z" * 200_000
    events = feed(e, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n")
    for i in range(0, len(line), 10_000):  # as it would arrive: in reads, no newline for a long time
        events += feed(e, line[i : i + 10_000])
    events += feed(e, b"\r\n.\r\n")
    assert body_of(events) == line + b"\n"
    assert len([x for x in events if isinstance(x, smtp.Body)]) > 1


SMUGGLE = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]


def test_only_crlf_dot_crlf_ends_a_message():
    for fake_end in SMUGGLE:
        e = Engine()
        data = (b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nfirst" + fake_end
                + b"MAIL FROM:<evil@b.c>\r\nRCPT TO:<v@y.z>\r\nDATA\r\nsmuggled\r\n.\r\n")
        events = feed(e, data)
        ends = [x for x in events if isinstance(x, smtp.BodyEnd)]
        assert len(ends) == 1, fake_end
        assert ends[0].bare_eol, fake_end  # the session rejects it by default
        assert b"MAIL FROM:<evil@b.c>" in body_of(events).replace(b"\r", b"\n")


def test_a_bare_lf_client_may_end_with_lf_dot_lf():
    e = Engine()
    events = feed(e, b"MAIL FROM:<a@b.c>\nRCPT TO:<x@y.z>\nDATA\nhello\n.\nQUIT\n")
    assert body_of(events) == b"hello\n"
    assert [x for x in events if isinstance(x, smtp.BodyEnd)] == [smtp.BodyEnd(bare_eol=False)]
    assert isinstance(events[-1], smtp.Quit)


def test_eof_inside_data_drops_the_message():
    e = Engine()
    events = feed(e, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\npartial\r\n")
    e.receive_data(b"")
    last = e.next_event()
    assert last == smtp.Closed(in_data=True, exit_code=1)
    assert not any(isinstance(x, smtp.BodyEnd) for x in events)


def test_eof_in_command_mode_exits_zero():
    e = Engine()
    feed(e, b"NOOP\r\n")
    e.receive_data(b"")
    assert e.next_event() == smtp.Closed(in_data=False, exit_code=0)


def test_last_line_without_newline_is_a_command():
    e = Engine()
    e.receive_data(b"NOOP\r\nQUIT")
    e.receive_data(b"")
    events = feed(e, b"")
    assert isinstance(events[0], smtp.Quit)
    assert replies(e) == ["250 2.3.0 OK", "221 2.0.0 Good bye."]


def test_overlong_command_line_is_refused_once():
    e = Engine()
    feed(e, b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert replies(e) == ["500 5.5.2 Line too long.", "250 2.3.0 OK"]
    e = Engine()
    feed(e, b"NOOP " + b"x" * 5000)
    feed(e, b"y" * 5000 + b"\r\nNOOP\r\n")
    assert replies(e) == ["500 5.5.2 Line too long.", "250 2.3.0 OK"]


def test_recipients_per_message_are_bounded():
    e = Engine()
    many = b"".join(b"RCPT TO:<u%d@example.org>\r\n" % i for i in range(smtp.MAX_RECIPIENTS + 2))
    events = feed(e, b"MAIL FROM:<a@b.example>\r\n" + many + b"RSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y>\r\n")
    out = replies(e)
    assert sum(isinstance(ev, smtp.Rcpt) for ev in events) == smtp.MAX_RECIPIENTS + 1  # the next message starts afresh
    assert out[smtp.MAX_RECIPIENTS + 1 : smtp.MAX_RECIPIENTS + 3] == ["452 4.5.3 Too many recipients."] * 2
    assert out[-1] == "250 2.1.0 ok"


def test_commands_per_session_are_bounded():
    e = Engine()
    events = feed(e, b"NOOP\r\n" * (smtp.MAX_COMMANDS + 5))
    out = replies(e)
    assert out[:-1] == ["250 2.3.0 OK"] * smtp.MAX_COMMANDS
    assert out[-1] == "421 4.7.0 Too many commands; closing connection."
    assert events[-1] == smtp.Closed(in_data=False, exit_code=1)


def test_maxnotimpl_closes_with_503():
    e = Engine(max_notimpl=2)
    events = feed(e, b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert replies(e) == [
        "500 5.5.1 Not implemented.",
        "500 5.5.1 Not implemented.",
        "503-5.5.0 Too many unimplemented commands.",
        "503 5.5.0 Closing connection.",
    ]
    assert events[-1] == smtp.Closed(in_data=False, exit_code=1)


def test_auth_exchange_and_state():
    e = Engine()
    events = feed(e, b"AUTH PLAIN\r\ndGVzdA==\r\nAUTH PLAIN x\r\n")
    # 334 reads the next line as the answer, 235 goes back to commands: the second AUTH is a command again,
    # and its own 334 (the helper answers every AUTH so) waits for an answer once more
    assert events == [smtp.Auth("PLAIN", None), smtp.AuthResponse("dGVzdA=="), smtp.Auth("PLAIN", "x")]
    assert e.mode == smtp.AUTH


def test_every_auth_line_goes_to_the_policy():
    """Whether AUTH exists, needs a mechanism or comes too late is for the plugin that provides it."""
    e = Engine()
    events = feed(e, b"MAIL FROM:<a@b.c>\r\nAUTH login\r\nAUTH\r\n",
                  lambda ev: Reply(504, "no") if isinstance(ev, smtp.Auth) else accept(ev))
    assert events[1:] == [smtp.Auth("login", None), smtp.Auth("", None)]  # as typed: mailfront logs it so
    assert e.has_sender


def test_starttls_discards_pipelined_plaintext():
    e = Engine()
    events = feed(e, b"STARTTLS\r\nNOOP\r\nMAIL FROM:<a@b.c>\r\n",
                  lambda ev: Reply(220, "2.0.0 go") if isinstance(ev, smtp.StartTLS) else accept(ev))
    assert events == [smtp.StartTLS()]
    assert replies(e) == ["220 2.0.0 go"]
    e.start_tls()
    assert e.next_event() is None  # the pipelined NOOP and MAIL are gone
    feed(e, b"NOOP\r\nSTARTTLS\r\n")
    assert replies(e) == ["250 2.3.0 OK", "503 5.5.1 TLS is already active."]


def test_421_reply_closes():
    e = Engine()
    feed(e, b"AUTH PLAIN x\r\nNOOP\r\n", lambda ev: Reply(421, "4.7.0 bye"))
    assert replies(e) == ["421 4.7.0 bye"]
    assert e.next_event() is None and e.mode == smtp.CLOSED


def test_reply_encoding_multiline():
    assert Reply(250, "a\nb\r\nc").encode() == b"250-a\r\n250-b\r\n250 c\r\n"


# ---- properties -----------------------------------------------------------

commands = st.sampled_from([
    b"HELO x", b"EHLO x", b"MAIL FROM:<a@b.c>", b"MAIL FROM:<>", b"RCPT TO:<x@y.z>", b"DATA", b"RSET",
    b"NOOP", b"QUIT", b"AUTH PLAIN", b"AUTH LOGIN dGVzdA==", b"*", b".", b"..x", b"", b"STARTTLS",
    b"VRFY x", b"\x00\xff", b"x" * 1500,
])
chunks = st.lists(
    st.one_of(commands.map(lambda c: c + b"\r\n"), commands.map(lambda c: c + b"\n"),
              st.binary(max_size=40)),
    max_size=40,
)


def random_answer(data):
    def answer(event):
        if isinstance(event, smtp.Data):
            return Reply(data.draw(st.sampled_from([354, 451, 554])), "x")
        if isinstance(event, (smtp.Auth, smtp.AuthResponse)):
            return Reply(data.draw(st.sampled_from([334, 235, 535, 501])), "x")
        return Reply(data.draw(st.sampled_from([250, 451, 550])), "x")
    return answer


@settings(max_examples=300, deadline=None)
@given(parts=chunks, data=st.data())
def test_engine_invariants(parts, data):
    """Never raises; every output line is a reply; a message ends only after MAIL, RCPT and DATA."""
    e = Engine(max_notimpl=data.draw(st.sampled_from([0, 3])))
    answer = random_answer(data)
    has_sender = recipients = False
    in_data = False
    for part in parts + [b""]:
        e.receive_data(part)
        while True:
            event = e.next_event()
            if event is None:
                break
            if isinstance(event, smtp.Rcpt):
                assert has_sender
            if isinstance(event, smtp.BodyEnd):
                assert in_data and has_sender and recipients
            reply = answer(event) if event.needs_reply else None
            if reply is not None:
                e.respond(reply)
            if isinstance(event, smtp.Mail) and not isinstance(event, smtp.Rcpt):
                has_sender, recipients = reply.ok, False
            elif isinstance(event, smtp.Rcpt):
                recipients = recipients or reply.ok
            elif isinstance(event, smtp.Data):
                in_data = reply.code == 354
            elif isinstance(event, (smtp.BodyEnd, smtp.Reset)) or (isinstance(event, smtp.Hello) and reply.ok):
                # RFC 5321 4.1.4: only an accepted HELO/EHLO resets; a refused one leaves the transaction
                has_sender = recipients = in_data = False
    for line in e.data_to_send().split(b"\r\n")[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-"), line
    assert e.mode == smtp.CLOSED
