"""counters: MAXMSGS, MAXRCPTS (+ MAXRCPTS_REJECT), DATABYTES and MAXHOPS."""

from __future__ import annotations

from ..smtp import Reply
from . import Handler

TOO_MANY_MESSAGES = Reply(550, "5.5.0 Too many messages")
TOO_MANY_RECIPIENTS = Reply(550, "5.5.3 Too many recipients")
TOO_BIG = Reply(552, "5.2.3 Sorry, that message exceeds the maximum message length.")
TOO_MANY_HOPS = Reply(554, "5.6.0 This message is looping, too many hops.")

_HOP_HEADERS = (b"received:", b"delivered-to:")


class Counters(Handler):
    def __init__(self, max_msgs: int, max_rcpts: int, max_rcpts_reject: bool, max_hops: int) -> None:
        self.max_msgs = max_msgs
        self.max_rcpts = max_rcpts
        self.max_rcpts_reject = max_rcpts_reject
        self.max_hops = max_hops
        self.reset(None)

    def reset(self, session) -> None:
        self.in_header = True
        self.hops = 0
        self.partial = False  # the last block ended inside a long line

    def sender(self, session, address) -> Reply | None:
        if self.max_msgs and session.messages >= self.max_msgs:
            return TOO_MANY_MESSAGES
        return None

    def recipient(self, session, address) -> Reply | None:
        session.rcpt_attempts += 1
        if self.max_rcpts and session.rcpt_attempts > self.max_rcpts:
            return TOO_MANY_RECIPIENTS
        return None

    def data_start(self, session) -> Reply | None:
        if self.max_rcpts_reject and self.max_rcpts and session.rcpt_attempts > self.max_rcpts:
            return TOO_MANY_RECIPIENTS
        return None

    def data_block(self, session, block: bytes) -> Reply | None:
        if session.databytes and session.size > session.databytes:
            return TOO_BIG
        if self.in_header:
            return self._count_hops(block)
        return None

    def _count_hops(self, block: bytes) -> Reply | None:
        start = 0
        while start < len(block):
            end = block.find(b"\n", start) + 1 or len(block)
            if not self.partial:
                line = block[start:end]
                if line == b"\n":
                    self.in_header = False
                    return None
                if line[:13].lower().startswith(_HOP_HEADERS):
                    self.hops += 1
                    if self.hops > self.max_hops:
                        return TOO_MANY_HOPS
            self.partial = not block.endswith(b"\n", start, end)
            start = end
        return None
