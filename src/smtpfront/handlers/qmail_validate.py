"""qmail-validate: qmail's badmailfrom, badrcptto, rcpthosts and morercpthosts.cdb.

Files are read on first use.  A missing badmailfrom or badrcptto rejects
nobody; missing rcpthosts and morercpthosts.cdb accept no recipient (the
client must relay by $RELAYCLIENT or AUTH); a file that exists but can't be
read answers 451 for as long as it can't.
"""

from __future__ import annotations

from ..control import ControlError, LazyControl, address_list, cdb_list, control_path
from ..smtp import Reply
from . import CONTROL_UNREADABLE, Handler

BAD_MAILFROM = Reply(553, "5.1.0 Sorry, your envelope sender is in my badmailfrom list.")
BAD_RCPTTO = Reply(553, "5.1.1 Sorry, that address is in my badrcptto list.")
RECIPIENT_ACCEPTED = Reply(250, "2.1.5 Recipient accepted.")


class QmailValidate(Handler):
    def __init__(self, qmail_home: str, log) -> None:
        def control(name: str, load) -> LazyControl:
            return LazyControl(control_path(qmail_home, name), load)

        self.badmailfrom = control("badmailfrom", address_list)
        self.badrcptto = control("badrcptto", address_list)
        self.rcpthosts = control("rcpthosts", address_list)
        self.morercpthosts = control("morercpthosts.cdb", cdb_list)
        self.log = log

    def sender(self, session, address) -> Reply | None:
        try:
            bad = self.badmailfrom.get()
            return BAD_MAILFROM if bad is not None and address.text in bad else None
        except ControlError as e:
            self.log(f"cannot check badmailfrom: {e}")
            return CONTROL_UNREADABLE

    def recipient(self, session, address) -> Reply | None:
        try:
            bad = self.badrcptto.get()
            if bad is not None and address.text in bad:
                return BAD_RCPTTO
            domain = address.domain
            if not domain:
                return None
            hosts = self.rcpthosts.get()
            if hosts is not None and domain in hosts.entries:
                return RECIPIENT_ACCEPTED
            more = self.morercpthosts.get()
            if more is not None and domain in more:
                return RECIPIENT_ACCEPTED
            return None
        except ControlError as e:
            self.log(f"cannot check recipient: {e}")
            return CONTROL_UNREADABLE
