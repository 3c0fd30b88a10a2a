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


def _clean(message: str) -> str:
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in message)


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
