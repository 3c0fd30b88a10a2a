"""The SMTP protocol engine, without I/O.

`Engine` is fed the bytes the client sent (`receive_data`) and hands back
events (`next_event`).  Events that need an answer from the policy layer
(HELO, MAIL, RCPT, DATA, the end of a message, AUTH and its continuation
lines, STARTTLS) stay pending until the caller passes the reply to `respond`;
the reply's code drives the state (a 2xx to MAIL means a sender is set, 354
to DATA means the body follows, ...).  Grammar, command order and the fixed
replies (NOOP, RSET, VRFY, HELP, QUIT, 500, 503) are answered here.
Everything to be written to the client is collected for `data_to_send`.

No sockets, no clock, no environment: the drivers and the tests are callers.
"""

from __future__ import annotations


def text(raw: bytes) -> str:
    """Protocol bytes as str; `raw(text(b)) == b` for any bytes."""
    return raw.decode("utf-8", "surrogateescape")


def raw(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def fold(s: str) -> str:
    """`s` with its ASCII letters lower-cased and every other character as it is, as C's tolower folds.

    Addresses are compared so (SMTPUTF8 addresses byte for byte but for ASCII case), never with str.lower,
    which would fold `É` to `é` as no mailfront list or rule does.
    """
    return s.lower() if s.isascii() else raw(s).lower().decode("utf-8", "surrogateescape")


class Reply:
    """An SMTP reply: a code and its text; a newline in the text makes a multi-line reply.

    A plugin's acceptance may have no text (None): the protocol's usual words are used.
    """

    __slots__ = ("code", "text")

    def __init__(self, code: int, text: str | None) -> None:
        self.code = code
        self.text = text

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reply) and (self.code, self.text) == (other.code, other.text)

    def __hash__(self) -> int:
        return hash((self.code, self.text))

    @property
    def ok(self) -> bool:
        return self.code < 400

    def _parts(self) -> list[str]:
        return (self.text or "").replace("\r\n", "\n").split("\n")

    def lines(self) -> list[str]:
        parts = self._parts()
        last = len(parts) - 1
        return [f"{self.code}{' ' if i == last else '-'}{p}" for i, p in enumerate(parts)]

    def log_lines(self) -> list[str]:
        """As mailfront logs an error reply: `code text` for each line."""
        return [f"{self.code} {part}" for part in self._parts()]

    def encode(self) -> bytes:
        return raw("\r\n".join(self.lines()) + "\r\n")


def failed(reply: Reply | None) -> bool:
    """Whether an answer refuses (400 or more); None, no answer, does not."""
    return reply is not None and reply.code >= 400


NOT_IMPLEMENTED = Reply(500, "5.5.1 Not implemented.")
LINE_TOO_LONG = Reply(500, "5.5.2 Line too long.")
TOO_MANY_NOTIMPL = Reply(503, "5.5.0 Too many unimplemented commands.\n5.5.0 Closing connection.")
NEED_MAIL = Reply(503, "5.5.1 You must send MAIL FROM: first")
NEED_RCPT = Reply(503, "5.5.1 You must send RCPT TO: first")
BAD_ADDRESS = Reply(501, "5.5.2 Syntax error in address parameter.")
BAD_SIZE = Reply(501, "5.5.4 Invalid SIZE parameter.")
NO_PARAMETERS = Reply(501, "5.5.2 Syntax error, no parameters allowed.")
BAD_HELLO = Reply(501, "5.5.4 Invalid HELO/EHLO argument: no CR, LF or NUL.")
OK = Reply(250, "2.3.0 OK")
VRFY = Reply(252, "2.5.2 Send some mail, I'll try my best.")
HELP = Reply(214, "2.0.0 Help not available.")
BYE = Reply(221, "2.0.0 Good bye.")
TLS_ALREADY = Reply(503, "5.5.1 TLS is already active.")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Too many recipients.")
BAD_BDAT = Reply(501, "5.5.4 Invalid BDAT command; closing connection.")
DATA_AFTER_BDAT = Reply(503, "5.5.1 DATA may not follow BDAT in one message.")
NEEDS_SMTPUTF8 = Reply(553, "5.6.7 A non-ASCII address needs the SMTPUTF8 parameter.")
BAD_UTF8 = Reply(553, "5.6.7 Address is not well-formed UTF-8.")
TOO_MANY_COMMANDS = Reply(421, "4.7.0 Too many commands; closing connection.")

