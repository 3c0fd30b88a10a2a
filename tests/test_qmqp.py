"""The sans-I/O QMQP/QMTP parser: the same events however the bytes are cut, and every malformed shape."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfront.qmqp import Body, End, Failed, Finished, Packages, Recipient, Sender, Start


def ns(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def qmqp(message: bytes, sender: bytes, recipients: list[bytes]) -> bytes:
    return ns(ns(message) + ns(sender) + b"".join(ns(r) for r in recipients))


def qmtp(message: bytes, sender: bytes, recipients: list[bytes]) -> bytes:
    return ns(b"\n" + message) + ns(sender) + ns(b"".join(ns(r) for r in recipients))


def run(chunks: list[bytes], is_qmtp: bool, skip_after_sender: bool = False) -> list:
    """Feed the chunks then the end of input; the events, a package's Body events joined into one."""
    parser = Packages(is_qmtp)
    events: list = []
    for chunk in [*filter(None, chunks), b""]:
        parser.receive_data(chunk)
        while (event := parser.next_event()) is not None:
            if isinstance(event, Body) and events and isinstance(events[-1], Body):
                events[-1] = Body(events[-1].block + event.block)
            else:
                events.append(event)
            if skip_after_sender and type(event) is Sender:
                parser.skip_recipients()
    assert parser.done
    return events


def expected(packages: list[tuple[bytes, bytes, list[bytes]]], is_qmtp: bool) -> list:
    events: list = []
    for message, sender, recipients in packages:
        events += [Start(), Body(message), Sender(sender.decode()), *(Recipient(r.decode()) for r in recipients),
                   End()]
    if is_qmtp or not packages:
        events.append(Finished())
    return events


addresses = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30).map(str.encode)
packages = st.tuples(st.binary(min_size=1, max_size=300), addresses, st.lists(addresses, max_size=4))


@settings(max_examples=200, deadline=None)
@given(package=packages, data=st.data())
def test_qmqp_any_split_gives_the_same_events(package, data):
    wire = qmqp(*package)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert run(chunks, False) == run([wire], False) == expected([package], False)


@settings(max_examples=200, deadline=None)
@given(many=st.lists(packages, min_size=0, max_size=3), data=st.data())
def test_qmtp_any_split_gives_the_same_events(many, data):
    wire = b"".join(qmtp(*p) for p in many)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert run(chunks, True) == run([wire], True) == expected(many, True)


def test_every_byte_on_its_own():
    wire = qmtp(b"Subject: x\n\nbody\n", b"a@b", [b"c@d", b"e@f"])
    assert run([wire[i : i + 1] for i in range(len(wire))], True) == expected(
        [(b"Subject: x\n\nbody\n", b"a@b", [b"c@d", b"e@f"])], True)


def test_qmqp_reads_one_package_only():
    wire = qmqp(b"m\n", b"a@b", [b"c@d"])
    assert run([wire + wire], False) == expected([(b"m\n", b"a@b", [b"c@d"])], False)


GOOD_QMQP = qmqp(b"Subject: t\n\nbody\n", b"a@b.example", [b"y@example.org"])
GOOD_QMTP = qmtp(b"Subject: t\n\nbody\n", b"a@b.example", [b"y@example.org"])
BODY = b"Subject: t\n\nbody\n"


@pytest.mark.parametrize("wire, tail", [
    (b"", [Finished()]),
    (b"x:" + GOOD_QMQP, [Failed("Invalid wrapper netstring")]),
    (b"12", [Finished()]),  # as mailfront: the input ended before a package started
    (GOOD_QMQP[:4], [Finished()]),
    (b"30:x:" + GOOD_QMQP[4:], [Failed("Invalid message body netstring")]),
    (ns(ns(b"") + ns(b"a@b.example") + ns(b"y@example.org")), [Failed("Zero length message")]),
    (GOOD_QMQP[:12], [Start(), Body(GOOD_QMQP[6:12]), Failed("EOF while reading body")]),
    (GOOD_QMQP[: GOOD_QMQP.index(b"body\n") + 5], [Start(), Body(BODY), Failed("EOF while reading comma")]),
    (GOOD_QMQP.replace(b"body\n,", b"body\n;"), [Start(), Body(BODY), Failed("Invalid netstring terminator")]),
    (GOOD_QMQP[: GOOD_QMQP.index(b"a@b") + 2], [Start(), Body(BODY), Failed("EOF while reading sender address")]),
    (GOOD_QMQP.replace(b"11:a@b", b"1x:a@b"), [Start(), Body(BODY), Failed("Invalid sender netstring")]),
    (GOOD_QMQP.replace(b"a@b.example,", b"a@b.example;"), [Start(), Body(BODY), Failed("Invalid sender netstring")]),
    (GOOD_QMQP[:-1], [Start(), Body(BODY), Sender("a@b.example"), Recipient("y@example.org"),
                      Failed("EOF before end of recipient list")]),
    (GOOD_QMQP[:-5], [Start(), Body(BODY), Sender("a@b.example"), Failed("EOF while reading recipient list")]),
    (GOOD_QMQP.replace(b"example.org,", b"example.org;"),
     [Start(), Body(BODY), Sender("a@b.example"), Failed("Invalid recipient netstring")]),
])
def test_qmqp_malformed(wire, tail):
    assert run([wire], False) == tail


