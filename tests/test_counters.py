"""The counters plugin's hop count, against a line-by-line model, for any split of the message into blocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtpfront.plugins.counters import TOO_MANY_HOPS, Counters

LINES = st.sampled_from([b"Received: x\n", b"RECEIVED:y\n", b"delivered-to: a\n", b"Delivered-To:\n", b"Subject: s\n",
                         b"X-Received: no\n", b" Received: folded, not counted\n", b"\n", b"body\n",
                         b"received:" + b"r" * 70 + b"\n"])


def model(message: bytes) -> int:
    """Hop headers before the first blank line, counted a line at a time."""
    hops = 0
    for line in message.split(b"\n"):
        if line == b"":
            break
        hops += line.lower().startswith((b"received:", b"delivered-to:"))
    return hops


def blocks_of(message: bytes, cuts: list[int]) -> list[bytes]:
    """The message cut as the engine hands it over: at line ends, and inside a line only far from its start
    (the engine cuts only lines longer than 64 KiB, so a line's first 13 bytes are always in one block)."""
    points = {0, len(message)}
    for c in cuts:
        c %= len(message) + 1
        line_start = message.rfind(b"\n", 0, c) + 1
        if c == line_start or c - line_start >= 13:
            points.add(c)
    points = sorted(points)
    return [message[a:b] for a, b in zip(points, points[1:], strict=False) if message[a:b]]


@given(st.lists(LINES, max_size=30), st.lists(st.integers(min_value=0), max_size=8), st.integers(1, 12))
def test_hops_as_counted_line_by_line(lines, cuts, max_hops):
    message = b"".join(lines)
    counters = Counters()
    refused = None
    for block in blocks_of(message, cuts):
        refused = refused or (counters._count_hops(block, max_hops) if counters.in_header else None)
    hops = model(message)
    assert (refused is TOO_MANY_HOPS) == (hops > max_hops)
    if hops <= max_hops:
        assert counters.hops == hops
