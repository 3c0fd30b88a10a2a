"""The queuedir back end: one file per message in a directory ($QUEUEDIR).

As mailfront's: the file is created in `$QUEUEDIR/$QUEUEDIR_TMP` (tmp) when
the sender is accepted, named `seconds.microseconds.pid`; it holds the sender
and a NUL, each recipient and a NUL, a final NUL, then the message.  When the
message is complete it is synced (unless $QUEUEDIR_NOSYNC is set), linked
into `$QUEUEDIR/$QUEUEDIR_DEST` (new), the directory synced, and the tmp name
removed, so a reader of new/ only ever sees complete messages.  In QMQP and
QMTP the message comes before the addresses: it waits in a scratch file.
Unlike mailfront's, it logs the file's name and the message's size once the
message is taken.
"""

from __future__ import annotations

import posix
import time

from ..plugins import Plugin
from ..smtp import Reply

MISSING_QUEUEDIR = Reply(451, "4.3.0 Missing backend configuration parameter")
CANNOT_CREATE = Reply(451, "4.3.0 Error creating queue file")
CANNOT_WRITE = Reply(451, "4.3.0 Error writing queue file")
_FLAGS = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC


class QueueDir(Plugin):
    fd = -1  # the queue file in tmp/, open from the sender on
    spool = None  # the message, when it came before the sender
    tmp_path = ""
    error: OSError | None = None  # the first failed write: the message is not taken

    def reset(self, session) -> None:
        self._discard_file()
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _discard_file(self) -> None:
        """Close and remove the queue file in tmp/, if one is open."""
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1
        if self.tmp_path:
            try:
                posix.unlink(self.tmp_path)
            except OSError:
                pass
            self.tmp_path = ""
        self.error: OSError | None = None

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[posix.write(self.fd, view) :]
        except OSError as e:
            self.error = e

    def sender(self, session, address, params) -> Reply | None:
        root = session.getenv("QUEUEDIR")
        if root is None:
            return MISSING_QUEUEDIR
        self._discard_file()  # not the spooled message: in QMQP and QMTP it came first
        self.dest_dir = f"{root}/{session.getenv('QUEUEDIR_DEST') or 'new'}"
        tmp_dir = f"{root}/{session.getenv('QUEUEDIR_TMP') or 'tmp'}"
        while True:
            now = time.time_ns() // 1000
            self.name = f"{now // 1000000}.{now % 1000000:06}.{posix.getpid()}"
            try:
                posix.stat(f"{self.dest_dir}/{self.name}")
            except FileNotFoundError:
                pass
            except OSError as e:
                session.log.note(f"queuedir: cannot check {self.dest_dir}: {e.strerror}")
                return CANNOT_CREATE
            else:
                time.sleep(0.001)  # taken within this microsecond by a message of ours: wait for the next
                continue
            self.tmp_path = f"{tmp_dir}/{self.name}"
            try:
                self.fd = posix.open(self.tmp_path, _FLAGS, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as e:
                self.tmp_path = ""
                session.log.note(f"queuedir: cannot create {tmp_dir}/{self.name}: {e.strerror}")
                return CANNOT_CREATE
        self._write(address.text.encode("utf-8", "surrogateescape") + b"\0")
        return None

    def recipient(self, session, address, params) -> None:
        self._write(address.text.encode("utf-8", "surrogateescape") + b"\0")

    def data_start(self, session) -> None:
        self.size = 0  # the message's bytes, logged as the qmail back end logs them
        if self.fd < 0:
            import tempfile

            self.spool = tempfile.TemporaryFile()
        else:
            self._write(b"\0")

    def data_block(self, session, block: bytes) -> None:
        self.size += len(block)
        if self.spool is not None:
            self.spool.write(block)
        else:
            self._write(block)

    def message_end(self, session) -> Reply | None:
        if self.spool is not None:
            self._write(b"\0")
            self.spool.seek(0)
            while block := self.spool.read(1 << 16):
                self._write(block)
        sync = session.getenv("QUEUEDIR_NOSYNC") is None
        dest = f"{self.dest_dir}/{self.name}"
        linked = False
        try:
            if self.error is not None:
                raise self.error
            if sync:
                posix.fsync(self.fd)
            posix.close(self.fd)
            self.fd = -1
            posix.link(self.tmp_path, dest)
            linked = True
            if sync:
                dirfd = posix.open(self.dest_dir, posix.O_RDONLY | posix.O_DIRECTORY)
                try:
                    posix.fsync(dirfd)
                finally:
                    posix.close(dirfd)
        except OSError as e:
            session.log.note(f"queuedir: cannot queue {self.tmp_path}: {e.strerror}")
            self.reset(session)
            if linked:  # in new/, but its directory could not be synced: not taken
                try:
                    posix.unlink(dest)
                except OSError:
                    pass
            return CANNOT_WRITE
        # mailfront logs nothing here: in the qmail back end's words, marked as ours
        session.log.note(f"2.6.0 Accepted message file {self.name} bytes {self.size}")
        self.reset(session)
        return None
