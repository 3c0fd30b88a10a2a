"""Policy handlers: small pieces with the four hooks of mailfront's plugins.

Each hook answers with a Reply (a 2xx accepts and ends the search, a 4xx or
5xx rejects) or None (no opinion: ask the next handler).  A sender nobody
rejected is accepted; a recipient nobody accepted is refused, so that a site
whose configuration is incomplete relays for no one.
"""

from __future__ import annotations

from ..smtp import Reply

CONTROL_UNREADABLE = Reply(451, "4.3.0 Could not read a control file.")


class Handler:
    """No opinion on anything; subclasses override the hooks they need."""

    def reset(self, session) -> None:
        """A new transaction starts (MAIL, RSET, HELO/EHLO, end of a message)."""

    def sender(self, session, address) -> Reply | None:
        return None

    def recipient(self, session, address) -> Reply | None:
        return None

    def data_start(self, session) -> Reply | None:
        return None

    def data_block(self, session, block: bytes) -> Reply | None:
        """`block` is whole lines of the message (LF line ends, dot-unstuffed)."""
        return None

    def message_end(self, session) -> Reply | None:
        return None
