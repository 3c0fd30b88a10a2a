"""mailrules: the MAILRULES file decides first (see smtpfront.mailrules)."""

from __future__ import annotations

from ..mailrules import PASS, RECIPIENT, SENDER, RulesError, decide, load
from ..smtp import Reply
from . import CONTROL_UNREADABLE, Handler


def load_rules(path: str, log, cache_dir: str | None = None, tmpdir: str | None = None):
    """The parsed rules; a file C would refuse stops the program with C's 421 (fail closed)."""
    from ..cli import StartupError

    try:
        return load(path, cache_dir, log, tmpdir)
    except RulesError as e:
        raise StartupError(Reply(421, e.reply), f"MAILRULES {e}") from None


class MailRules(Handler):
    def __init__(self, rules, log) -> None:
        self.rules = rules
        self.log = log

    def _apply(self, session, address, applies_to: str, sender: str, recipient: str | None) -> Reply | None:
        try:
            for rule in decide(self.rules, applies_to, sender, recipient):
                if rule.databytes and (not session.databytes or rule.databytes < session.databytes):
                    session.databytes = rule.databytes
                if rule.relayclient and applies_to == RECIPIENT:
                    address.text += rule.relayclient
                session.env.update(rule.env)
                if rule.kind == PASS:
                    return None
                if rule.response is not None:
                    return Reply(*rule.response)
        except OSError as e:
            self.log(f"MAILRULES: cannot check: {e}")
            return CONTROL_UNREADABLE
        return None

    def sender(self, session, address) -> Reply | None:
        return self._apply(session, address, SENDER, address.text, None)

    def recipient(self, session, address) -> Reply | None:
        return self._apply(session, address, RECIPIENT, session.sender or "", address.text)
