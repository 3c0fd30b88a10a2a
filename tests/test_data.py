"""The message body in the engine: end of data, dot-unstuffing, bare CR/LF, DATA_BARE_EOL=normalize.

The engine is sans-I/O, so these tests feed it bytes directly, whole, byte by
byte and in random reads.  `model` is an independent statement of the rules
(SPEC section 4, docs/security.md), one byte at a time; the engine cuts blocks
and works on them with a few `bytes` calls, and must agree with it.
"""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfront import smtp
from smtpfront.smtp import Engine, Reply

CR, LF = 13, 10


def model(body: bytes, lf_client: bool, normalize: bool) -> tuple[bytes, bool, bytes] | None:
    """(the stored message, bare_eol, the bytes after the final dot), or None: no end yet.

    A line ends with CRLF; a bare LF ends a line too (as it always has for
    dot-unstuffing), and with `normalize` so does a bare CR.  A line that starts
    with a dot loses that dot.  Only a dot line after CRLF (or first in the
    body) ends the message; an LF client's dot line may follow a bare LF too.
    """
    out = bytearray()
    bare = False
    line_start = may_end = True
    i = 0
    while i < len(body):
        if line_start:
            if may_end and body.startswith(b".\r\n", i):
                return bytes(out), bare, body[i + 3 :]
            if may_end and lf_client and body.startswith(b".\n", i):
                return bytes(out), bare, body[i + 2 :]
            if body[i] == ord("."):
                i += 1
                line_start = may_end = False
                continue
        c = body[i]
        if c == CR and body[i + 1 : i + 2] == b"\n":
            out.append(LF)
            i += 2
            line_start = may_end = True
            continue
        if c == CR:
            bare = bare or not lf_client
            out.append(LF if normalize else CR)
            line_start, may_end = normalize, False
        elif c == LF:
            bare = bare or not lf_client
            out.append(LF)
            line_start, may_end = True, lf_client
        else:
            out.append(c)
            line_start = may_end = False
        i += 1
    return None


def dialogue(lf_client: bool) -> bytes:
    eol = b"\n" if lf_client else b"\r\n"
    return b"MAIL FROM:<a@b.example>" + eol + b"RCPT TO:<x@y.example>" + eol + b"DATA" + eol


def run(data: bytes, reads: list[int] | None = None, normalize: bool = False) -> tuple[bytes, list]:
    """Feed `data` in reads of the given sizes (cycled; None: at once); the first message's body and all events."""
    e = Engine(normalize_bare_eol=normalize)
    events: list = []
    sizes = reads or [len(data) or 1]
    pos = k = 0
    while pos < len(data):
        size = sizes[k % len(sizes)]
        e.receive_data(data[pos : pos + size])
        pos += size
        k += 1
        while (event := e.next_event()) is not None:
            events.append(event)
            if event.needs_reply:
                e.respond(Reply(354, "go") if isinstance(event, smtp.Data) else Reply(250, "ok"))
    first_end = next((i for i, x in enumerate(events) if isinstance(x, smtp.BodyEnd)), len(events))
    body = b"".join(x.block for x in events[:first_end] if isinstance(x, smtp.Body))
    return body, events


def ends(events: list) -> list:
    return [x for x in events if isinstance(x, smtp.BodyEnd)]


# ---- properties -----------------------------------------------------------

pieces = st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"x", b"yz", b"\r\n.", b"\n.", b"\r.", b".\r",
                          b".\n", b"\r\n.\r\n"[:4], b"\0", b"\xff", b"w" * 60])
