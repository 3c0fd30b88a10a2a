"""spamd's PROCESS command (SPAMC/1.2), and one exchange that writes the rewritten message to a file.

Request: `PROCESS SPAMC/1.2`, `Content-Length: N`, `User: NAME` when one is
given, a blank line (CRLF line ends), the message; then the client shuts its
side.  Answer: `SPAMD/1.1 0 EX_OK`, headers (spamd's `Content-length` among
them) up to a blank CRLF line, then the rewritten message, with spamd's
`X-Spam-*` headers.  As mailfront reads it: any other status line is a
failure, and the message is spam when the first `X-Spam-Status:` line of its
header says `Yes` (the first character after the colon and blanks is a Y,
whatever its case).  Unlike mailfront, which copies whatever comes, a message
shorter than spamd's Content-length is a failure: a spamd that closes
mid-message must not get a truncated message queued.
"""

from __future__ import annotations

OK_STATUS = b"SPAMD/1.1 0 EX_OK"
MAX_LINE = 8192  # spamd's status and header lines are short; a longer one is not spamd
STATUS_HEADER = b"x-spam-status:"


class Failed(Exception):
    """spamd did not answer as it should; the message is not scanned."""


def request_head(length: int, user: str | None) -> bytes:
    lines = [b"PROCESS SPAMC/1.2", b"Content-Length: %d" % length]
    if user is not None:
        lines.append(b"User: " + user.encode("utf-8", "surrogateescape"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def spam_status(line: bytes) -> bool | None:
    """Whether a header line of the rewritten message says spam; None when it is not X-Spam-Status."""
    if line[: len(STATUS_HEADER)].lower() != STATUS_HEADER:
        return None
    return line[len(STATUS_HEADER) :].lstrip()[:1] in (b"Y", b"y")


class Answer:
    """spamd's answer fed in any pieces: `feed` returns the part of the rewritten message in the data (the caller
    writes it out: the message is never held here); `end` checks that it all came.  Raises Failed."""

    def __init__(self) -> None:
        self.buffer = b""  # a status or header line not yet complete, or the start of the message's header line
        self.in_head = True  # reading spamd's status line and headers
        self.status_read = False
        self.length: int | None = None  # spamd's Content-length
        self.received = 0  # bytes of the rewritten message so far
        self.spam = False
        self.watching = True  # still in the message's header, before its first X-Spam-Status line

    def feed(self, data: bytes) -> bytes:
        if self.in_head:
            self.buffer += data
            while self.in_head:
                end = self.buffer.find(b"\n")
                if end < 0:
                    if len(self.buffer) > MAX_LINE:
                        raise Failed(f"a line longer than {MAX_LINE} bytes")
                    return b""
                line, self.buffer = self.buffer[: end + 1], self.buffer[end + 1 :]
                self._head_line(line)
            data, self.buffer = self.buffer, b""
        self.received += len(data)
        if self.length is not None and self.received > self.length:
            raise Failed(f"more than the {self.length} bytes spamd announced")
        if self.watching:
            self._watch(data)
        return data

    def _head_line(self, line: bytes) -> None:
        if not self.status_read:
            if line.rstrip() != OK_STATUS:
                raise Failed(f"spamd answered {line.rstrip()[:200]!r}")
            self.status_read = True
        elif line == b"\r\n":
            self.in_head = False
        else:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                value = value.strip()
                if not value.isdigit():
                    raise Failed(f"a bad Content-length {value[:40]!r}")
                self.length = int(value)

    def _watch(self, data: bytes) -> None:
        """Look at the message's header lines for the first X-Spam-Status (only the start of a line matters)."""
        self.buffer += data
        while self.watching:
            end = self.buffer.find(b"\n")
            if end < 0:
                # a line not yet complete: keep only as much of its start as the verdict needs
                if len(self.buffer) > MAX_LINE:
                    self.buffer = self.buffer[:MAX_LINE]
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
            if line.rstrip(b"\r") == b"":
                self.watching = False
            else:
                verdict = spam_status(line)
                if verdict is not None:
                    self.spam = verdict
                    self.watching = False
        self.buffer = b""

    def end(self) -> None:
        """spamd closed the connection: the answer must be whole."""
        if self.in_head:
            raise Failed("spamd closed before the end of its headers")
        if self.length is None:  # a cut answer would pass for the whole message
            raise Failed("spamd's answer has no Content-length")
        if self.received != self.length:
            raise Failed(f"a message of {self.received} bytes where spamd announced {self.length}")
        if self.watching and self.buffer:
            verdict = spam_status(self.buffer)  # the message ended on its header's last line
            self.spam = bool(verdict)
        self.watching = False


def process(targets: list[tuple], file, length: int, user: str | None, timeouts, out) -> tuple[Answer | None,
                                                                                               list[str]]:
    """Have the first target (`scanners.targets`) that answers rewrite `length` bytes of `file` into `out`.

    Returns the whole answer (None when no target gave one) and, for each target that failed, why.
    """
    from . import scanners

    failures = []
    for family, address in targets:
        try:
            return _process_at(family, address, file, length, user, timeouts, out), failures
        except (OSError, Failed) as e:
            failures.append(f"{scanners.describe(family, address)}: {type(e).__name__}: {e}")
    return None, failures


def _process_at(family: int, address, file, length: int, user: str | None, timeouts, out) -> Answer:
    from . import scanners

    out.seek(0)
    out.truncate()
    sock = scanners.connect(family, address, timeouts.connect)
    try:
        sock.settimeout(timeouts.send)
        sock.sendall(request_head(length, user))
        scanners.send_file(sock, file, length)
        sock.shutdown(1)  # SHUT_WR: the message is complete
        receiver = scanners.Receiver(sock, timeouts)
        answer = Answer()
        while data := receiver.recv(1 << 16):
            out.write(answer.feed(data))
        answer.end()
        return answer
    finally:
        sock.close()
