"""The echo back end: queue nothing, show what would have been queued.

For trying a configuration (`MAILRULES=rules smtpfront-echo < session.txt`):
the final reply to the message lists the envelope and the message itself as
a multi-line 250.  The message is spooled to a temporary file, not memory.
"""

from __future__ import annotations

from ..smtp import Reply
from . import Backend


class Echo(Backend):
    spool = None

    def begin(self, sender: str, recipients: list[str], env: dict[str, str]) -> None:
        import tempfile

        self.lines = [f"Sender <{sender}>"] + [f"Recipient <{r}>" for r in recipients]
        self.spool = tempfile.TemporaryFile()
        self.size = 0

    def write(self, block: bytes) -> None:
        self.spool.write(block)
        self.size += len(block)

    def finish(self) -> Reply:
        self.spool.seek(0)
        body = [line.rstrip(b"\n").decode("utf-8", "surrogateescape") for line in self.spool]
        self.abort()
        lines = self.lines + [f"Message ({self.size} bytes):"] + body
        lines.append(f"2.6.0 Accepted message echo bytes {self.size}")
        return Reply(250, "\n".join(lines))

    def abort(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
