"""Reading constant databases (D. J. Bernstein's cdb format).

The file starts with 256 (position, length) pairs of 32-bit little-endian
words, one per hash table; the hash is h = ((h << 5) + h) ^ c from 5381,
kept to 32 bits.  Slot i of table (h & 255) is tried from (h >> 8) % length
onwards; an empty slot (position 0) ends the search.
"""

from __future__ import annotations

import os
from struct import unpack_from


def cdb_hash(key: bytes) -> int:
    h = 5381
    for c in key:
        h = ((h << 5) + h ^ c) & 0xFFFFFFFF
    return h


class CDB:
    """A cdb file opened for lookups; reads only the slots and records a lookup needs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def _read(self, pos: int, size: int) -> bytes:
        data = os.pread(self.fd, size, pos)
        if len(data) != size:
            raise OSError(f"{self.path}: truncated cdb file")
        return data

    def get(self, key: bytes) -> bytes | None:
        h = cdb_hash(key)
        table_pos, slots = unpack_from("<II", self._read((h & 255) * 8, 8))
        if not slots:
            return None
        slot = (h >> 8) % slots
        for _ in range(slots):
            slot_hash, record = unpack_from("<II", self._read(table_pos + slot * 8, 8))
            if not record:
                return None
            if slot_hash == h:
                klen, dlen = unpack_from("<II", self._read(record, 8))
                if klen == len(key) and self._read(record + 8, klen) == key:
                    return self._read(record + 8 + klen, dlen)
            slot = (slot + 1) % slots
        return None

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None