MAX_COMMAND_LINE = 1000  # RFC 5321 asks for 512; leave room for ESMTP parameters
MAX_AUTH_LINE = 12288  # RFC 4954 section 4
DATA_HOLD = 65536  # a body line longer than this is passed on in pieces
SAMPLE, SHORT_LINE = 4096, 24  # crlf_to_lf: lines shorter than this on average are "very short"
MAX_RECIPIENTS = 1000  # per message, whatever MAXRCPTS says; RFC 5321 asks for at least 100
MAX_COMMANDS = 10000  # per session; a legitimate session sends a few per message


# ---- events -------------------------------------------------------------


class Event:
    __slots__ = ()
    needs_reply = True

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )


class Hello(Event):
    """HELO or EHLO; `esmtp` tells which."""

    __slots__ = ("domain", "esmtp")

    def __init__(self, domain: str, esmtp: bool) -> None:
        self.domain = domain
        self.esmtp = esmtp


class Mail(Event):
    """MAIL FROM:<address> with its ESMTP parameters (`KEY=VALUE` words, as sent)."""

    __slots__ = ("address", "params")

    def __init__(self, address: str, params: tuple[str, ...]) -> None:
        self.address = address
        self.params = params


class Rcpt(Mail):
    """RCPT TO:<address> with its ESMTP parameters."""

    __slots__ = ()


class Data(Event):
    __slots__ = ()


class Body(Event):
    """A block of the message: whole lines, dot-unstuffed, ending in LF."""

    __slots__ = ("block",)
    needs_reply = False

    def __init__(self, block: bytes) -> None:
        self.block = block


class BodyEnd(Event):
    """The final dot.  `bare_eol` is true when a CRLF client sent a bare CR or LF in the body."""

    __slots__ = ("bare_eol",)

    def __init__(self, bare_eol: bool) -> None:
        self.bare_eol = bare_eol


class Bdat(Event):
    """BDAT <size> [LAST] (RFC 3030): the chunk's octets follow as Body events, then a ChunkEnd."""

    __slots__ = ("size", "last")
    needs_reply = False

    def __init__(self, size: int, last: bool) -> None:
        self.size = size
        self.last = last


class ChunkEnd(Event):
    """All of a BDAT chunk is in; it wants its reply.  `bare_eol` as for BodyEnd (set on the LAST chunk)."""

    __slots__ = ("size", "last", "bare_eol")

    def __init__(self, size: int, last: bool, bare_eol: bool) -> None:
        self.size = size
        self.last = last
        self.bare_eol = bare_eol


class Auth(Event):
    """AUTH mechanism [initial-response]: the mechanism as typed ("" for a bare AUTH); no initial response is None."""

    __slots__ = ("mechanism", "initial")

    def __init__(self, mechanism: str, initial: str | None) -> None:
        self.mechanism = mechanism
        self.initial = initial


class AuthResponse(Event):
    """A client line answering a 334 challenge."""

    __slots__ = ("line",)

    def __init__(self, line: str) -> None:
        self.line = line


class StartTLS(Event):
    __slots__ = ()


class Reset(Event):
    """The transaction was abandoned (RSET); already answered."""

    __slots__ = ()
    needs_reply = False


class Quit(Event):
    """QUIT, already answered; the caller closes the connection."""

    __slots__ = ()
    needs_reply = False


