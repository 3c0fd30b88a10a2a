"""A client for Redis (RESP2), enough for counting: commands, replies, Lua scripts.

Request:  *N CRLF, then each argument as $LEN CRLF BYTES CRLF
Replies:  +simple CRLF, -error CRLF, :integer CRLF, $LEN CRLF BYTES CRLF ($-1: nil),
          *N CRLF then N replies (*-1: nil)

`command` and `parse` are the wire format, pure and fed bytes; `Connection`
owns the socket and its millisecond timeouts.  Whatever goes wrong (no
server, a timeout, a malformed or error reply) is a `StoreError`, after
which the connection is closed and every later call fails at once: a
session waits on a dead or silent Redis once, never more than the timeouts.

A store is named by a URL:

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]
    unix:/PATH[?OPTIONS]

with the options `db=N`, `password_file=/PATH` (the password on the file's
first line, so that no secret sits in the environment), `timeout_ms=N`
(each command, default 250) and `connect_timeout_ms=N` (default 250).
"""

from __future__ import annotations

CONNECT_TIMEOUT_MS = 250
TIMEOUT_MS = 250
MAX_LINE = 1 << 16  # a script's error message may be long, but not that long
MAX_BULK = 1 << 20  # we only ever read counts and short lists: a bigger reply is a broken server


class StoreError(Exception):
    """The store could not be used; the text says why (never a password)."""


class ReplyError(str):
    """An error reply (`-ERR ...`, `-NOSCRIPT ...`), as a value: it may sit inside an array."""

    __slots__ = ()


class ProtocolError(Exception):
    """Bytes that are no RESP reply."""


# -- the wire format ----------------------------------------------------------


