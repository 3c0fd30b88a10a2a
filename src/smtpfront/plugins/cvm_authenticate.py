"""cvm-authenticate: the SMTP AUTH command (RFC 4954), each login checked by a CVM (see sasl).

AUTH exists when $CVM_SASL_PLAIN, $CVM_SASL_LOGIN or $CVM_SASL_CRAM_MD5 names a
CVM, and EHLO offers it (with $AUTH_REQUIRES_TLS: only once the session is
encrypted).  A client that authenticated may relay (see relayclient) and its
HELO name is forgotten (Received: then names its host and address).  With
$SENDER_LOGIN_MAP it may only send as the addresses its login owns.
"""

from __future__ import annotations

from ..smtp import Reply
from . import Plugin

ALREADY_AUTHENTICATED = Reply(503, "5.5.1 You are already authenticated.")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1 AUTH is not permitted during a mail transaction.")
NEEDS_MECHANISM = Reply(501, "5.5.2 Syntax error, no parameters allowed.")  # mailfront's words, kept


class CvmAuthenticate(Plugin):
    commands = ("AUTH",)
    authenticator = None  # None: no CVM is configured, and AUTH does not exist
    sender_login = None

    def init(self, session) -> None:
        s = session.settings
        if s.cvm_plain or s.cvm_login or s.cvm_cram_md5:
            from ..sasl import Authenticator

            self.authenticator = Authenticator(s, session.log)
        if s.sender_login_map:
            from .sender_login import SenderLogin

            self.sender_login = SenderLogin(s.sender_login_map)
        return None

    def exists(self) -> bool:
        return self.authenticator is not None

    def offered(self, session) -> bool:
        return self.authenticator is not None and self.authenticator.offered(session)

    def helo(self, session, domain: str, capabilities: list[str]) -> None:
        if self.offered(session):
            capabilities.append("AUTH " + " ".join(self.authenticator.mechanisms))

    def start(self, session, mechanism: str, initial: str | None, in_transaction: bool) -> Reply:
        """The reply to an AUTH command; the protocol knows AUTH exists."""
        if not self.offered(session):
            return self.authenticator.refusal(session)
        if not mechanism:
            return NEEDS_MECHANISM
        if session.user is not None:
            return ALREADY_AUTHENTICATED
        if in_transaction:
            return AUTH_IN_TRANSACTION
        return self._done(session, self.authenticator.start(session, mechanism, initial))

    def step(self, session, line: str) -> Reply:
        """The reply to a line answering a 334 challenge."""
        return self._done(session, self.authenticator.step(session, line))

    def abandon(self, session) -> Reply | None:
        """The input ended: the reply to an AUTH exchange still waiting for the client, if one is."""
        return self.authenticator.abandon()

    def _done(self, session, reply: Reply) -> Reply:
        if reply.code == 235:
            session.helo = None  # as mailfront: Received: names the authenticated client's host instead
        return reply

    def sender(self, session, address, params) -> Reply | None:
        if self.sender_login is None:
            return None
        return self.sender_login.check(session, address)
