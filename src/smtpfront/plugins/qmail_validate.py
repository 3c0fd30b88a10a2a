"""qmail-validate: qmail's badmailfrom, badrcptto, rcpthosts and morercpthosts.cdb.

Senders are accepted unless badmailfrom lists the address or its `@domain`.
Recipients listed in badrcptto (address or `@domain`) are refused; those whose
domain, or a `.parent` entry above it, is in rcpthosts or morercpthosts.cdb are
accepted; for the rest this plugin has no opinion (relayclient may accept
them).  Files are read on first use; a missing one lists nothing; one that
exists but can't be read answers 451 for as long as it can't (mailfront
treats it as empty).  $QMAILHOME must be a directory, as mailfront requires.
"""

from __future__ import annotations

from ..control import ControlError, LazyControl, address_list, cdb_list, control_path
from ..smtp import Reply
from . import ACCEPTED, CONTROL_UNREADABLE, Plugin

NO_QMAIL_HOME = Reply(451, "4.3.0 Could not change to the qmail directory.")
BAD_MAILFROM = Reply(553, "5.1.0 Sorry, your envelope sender is in my badmailfrom list.")
BAD_RCPTTO = Reply(553, "5.1.1 Sorry, that address is in my badrcptto list.")


def domain_keys(domain: str):
    """The domain, then each parent with its leading dot: a.b.c, .b.c, .c (qmail's rcpthosts)."""
    yield domain
    dot = domain.find(".", 1)
    while dot > 0:
        domain = domain[dot:]
        yield domain
        dot = domain.find(".", 1)


class QmailValidate(Plugin):
    def init(self, session) -> Reply | None:
        import posix

        home = session.settings.qmail_home
        try:
            if posix.stat(home).st_mode & 0o170000 != 0o040000:  # S_ISDIR, without importing stat
                return NO_QMAIL_HOME
        except OSError:
            return NO_QMAIL_HOME

        def control(name: str, load) -> LazyControl:
            return LazyControl(control_path(home, name), load)

        self.badmailfrom = control("badmailfrom", address_list)
        self.badrcptto = control("badrcptto", address_list)
        self.rcpthosts = control("rcpthosts", address_list)
        self.morercpthosts = control("morercpthosts.cdb", cdb_list)
        return None

    def sender(self, session, address, params) -> Reply:
        try:
            bad = self.badmailfrom.get()
        except ControlError as e:
            session.log.note(f"cannot check badmailfrom: {e}")
            return CONTROL_UNREADABLE
        return BAD_MAILFROM if bad is not None and address.text in bad else ACCEPTED

    def recipient(self, session, address, params) -> Reply | None:
        try:
            bad = self.badrcptto.get()
            if bad is not None and address.text in bad:
                return BAD_RCPTTO
            if address.text.rfind("@") <= 0:
                return None
            hosts = self.rcpthosts.get()
            more = self.morercpthosts.get()
            for key in domain_keys(address.domain):
                if (hosts is not None and key in hosts.entries) or (more is not None and key in more):
                    return ACCEPTED
            return None
        except ControlError as e:
            session.log.note(f"cannot check recipient: {e}")
            return CONTROL_UNREADABLE