class Closed(Event):
    """The engine will read nothing more: end of input, or too many bad commands.

    `in_data` is true when the client vanished inside a message; `exit_code` is
    what the program should exit with.
    """

    __slots__ = ("in_data", "exit_code")
    needs_reply = False

    def __init__(self, in_data: bool, exit_code: int) -> None:
        self.in_data = in_data
        self.exit_code = exit_code


NEED_DATA = None  # next_event's answer when more input is needed

COMMAND, AUTH, DATA, CHUNK, CLOSED = "command", "auth", "data", "chunk", "closed"
MAX_CHUNK_DIGITS = 18  # a BDAT size up to just under 10**18 octets


class ProtocolError(RuntimeError):
    """The caller used the engine out of order (a bug in the caller, never the client)."""


def parse_path(arg: str, keyword: str) -> tuple[str, tuple[str, ...]] | None:
    """Split 'FROM:<addr> KEY=VALUE ...' into the address and its parameters, as mailfront does.

    The keyword (FROM or TO) is required; after it, `:<addr>`, ` <addr>`,
    `<addr>` and the pre-standard `:addr` / ` addr` (up to a space) are all read
    (mailfront 2.13+).  Inside the address a quote toggles quoting and is
    dropped, and a backslash takes the next character literally.  A source
    route (`<@a,@b:user@host>`) is dropped as RFC 5321 allows.  Returns None
    when there is no address, the bracket is not closed, or the address holds
    a control character (a NUL would cut the qmail-queue envelope short, a CR
    would reach the Return-Path: header written at delivery).
    """
    if arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :]
    if rest[:1] not in (":", " ", "<"):
        return None
    start = rest.find("<") + 1
    if start:
        term = ">"
    else:
        term = " "
        start = len(rest) - len(rest[1:].lstrip(" "))  # past the ':' or ' ' and any spaces
        if start >= len(rest):
            return None
    address: list[str] = []
    quoted = False
    i, n = start, len(rest)
    while i < n and (quoted or rest[i] != term):
        c = rest[i]
        if c == '"':
            quoted = not quoted
        else:
            if c == "\\" and i + 1 < n:
                i += 1
                c = rest[i]
            address.append(c)
        i += 1
    if term == ">" and i >= n:
        return None
    path = "".join(address)
    if has_control(path):
        return None
    if path.startswith("@") and ":" in path:
        path = path[path.index(":") + 1 :]
    # as mailfront: the parameters are what lies between single spaces (so two spaces make an empty one,
    # and a tab separates nothing), the spaces after the address and one at the end left out
    params = rest[i + 1 :].lstrip(" ").split(" ")
    if params[-1] == "":
        params.pop()
    return path, tuple(params)


def has_control(address: str) -> bool:
    """Whether an address holds a C0 control character or DEL, refused in every protocol: a NUL would cut
    qmail-queue's envelope or add records to it, a CR or LF would reach the Return-Path: written at delivery."""
    return not address.isprintable() and any(c < " " or c == "\x7f" for c in address)


def _bad_size(params: tuple[str, ...]) -> Reply | None:
    """BAD_SIZE for a SIZE= parameter that is not a number (RFC 1870; mailfront ignores it)."""
    for param in params:
        if param[:5].upper() == "SIZE=" and not (param[5:].isascii() and param[5:].isdigit()):
            return BAD_SIZE
    return None


def crlf_to_lf(chunk: bytes) -> bytes | None:
    """`chunk` with every CRLF made LF; None when it holds a bare CR or LF.

    Two ways to the same bytes, whichever is cheaper for the line length a
    sample shows.  Lines of usual length: split at the CRLFs (one scan); a CR
    or LF left in the pieces is bare; the pieces joined with LF are the block.
    Very short lines make that a Python object a line, so instead: drop every
    CR, and check by counting that each was followed by an LF and that no
    other LF was there.
    """
    if chunk.count(b"\n", 0, SAMPLE) * SHORT_LINE < min(len(chunk), SAMPLE):
        lines = chunk.split(b"\r\n")
        rest = b"".join(lines)
        return None if b"\r" in rest or b"\n" in rest else b"\n".join(lines)
    block = chunk.translate(None, b"\r")
    crs = len(chunk) - len(block)
    return block if chunk.count(b"\r\n") == crs == block.count(b"\n") else None


