"""clamd's INSTREAM: the answer parser without a socket, and the driver against a real clamd and broken ones."""

from __future__ import annotations

import socket
import tempfile
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import free_port
from scanner_daemons import VIRUS, VIRUS_NAME, Broken, clamd  # noqa: F401 - clamd is a fixture
from smtpfront import clamd as wire
from smtpfront import scanners


def test_answers_as_mailfront_reads_them():
    assert wire.parse_answer(b"stream: OK\n").status == wire.CLEAN
    assert wire.parse_answer(b"stream: OK  \r\n").status == wire.CLEAN
    found = wire.parse_answer(b"stream: Eicar-Test-Signature FOUND\n")
    assert (found.status, found.text) == (wire.INFECTED, "Eicar-Test-Signature FOUND")
    for line in (b"INSTREAM size limit exceeded. ERROR", b"stream:OK", b"garbage", b"", b"stream: OKAY"):
        assert wire.parse_answer(line).status == wire.FAILED, line


def test_a_line_cut_by_the_end_of_input():
    answer = wire.Answer()
    assert answer.feed(b"stream: OK") is None
    assert answer.end().status == wire.CLEAN  # mailfront takes a last line without its newline
    answer = wire.Answer()
    answer.feed(b"stream: X FOU")
    assert answer.end().status == wire.FAILED
    assert wire.Answer().end().status == wire.FAILED


def test_an_endless_line_is_a_failure():
    answer = wire.Answer()
    assert answer.feed(b"x" * (wire.MAX_LINE + 1)).status == wire.FAILED


@given(st.sampled_from([b"stream: OK\n", b"stream: Some.Virus FOUND\n", b"stream: broken ERROR\n", b"x\n"]),
       st.binary(max_size=20), st.lists(st.integers(0, 40), max_size=6))
def test_any_split_parses_the_same(line, trailer, cuts):
    whole = wire.Answer()
    whole.feed(line + trailer)
    data = line + trailer
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    split = wire.Answer()
    for piece in pieces:
        split.feed(piece)
    assert (split.verdict.status, split.verdict.text) == (whole.verdict.status, whole.verdict.text)


def _file(data: bytes):
    f = tempfile.TemporaryFile()
    f.write(data)
    f.flush()
    return f


TIMEOUTS = scanners.Timeouts(5, 5, 5)


def test_a_real_clamd_over_tcp_and_a_unix_socket(clamd):  # noqa: F811
    for targets in (scanners.targets(None, clamd.host, clamd.port), scanners.targets(clamd.socket, None, 0)):
        with _file(b"Subject: x\n\nhello\n") as f:
            assert wire.scan(targets, f, 18, TIMEOUTS)[0].status == wire.CLEAN
        with _file(b"Subject: x\n\n" + VIRUS + b"\n") as f:
            verdict, failures = wire.scan(targets, f, 13 + len(VIRUS), TIMEOUTS)
            assert (verdict.status, verdict.text, failures) == (wire.INFECTED, f"{VIRUS_NAME} FOUND", [])


def test_chunks_of_a_long_message(clamd):  # noqa: F811
    body = b"a" * 200_000 + VIRUS + b"\n"  # in 64 KiB chunks: the signature falls across none of them here
    with _file(body) as f:
        verdict, _ = wire.scan(scanners.targets(clamd.socket, None, 0), f, len(body), TIMEOUTS)
    assert verdict.status == wire.INFECTED


def test_the_next_address_when_one_fails(clamd):  # noqa: F811
    down = free_port()
    targets = [(socket.AF_INET, ("127.0.0.1", down)), (socket.AF_INET, (clamd.host, clamd.port))]
    with _file(b"hello\n") as f:
        verdict, failures = wire.scan(targets, f, 6, TIMEOUTS)
    assert verdict.status == wire.CLEAN
    assert len(failures) == 1 and f"127.0.0.1:{down}: ConnectionRefusedError" in failures[0]


@pytest.mark.parametrize("how, answer, why", [
    ("silent", b"", "TimeoutError"),  # no answer: the 0.5 s read timeout
    ("trickle", b"stream: OK" + b" " * 200 + b"\0", "twice the read timeout"),  # a byte each 0.1 s: 21 s in all
])
def test_a_scanner_that_does_not_answer_in_time(how, answer, why):
    broken = Broken(how, answer)
    try:
        with _file(b"hello\n") as f:
            start = time.monotonic()
            verdict, failures = wire.scan([(socket.AF_INET, ("127.0.0.1", broken.port))], f, 6,
                                          scanners.Timeouts(5, 5, 0.5))
            took = time.monotonic() - start
    finally:
        broken.close()
    assert verdict.status == wire.FAILED and why in failures[0]
    assert took < 30  # 0.5 s or 1 s by the timeouts, with room for a loaded machine


def test_a_scanner_that_closes_mid_answer():
    broken = Broken("midway")
    try:
        with _file(b"hello\n") as f:
            verdict, failures = wire.scan([(socket.AF_INET, ("127.0.0.1", broken.port))], f, 6, TIMEOUTS)
    finally:
        broken.close()
    assert verdict.status == wire.FAILED and "FOU" in failures[0]