messy = st.lists(st.one_of(pieces, st.binary(max_size=6)), max_size=30).map(b"".join)
# CRLF lines only, many starting with dots: the path every well-behaved client takes
lines = st.lists(st.sampled_from([b"", b".", b"..", b"...x", b".x", b"x.", b"x", b"yz", b"\0", b"w" * 60]), max_size=8)
clean = st.lists(lines.map(b"".join), max_size=20).map(b"\r\n".join)
bodies = st.one_of(messy, clean)
splits = st.lists(st.integers(1, 12), min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(body=bodies, lf_client=st.booleans(), normalize=st.booleans(), reads=splits,
       hold=st.sampled_from([smtp.DATA_HOLD, 2, 5]))
def test_engine_agrees_with_the_rules(body, lf_client, normalize, reads, hold):
    """Body bytes, bare_eol and the end of data as `model` states them, whatever the reads."""
    data = dialogue(lf_client) + body + b"\r\n.\r\nQUIT\r\n"
    expected = model(body + b"\r\n.\r\nQUIT\r\n", lf_client, normalize)
    # a small hold makes short examples pass long lines in pieces, as 64 KiB lines do
    with mock.patch.object(smtp, "DATA_HOLD", hold):
        got, events = run(data, reads, normalize)
    assert expected is not None  # CRLF.CRLF always ends it
    message, bare, rest = expected
    assert got == message
    assert ends(events)[0] == smtp.BodyEnd(bare_eol=bare)
    if rest == b"QUIT\r\n":
        assert isinstance(events[-1], smtp.Quit)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(bodies, st.binary(max_size=200)), lf_client=st.booleans(), normalize=st.booleans(),
       reads=splits, hold=st.sampled_from([smtp.DATA_HOLD, 3]))
