"""relayclient: a client with $RELAYCLIENT, or one that authenticated, may relay.

$RELAYCLIENT's value (often empty) is appended to every recipient; an
authenticated client's recipients are left as they are.
"""

from __future__ import annotations

from ..smtp import Reply
from . import Handler

RECIPIENT_ACCEPTED = Reply(250, "2.1.5 Recipient accepted.")


class RelayClient(Handler):
    def recipient(self, session, address) -> Reply | None:
        suffix = session.relayclient
        if suffix is not None:
            address.text += suffix
            return RECIPIENT_ACCEPTED
        if session.user is not None:
            return RECIPIENT_ACCEPTED
        return None
