"""Constant databases (D. J. Bernstein's cdb format): reading, and writing for our own caches.

The file starts with 256 (position, length) pairs of 32-bit little-endian
words, one per hash table; the hash is h = ((h << 5) + h) ^ c from 5381,
kept to 32 bits.  Slot i of table (h & 255) is tried from (h >> 8) % length
onwards; an empty slot (position 0) ends the search.
"""

from __future__ import annotations

import posix
import sys


def _pair(data: bytes) -> tuple[int, int]:
    """Two 32-bit little-endian words (int.from_bytes: struct would cost an import per connection)."""
    return int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")


def _pack(first: int, second: int) -> bytes:
    """The inverse of _pair."""
    return first.to_bytes(4, "little") + second.to_bytes(4, "little")


def cdb_hash(key: bytes) -> int:
    h = 5381
    for c in key:
        h = ((h << 5) + h ^ c) & 0xFFFFFFFF
    return h


class CDB:
    """A cdb file opened for lookups; reads only the slots and records a lookup needs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1  # for __del__, should the open fail
        self.fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        self._tables = None  # the header's 512 words, read on the first lookup

    def close(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        """Closed with the last reference: a worker of smtpfront-server -n serves its next session in this process."""
        self.close()

    def _read(self, pos: int, size: int) -> bytes:
        data = posix.pread(self.fd, size, pos)
        if len(data) != size:
            raise OSError(f"{self.path}: truncated cdb file")
        return data

    def get(self, key: bytes) -> bytes | None:
        return self.find(key, cdb_hash(key))

    def find(self, key: bytes, h: int) -> bytes | None:
        """get() for a caller that has the key's hash already (it can hash many keys sharing a prefix cheaply)."""
        for data in self.find_all(key, h):
            return data
        return None

    def find_all(self, key: bytes, h: int):
        """The value of every record with this key (a cdb file may hold several), in the order they were written."""
        tables = self._tables
        if tables is None:
            header = self._read(0, 2048)
            if sys.byteorder == "little":
                tables = memoryview(header).cast("I")  # no copy, no loop: a session may open several cdb files
            else:
                tables = [int.from_bytes(header[i : i + 4], "little") for i in range(0, 2048, 4)]
            self._tables = tables
        table_pos, slots = tables[(h & 255) * 2], tables[(h & 255) * 2 + 1]
        if not slots:
            return
        slot = (h >> 8) % slots
        for _ in range(slots):
            slot_hash, record = _pair(self._read(table_pos + slot * 8, 8))
            if not record:
                return
            if slot_hash == h:
                klen, dlen = _pair(self._read(record, 8))
                if klen == len(key) and self._read(record + 8, klen) == key:
                    yield self._read(record + 8 + klen, dlen)
            slot = (slot + 1) % slots

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None


def write_cdb(path: str, records, opener=None) -> None:
    """Write (key, value) byte pairs as a cdb file at `path` (the caller renames it into place); `opener` as
    open()'s."""
    tables: list[list[tuple[int, int]]] = [[] for _ in range(256)]
    with open(path, "wb", opener=opener) as f:
        f.write(bytes(2048))
        pos = 2048
        for key, value in records:
            h = cdb_hash(key)
            tables[h & 255].append((h, pos))
            f.write(_pack(len(key), len(value)) + key + value)
            pos += 8 + len(key) + len(value)
        header = []
        for entries in tables:
            slots = [(0, 0)] * (2 * len(entries))
            for h, record in entries:
                i = (h >> 8) % len(slots)
                while slots[i][1]:
                    i = (i + 1) % len(slots)
                slots[i] = (h, record)
            header.append((pos, len(slots)))
            f.write(b"".join(_pack(h, r) for h, r in slots))
            pos += 8 * len(slots)
        f.seek(0)
        f.write(b"".join(_pack(p, n) for p, n in header))
