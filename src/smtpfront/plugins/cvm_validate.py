"""cvm-validate: ask a CVM whether a recipient exists ($CVM_LOOKUP).

Each recipient with an `@` is looked up as account and domain, with
$CVM_LOOKUP_SECRET (or $LOOKUP_SECRET) as the secret when one is set.  A
known recipient, or one the CVM declares out of its scope, passes on to the
next plugin; an unknown one is refused; a CVM that can't answer defers.
A command CVM runs with CVM_LOOKUP_SECRET set to the empty string when
neither variable is set, as mailfront sets it, so that it looks the
recipient up instead of asking for a password.  Unlike mailfront, which
puts it in its own environment, only the lookup sees it: a command CVM for
AUTH would take every password in lookup mode.
"""

from __future__ import annotations

from ..smtp import Reply
from . import Plugin

NO_SUCH_RECIPIENT = Reply(553, "5.1.1 Sorry, that recipient does not exist.")
CANNOT_VERIFY = Reply(451, "4.1.0 Sorry, I could not verify that recipient (internal temporary error).")


class CvmValidate(Plugin):
    module = None  # None: $CVM_LOOKUP is not set

    def init(self, session) -> None:
        s = session.settings
        self.module = s.cvm_lookup
        self.secret = (s.cvm_lookup_secret or "").encode("utf-8", "surrogateescape")
        self.env = None  # a command CVM's environment
        if s.cvm_lookup_secret is None:
            self.env = {**s.environ, "CVM_LOOKUP_SECRET": ""}
        return None

    def recipient(self, session, address, params) -> Reply | None:
        if self.module is None or "@" not in address.text:
            return None
        from .. import cvm

        account, _, domain = address.text.rpartition("@")
        credentials = [(cvm.ACCOUNT, account.encode("utf-8", "surrogateescape")),
                       (cvm.DOMAIN, domain.encode("utf-8", "surrogateescape"))]
        if self.secret:  # as mailfront: an empty secret is no secret
            credentials.append((cvm.SECRET, self.secret))
        result = cvm.authenticate(self.module, credentials, session.settings.cvm_timeout, self.env)
        if result.status == cvm.OK:
            return None
        if result.status == cvm.REJECTED:
            return None if result.facts.get("outofscope") == "1" else NO_SUCH_RECIPIENT
        session.log.note(f"cvm-validate: {result.why}")
        return CANNOT_VERIFY
