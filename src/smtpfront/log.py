"""Log lines on stderr: one line per event, `mailfront[PID]: ...`, as the C program writes them.

Admins' log parsers (fail2ban filters, multilog scanners) read mailfront's
lines, so the events mailfront logs are logged in its words (`MAIL FROM:<...>`,
`SASL AUTH PLAIN failed`, each error reply, `bytes in: N bytes out: M`).  Our
own extra lines start with `smtpfront: `, which no line of mailfront's does.
Lines go straight to fd 2 so that `multilog t` stamps them as they happen,
and control characters are escaped so that a client can't forge a line.
"""

from __future__ import annotations

import posix

NOTE = "smtpfront: "


def _escape(c: str) -> str:
    """A character that is not printable as a log line shows it: `\\xNN` for an ASCII control and for a byte
    that is not UTF-8 (decoded with surrogateescape), `\\u{NNNN}` for any other (a right-to-left override, a
    line separator)."""
    n = ord(c)
    if n < 0x80 or 0xDC80 <= n <= 0xDCFF:
        return f"\\x{n & 0xFF:02x}"
    return f"\\u{{{n:x}}}"


def _clean(message: str) -> str:
    """The line with what is not printable escaped, and a backslash doubled where what follows it could make it
    read as an escape (a backslash, `x`, `u` or an escaped character): elsewhere it stays as mailfront writes it,
    so that a line with `\\` in a rule's text is the same as C's, and no line can be read two ways."""
    if message.isprintable() and "\\" not in message:
        return message
    out = []
    for i, c in enumerate(message):
        if c == "\\":
            after = message[i + 1 : i + 2]
            out.append("\\\\" if after in ("\\", "x", "u") or not after.isprintable() else c)
        else:
            out.append(c if c.isprintable() else _escape(c))
    return "".join(out)


class Log:
    def __init__(self, name: str = "mailfront", fd: int = 2) -> None:
        self.prefix = f"{name}[{posix.getpid()}]: "
        self.fd = fd

    def __call__(self, message: str) -> None:
        """A line in mailfront's own words."""
        line = (self.prefix + _clean(message) + "\n").encode("utf-8", "backslashreplace")
        try:
            posix.write(self.fd, line)
        except OSError:
            pass  # a log that can't be written must not stop the mail

    def note(self, message: str) -> None:
        """A line mailfront does not write: ours, marked as such."""
        self(NOTE + message)


def internal_error(log, e: BaseException) -> None:
    """The line for a bug: the exception and where it was raised, never a traceback."""
    import traceback

    where = traceback.extract_tb(e.__traceback__)[-1]
    log.faulted = True  # a worker of smtpfront-server -n serves no more sessions after this one
    log.note(f"internal error: {type(e).__name__}: {e} at {where.filename}:{where.lineno}")