def _arg(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def command(*args: object) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _arg(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _number(data: bytes) -> int:
    if not data or not data.lstrip(b"-").isdigit() or len(data) > 20:
        raise ProtocolError(f"not a number: {data[:30]!r}")
    return int(data)


def _length(line: bytes, what: str) -> int:
    """A bulk string's or an array's length: -1 (null) or 0 to MAX_BULK; else ProtocolError, `what` with it."""
    n = _number(line)
    if n < -1 or n > MAX_BULK:
        raise ProtocolError(what.format(n))
    return n


def parse(data: bytes, pos: int = 0):
    """The reply starting at `pos` and the position after it; None when more bytes are needed.

    Raises ProtocolError for bytes that can't start or continue a reply.
    """
    end = data.find(b"\r\n", pos)
    if end < 0:
        if len(data) - pos > MAX_LINE:
            raise ProtocolError("a reply line without an end")
        return None
    kind, line, after = data[pos : pos + 1], data[pos + 1 : end], end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), after
    if kind == b"-":
        return ReplyError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return _number(line), after
    if kind == b"$":
        n = _length(line, "a bulk string of {} bytes")
        if n == -1:
            return None, after
        if len(data) < after + n + 2:
            return None
        if data[after + n : after + n + 2] != b"\r\n":
            raise ProtocolError("a bulk string without its CRLF")
        return data[after : after + n], after + n + 2
    if kind == b"*":
        n = _length(line, "an array of {} items")
        if n == -1:
            return None, after
        items = []
        for _ in range(n):
            found = parse(data, after)
            if found is None:
                return None
            item, after = found
            items.append(item)
        return items, after
    raise ProtocolError(f"unknown reply type {kind!r}")


class Url:
    """Where the store is and how to talk to it, parsed from its URL."""

    __slots__ = ("unix", "host", "port", "db", "user", "password", "password_file", "timeout",
                 "connect_timeout")

    def __init__(self) -> None:
        self.unix = ""
        self.host = "127.0.0.1"
        self.port = 6379
        self.db = 0
        self.user = ""
        self.password = ""
        self.password_file = ""
        self.timeout = TIMEOUT_MS / 1000
        self.connect_timeout = CONNECT_TIMEOUT_MS / 1000

    def __str__(self) -> str:
        """The store, for log lines: never its password."""
        return f"unix:{self.unix}" if self.unix else f"redis://{self.host}:{self.port}/{self.db}"


def _count(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ValueError(f"{what} must be a number: {text!r}")
    return int(text)


def parse_url(text: str) -> Url:
    """Raises ValueError for a URL that names no store (the message quotes no password)."""
    url = Url()
    rest, _, query = text.partition("?")
    if rest.startswith("unix:"):
        url.unix = rest[5:].removeprefix("//")
        if not url.unix.startswith("/"):
            raise ValueError(f"a unix: store needs an absolute path: {rest!r}")
    elif rest.startswith("redis://"):
        rest = rest[8:]
        auth, at, rest = rest.rpartition("@")
        if at:
            url.user, _, url.password = auth.partition(":") if ":" in auth else ("", "", auth)
        hostport, slash, db = rest.partition("/")
        if db:
            url.db = _count(db, "the database")
        if hostport.startswith("["):
            host, _, port = hostport[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = hostport.partition(":")
        url.host = host or url.host
        if port:
            url.port = _count(port, "the port")
    else:
        raise ValueError(f"not a redis:// or unix: URL: {rest.partition(':')[0]!r}:...")  # no password quoted
    for option in filter(None, query.split("&")):
        name, _, value = option.partition("=")
        if name == "db":
            url.db = _count(value, "db")
        elif name == "password_file":
            url.password_file = value
        elif name == "timeout_ms":
            url.timeout = max(_count(value, name), 1) / 1000
        elif name == "connect_timeout_ms":
            url.connect_timeout = max(_count(value, name), 1) / 1000
        else:
            raise ValueError(f"unknown option {name!r}")
    return url


def _numeric(socket, host: str) -> int:
    """The address family of a numeric address, 0 for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            continue
    return 0


class Script:
    """A Lua script and its SHA1, which `EVALSHA` names it by."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        import _sha1  # not hashlib: its import costs a connection more than the hash

        self.source = source
        self.sha = _sha1.sha1(source.encode()).hexdigest()


# -- the driver -----------------------------------------------------------------


class Connection:
    """One connection, opened at the first call; broken for good by the first failure."""

    def __init__(self, url: Url) -> None:
        self.url = url
        self.sock = None
        self.buffer = b""
        self.broken = ""  # why the connection failed, once it has

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fail(self, why: str) -> StoreError:
        self.close()
        self.broken = f"{self.url}: {why}"
        return StoreError(self.broken)

    def _connect(self) -> None:
        import _socket as socket  # not socket: its enum import is paid on every connection

        url = self.url
        if url.unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = url.unix
        else:
            family = _numeric(socket, url.host)
            if family:  # getaddrinfo would load the resolver's modules: ~10 ms a session for nothing
                address = (url.host, url.port)
            else:
                family, _, _, _, address = socket.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)[0]
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(url.connect_timeout)
        self.sock.connect(address)
        password = url.password
        if url.password_file:
            with open(url.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        setup = []
        if password:
            setup.append(("AUTH", url.user, password) if url.user else ("AUTH", password))
        if url.db:
            setup.append(("SELECT", url.db))
        for args in setup:
            reply = self._exchange(command(*args))
            if isinstance(reply, ReplyError):
                raise ProtocolError(f"{args[0]} refused: {reply}")

    def _exchange(self, request: bytes):
        import time

        deadline = time.monotonic() + self.url.timeout
        self.sock.settimeout(self.url.timeout)
        self.sock.sendall(request)
        while True:
            found = parse(self.buffer)
            if found is not None:
                reply, end = found
                self.buffer = self.buffer[end:]
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProtocolError("the server closed the connection")
            self.buffer += chunk

    def call(self, *args: object):
        """The reply to one command (an error reply is returned as a ReplyError); raises StoreError."""
        if self.broken:
            raise StoreError(self.broken)
        try:
            if self.sock is None:
                self._connect()
            return self._exchange(command(*args))
        except TimeoutError:
            raise self._fail("timed out") from None
        except (OSError, ProtocolError, ValueError, RecursionError) as e:  # a reply nested deeper than Python recurses
            raise self._fail(str(e) or type(e).__name__) from None

    def run(self, script: Script, keys: list, args: list):
        """The script's result, by EVALSHA (EVAL when the server doesn't know it yet); raises StoreError."""
        reply = self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        if isinstance(reply, ReplyError) and reply.startswith("NOSCRIPT"):
            reply = self.call("EVAL", script.source, len(keys), *keys, *args)
        if isinstance(reply, ReplyError):
            raise self._fail(f"script error: {reply}")
        return reply
