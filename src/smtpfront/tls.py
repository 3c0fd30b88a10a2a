"""TLS over whatever file descriptors the UCSPI server handed us.

tcpserver gives one socket as fd 0 and fd 1; other servers give two pipes.
`ssl.SSLSocket` needs a socket, so the TLS state machine runs on memory BIOs
(`ssl.MemoryBIO`) and the ciphertext moves through the plain `Transport`.
This module, and so `ssl`, is imported only when TLS is actually used.
"""

from __future__ import annotations

import ssl
import time

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
READ_SIZE = 1 << 16


class TLSError(ConnectionError):
    """The handshake or the TLS stream failed; the session cannot go on."""


def server_context(certfile: str, keyfile: str | None, ciphers: str | None, min_version: str) -> ssl.SSLContext:
    """A server context; raises OSError or ssl.SSLError for unusable files or ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if ciphers:
        context.set_ciphers(ciphers)
    context.load_cert_chain(certfile, keyfile)
    return context


class TLSTransport:
    """The `Transport` interface (read/write/byte counts) with TLS in between."""

    def __init__(self, raw, context: ssl.SSLContext) -> None:
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    @property
    def bytes_in(self) -> int:
        return self.raw.bytes_in

    @property
    def bytes_out(self) -> int:
        return self.raw.bytes_out

    def description(self) -> str:
        """e.g. 'TLSv1.3 TLS_AES_256_GCM_SHA384', for the log and the Received header."""
        return f"{self._tls.version()} {self._tls.cipher()[0]}"

    def handshake(self, timeout: float) -> None:
        """Complete the server handshake within `timeout` seconds, or raise TLSError."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not self._flush():
                    raise TLSError("client went away during the TLS handshake") from None
                data = self.raw.read(max(0.0, deadline - time.monotonic()))
                if data is None:
                    raise TLSError("timeout during the TLS handshake") from None
                if not data:
                    raise TLSError("client closed the connection during the TLS handshake") from None
                self._incoming.write(data)
            except ssl.SSLError as e:
                self._flush()  # the alert, if any, tells the client why
                raise TLSError(f"TLS handshake failed: {e.reason or e}") from None
        if not self._flush():
            raise TLSError("client went away after the TLS handshake")

    def read(self, timeout: float) -> bytes | None:
        """Decrypted client bytes, b'' at the end, None when nothing came within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as e:
                raise TLSError(f"TLS error: {e.reason or e}") from None
            if not self._flush():
                return b""
            data = self.raw.read(max(0.0, deadline - time.monotonic()))
            if data is None:
                return None
            if not data:
                self._incoming.write_eof()
            else:
                self._incoming.write(data)

    def write(self, data: bytes) -> bool:
        if data:
            try:
                self._tls.write(data)
            except ssl.SSLError:
                return False
        return self._flush()

    def _flush(self) -> bool:
        pending = self._outgoing.read()
        return self.raw.write(pending) if pending else True
