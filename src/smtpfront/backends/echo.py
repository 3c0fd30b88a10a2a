"""The echo back end: queue nothing, say what would have been queued.

For trying a configuration (`MAILRULES=rules smtpfront-echo < session.txt`):
as mailfront's, each accepted sender and recipient is answered with itself
(`250 Sender='a@example.org'.`, ESMTP parameters after it as ` [NAME=VALUE]`),
the message with `250 Received N bytes.`, and the first two lines of the
message (the Received: header, usually) go to the log, joined as mailfront
joins them.  Like mailfront, which logs what its first block holds, this logs
as soon as the first line is complete: the second line only if it is complete
in the same block.
"""

from __future__ import annotations

from ..plugins import Plugin
from ..smtp import Reply


def _shown(what: str, address, params: tuple[str, ...]) -> Reply:
    return Reply(250, f"{what}='{address.text}'." + "".join(f" [{p}]" for p in params))


class Echo(Plugin):
    size = 0
    head = None  # the start of the message, until its first two lines are logged

    def reset(self, session) -> None:
        self.size = 0
        self.head = b""

    def sender(self, session, address, params) -> Reply:
        return _shown("Sender", address, params)

    def recipient(self, session, address, params) -> Reply:
        return _shown("Recipient", address, params)

    def data_block(self, session, block: bytes) -> None:
        if self.head is not None:
            self.head += block[:4096]
            if b"\n" in self.head or len(self.head) >= 4096:
                self._log_head(session)
        self.size += len(block)

    def _log_head(self, session) -> None:
        """The first line and the second when it is complete, joined without a separator."""
        first, _, rest = self.head.partition(b"\n")
        second = rest[: rest.find(b"\n")] if b"\n" in rest else b""
        session.log((first + second).decode("utf-8", "surrogateescape"))
        self.head = None

    def message_end(self, session) -> Reply:
        if self.head:
            self._log_head(session)
        return Reply(250, f"Received {self.size} bytes.")