@pytest.mark.parametrize("wire, tail", [
    (b"", [Finished()]),
    (b"x:" + GOOD_QMTP, [Failed("Invalid message body netstring")]),
    (b"2", [Finished()]),
    (b"0:," + ns(b"a@b") + ns(ns(b"c@d")), [Failed("Zero length message")]),
    (ns(b"X" + BODY) + ns(b"a@b") + ns(ns(b"c@d")), [Start(), Failed("Cannot handle non-LF line terminator")]),
    (ns(b"\r\n" + BODY) + ns(b"a@b") + ns(ns(b"c@d")), [Start(), Failed("Cannot handle non-LF line terminator")]),
    (GOOD_QMTP[:3], [Start(), Failed("EOF while reading body NL")]),
    (GOOD_QMTP[:10], [Start(), Body(GOOD_QMTP[4:10]), Failed("EOF while reading body")]),
    (GOOD_QMTP.replace(b"body\n,", b"body\n."), [Start(), Body(BODY), Failed("Invalid netstring terminator")]),
    (GOOD_QMTP[:-3], [Start(), Body(BODY), Sender("a@b.example"), Failed("EOF while reading recipient list")]),
    (ns(b"\n" + BODY) + ns(b"a@b") + ns(b"1x:y,"), [Start(), Body(BODY), Sender("a@b"),
                                                    Failed("Invalid netstring length")]),
    (ns(b"\n" + BODY) + ns(b"a@b") + ns(b"99:y,"), [Start(), Body(BODY), Sender("a@b"),
                                                    Failed("Netstring length too long")]),
    (ns(b"\n" + BODY) + ns(b"a@b") + ns(b"1:y;"), [Start(), Body(BODY), Sender("a@b"),
                                                   Failed("Netstring missing comma")]),
    (ns(b"\n" + BODY) + ns(b"a@b") + ns(b"1:y,1x:z,"), [Start(), Body(BODY), Sender("a@b"), Recipient("y"),
                                                        Failed("Invalid netstring length")]),
    (ns(b"\n" + BODY) + ns(b"a@b") + ns(b""), [Start(), Body(BODY), Sender("a@b"), End(), Finished()]),
    (GOOD_QMTP + b"junk", [*expected([(BODY, b"a@b.example", [b"y@example.org"])], False),
                           Failed("Invalid message body netstring")]),
])
def test_qmtp_malformed(wire, tail):
    assert run([wire], True) == tail


def test_qmtp_refused_package_skips_its_recipients_but_not_the_next_package():
    wire = (ns(b"\n" + BODY) + ns(b"bad@x") + ns(b"1:y,1x:never parsed,") + GOOD_QMTP)
    assert run([wire], True, skip_after_sender=True) == [
        Start(), Body(BODY), Sender("bad@x"), End(),
        Start(), Body(BODY), Sender("a@b.example"), End(), Finished()]


def test_a_recipient_longer_than_the_bound_is_refused():
    wire = ns(ns(b"m\n") + ns(b"a@b") + ns(b"x" * 70000))
    assert run([wire], False)[-1] == Failed("Invalid recipient netstring")


# -- through the programs: what a package may put into qmail-queue's envelope ---------------------------------

INJECTIONS = [
    # (sender, recipient): each would add a record, or a line, to what qmail-queue or delivery reads
    (b"a@b.example\0Tvictim@elsewhere.example", b"y@example.org"),
    (b"a@b.example", b"victim@elsewhere.example\0Ty@example.org"),
    (b"a@b.example", b"y@example.org\r\nBcc: victim@elsewhere.example"),
    (b"a@b.example\rX", b"y@example.org"),
    (b"a@b.example", b"y@example.org\x1b"),
]


@pytest.mark.parametrize("program", ["qmqpfront-qmail", "qmtpfront-qmail"])
@pytest.mark.parametrize(("sender", "recipient"), INJECTIONS)
def test_a_control_character_in_an_address_is_refused(smtp, queue, program, sender, recipient):
    wire = (qmtp if program.startswith("qmtp") else qmqp)(b"Subject: x\n\nbody\n", sender, [recipient])
    result = smtp(wire, program=program)
    assert result.stdout == ns(b"D5.5.2 Syntax error in address parameter.")
    assert queue.messages() == []
    assert "control character refused" in result.stderr
    assert "501 5.5.2 Syntax error in address parameter." in result.stderr


def test_a_package_takes_at_most_1000_recipients(smtp, queue):
    recipients = [b"r%d@example.org" % i for i in range(1001)]
    result = smtp(qmqp(b"Subject: x\n\nbody\n", b"a@b.example", recipients), program="qmqpfront-qmail")
    assert result.stdout == ns(b"D5.5.3 Too many recipients (at most 1000).")
    assert queue.messages() == []
    assert smtp(qmqp(b"Subject: x\n\nbody\n", b"a@b.example", recipients[:1000]),
                program="qmqpfront-qmail").stdout.partition(b":")[2].startswith(b"K2.6.0 Accepted message qp ")
    [(envelope, _)] = queue.messages()
    assert envelope.count(b"\0T") == 1000


def test_a_huge_recipient_list_is_read_to_its_end_and_not_logged(smtp, queue):
    """200,000 recipients: refused, nothing queued, and the log holds the first thousand and one line more."""
    recipients = [b"r%d@example.org" % i for i in range(200_000)]
    result = smtp(qmqp(b"Subject: x\n\nbody\n", b"a@b.example", recipients), program="qmqpfront-qmail",
                  RELAYCLIENT="")
    assert result.stdout == ns(b"D5.5.3 Too many recipients (at most 1000).")
    assert queue.messages() == []
    assert result.stderr.count("recipient <") == 1000
    assert "200000 recipients in one package: the 199000 over 1000 not logged" in result.stderr


def test_maxrcpts_applies_to_a_package(smtp, queue):
    recipients = [b"r%d@example.org" % i for i in range(3)]
    result = smtp(qmqp(b"Subject: x\n\nbody\n", b"a@b.example", recipients), program="qmqpfront-qmail",
                  MAXRCPTS="2")
    assert result.stdout == ns(b"D5.5.3 Too many recipients")
    assert queue.messages() == []
