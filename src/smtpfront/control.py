"""qmail-style control files: lists of addresses and domains, text or cdb.

A text list has one entry a line; blank lines and `#` comments are ignored.
Entries are compared without regard to case; a line `@domain` matches every
address in that domain.  A `.cdb` file is looked up with lower-cased keys.
"""

from __future__ import annotations

import posix

from .smtp import fold, raw

TYPE_CHECKING = False  # not typing's: importing typing costs several ms
if TYPE_CHECKING:
    from .cdb import CDB


class ControlError(OSError):
    """A control file exists but could not be read: the check can't be made."""


def read_lines(path: str) -> list[str] | None:
    """The entries of a text control file, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror}") from None
    lines = (line.strip() for line in data.decode("utf-8", "surrogateescape").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def open_cdb(path: str) -> CDB | None:
    """A cdb file for lookups, or None when it does not exist."""
    try:
        posix.stat(path)
        from .cdb import CDB  # only once there is one: most sites have no morercpthosts.cdb

        return CDB(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror}") from None


class AddressList:
    """Addresses and `@domain` entries, matched case-insensitively."""

    def __init__(self, entries: list[str]) -> None:
        self.entries = frozenset(fold(e) for e in entries)

    def __contains__(self, address: str) -> bool:
        address = fold(address)
        if address in self.entries:
            return True
        at = address.rfind("@")
        return at >= 0 and address[at:] in self.entries


class CdbList:
    """A cdb file whose keys are lower-cased addresses or domains."""

    def __init__(self, cdb: CDB) -> None:
        self.cdb = cdb

    def __contains__(self, key: str) -> bool:
        try:
            return raw(key).lower() in self.cdb
        except OSError as e:
            raise ControlError(f"{self.cdb.path}: {e}") from None


class LazyControl:
    """A control file loaded on first use, so that a process only reads what its session needs.

    `load` returns the loaded object or None; a missing file is None, an
    unreadable one raises ControlError every time it is asked for.
    """

    def __init__(self, path: str, load) -> None:
        self.path = path
        self._load = load
        self._value = self

    def get(self):
        if self._value is self:
            self._value = self._load(self.path)
        return self._value


def address_list(path: str) -> AddressList | None:
    lines = read_lines(path)
    return None if lines is None else AddressList(lines)


def cdb_list(path: str) -> CdbList | None:
    cdb = open_cdb(path)
    return None if cdb is None else CdbList(cdb)


def control_path(qmail_home: str, name: str) -> str:
    return f"{qmail_home}/control/{name}"
