"""Reaching a scanning daemon (clamd, spamd) as mailfront's clamav and spamassassin plugins do.

A daemon is a Unix socket path, or a host name and a port: every address the
name resolves to is tried in turn, from a random start, until one of them
answers.  Three timeouts bound each try: connecting, each wait for the
daemon to take more of the message, and each wait for its answer.  Their
settings are milliseconds, as in mailfront: PREFIX_TIMEOUT (default 5000),
PREFIX_CONNECT_TIMEOUT and PREFIX_SEND_TIMEOUT (default: PREFIX_TIMEOUT).
"""

from __future__ import annotations

# _socket, not socket: the wrapper module imports enum, a cost paid on every connection
import _socket
import posix
import time

from .session import number

DEFAULT_TIMEOUT_MS = 5000


class Unresolved(OSError):
    """The host name gives no address."""


class Timeouts:
    """Seconds for connecting, for each send and for each read."""

    __slots__ = ("connect", "send", "read")

    def __init__(self, connect: float, send: float, read: float) -> None:
        self.connect, self.send, self.read = connect, send, read


def timeouts(getenv, *prefixes: str) -> Timeouts:
    """The three timeouts from `getenv` (the session's; unset, 0 or not a number: the default).

    `prefixes` in order of precedence (CLAMAV, CLAMD: $CLAMD_TIMEOUT counts when $CLAMAV_TIMEOUT is unset).
    """
    read = next((ms for ms in (number(getenv(f"{p}_TIMEOUT")) for p in prefixes) if ms), DEFAULT_TIMEOUT_MS)
    connect = number(getenv(f"{prefixes[0]}_CONNECT_TIMEOUT")) or read
    send = number(getenv(f"{prefixes[0]}_SEND_TIMEOUT")) or read
    return Timeouts(connect / 1000, send / 1000, read / 1000)


def port(value: str | None, default: int) -> int:
    """A port setting: unset or empty is `default`; anything but 1 to 65535 raises ValueError."""
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        raise ValueError(f"bad port {value[:20]!r}")
    return int(value)


def addresses(host: str, number: int) -> list[tuple]:
    """(family, address) for each address of `host`, rotated to start at a random one; raises Unresolved."""
    try:
        found = _socket.getaddrinfo(host, number, 0, _socket.SOCK_STREAM)
    except OSError as e:
        raise Unresolved(f"{host}: {e}") from None
    if not found:
        raise Unresolved(host)
    start = int.from_bytes(posix.urandom(2), "big") % len(found)
    return [(family, address) for family, _, _, _, address in found[start:] + found[:start]]


class Receiver:
    """A daemon's answer read in pieces: each read within the read timeout, and the whole answer within twice
    it, so that a daemon that trickles its answer a byte at a time can't hold the session (TimeoutError)."""

    def __init__(self, sock: _socket.socket, timeouts: Timeouts) -> None:
        self.sock, self.read = sock, timeouts.read
        self.deadline = time.monotonic() + 2 * timeouts.read

    def recv(self, size: int) -> bytes:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(min(self.read, left))
            return self.sock.recv(size)
        except TimeoutError:
            if time.monotonic() < self.deadline:
                raise  # this read's own timeout
            raise TimeoutError("the answer took longer than twice the read timeout") from None


def connect(family: int, address, timeout: float) -> _socket.socket:
    """A connected stream socket; raises OSError (TimeoutError after `timeout` seconds)."""
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def targets(path: str | None, host: str | None, number: int) -> list[tuple]:
    """Where to try: the Unix socket `path` when set, else each address of `host`; raises Unresolved."""
    if path:
        return [(_socket.AF_UNIX, path)]
    if not host:
        return []
    return addresses(host, number)


def describe(family: int, address) -> str:
    if family == _socket.AF_UNIX:
        return address
    if family == _socket.AF_INET6:
        return f"[{address[0]}]:{address[1]}"
    return f"{address[0]}:{address[1]}"


def send_file(sock: _socket.socket, file, length: int, frame=None) -> None:
    """`length` bytes of `file` from its start, each piece of at most 64 KiB framed by `frame(piece)` if given;
    raises OSError when the file is shorter (it changed) or the daemon stops taking them."""
    file.seek(0)
    left = length
    while left:
        piece = file.read(min(left, 1 << 16))
        if not piece:
            raise OSError("the message file is shorter than it was")
        left -= len(piece)
        if frame is not None:
            sock.sendall(frame(len(piece)))
        sock.sendall(piece)
