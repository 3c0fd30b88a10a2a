"""check-fqdn: addresses must name a fully qualified domain.

$DEFAULTHOST completes an address with no domain (`user` or `@...`), and
$DEFAULTDOMAIN one whose domain has no dot; without them such addresses are
refused.  The empty sender is allowed (bounces), the empty recipient is not.
$SENDER_DOMAINS, a colon-separated list, restricts senders to exactly those
domains (not their subdomains), and then refuses the empty sender too.
"""

from __future__ import annotations

from ..smtp import Reply, fold
from . import Plugin

NO_DOMAIN = Reply(554, "5.1.2 Address is missing a domain name")
NOT_FQDN = Reply(554, "5.1.2 Address does not contain a fully qualified domain name")
EMPTY_RECIPIENT = Reply(554, "5.1.2 Recipient address may not be empty")
EMPTY_SENDER = Reply(554, "5.1.2 Empty sender address prohibited")
DISALLOWED_SENDER = Reply(554, "5.1.2 Sender contains a disallowed domain")


def complete(session, address) -> Reply | None:
    """Add $DEFAULTHOST / $DEFAULTDOMAIN where the address needs them; a reply when it can't be completed."""
    at = address.text.rfind("@")
    if at <= 0:  # no domain, or nothing but one
        host = session.getenv("DEFAULTHOST")
        if host is None:
            return NO_DOMAIN
        at = len(address.text)
        address.text += "@" + host
    if address.text.rfind(".") < at:
        domain = session.getenv("DEFAULTDOMAIN")
        if domain is None:
            return NOT_FQDN
        address.text += "." + domain
    return None


class CheckFqdn(Plugin):
    def sender(self, session, address, params) -> Reply | None:
        if address.text:
            problem = complete(session, address)
            if problem is not None:
                return problem
        domains = session.getenv("SENDER_DOMAINS")
        if domains is None:
            return None
        at = address.text.rfind("@")
        if at < 0:
            return EMPTY_SENDER
        if fold(address.text[at + 1 :]) in (fold(d) for d in domains.split(":") if d):
            return None
        return DISALLOWED_SENDER

    def recipient(self, session, address, params) -> Reply | None:
        if not address.text:
            return EMPTY_RECIPIENT
        return complete(session, address)
