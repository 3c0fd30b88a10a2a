"""CHUNKING / BDAT (RFC 3030): the engine alone, the program, and real clients under tcpserver."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_program
from smtpfront import smtp
from smtpfront.smtp import Engine, Reply

ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n"
MESSAGE = b"Subject: chunks\r\n\r\nline one\r\n.dot line\r\n\r\n.\r\nend\r\n"


def run_engine(data: bytes, cuts: list[int] = (), normalize: bool = False, chunk_reply=None):
    """Feed `data` to an engine (split at `cuts`), accept everything; the events and the replies."""
    engine = Engine(normalize_bare_eol=normalize)
    events = []
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in [*zip(points, points[1:], strict=False), (len(data), len(data))]:
        engine.receive_data(data[a:b])  # the last, empty, read is the end of input
        while (event := engine.next_event()) is not None:
            events.append(event)
            if event.needs_reply:
                if isinstance(event, smtp.ChunkEnd) and chunk_reply is not None:
                    engine.respond(chunk_reply(event))
                elif isinstance(event, smtp.Data):
                    engine.respond(Reply(354, "go"))
                elif isinstance(event, (smtp.BodyEnd, smtp.ChunkEnd)):
                    engine.respond(Reply(250, f"2.0.0 ok {event.size if isinstance(event, smtp.ChunkEnd) else ''}"))
                else:
                    engine.respond(Reply(250, "2.1.0 ok"))
    return events, engine.data_to_send().decode().split("\r\n")[:-1]


def stored(events) -> bytes:
    return b"".join(e.block for e in events if isinstance(e, smtp.Body))


def bdat(message: bytes, sizes: list[int]) -> bytes:
    """The message sent as BDAT chunks of these sizes (the rest in the LAST chunk)."""
    out, at = [], 0
    for size in sizes:
        size = min(size, len(message) - at)
        out.append(b"BDAT %d\r\n" % size + message[at : at + size])
        at += size
    out.append(b"BDAT %d LAST\r\n" % (len(message) - at) + message[at:])
    return b"".join(out)


def data(message: bytes) -> bytes:
    """The message sent with DATA: a dot doubled at the start of every line (after any line end, as the
    engine reads lines once bare line ends are line ends), then the end marker."""
    import re

    stuffed = re.sub(rb"(^|\r\n|\r|\n)\.", rb"\1..", message)
    return b"DATA\r\n" + stuffed + b".\r\n"


def test_chunks_are_exact_octets_without_dot_stuffing():
    events, replies = run_engine(ENVELOPE + bdat(MESSAGE, [7, 11]) + b"QUIT\r\n")
    assert stored(events) == MESSAGE.replace(b"\r\n", b"\n")  # ".dot line" and a lone "." are plain data
    assert replies[2:] == ["250 2.0.0 ok 7", "250 2.0.0 ok 11", f"250 2.0.0 ok {len(MESSAGE) - 18}",
                           "221 2.0.0 Good bye."]
    assert [type(e) for e in events if isinstance(e, (smtp.Bdat, smtp.ChunkEnd))] == [smtp.Bdat, smtp.ChunkEnd] * 3


def test_a_chunk_boundary_at_every_byte_of_a_crlf_and_of_the_end_of_data_marker():
    """Cut between every pair of bytes of the message, and the reads cut at every byte too: same stored bytes."""
    expected = MESSAGE.replace(b"\r\n", b"\n")
    for first in range(len(MESSAGE) + 1):
        stream = ENVELOPE + bdat(MESSAGE, [first])
        events, replies = run_engine(stream, cuts=[len(ENVELOPE) + first + 9, len(stream) - 3])
        assert stored(events) == expected, first
        assert not any(isinstance(e, smtp.ChunkEnd) and e.bare_eol for e in events), first


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"b", b".", b"\r\n", b"\r", b"\n", b"X" * 30]), max_size=40),
       st.lists(st.integers(0, 60), max_size=5), st.lists(st.integers(0), max_size=6), st.booleans())
def test_bdat_and_data_store_the_same_bytes(parts, sizes, cuts, normalize):
    """For any message, BDAT in any chunks and DATA give the same stored bytes and the same bare-EOL verdict."""
    message = b"".join(parts)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"  # DATA needs its last line ended to be sent at all
    by_data, _ = run_engine(ENVELOPE + data(message), cuts, normalize)
    by_bdat, _ = run_engine(ENVELOPE + bdat(message, sizes), cuts, normalize)
    [data_end] = [e for e in by_data if isinstance(e, smtp.BodyEnd)]
    [bdat_end] = [e for e in by_bdat if isinstance(e, smtp.ChunkEnd) and e.last]
    assert bdat_end.bare_eol == data_end.bare_eol
    if normalize or not data_end.bare_eol:  # else both refuse the message (554), whatever was stored
        assert stored(by_bdat) == stored(by_data)


def test_smuggling_probes_are_only_data_in_a_chunk():
    """Every end-of-data look-alike inside a chunk is message text: one message, and the pipelined MAIL after
    it is a command only because it comes after the chunk's octets."""
    for probe in (b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"):
        message = b"Subject: x\r\n\r\nbefore" + probe + b"MAIL FROM:<e@evil.example>\r\nRCPT TO:<v@example.org>\r\n"
        events, replies = run_engine(ENVELOPE + bdat(message, [5]) + b"MAIL FROM:<n@b.example>\r\n")
        assert b"MAIL FROM:<e@evil.example>" in stored(events)
        assert [e.address for e in events if type(e) is smtp.Mail] == ["a@b.example", "n@b.example"], probe


def test_bdat_refusals_still_consume_the_octets():
    events, replies = run_engine(b"BDAT 5\r\nNOOP\rRCPT TO:<x@y.z>\r\n" + ENVELOPE.split(b"\r\n")[0]
                                 + b"\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
    assert replies == ["503 5.5.1 You must send MAIL FROM: first", "503 5.5.1 You must send MAIL FROM: first",
                       "250 2.1.0 ok", "503 5.5.1 You must send RCPT TO: first", "250 2.3.0 OK"]
    assert not any(isinstance(e, (smtp.Bdat, smtp.Body)) for e in events)


def test_data_after_bdat_and_bad_sizes():
    events, replies = run_engine(ENVELOPE + b"BDAT 3\r\nabcDATA\r\nRSET\r\n" + ENVELOPE + b"DATA\r\n")
    assert replies[2:5] == ["250 2.0.0 ok 3", "503 5.5.1 DATA may not follow BDAT in one message.", "250 2.3.0 OK"]
    assert replies[-1] == "354 go"  # RSET ended the BDAT message: DATA may start a new one
    for line in (b"BDAT", b"BDAT x", b"BDAT -1", b"BDAT 1 FIRST", b"BDAT 1 LAST more", b"BDAT " + b"9" * 19):
        events, replies = run_engine(ENVELOPE + line + b"\r\nNOOP\r\n")
        assert replies[-1] == "501 5.5.4 Invalid BDAT command; closing connection.", line
        assert isinstance(events[-1], smtp.Closed) and events[-1].exit_code == 1


def test_end_of_input_inside_a_chunk_is_a_dropped_connection():
    events, _ = run_engine(ENVELOPE + b"BDAT 100 LAST\r\nonly part")
    assert events[-1] == smtp.Closed(in_data=True, exit_code=1)


# -- the program ------------------------------------------------------------------------------------------


def test_bdat_message_is_queued_as_data_would_be(smtp, queue):
    by_data = smtp(b"EHLO c\r\n" + ENVELOPE + data(MESSAGE) + b"QUIT\r\n")
    by_bdat = smtp(b"EHLO c\r\n" + ENVELOPE + bdat(MESSAGE, [1, 20]) + b"QUIT\r\n")
    assert by_data.codes[-3:] == [354, 250, 221] and by_bdat.codes[-3:] == [250, 250, 221]
    assert "250-CHUNKING" in by_bdat.lines and "BINARYMIME" not in by_bdat.stdout.decode()
    assert by_bdat.codes[-5:] == [250, 250, 250, 250, 221]
    [(env1, msg1), (env2, msg2)] = queue.messages()
    assert env1 == env2 and msg1.split(b"\n", 3)[3] == msg2.split(b"\n", 3)[3]  # all but the Received: dates


def test_bdat_checks_databytes_and_maxhops_as_data_does(smtp, queue):
    r = smtp(ENVELOPE + b"BDAT 40\r\n" + b"x" * 40 + b"BDAT 30 LAST\r\n" + b"y" * 30 + b"QUIT\r\n", DATABYTES="50")
    assert r.lines[-3:] == ["250 2.0.0 40 octets received.",
                            "552 5.2.3 Sorry, that message exceeds the maximum message length.", "221 2.0.0 Good bye."]
    hops = b"".join(b"Received: x\r\n" for _ in range(3)) + b"\r\nbody\r\n"
    r = smtp(ENVELOPE + bdat(hops, [10]) + b"QUIT\r\n", MAXHOPS="2")
    assert r.reply_to(-2) == "554 5.6.0 This message is looping, too many hops."
    assert queue.messages() == []


def test_bdat_bare_lf_is_refused_like_data(smtp, queue):
    r = smtp(ENVELOPE + bdat(b"Subject: x\n\nbody\r\n", [4]) + b"QUIT\r\n")
    assert r.reply_to(-2) == "554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF."
    assert queue.messages() == []


def test_bdat_with_patterns(smtp, tmp_path, queue):
    patterns = tmp_path / "patterns"
    patterns.write_text("=No thanks\n/*forbidden*\n")
    r = smtp(ENVELOPE + bdat(b"Subject: x\r\n\r\nthis is forbidden\r\n", [20]) + b"QUIT\r\n", PATTERNS=str(patterns))
    assert r.reply_to(-2) == "554 No thanks"


def raw_session(port: int, chunks: list[bytes]) -> list[str]:
    """A raw-socket client: each piece sent on its own, the replies read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for chunk in chunks:
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while data := s.recv(65536):
            received += data
    return received.decode().split("\r\n")[:-1]


@pytest.mark.parametrize("program", ["smtpfront-qmail", "smtpfront-queuedir"])
def test_bdat_under_tcpserver_with_both_back_ends(program, tcpserver, base_env, queue, tmp_path):
    env = {**base_env, "RELAYCLIENT": ""}
    if program == "smtpfront-queuedir":
        for sub in ("tmp", "new"):
            (tmp_path / "qd" / sub).mkdir(parents=True)
        env["QUEUEDIR"] = str(tmp_path / "qd")
    server = tcpserver(env, program)
    stream = b"EHLO c\r\n" + ENVELOPE + bdat(MESSAGE, [3, 9]) + b"QUIT\r\n"
    replies = raw_session(server.port, [stream[i : i + 7] for i in range(0, len(stream), 7)])
    assert [line[:3] for line in replies if line[3:4] == " "] == ["220", "250", "250", "250", "250", "250", "250",
                                                                  "221"]
    if program == "smtpfront-qmail":
        [(_, message)] = queue.messages()
    else:
        [f] = list((tmp_path / "qd" / "new").iterdir())
        message = f.read_bytes().split(b"\0\0", 1)[1]
    assert message.endswith(MESSAGE.replace(b"\r\n", b"\n")) and message.startswith(b"Received: ")


def test_the_c_program_does_not_offer_chunking(base_env):
    """An intended difference (docs/differences.md): the C program does not know BDAT at all."""
    from conftest import C_QMAIL

    r = run_program(C_QMAIL, b"EHLO c\r\n" + ENVELOPE + b"BDAT 3 LAST\r\n", base_env)
    assert "250-CHUNKING" not in r.lines and r.lines[-1] == "500 5.5.1 Not implemented."


@pytest.mark.parametrize("normalize", [False, True])
def test_a_bare_cr_ending_a_chunk_before_an_empty_last_one_is_not_dropped(normalize):
    """`BDAT 3` `ab<CR>` then `BDAT 0 LAST`: the CR waited for an LF that never came; it is a bare CR, as DATA
    would have it (refused, or a line end with DATA_BARE_EOL=normalize), never silently dropped."""
    for cuts in ([], list(range(200))):
        events, replies = run_engine(ENVELOPE + b"BDAT 3\r\nab\rBDAT 0 LAST\r\n", cuts, normalize)
        [last] = [e for e in events if isinstance(e, smtp.ChunkEnd) and e.last]
        assert last.bare_eol
        if normalize:
            assert stored(events) == b"ab\n"


def test_databytes_counts_the_same_octets_for_bdat_and_data(smtp, queue):
    """DATABYTES is the stored size (LF line ends) for both: a message DATA takes, BDAT takes (its CRLFs make
    it larger on the wire), and one octet less refuses both with the same reply."""
    limit = len(MESSAGE.replace(b"\r\n", b"\n"))
    for databytes, last in ((limit, "250 2.6.0 "), (limit - 1, "552 5.2.3 Sorry, that message exceeds the maximum"
                                                                " message length.")):
        by_data = smtp(ENVELOPE + data(MESSAGE) + b"QUIT\r\n", DATABYTES=str(databytes))
        by_bdat = smtp(ENVELOPE + bdat(MESSAGE, [20]) + b"QUIT\r\n", DATABYTES=str(databytes))
        assert by_data.reply_to(-2).startswith(last) and by_bdat.reply_to(-2).startswith(last), databytes
    assert len(queue.messages()) == 2


def test_an_empty_first_chunk_starts_the_message_once(smtp, queue):
    r = smtp(ENVELOPE + b"BDAT 0\r\nBDAT 0\r\n" + bdat(MESSAGE, [3]) + b"QUIT\r\n")
    assert r.reply_to(-2).startswith("250 2.6.0 ")
    [(_, message)] = queue.messages()
    assert message.endswith(MESSAGE.replace(b"\r\n", b"\n"))


def test_bdat_commands_are_logged(smtp, queue):
    """A BDAT transaction is told apart from DATA in the log: each BDAT line, as MAIL and RCPT are logged."""
    r = smtp(ENVELOPE + bdat(MESSAGE, [7]) + ENVELOPE + data(MESSAGE) + b"BDAT 3 last\r\nabc" + b"BDAT x\r\n")
    lines = [line.partition("]: ")[2] for line in r.stderr.splitlines()]
    accepted = [line for line in lines if line.startswith("2.6.0 ")]
    assert lines == [
        "MAIL FROM:<a@b.example>", "RCPT TO:<y@example.org>", "BDAT 7", f"BDAT {len(MESSAGE) - 7} LAST", accepted[0],
        "MAIL FROM:<a@b.example>", "RCPT TO:<y@example.org>", accepted[1],
        "BDAT 3 last", "503 5.5.1 You must send MAIL FROM: first",  # refused outside a transaction, logged all the same
        "BDAT x", "501 5.5.4 Invalid BDAT command; closing connection.",
        lines[-1],
    ]
    assert len(queue.messages()) == 2 and lines[-1].startswith("bytes in: ")
