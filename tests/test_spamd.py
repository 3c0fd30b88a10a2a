"""spamd's PROCESS: the answer parser without a socket, and the driver against a real spamd and broken ones."""

from __future__ import annotations

import socket
import tempfile
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import free_port
from scanner_daemons import GTUBE, Broken, spamd  # noqa: F401 - spamd is a fixture
from smtpfront import scanners
from smtpfront import spamd as wire

HAM = b"Subject: hello\nFrom: a@example.com\n\nhello\n"
SPAM_MSG = b"Subject: hello\nFrom: a@example.com\n\n" + GTUBE + b"\n"


def answer(message: bytes, extra: bytes = b"") -> bytes:
    return b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\n%s\r\n%s" % (len(message), extra, message)


def parse(data: bytes, pieces: list[int] | None = None) -> tuple[wire.Answer, bytes]:
    parsed, out = wire.Answer(), b""
    points = sorted({min(p, len(data)) for p in pieces or []})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        out += parsed.feed(data[a:b])
    parsed.end()
    return parsed, out


def test_request():
    assert wire.request_head(12, None) == b"PROCESS SPAMC/1.2\r\nContent-Length: 12\r\n\r\n"
    assert wire.request_head(0, "bob") == b"PROCESS SPAMC/1.2\r\nContent-Length: 0\r\nUser: bob\r\n\r\n"


def test_the_message_and_its_verdict():
    parsed, out = parse(answer(b"X-Spam-Status: Yes, score=9\nSubject: x\n\nbody\n", b"Spam: True ; 9 / 5\r\n"))
    assert parsed.spam and out == b"X-Spam-Status: Yes, score=9\nSubject: x\n\nbody\n"
    for status, spam in ((b"No, score=1", False), (b"yes", True), (b"Yes", True), (b"  Y", True), (b"Maybe", False),
                         (b"", False)):
        assert parse(answer(b"Subject: x\nX-Spam-Status:" + status + b"\n\nbody\n"))[0].spam is spam, status


def test_only_the_first_status_line_of_the_header_counts():
    assert not parse(answer(b"X-Spam-Status: No\nX-Spam-Status: Yes\n\nx\n"))[0].spam
    assert not parse(answer(b"Subject: x\n\nX-Spam-Status: Yes\n"))[0].spam  # in the body
    assert not parse(answer(b"Subject: x\n X-Spam-Status: Yes\n\n"))[0].spam  # a continuation line
    assert parse(answer(b"X-Spam-Status: Yes"))[0].spam  # the header's last line, without its newline


@pytest.mark.parametrize("data", [
    b"", b"SPAMD/1.1 76 Bad header line\r\n\r\n", b"SPAMD/1.0 0 EX_OK\r\n\r\n", b"SPAMD/1.1 0 EX_OK\r\n",
    b"SPAMD/1.1 0 EX_OK\n\nbody", b"SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\n\r\nshort",
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: x\r\n\r\n", b"SPAMD/1.1 0 EX_OK\r\n" + b"x" * 9000,
])
def test_failures(data):
    with pytest.raises(wire.Failed):
        parse(data)


def test_without_a_length_the_answer_fails():
    """spamd always sends Content-length with PROCESS: without it a cut answer would pass for the message."""
    with pytest.raises(wire.Failed, match="no Content-length"):
        parse(b"SPAMD/1.1 0 EX_OK\r\n\r\nSubject: x\r\n\r\nhal")


@given(st.binary(max_size=300).map(lambda b: b"X-Spam-Status: " + b), st.booleans(),
       st.lists(st.integers(0, 400), max_size=8))
def test_any_split_parses_the_same(message, spam_first, cuts):
    if spam_first:
        message = b"X-Spam-Status: Yes\n" + message
    data = answer(message)
    whole, out = parse(data)
    split, split_out = parse(data, cuts)
    assert (split_out, split.spam) == (out, whole.spam) and out == message


def _file(data: bytes):
    f = tempfile.TemporaryFile()
    f.write(data)
    f.flush()
    return f


TIMEOUTS = scanners.Timeouts(30, 30, 60)  # spamd takes seconds on a loaded machine


def _process(targets, message: bytes, user: str | None = None, timeouts=TIMEOUTS):
    with _file(message) as f, tempfile.TemporaryFile() as out:
        parsed, failures = wire.process(targets, f, len(message), user, timeouts, out)
        out.seek(0)
        return parsed, failures, out.read()


def test_a_real_spamd_over_tcp_and_a_unix_socket(spamd):  # noqa: F811
    for targets in (scanners.targets(None, spamd.host, spamd.port), scanners.targets(spamd.socket, None, 0)):
        parsed, failures, out = _process(targets, SPAM_MSG, "nobody")
        assert parsed.spam and failures == []
        assert b"X-Spam-Flag: YES" in out and GTUBE in out
        parsed, failures, out = _process(targets, HAM)
        assert not parsed.spam and out.endswith(HAM) and b"\nX-Spam-Status: No, " in out


def test_the_next_address_when_one_is_down(spamd):  # noqa: F811
    down = free_port()
    targets = [(socket.AF_INET, ("127.0.0.1", down)), (socket.AF_INET, (spamd.host, spamd.port))]
    parsed, failures, _ = _process(targets, HAM)
    assert parsed is not None and len(failures) == 1 and "ConnectionRefusedError" in failures[0]


@pytest.mark.parametrize("how, answer, why", [
    ("silent", b"", "TimeoutError"),  # no answer: the 0.5 s read timeout
    ("trickle", b"SPAMD/1.1 0 EX_OK\r\nContent-length: 1000\r\n\r\n" + b"x" * 1000,
     "twice the read timeout"),  # a byte each 0.1 s: 105 s in all
])
def test_a_spamd_that_does_not_answer_in_time(how, answer, why):
    broken = Broken(how, answer)
    try:
        start = time.monotonic()
        parsed, failures, _ = _process([(socket.AF_INET, ("127.0.0.1", broken.port))], b"hello\n",
                                       timeouts=scanners.Timeouts(5, 5, 0.5))
        took = time.monotonic() - start
    finally:
        broken.close()
    assert parsed is None and why in failures[0]
    assert took < 30  # 0.5 s or 1 s by the timeouts, with room for a loaded machine


def test_a_spamd_that_closes_mid_message():
    broken = Broken("midway", b"SPAMD/1.1 0 EX_OK\r\nContent-length: 100\r\n\r\nSubject: cut")
    try:
        parsed, failures, _ = _process([(socket.AF_INET, ("127.0.0.1", broken.port))], b"hello\n")
    finally:
        broken.close()
    assert parsed is None and "where spamd announced 100" in failures[0]


def test_an_answer_longer_than_announced_fails():
    with pytest.raises(wire.Failed, match="more than the 2 bytes"):
        parse(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 2\r\n\r\nabc")
