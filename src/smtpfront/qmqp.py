"""QMQP and QMTP packages, without I/O: netstrings cut out of the bytes the client sent.

    QMQP (one package a connection):  N:  M:<message>,  S:<sender>,  R:<rcpt>, ...  ,
    QMTP (packages until EOF):        M:\\n<message>,  S:<sender>,  R:(netstrings of recipients),

`Packages` is fed bytes (`receive_data`) and hands back events in the order
mailfront's protocol-qmqp.c and protocol-qmtp.c read them: the message comes
before its envelope.  A malformed package ends the session with `Failed` and
mailfront's words for what was wrong; end of input where a package may start
is `Finished`.
"""

from __future__ import annotations

from .smtp import Event, text

NEED_DATA = None
MAX_ADDRESS = 65536  # a sender or recipient netstring; mailfront has no bound
MAX_RECIPIENT_LIST = 1 << 20  # QMTP's netstring of recipient netstrings
MAX_LENGTH_DIGITS = 20


class Start(Event):
    """A package's message begins: its blocks follow."""

    __slots__ = ()


class Body(Event):
    __slots__ = ("block",)

    def __init__(self, block: bytes) -> None:
        self.block = block


class Sender(Event):
    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address


class Recipient(Sender):
    __slots__ = ()


class End(Event):
    """The package is complete: it wants its answer."""

    __slots__ = ()


class Failed(Event):
    """The package is malformed or cut short: answer 451 with `why`, and close."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class Finished(Event):
    """The client closed where a package could have started: a clean end."""

    __slots__ = ()


def next_recipient(data: bytes, i: int) -> tuple[str, int] | str:
    """The QMTP recipient netstring at `data[i:]` and where the next starts, or mailfront's words for what is wrong."""
    j, n = i, 0
    while j < len(data) and data[j] != 58:  # ':'
        if not 48 <= data[j] <= 57:
            return "Invalid netstring length"
        n = n * 10 + data[j] - 48
        j += 1
    j += 1
    if j + n > len(data):
        return "Netstring length too long"
    if data[j + n : j + n + 1] != b",":
        return "Netstring missing comma"
    return text(data[j : j + n]), j + n + 1


class Packages:
    """The packages of one connection; `qmtp` selects QMTP's layout (else QMQP's)."""

    def __init__(self, qmtp: bool) -> None:
        self.qmtp = qmtp
        self._buf = bytearray()
        self._eof = False
        self._step = self._package
        self._left = 0  # message bytes still to come
        self._recipients = b""  # QMTP: the package's recipient netstrings, read one at a time
        self._at = 0
        self._skip = False  # QMTP: the rest of the package's recipients are not wanted
        self.done = False

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | None:
        """The next event, or None (NEED_DATA) when more input is needed or the session is over."""
        if self.done:
            return NEED_DATA
        event = self._step()
        if isinstance(event, (Failed, Finished)) or (isinstance(event, End) and not self.qmtp):
            self.done = True
        return event

    # -- pieces ------------------------------------------------------------

    def _peek_length(self) -> tuple[int, int] | bool | None:
        """(N, size of `N:`) of the netstring starting the buffer; None while incomplete; False if malformed."""
        for i, c in enumerate(self._buf[: MAX_LENGTH_DIGITS + 1]):
            if c == 58:  # ':'
                return int(self._buf[:i] or b"0"), i + 1
            if not 48 <= c <= 57:
                return False
        return False if len(self._buf) > MAX_LENGTH_DIGITS else None

    def _length(self) -> int | bool | None:
        """A netstring's length prefix, consumed; None while incomplete; False if malformed."""
        found = self._peek_length()
        if not found:
            return found
        n, size = found
        del self._buf[:size]
        return n

    def _need(self, why: str) -> Event | None:
        """NEED_DATA, or `why` as a failure once the input has ended."""
        return Failed(why) if self._eof else NEED_DATA

    # -- the steps, in the order of a package -----------------------------

    def _package(self) -> Event | None:
        if not self.qmtp:
            n = self._length()
            if n is None:
                return Finished() if self._eof else NEED_DATA
            if n is False:
                return Failed("Invalid wrapper netstring")
        self._step = self._body_length
        return self._step()

    def _body_length(self) -> Event | None:
        n = self._length()
        if n is None:
            return Finished() if self._eof else NEED_DATA
        if n is False:
            return Failed("Invalid message body netstring")
        if n == 0:
            return Failed("Zero length message")
        self._left = n
        self._step = self._body_newline if self.qmtp else self._body
        return Start()

    def _body_newline(self) -> Event | None:
        if not self._buf:
            return self._need("EOF while reading body NL")
        if self._buf[0] != 10:
            return Failed("Cannot handle non-LF line terminator")
        del self._buf[:1]
        self._left -= 1
        self._step = self._body
        return self._step()

    def _body(self) -> Event | None:
        if self._left:
            if not self._buf:
                return self._need("EOF while reading body")
            block = bytes(self._buf[: self._left])
            del self._buf[: len(block)]
            self._left -= len(block)
            return Body(block)
        if not self._buf:
            return self._need("EOF while reading comma")
        if self._buf[0] != 44:
            return Failed("Invalid netstring terminator")
        del self._buf[:1]
        self._step = self._sender
        return self._step()

    def _netstring(self, limit: int, eof: str, bad: str) -> bytes | Event | None:
        """A whole netstring's contents, consumed once all of it is here; else NEED_DATA or Failed."""
        found = self._peek_length()
        if found is None:
            return self._need(eof)
        if found is False or found[0] > limit:
            return Failed(bad)
        n, size = found
        if len(self._buf) < size + n + 1:
            return self._need(eof)
        if self._buf[size + n] != 44:  # ','
            return Failed(bad)
        data = bytes(self._buf[size : size + n])
        del self._buf[: size + n + 1]
        return data

    def _sender(self) -> Event | None:
        data = self._netstring(MAX_ADDRESS, "EOF while reading sender address", "Invalid sender netstring")
        if not isinstance(data, bytes):
            return data
        self._step = self._recipient_list if self.qmtp else self._recipient
        return Sender(text(data))

    def _recipient(self) -> Event | None:
        if not self._buf:
            return self._need("EOF before end of recipient list")
        if self._buf[0] == 44:  # the wrapper's comma: the list is complete
            self._step = self._package
            return End()
        data = self._netstring(MAX_ADDRESS, "EOF while reading recipient list", "Invalid recipient netstring")
        if not isinstance(data, bytes):
            return data
        return Recipient(text(data))

    def _recipient_list(self) -> Event | None:
        data = self._netstring(MAX_RECIPIENT_LIST, "EOF while reading recipient list", "Invalid recipient netstring")
        if not isinstance(data, bytes):
            return data
        self._recipients, self._at = data, 0
        self._step = self._listed_recipient
        return self._step()

    def _listed_recipient(self) -> Event:
        if self._skip or self._at >= len(self._recipients):
            self._skip = False
            self._step = self._package
            return End()
        found = next_recipient(self._recipients, self._at)
        if isinstance(found, str):
            return Failed(found)
        address, self._at = found
        return Recipient(address)

    def skip_recipients(self) -> None:
        """QMTP: the package is refused already; parse none of its other recipients (nor does mailfront)."""
        self._skip = True
