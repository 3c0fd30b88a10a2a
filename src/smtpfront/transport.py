"""The client's bytes: plain file descriptors (tcpserver's socket as fd 0 and 1, or two pipes)."""

from __future__ import annotations

import posix  # not os: importing os costs about 1 ms on every connection

READ_SIZE = 1 << 16


class Transport:
    """The client's bytes: plain file descriptors (tcpserver's socket, or two pipes)."""

    def __init__(self, fd_in: int = 0, fd_out: int = 1) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.bytes_in = 0
        self.bytes_out = 0
        self.unread = b""  # read, but not yet given out (what came after a PROXY header)

    def read(self, timeout: float) -> bytes | None:
        """Client bytes, b'' at end of input, None when nothing came within `timeout`."""
        if self.unread:
            data, self.unread = self.unread, b""
            return data
        import select

        try:
            ready = select.select([self.fd_in], [], [], timeout)[0]
        except (OSError, ValueError):
            ready = True  # not selectable (e.g. /dev/null): just read
        if not ready:
            return None
        try:
            data = posix.read(self.fd_in, READ_SIZE)
        except OSError:
            data = b""
        self.bytes_in += len(data)
        return data

    def write(self, data: bytes) -> bool:
        view = memoryview(data)
        try:
            while view:
                view = view[posix.write(self.fd_out, view) :]
        except OSError:
            return False
        self.bytes_out += len(data)
        return True
