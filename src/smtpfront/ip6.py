"""IPv6 addresses: written as ucspi-tcp-ipv6 writes them, and a v4-mapped one read as the IPv4 address it names.

ucspi-tcp-ipv6's tcpserver (libowfat's ip6_fmt) writes an address in lower-case
hex with the longest run of zero groups as `::` -- even a single group, which
RFC 5952 (and inet_ntop) leaves as `0` -- the first run on a tie; a v4-mapped
address as `::ffff:a.b.c.d`.  Its $TCPREMOTEIP, log lines and tcp.cdb keys are
in that form, so ours are too.
"""

from __future__ import annotations

import _socket

MAPPED = b"\0" * 10 + b"\xff\xff"


def fmt(packed: bytes) -> str:
    """The text of a 16-byte address, as ip6_fmt writes it."""
    if packed[:12] == MAPPED:
        return "::ffff:" + ".".join(map(str, packed[12:]))
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    start = length = 0
    i = 0
    while i < 8:
        if words[i] == 0:
            end = i
            while end < 8 and words[end] == 0:
                end += 1
            if end - i > length:
                start, length = i, end - i
            i = end
        else:
            i += 1
    if not length:
        return ":".join(f"{w:x}" for w in words)
    return (":".join(f"{w:x}" for w in words[:start]) + "::"
            + ":".join(f"{w:x}" for w in words[start + length :]))


def pack(ip: str) -> bytes:
    """The 16 bytes of an IPv6 address, or of an IPv4 one as v4-mapped; ValueError when it is neither."""
    try:
        if ":" in ip:
            return _socket.inet_pton(_socket.AF_INET6, ip)
        return MAPPED + _socket.inet_pton(_socket.AF_INET, ip)
    except OSError:
        raise ValueError(f"not an IP address: {ip!r}") from None


def unmap(ip: str) -> str:
    """A v4-mapped address (`::ffff:a.b.c.d`, in any spelling) as the IPv4 address; any other text unchanged."""
    if ":" not in ip or "." not in ip and "ffff" not in ip.lower():
        return ip  # the common cases, without parsing
    try:
        packed = pack(ip)
    except ValueError:
        return ip
    return ".".join(map(str, packed[12:])) if packed[:12] == MAPPED else ip
