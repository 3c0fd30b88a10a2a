"""check-fqdn: addresses must name a fully qualified domain.

DEFAULTHOST completes an address with no domain, DEFAULTDOMAIN one whose
domain has no dot; SENDER_DOMAINS restricts senders to the listed domains
(exactly: not their subdomains).  The empty sender is allowed (bounces), the empty
recipient is not.
"""

from __future__ import annotations

from ..smtp import Reply
from . import Handler

NO_DOMAIN = Reply(554, "5.1.2 Address is missing a domain name")
NOT_FQDN = Reply(554, "5.1.2 Address does not contain a fully qualified domain name")
EMPTY_RECIPIENT = Reply(554, "5.1.2 Recipient address may not be empty")
EMPTY_SENDER = Reply(554, "5.1.2 Empty sender address prohibited")
DISALLOWED_SENDER = Reply(554, "5.1.2 Sender contains a disallowed domain")


class CheckFqdn(Handler):
    def __init__(self, default_host: str, default_domain: str, sender_domains: tuple[str, ...]) -> None:
        self.default_host = default_host
        self.default_domain = default_domain
        self.sender_domains = sender_domains

    def _check(self, address) -> Reply | None:
        at = address.text.rfind("@")
        if at < 0:
            if not self.default_host:
                return NO_DOMAIN
            address.text += "@" + self.default_host
            at = address.text.rfind("@")
        if "." not in address.text[at:]:
            if not self.default_domain:
                return NOT_FQDN
            address.text += "." + self.default_domain
        return None

    def sender(self, session, address) -> Reply | None:
        if not address.text:
            return EMPTY_SENDER if self.sender_domains else None
        problem = self._check(address)
        if problem is None and self.sender_domains:
            if address.domain not in self.sender_domains:  # exact, as in mailfront
                return DISALLOWED_SENDER
        return problem

    def recipient(self, session, address) -> Reply | None:
        if not address.text:
            return EMPTY_RECIPIENT
        return self._check(address)
