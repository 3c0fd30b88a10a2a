"""The sender-login map of cvm-authenticate: an authenticated client may only send as addresses its login owns.

$SENDER_LOGIN_MAP names a text file of lines `address login[,login...]`
(`@domain` for a whole domain, `<>` for the null sender) or a .cdb file with
the same keys (lower-cased) and values.  A client that did not authenticate
is not concerned.
"""

from __future__ import annotations

from ..control import ControlError, open_cdb, read_lines
from ..smtp import Reply, fold
from . import CONTROL_UNREADABLE

NOT_OWNER = Reply(553, "5.7.1 Sender address not owned by the authenticated user.")


class SenderLogin:
    def __init__(self, path: str) -> None:
        self.path = path
        self._owners = None

    def _lookup(self, key: str) -> list[str]:
        key = fold(key)
        if self.path.endswith(".cdb"):
            if self._owners is None:
                self._owners = open_cdb(self.path)
                if self._owners is None:  # as for a text map: no map is no check, not "nobody owns anything"
                    raise ControlError(f"{self.path}: file not found")
            value = self._owners.get(key.encode("utf-8", "surrogateescape"))
            found = value.decode("utf-8", "surrogateescape") if value is not None else ""
        else:
            if self._owners is None:
                lines = read_lines(self.path)
                if lines is None:
                    raise ControlError(f"{self.path}: file not found")
                self._owners = {}
                for line in lines:
                    address, _, logins = line.partition(" ")
                    self._owners[fold(address)] = logins.strip()
            found = self._owners.get(key, "")
        return [fold(login.strip()) for login in found.split(",") if login.strip()]

    def check(self, session, address) -> Reply | None:
        if session.user is None:
            return None
        sender = address.text
        try:
            owners = self._lookup(sender or "<>")
            if not owners and "@" in sender:
                owners = self._lookup("@" + address.domain)
        except OSError as e:
            session.log.note(f"SENDER_LOGIN_MAP: {e}")
            return CONTROL_UNREADABLE
        if fold(session.user) in owners:
            return None
        session.log.note(f"sender {sender!r} not owned by {session.user}")
        return NOT_OWNER
