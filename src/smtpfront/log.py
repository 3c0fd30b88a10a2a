"""Log lines on stderr: one line per event, `smtpfront[PID]: ...`.

Lines go straight to fd 2 so that `multilog t` stamps them as they happen, and
control characters are escaped so that a client can't forge a log line.
"""

from __future__ import annotations

import posix


def _clean(message: str) -> str:
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in message)


class Log:
    def __init__(self, name: str = "smtpfront", fd: int = 2) -> None:
        self.prefix = f"{name}[{posix.getpid()}]: "
        self.fd = fd

    def __call__(self, message: str) -> None:
        line = (self.prefix + _clean(message) + "\n").encode("utf-8", "backslashreplace")
        try:
            posix.write(self.fd, line)
        except OSError:
            pass  # a log that can't be written must not stop the mail