def _utf8_problem(address: str, utf8: bool) -> Reply | None:
    """Why a non-ASCII address can't be taken: without SMTPUTF8 none can (RFC 6531 3.7.4.1); with it, it
    must be well-formed UTF-8 (a malformed or overlong sequence decodes to lone surrogates) without C1
    controls (C0 controls are refused for every address, by parse_path)."""
    if address.isascii():
        return None
    if not utf8:
        return NEEDS_SMTPUTF8
    if any("\ud800" <= c <= "\udfff" or "\x80" <= c <= "\x9f" for c in address):
        return BAD_UTF8
    return None


class Engine:
    """One SMTP session's protocol state.  See the module docstring."""

    def __init__(self, max_notimpl: int = 0, normalize_bare_eol: bool = False) -> None:
        self._buf = bytearray()
        self._eof = False
        self._out: list[bytes] = []
        self._pending: Event | None = None
        self._final: Event | None = None  # what next_event says once closed
        self.log: list[str] = []  # lines worth logging, in mailfront's words; the caller drains it
        self.notes: list[str] = []  # lines worth logging that mailfront does not write
        self.mode = COMMAND
        self.max_notimpl = max_notimpl
        self.notimpl = 0
        self.commands = 0
        self.crlf_client = False  # has the client ever ended a line with CRLF?
        self.has_sender = False
        self.recipients = 0
        self.tls = False
        self._skipping = False  # inside an over-long line, dropping up to its LF
        # inside DATA
        self._line_start = True  # the next body byte starts a line
        self._may_end = True  # ... and a dot line there would end the message
        self._lf_body = False  # a bare-LF client may end with LF.LF
        self._bare_eol = False
        # DATA_BARE_EOL=normalize: a bare CR or LF in the body is a line end like CRLF
        self.normalize_bare_eol = normalize_bare_eol
        # the transaction's extensions
        self.utf8 = False  # MAIL FROM had SMTPUTF8 (RFC 6531): its addresses may be UTF-8
        self.chunking = False  # a BDAT chunk was taken: the message goes on in BDAT, never DATA
        # inside a BDAT chunk
        self._chunk: Bdat | None = None  # the chunk being read; None when it is refused here, unread
        self._chunk_left = 0  # its octets still to come
        self._chunk_refusal: Reply | None = None
        self._cr_held = False  # the stored bytes so far end with a CR that may be half of a CRLF
        self._stored: list[bytes] = []  # the message as stored, not yet handed out in whole lines
        self._stored_size = 0

    # -- input and output ------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add client bytes; b'' means the client closed its side."""
        if data:
            self._buf += data
        else:
            self._eof = True

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def send(self, reply: Reply) -> None:
        """Queue an unsolicited reply (greeting, timeout notice)."""
        self._queue(reply)

    def close(self, exit_code: int) -> None:
        """Read nothing more (timeouts, fatal errors)."""
        self.mode = CLOSED
        self._final = Closed(in_data=False, exit_code=exit_code)

    # -- events ----------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None (NEED_DATA) when more input is needed or the session is over."""
        if self._pending is not None:
            raise ProtocolError(f"{self._pending!r} is waiting for a reply")
        while True:
            if self.mode == CLOSED:
                final, self._final = self._final, None
                return final
            if self.mode == DATA:
                return self._body_event()
            if self.mode == CHUNK:
                event = self._chunk_event()
                if event is NEED_DATA and self.mode == COMMAND:
                    continue  # a chunk refused here is consumed; its reply is queued
                if event is not None and event.needs_reply:
                    self._pending = event
                return event
            line = self._next_line(MAX_AUTH_LINE if self.mode == AUTH else MAX_COMMAND_LINE)
            if line is None:
                if not self._eof:
                    return NEED_DATA
                self.close(0)
                continue
            if line is LINE_TOO_LONG:
                event = self._reply(LINE_TOO_LONG)
            elif self.mode == AUTH:
                event = AuthResponse(line)
            else:
                event = self._command(line)
            if event is not None:
                if event.needs_reply:
                    self._pending = event
                return event

    def respond(self, reply: Reply) -> None:
        """Answer the pending event; the reply's code moves the state on."""
        event, self._pending = self._pending, None
        if event is None:
            raise ProtocolError("no event is waiting for a reply")
        self._queue(reply)
        if self.mode == CLOSED:
            return
        ok = reply.ok
        if isinstance(event, Hello):
            if ok:
                self._clear_transaction()
        elif isinstance(event, Rcpt):
            self.recipients += ok
        elif isinstance(event, Mail):
            self.has_sender = ok
            self.recipients = 0
        elif isinstance(event, Data):
            if reply.code == 354:
                self.mode = DATA
                self._line_start = self._may_end = True
                self._lf_body = not self.crlf_client
                self._bare_eol = False
        elif isinstance(event, BodyEnd) or (isinstance(event, ChunkEnd) and event.last):
            self._clear_transaction()
        elif isinstance(event, (Auth, AuthResponse)):
            self.mode = AUTH if reply.code == 334 else COMMAND
        elif isinstance(event, StartTLS) and reply.code == 220:
            self.mode = CLOSED  # nothing more is read in plaintext; see start_tls()

    def start_tls(self) -> None:
        """The TLS handshake succeeded: forget everything, including pipelined plaintext."""
        self._buf.clear()
        self._skipping = False
        self.mode = COMMAND
        self.tls = True
        self._clear_transaction()

    # -- commands --------------------------------------------------------

    def _command(self, line: str) -> Event | None:
        self.commands += 1
        if self.commands > MAX_COMMANDS:
            return self._reply(TOO_MANY_COMMANDS)
        # as mailfront: the verb ends at the first space or tab, the argument starts after them
        cut = next((i for i, c in enumerate(line) if c in " \t"), len(line))
        verb, arg = line[:cut].upper(), line[cut:].lstrip(" \t")
        handler = self._COMMANDS.get(verb)
        if handler is None:
            # not the line itself: a client refused AUTH may go on to send its base64 credentials
            self.notes.append(f"unrecognised command ({len(line)} bytes)")
            return self._reply(NOT_IMPLEMENTED)
        if verb in ("MAIL", "RCPT", "BDAT"):  # BDAT as mailfront logs a command it lacks: the line
            self.log.append(f"{verb} {arg}")
        return handler(self, arg)

    def _helo(self, arg: str) -> Event | None:
        return self._hello(arg, esmtp=False)

    def _ehlo(self, arg: str) -> Event | None:
        return self._hello(arg, esmtp=True)

    def _hello(self, arg: str, esmtp: bool) -> Event | None:
        # the argument goes into the Received header: a CR or NUL there would forge header lines
        if "\r" in arg or "\n" in arg or "\0" in arg:
            return self._reply(BAD_HELLO)
        return Hello(arg, esmtp)

    def _mail(self, arg: str) -> Event | None:
        self._clear_transaction()  # as mailfront: MAIL starts over before its argument is read
        parsed = parse_path(arg, "FROM")
        reply = BAD_ADDRESS if parsed is None else _bad_size(parsed[1])
        if reply is None:
            self.utf8 = any(p.upper() == "SMTPUTF8" for p in parsed[1])
            reply = _utf8_problem(parsed[0], self.utf8)
        if reply is not None:
            self._queue(reply)
            return Reset()
        return Mail(*parsed)

    def _rcpt(self, arg: str) -> Event | None:
        if not self.has_sender:
            return self._reply(NEED_MAIL)
        parsed = parse_path(arg, "TO")
        if parsed is None:
            return self._reply(BAD_ADDRESS)
        problem = _utf8_problem(parsed[0], self.utf8)
        if problem is not None:
            return self._reply(problem)
        if self.recipients >= MAX_RECIPIENTS:
            return self._reply(TOO_MANY_RECIPIENTS)
        return Rcpt(*parsed)

    def _data(self, arg: str) -> Event | None:
        if not self.has_sender:
            return self._reply(NEED_MAIL)
        if not self.recipients:
            return self._reply(NEED_RCPT)
        if self.chunking:
            return self._reply(DATA_AFTER_BDAT)
        return Data()

    def _bdat(self, arg: str) -> Event | None:
        words = arg.split(" ")
        size = words[0]
        if (not (1 <= len(words) <= 2 and size.isascii() and size.isdigit() and len(size) <= MAX_CHUNK_DIGITS)
                or (len(words) == 2 and words[1].upper() != "LAST")):
            # how many octets follow is unknown: reading on would take message bytes for commands
            self._queue(BAD_BDAT)
            self.close(1)
            return None
        self.mode = CHUNK
        self._chunk_left = int(size)
        last = len(words) == 2
        self._chunk_refusal = NEED_MAIL if not self.has_sender else NEED_RCPT if not self.recipients else None
        if self._chunk_refusal is not None:  # refused, but its octets are consumed all the same (RFC 3030 2)
            self._chunk = None
            return None
        if not self.chunking:  # the message's first chunk
            self.chunking = True
            self._bare_eol = self._cr_held = False
            self._stored, self._stored_size = [], 0
        self._chunk = Bdat(self._chunk_left, last)
        return self._chunk

    def _rset(self, arg: str) -> Event:
        self._clear_transaction()
        self._queue(OK)
        return Reset()

    def _noop(self, arg: str) -> None:
        return self._reply(OK)

    def _vrfy(self, arg: str) -> None:
        return self._reply(VRFY)

    def _help(self, arg: str) -> None:
        return self._reply(HELP)

    def _quit(self, arg: str) -> Event:
        self._queue(BYE)
        self.mode = CLOSED
        return Quit()

    def _auth(self, arg: str) -> Event:
        # whether AUTH is offered at all, and in this state, is the policy's to say
        mechanism, _, initial = arg.partition(" ")
        initial = initial.strip(" ")
        return Auth(mechanism, initial or None)  # as typed: mailfront logs it so

    def _starttls(self, arg: str) -> Event | None:
        if arg:
            return self._reply(NO_PARAMETERS)
        if self.tls:
            return self._reply(TLS_ALREADY)
        return StartTLS()

    _COMMANDS = {
        "HELO": _helo,
        "EHLO": _ehlo,
        "MAIL": _mail,
        "RCPT": _rcpt,
        "DATA": _data,
        "BDAT": _bdat,
        "RSET": _rset,
        "NOOP": _noop,
        "VRFY": _vrfy,
        "HELP": _help,
        "QUIT": _quit,
        "AUTH": _auth,
        "STARTTLS": _starttls,
    }

    # -- helpers ---------------------------------------------------------

    def _queue(self, reply: Reply) -> None:
        if reply.code >= 400:
            self.log.extend(reply.log_lines())
        if reply.code == 421:  # the server is closing the session
            self.close(1)
            self._pending = None
        if reply.code != 500:
            self.notimpl = 0  # as mailfront: MAXNOTIMPL counts unimplemented commands in a row
        elif self.max_notimpl:
            self.notimpl += 1
            if self.notimpl > self.max_notimpl:
                self.log[-1:] = TOO_MANY_NOTIMPL.log_lines()
                reply = TOO_MANY_NOTIMPL
                self.close(1)
                self._pending = None
        self._out.append(reply.encode())

    def _reply(self, reply: Reply) -> None:
        self._queue(reply)
        return None

    def _clear_transaction(self) -> None:
        self.has_sender = False
        self.recipients = 0
        self.utf8 = False
        self.chunking = False

    def _next_line(self, limit: int) -> str | Reply | None:
        buf = self._buf
        while True:
            end = buf.find(b"\n")
            if self._skipping:
                if end < 0:
                    buf.clear()
                    return None
                del buf[: end + 1]
                self._skipping = False
                continue
            if end < 0:
                if len(buf) > limit:
                    buf.clear()
                    self._skipping = True
                    return LINE_TOO_LONG
                if self._eof and buf:
                    end = len(buf)  # a last line without a newline still counts
                    buf += b"\n"
                else:
                    return None
            if end > limit:
                del buf[: end + 1]
                return LINE_TOO_LONG
            if end and buf[end - 1] == 13:
                line = bytes(buf[: end - 1])
                self.crlf_client = True
            else:
                line = bytes(buf[:end])
            del buf[: end + 1]
            return text(line)

    # -- the message body ------------------------------------------------

    def _body_event(self) -> Event | None:
        """Cut the next block of the message out of the buffer.

        Only CRLF.CRLF ends a message, so that a bare LF.LF or CR.CR hidden in
        the body can never split one submission into two (SMTP smuggling).
        The exception is a client that has sent nothing but bare-LF lines, such
        as a person typing into nc: it may end with LF.LF.
        """
        buf = self._buf
        if self._may_end:
            if buf.startswith(b".\r\n") or (self._lf_body and buf.startswith(b".\n")):
                del buf[: 3 if buf[1] == 13 else 2]
                return self._end_body()
            if b".\r\n".startswith(buf):
                return self._need_body()  # can't tell yet whether this is the final dot
        cut, dotted = self._find_end(buf, buf.rfind(b"\n") + 1)
        if not cut:
            if len(buf) <= DATA_HOLD:
                return self._need_body()
            cut = len(buf) - (buf[-1] == 13)  # a long line goes in pieces; never split a CRLF
            dotted = False
        chunk = bytes(buf[:cut])
        del buf[:cut]
        block = self._unstuff(chunk, dotted)
        # a piece of a long line ends in CR only when another CR follows: the next piece starts
        # with that CR, never with a dot, so a bare CR there (a line end with normalize) needs nothing
        self._line_start = chunk.endswith(b"\n")
        self._may_end = chunk.endswith(b"\r\n") or (self._lf_body and chunk.endswith(b"\n"))
        return Body(block)

    def _find_end(self, buf: bytearray, last: int) -> tuple[int, bool]:
        """Where the next block ends, and whether a line inside it starts with a dot.

        The block ends after the line before the final dot when there is one,
        else after the last whole line (`last`; 0: none).  One scan for the
        first line that starts with a dot answers both for most blocks: a
        message seldom has such lines, and the final dot is one of them.  A
        block with no dot at all (base64, say) needs only a memchr.
        """
        first = buf.find(b".", 0, last)
        if first < 0:
            return last, False
        if self._lf_body:
            dot = buf.find(b"\n.", max(first - 1, 0), last)
            if dot < 0:
                return last, False
            ends = [i for i in (buf.find(b"\n.\n", dot, last), buf.find(b"\n.\r\n", dot, last)) if i >= 0]
            return (min(ends) + 1, True) if ends else (last, True)
        dot = buf.find(b"\r\n.", max(first - 2, 0), last)
        if dot < 0:
            return last, False
        end = buf.find(b"\r\n.\r\n", dot, last)
        return (end + 2, dot < end) if end >= 0 else (last, True)

    def _unstuff(self, chunk: bytes, dotted: bool) -> bytes:
        """The block as it is stored: LF line ends, dot-unstuffed; notes a bare CR or LF.

        `dotted` is false when no line but the first can start with a dot.
        Bare line ends (and an LF client's block) take the general path: CRLF
        -> LF, with DATA_BARE_EOL=normalize bare CR -> LF too, then the dot
        that starts a line after any LF is removed.
        """
        if self._line_start and chunk.startswith(b"."):
            chunk = chunk[1:]
        if not self._lf_body:
            block = crlf_to_lf(chunk)
            if block is not None:
                return block.replace(b"\n.", b"\n") if dotted else block
            self._bare_eol = True
        return self._line_ends(chunk).replace(b"\n.", b"\n")

    def _line_ends(self, data: bytes) -> bytes:
        """CRLF -> LF, and with DATA_BARE_EOL=normalize a bare CR -> LF too (a bare LF stays one)."""
        block = data.replace(b"\r\n", b"\n")
        return block.replace(b"\r", b"\n") if self.normalize_bare_eol else block

    def _end_body(self) -> Event:
        self.mode = COMMAND
        event = BodyEnd(self._bare_eol)
        self._pending = event
        return event

    def _need_body(self) -> Event | None:
        if not self._eof:
            return NEED_DATA
        return self._drop()

    def _drop(self) -> Event:
        self.close(1)
        self._final = None
        return Closed(in_data=True, exit_code=1)

    # -- BDAT chunks -----------------------------------------------------

    def _chunk_event(self) -> Event | None:
        """The next block of a BDAT chunk, its end, or NEED_DATA.

        A chunk is exactly its octets: no dot-stuffing, no end marker.  They
        are stored as DATA's are (CRLF -> LF, a bare CR or LF noted) and handed
        out in whole lines, as DATA's blocks are; a CR at the end of a chunk
        waits for the next chunk's first octet.
        """
        while True:
            final = self._chunk is not None and self._chunk.last and not self._chunk_left
            if final and self._cr_held:  # an empty LAST chunk: the CR held from the chunk before is a bare CR
                self._stored.append(self._store(b"", True))
                self._stored_size += len(self._stored[-1])
            if final or self._stored_size >= DATA_HOLD:  # blocks of DATA's size, whatever the chunks' sizes
                block = self._lines(final)
                if block:
                    return Body(block)
            if not self._chunk_left:
                break
            if not self._buf:
                return NEED_DATA if not self._eof else self._drop()
            take = min(self._chunk_left, len(self._buf))
            piece = bytes(self._buf[:take])
            del self._buf[:take]
            self._chunk_left -= take
            if self._chunk is not None:
                block = self._store(piece, self._chunk.last and not self._chunk_left)
                self._stored.append(block)
                self._stored_size += len(block)
        self.mode = COMMAND
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            self._queue(self._chunk_refusal)
            return NEED_DATA
        return ChunkEnd(chunk.size, chunk.last, self._bare_eol and chunk.last)

    def _store(self, piece: bytes, final: bool) -> bytes:
        """The piece as stored: CRLF -> LF (with a CR held from the last piece), a bare CR or LF noted."""
        data = b"\r" + piece if self._cr_held else piece
        self._cr_held = not final and data.endswith(b"\r")
        if self._cr_held:
            data = data[:-1]
        block = crlf_to_lf(data)
        if block is None:
            self._bare_eol = True
            block = self._line_ends(data)
        return block

    def _lines(self, final: bool) -> bytes | None:
        """The whole lines stored so far, taken out (all of it at the end of the message, or a piece of a long
        line); None when there is none yet."""
        data = b"".join(self._stored)
        cut = len(data) if final else data.rfind(b"\n") + 1
        if not cut and len(data) > DATA_HOLD:
            cut = len(data)
        rest = data[cut:]
        self._stored, self._stored_size = ([rest] if rest else []), len(rest)
        if not cut:
            return None
        return data[:cut] if rest else data
