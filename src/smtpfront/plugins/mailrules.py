"""mailrules: the $MAILRULES file decides first (see smtpfront.mailrules).

A matching rule's environment assignments and databytes hold until the next
reset (the next MAIL, RSET or HELO, or the end of the message), as in
mailfront; a recipient rule's relayclient field is appended to the recipient.
`k` accepts (the plugins after it still run: a badrcptto entry still refuses),
`K` accepts and ends the chain, `d` and `z` refuse, `p` leaves the decision to
the plugins after it, `n` applies its settings and goes on to the next rule.
"""

from __future__ import annotations

from ..smtp import Reply
from . import CONTROL_UNREADABLE, FinalReply, Plugin


class MailRules(Plugin):
    rules = None  # None: $MAILRULES is not set, and this plugin does nothing

    def init(self, session) -> Reply | None:
        path = session.settings.mailrules
        if not path:
            return None
        from .. import mailrules

        settings = session.settings
        try:
            self.rules = mailrules.load(path, settings.mailrules_cache, session.log.note, settings.tmpdir)
        except mailrules.RulesError as e:
            session.log.note(f"MAILRULES {e}")
            return Reply(421, e.reply)  # mailfront's words for what it refuses
        self.module = mailrules
        self.sender_address = ""
        return None

    def reset(self, session) -> None:
        if self.rules is not None:
            session.env.clear()
            session.databytes = 0

    def _apply(self, session, address, applies_to: str, sender: str, recipient: str | None) -> Reply | None:
        m = self.module
        try:
            for rule in m.decide(self.rules, applies_to, sender, recipient):
                if applies_to == m.RECIPIENT and rule.relayclient:
                    address.text += rule.relayclient
                for name, value in rule.env:
                    session.env.setdefault(name, value)
                if rule.databytes and (not session.databytes or rule.databytes < session.databytes):
                    session.databytes = rule.databytes
                if rule.kind == m.NOOP:
                    continue
                if rule.kind == m.PASS:
                    return None
                if rule.kind == m.FINAL:
                    return FinalReply(*rule.response)
                return Reply(*rule.response)
        except OSError as e:
            session.log.note(f"MAILRULES: cannot check: {e}")
            return CONTROL_UNREADABLE
        return None

    def sender(self, session, address, params) -> Reply | None:
        if self.rules is None:
            return None
        self.sender_address = address.text
        return self._apply(session, address, self.module.SENDER, address.text, None)

    def recipient(self, session, address, params) -> Reply | None:
        if self.rules is None:
            return None
        return self._apply(session, address, self.module.RECIPIENT, self.sender_address, address.text)
