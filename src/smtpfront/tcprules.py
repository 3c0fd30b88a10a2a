"""tcpserver's connection rules: the cdb that `tcprules` compiles, read as tcpserver reads it.

A key is an address form; its value is a list of NUL-terminated instructions:
`D` (deny the connection) and `+NAME=value` (set a variable); `allow` compiles to
nothing.  tcpserver tries the keys below in order and follows the first one
found (ucspi-tcp 0.88 `rules.c`, and tcprules(1) ADDRESSES):

    INFO@IP, INFO@=HOST       when $TCPREMOTEINFO (and $TCPREMOTEHOST) is set
    IP, =HOST
    1.2.3.  1.2.  1.          shorter and shorter prefixes of the IP ending in a dot
    2001:db8::  2001:db8:     (an IPv6 client, as ucspi-tcp-ipv6 writes it: ending in a colon)
    =.b.example  =.example    shorter and shorter suffixes of the host, starting with a dot
    =                         when $TCPREMOTEHOST is set
    (the empty key)
"""

from __future__ import annotations

from collections.abc import Iterator

from .cdb import CDB


def rule_keys(ip: bytes, host: bytes | None = None, info: bytes | None = None) -> Iterator[bytes]:
    """The keys tcpserver looks up for a client, in its order."""
    if info is not None:
        yield info + b"@" + ip
        if host is not None:
            yield info + b"@=" + host
    yield ip
    if host is not None:
        yield b"=" + host
    for end in range(len(ip), 0, -1):
        if ip[end - 1 : end] in (b".", b":"):
            yield ip[:end]
    if host is not None:
        for start in range(len(host)):
            if host[start : start + 1] == b".":
                yield b"=" + host[start:]
        yield b"="
    yield b""


def lookup(path: str, ip: bytes, host: bytes | None = None, info: bytes | None = None) -> tuple[bytes, bytes] | None:
    """The first rule that applies, as (key, instructions); None when no key is in the file.

    Raises OSError when the file cannot be opened or read (FileNotFoundError when
    it does not exist: tcpserver's -X lets the connection through then).
    """
    cdb = CDB(path)
    try:
        for key in rule_keys(ip, host, info):
            data = cdb.get(key)
            if data is not None:
                return key, data
        return None
    finally:
        cdb.close()


def instructions(data: bytes) -> tuple[bool, list[tuple[bytes, bytes]]]:
    """(deny, [(name, value), ...]) from a rule's value, as tcpserver's `found()` reads it.

    Only complete (NUL-terminated) instructions count; a `+` entry without `=` is
    skipped; a `D` anywhere denies, and the variables are still listed.
    """
    deny = False
    variables = []
    entries = data.split(b"\0")
    for entry in entries[:-1]:  # the part after the last NUL is not an instruction
        if entry[:1] == b"D":
            deny = True
        elif entry[:1] == b"+":
            name, equals, value = entry[1:].partition(b"=")
            if equals:
                variables.append((name, value))
    return deny, variables
