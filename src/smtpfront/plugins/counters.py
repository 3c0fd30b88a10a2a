"""counters: $MAXMSGS, $MAXRCPTS (+ $MAXRCPTS_REJECT), $DATABYTES and $MAXHOPS.

Each limit is the smallest non-zero value among the environment and what
MAILRULES set (a rule's databytes field lowers the size limit too); 0 or
unset means no limit, except MAXHOPS, which defaults to 100.  EHLO
advertises the size limit as SIZE.
"""

from __future__ import annotations

from ..smtp import Reply
from . import Plugin

TOO_MANY_MESSAGES = Reply(550, "5.5.0 Too many messages")
TOO_MANY_RECIPIENTS = Reply(550, "5.5.3 Too many recipients")
SIZE_EXCEEDED = Reply(552, "5.2.3 The message would exceed the maximum message size.")
TOO_BIG = Reply(552, "5.2.3 Sorry, that message exceeds the maximum message length.")
TOO_MANY_HOPS = Reply(554, "5.6.0 This message is looping, too many hops.")


def databytes(session) -> int:
    """The message size limit in force: $DATABYTES or a rule's, the smaller (0: none)."""
    limits = [n for n in (session.getenvu("DATABYTES"), session.databytes) if n]
    return min(limits, default=0)


def size_param(params: tuple[str, ...]) -> int:
    """The SIZE= parameter's value, 0 when absent or not a number."""
    for param in params:
        if param[:5].upper() == "SIZE=" and param[5:].isascii() and param[5:].isdigit():
            return int(param[5:])
    return 0


class Counters(Plugin):
    def __init__(self) -> None:
        self.messages = 0  # messages ended in this session
        self.recipients = 0  # recipients this plugin saw in this message
        self._start_message()

    def _start_message(self) -> None:
        self.size = 0
        self.in_header = True
        self.hops = 0
        self.partial = False  # the last block ended inside a long line

    def helo(self, session, domain: str, capabilities: list[str]) -> None:
        capabilities.append(f"SIZE {databytes(session)}")

    def reset(self, session) -> None:
        self.recipients = 0

    def _too_many_messages(self, session) -> bool:
        limit = session.getenvu("MAXMSGS")
        return bool(limit) and self.messages >= limit

    def _too_many_recipients(self, session) -> bool:
        limit = session.getenvu("MAXRCPTS")
        return bool(limit) and self.recipients > limit

    def sender(self, session, address, params) -> Reply | None:
        if self._too_many_messages(session):
            return TOO_MANY_MESSAGES
        limit = databytes(session)
        if limit and size_param(params) > limit:
            return SIZE_EXCEEDED
        return None

    def recipient(self, session, address, params) -> Reply | None:
        self.recipients += 1
        return TOO_MANY_RECIPIENTS if self._too_many_recipients(session) else None

    def data_start(self, session) -> Reply | None:
        if self._too_many_messages(session):
            return TOO_MANY_MESSAGES
        if session.getenv("MAXRCPTS_REJECT") is not None and self._too_many_recipients(session):
            return TOO_MANY_RECIPIENTS
        self._start_message()
        return None

    def data_block(self, session, block: bytes) -> Reply | None:
        self.size += len(block)
        limit = databytes(session)
        if limit and self.size > limit:
            return TOO_BIG
        if self.in_header:
            return self._count_hops(block, session.getenvu("MAXHOPS") or 100)
        return None

    def _count_hops(self, block: bytes, max_hops: int) -> Reply | None:
        """Count Received: and Delivered-To: lines up to the blank line that ends the header.

        Whole-block searches, not a loop over lines: a message without a blank
        line is all header, and is scanned at the speed of bytes.find.
        """
        start = 0
        if self.partial:  # the block goes on with a line begun in the last one (a long line in pieces)
            start = block.find(b"\n") + 1
            if not start:
                return None
        self.partial = not block.endswith(b"\n")
        if block.startswith(b"\n", start):
            self.in_header = False
            return None
        end = block.find(b"\n\n", start)
        if end >= 0:
            self.in_header = False
        header = b"\n" + block[start : end + 1 if end >= 0 else len(block)].lower()
        self.hops += header.count(b"\nreceived:") + header.count(b"\ndelivered-to:")
        return TOO_MANY_HOPS if self.hops > max_hops else None

    def message_end(self, session) -> Reply | None:
        if session.getenv("MAXRCPTS_REJECT") is not None and self._too_many_recipients(session):
            return TOO_MANY_RECIPIENTS
        self.messages += 1
        return None
