"""The queuedir back end: one file per message in a directory.

The file is written under `$QUEUEDIR/tmp`, synced, and renamed into
`$QUEUEDIR/new`, so a reader of new/ only ever sees complete messages.  It
holds the sender and a NUL, each recipient and a NUL, a final NUL, then the
message.
"""

from __future__ import annotations

import posix
import time

from ..smtp import Reply
from . import Backend, BackendError

CANNOT_WRITE = Reply(451, "4.3.0 Write error (queue full?).")


class QueueDir(Backend):
    def __init__(self, root: str, tmp: str, dest: str, nosync: bool, log) -> None:
        self.tmp = f"{root}/{tmp}"
        self.dest = f"{root}/{dest}"
        self.nosync = nosync
        self.log = log
        self.seq = 0
        self.fd = -1

    def begin(self, sender: str, recipients: list[str], env: dict[str, str]) -> None:
        self.seq += 1
        self.name = f"{time.time_ns()}.{posix.getpid()}.{self.seq}"
        self.path = f"{self.tmp}/{self.name}"
        data = "".join(a + "\0" for a in [sender, *recipients]).encode("utf-8", "surrogateescape") + b"\0"
        try:
            self.fd = posix.open(self.path, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC, 0o600)
        except OSError as e:
            self.log(f"queuedir: cannot create {self.path}: {e.strerror}")
            raise BackendError(CANNOT_WRITE) from None
        self.size = 0
        self.error: OSError | None = None
        self._write(data)

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[posix.write(self.fd, view) :]
        except OSError as e:
            self.error = e

    def write(self, block: bytes) -> None:
        self._write(block)
        self.size += len(block)

    def finish(self) -> Reply:
        try:
            if self.error is not None:
                raise self.error
            if not self.nosync:
                posix.fsync(self.fd)
            posix.close(self.fd)
            self.fd = -1
            posix.rename(self.path, f"{self.dest}/{self.name}")
            if not self.nosync:
                dirfd = posix.open(self.dest, posix.O_RDONLY | posix.O_DIRECTORY)
                try:
                    posix.fsync(dirfd)
                finally:
                    posix.close(dirfd)
        except OSError as e:
            self.log(f"queuedir: cannot queue {self.path}: {e.strerror}")
            self.abort()
            return CANNOT_WRITE
        return Reply(250, f"2.6.0 Accepted message {self.name} bytes {self.size}")

    def abort(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1
            try:
                posix.unlink(self.path)
            except OSError:
                pass
