"""The small plugins mailfront builds in (builtins.c): accept, reject, relayclient, require-auth.

    accept, accept-sender, accept-recipient   accept every sender and/or recipient
    reject        refuse every sender with $SMTPREJECT (or $REJECT): 553 when the
                  text starts with `-`, else 451; empty text: the default below
    relayclient   a client with $RELAYCLIENT (its value is appended to each
                  recipient) or one that authenticated may send to any recipient
    require-auth  refuse senders until the client authenticated (or has $RELAYCLIENT)
    force-file    kept for configurations that name it: our back ends never need
                  the message in a file first
"""

from __future__ import annotations

from ..smtp import Reply
from . import ACCEPTED, Plugin

MUST_AUTHENTICATE = Reply(530, "5.7.1 You must authenticate first.")
REJECT_DEFAULT = "You are not allowed to use this mail server."


class Accept(Plugin):
    def sender(self, session, address, params) -> Reply:
        return ACCEPTED

    def recipient(self, session, address, params) -> Reply:
        return ACCEPTED


class AcceptSender(Plugin):
    def sender(self, session, address, params) -> Reply:
        return ACCEPTED


class AcceptRecipient(Plugin):
    def recipient(self, session, address, params) -> Reply:
        return ACCEPTED


class Reject(Plugin):
    def sender(self, session, address, params) -> Reply | None:
        text = session.getenv("SMTPREJECT")
        if text is None:
            text = session.getenv("REJECT")
        if text is None:
            return None
        code = 451
        if text.startswith("-"):
            code, text = 553, text[1:]
        return Reply(code, text or REJECT_DEFAULT)


class RelayClient(Plugin):
    def recipient(self, session, address, params) -> Reply | None:
        suffix = session.relayclient
        if suffix is not None:
            address.text += suffix
            return ACCEPTED
        if session.user is not None:
            return ACCEPTED
        return None


class RequireAuth(Plugin):
    def sender(self, session, address, params) -> Reply | None:
        if session.user is None and session.relayclient is None:
            return MUST_AUTHENTICATE
        return None


class ForceFile(Plugin):
    pass