def test_any_split_into_reads_gives_the_same_message(body, lf_client, normalize, reads, hold):
    data = dialogue(lf_client) + body + b"\r\n.\r\nQUIT\r\n"
    with mock.patch.object(smtp, "DATA_HOLD", hold):
        whole, whole_events = run(data, None, normalize)
        split, split_events = run(data, reads, normalize)
    assert split == whole
    assert ends(split_events) == ends(whole_events)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(st.binary(max_size=3), st.binary(min_size=20, max_size=120)), max_size=40),
       ends=st.lists(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\r", b"\n", b"\n\r", b"\r\r\n"]), min_size=1))
def test_crlf_to_lf_both_ways(lines, ends):
    """Each CRLF becomes LF; any other CR or LF means None; the same whichever way is taken."""
    chunk = b"".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    without_crlf = chunk.replace(b"\r\n", b"")
    bare = b"\r" in without_crlf or b"\n" in without_crlf
    for short_line in (0, 10**9):  # every chunk split at its CRLFs / every chunk counted
        with mock.patch.object(smtp, "SHORT_LINE", short_line):
            assert smtp.crlf_to_lf(chunk) == (None if bare else chunk.replace(b"\r\n", b"\n"))


# ---- DATA_BARE_EOL=normalize: every placement, by hand -----------------------

# body (before CRLF.CRLF) -> stored message with normalize; every body has a bare CR or LF
NORMALIZED = {
    b"hello\r.\rMAIL FROM:<e@b.example>": b"hello\n\nMAIL FROM:<e@b.example>\n",  # issue 13 item 6
    b"a\rb": b"a\nb\n",
    b"a\nb": b"a\nb\n",
    b"\rfirst": b"\nfirst\n",  # at the very start: an empty first line
    b"\nfirst": b"\nfirst\n",
    b"last\r": b"last\n\n",  # at the end: its own line end, then the CRLF before the final dot
    b"last\n": b"last\n\n",
    b"a\r\r\nb": b"a\n\nb\n",  # bare CR, then CRLF: two line ends
    b"a\n\rb": b"a\n\nb\n",
    b"a\r\n\rb": b"a\n\nb\n",
    b"a\r\n\nb": b"a\n\nb\n",
    b"a\r..b": b"a\n.b\n",  # a line after a bare line end is dot-unstuffed like any other
    b"a\n..b": b"a\n.b\n",
    b"a\r.b": b"a\nb\n",
    b"a\r.\r\n": b"a\n\n\n",  # a dot line after a bare CR is an (empty) line, not the end
    b"a\n.\n": b"a\n\n\n",
    b"a\r\n.\rb": b"a\n\nb\n",  # a dot line ended by a bare CR: not the end either
    b"a\r\n.\nb": b"a\n\nb\n",
    b"\r\r\r": b"\n\n\n\n",
    b".\rx": b"\nx\n",  # the first line, stuffed, ended by a bare CR
}


@pytest.mark.parametrize("body", list(NORMALIZED))
@pytest.mark.parametrize("reads", [None, [1], [2], [3, 1, 5]], ids=["whole", "bytewise", "pairs", "mixed"])
def test_normalize_turns_every_bare_cr_and_lf_into_a_line_end(body, reads):
    data = dialogue(False) + body + b"\r\n.\r\nQUIT\r\n"
    stored, events = run(data, reads, normalize=True)
    assert stored == NORMALIZED[body]
    assert ends(events) == [smtp.BodyEnd(bare_eol=True)]
    assert isinstance(events[-1], smtp.Quit)


@pytest.mark.parametrize("body", list(NORMALIZED))
def test_without_normalize_each_is_flagged(body):
    _, events = run(dialogue(False) + body + b"\r\n.\r\nQUIT\r\n")
    assert ends(events) == [smtp.BodyEnd(bare_eol=True)]  # the session answers 554 5.6.0


def test_crlf_body_is_stored_with_lf_and_not_flagged():
    body = b"Subject: x\r\n\r\n..dot\r\n.\r\n"
    stored, events = run(dialogue(False) + body + b"QUIT\r\n", [7], normalize=True)
    assert stored == b"Subject: x\n\n.dot\n"
    assert ends(events) == [smtp.BodyEnd(bare_eol=False)]


def test_lf_client_with_normalize_turns_a_bare_cr_into_a_line_end():
    stored, events = run(dialogue(True) + b"a\rb\n.\n", normalize=True)
    assert stored == b"a\nb\n"
    assert ends(events) == [smtp.BodyEnd(bare_eol=False)]


# ---- across the pieces of a long line (DATA_HOLD, for real) ------------------

LONG = b"x" * (smtp.DATA_HOLD + 1)


def test_bare_cr_at_the_end_of_a_long_line_piece():
    """A piece never ends in a CR unless another CR follows, so that CR is bare: a line end."""
    head = dialogue(False)
    stored, events = run(head + LONG + b"\r\r" + b".z\r\n.\r\n", [len(head) + len(LONG) + 2, 100],
                            normalize=True)
    assert stored == LONG + b"\n\nz\n"
    assert ends(events) == [smtp.BodyEnd(bare_eol=True)]


def test_crlf_split_between_two_reads_after_a_long_line_stays_one_line_end():
    head = dialogue(False)
    for normalize in (False, True):
        stored, events = run(head + LONG + b"\r\n.\r\n", [len(head) + len(LONG) + 1, 100], normalize)
        assert stored == LONG + b"\n"
        assert ends(events) == [smtp.BodyEnd(bare_eol=False)]
        assert sum(isinstance(x, smtp.Body) for x in events) >= 2  # it did arrive in pieces


def test_blocks_are_whole_lines_unless_a_line_is_too_long():
    text = b"".join(b"line %d\r\n" % i for i in range(20_000))
    _, events = run(dialogue(False) + text + b".\r\n", [4096, 65536, 333])
    blocks = [x.block for x in events if isinstance(x, smtp.Body)]
    assert len(blocks) > 3 and all(b.endswith(b"\n") for b in blocks)
    assert b"".join(blocks) == text.replace(b"\r\n", b"\n")


# ---- through the program -----------------------------------------------------


def test_normalize_queues_line_ends_where_the_client_sent_bare_ones(smtp, queue):
    """Issue 13 item 6: the bare CRs of a smuggling attempt used to reach the queue unchanged."""
    attempt = (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nSubject: t\r\n\r\n"
               b"hello\r.\rMAIL FROM:<e@b.example>\rRCPT TO:<v@example.org>\n.\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    r = smtp(attempt, DATA_BARE_EOL="normalize")
    assert r.codes == [220, 250, 250, 354, 250, 221]
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fa@b.example\0Ty@example.org\0\0"
    assert message.endswith(b"\nSubject: t\n\nhello\n\nMAIL FROM:<e@b.example>\nRCPT TO:<v@example.org>\n\nDATA\nx\n")
    assert b"\r" not in message
    r = smtp(attempt)
    assert r.reply_to(4) == "554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF."
    assert len(queue.messages()) == 1
