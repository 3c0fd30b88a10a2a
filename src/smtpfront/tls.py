"""TLS over whatever file descriptors the UCSPI server handed us.

tcpserver gives one socket as fd 0 and fd 1; other servers give two pipes.
`ssl.SSLSocket` needs a socket, so the TLS state machine runs on memory BIOs
and the ciphertext moves through the plain `Transport`.  This module is
imported only when TLS is actually used.

Importing `ssl` costs about 12 ms (it pulls in enum, socket, selectors,
base64 and re): more than the handshake and the rest of the session together.
The TLS machinery is the C module `_ssl` (about 3 ms, most of it loading
OpenSSL), and for a server on memory BIOs `ssl` adds nothing but enum
wrappers: `ssl.SSLContext` is a subclass of `_ssl._SSLContext` whose
constructor sets every default in C, `ssl.MemoryBIO` *is* `_ssl.MemoryBIO`,
the exceptions are `_ssl`'s, and `SSLContext.wrap_bio` ends in
`_SSLContext._wrap_bio`.  So on the CPython versions this was tested with
(`NATIVE_VERSIONS`) the context is built from `_ssl` directly; on any other
Python, or if `_ssl` lacks a part, from `ssl`, whose objects behave the same
here.  docs/performance.md gives the figures.
"""

from __future__ import annotations

import posix
import sys
import time

NATIVE_VERSIONS = ((3, 11), (3, 12), (3, 13))  # tested with _ssl directly: tests/test_tls.py
NATIVE_PARTS = ("_SSLContext", "MemoryBIO", "PROTOCOL_TLS_SERVER", "OP_NO_COMPRESSION", "OP_CIPHER_SERVER_PREFERENCE",
                "OP_NO_TICKET", "SSLError", "SSLWantReadError", "SSLZeroReturnError", "SSLEOFError")
VERSIONS = {"1.2": 0x0303, "1.3": 0x0304}  # the protocol versions' numbers on the wire, as TLSVersion has them
READ_SIZE = 1 << 16
use_native = True  # False: always through `ssl` (the tests run both ways)


def _library():
    """`_ssl` where using it directly was tested, else `ssl`; both give the same classes and constants."""
    if use_native and sys.implementation.name == "cpython" and sys.version_info[:2] in NATIVE_VERSIONS:
        try:
            import _ssl
        except ImportError:
            pass
        else:
            if all(hasattr(_ssl, name) for name in NATIVE_PARTS) and hasattr(_ssl._SSLContext, "_wrap_bio"):
                return _ssl
    import ssl

    return ssl


def library_name() -> str:
    """'_ssl' or 'ssl': which one this process builds its TLS from."""
    return _library().__name__


class TLSError(ConnectionError):
    """The handshake or the TLS stream failed; the session cannot go on."""


_built: dict[tuple, object] = {}  # the context last built, by its settings and its files' identity


def _identity(path: str | None) -> tuple[int, int, int, int] | None:
    if path is None:
        return None
    st = posix.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def server_context(certfile: str, keyfile: str | None, ciphers: str | None, min_version: str):
    """A server context; raises OSError (ssl.SSLError is one) or ValueError for unusable files or ciphers.

    The context is kept while the certificate and key files stay the same: smtpfront-server builds it once
    before it forks (about 1.2 ms a STARTTLS), and a renewed certificate is loaded by the next session.
    Stateless session tickets are off: no session could be resumed by another process anyway, and a ticket
    key that lives as long as the server should not change that (TLS 1.3 still sends stateful tickets).
    """
    key = (certfile, keyfile, ciphers, min_version, _identity(certfile), _identity(keyfile))
    context = _built.get(key)
    if context is None:
        context = _build_context(certfile, keyfile, ciphers, min_version)
        _built.clear()
        _built[key] = context
    return context


def _build_context(certfile: str, keyfile: str | None, ciphers: str | None, min_version: str):
    lib = _library()
    context = getattr(lib, "SSLContext", lib._SSLContext)(lib.PROTOCOL_TLS_SERVER)  # ssl's subclass, or the C class
    context.minimum_version = VERSIONS[min_version]
    context.options |= lib.OP_NO_COMPRESSION | lib.OP_CIPHER_SERVER_PREFERENCE | lib.OP_NO_TICKET
    if ciphers:
        context.set_ciphers(ciphers)
    context.load_cert_chain(certfile, keyfile)
    return context


def server_side(context, incoming, outgoing):
    """The server end of a TLS connection over two memory BIOs (`ssl.SSLObject` or its `_ssl` core)."""
    if hasattr(context, "wrap_bio"):
        return context.wrap_bio(incoming, outgoing, server_side=True)
    return context._wrap_bio(incoming, outgoing, server_side=True)


class TLSTransport:
    """The `Transport` interface (read/write/byte counts) with TLS in between."""

    def __init__(self, raw, context) -> None:
        lib = self._lib = _library()
        self.raw = raw
        self._incoming = lib.MemoryBIO()
        self._outgoing = lib.MemoryBIO()
        self._tls = server_side(context, self._incoming, self._outgoing)

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
        lib = self._lib
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._tls.do_handshake()
                break
            except lib.SSLWantReadError:
                if not self._flush():
                    raise TLSError("client went away during the TLS handshake") from None
                data = self.raw.read(max(0.0, deadline - time.monotonic()))
                if data is None:
                    raise TLSError("timeout during the TLS handshake") from None
                if not data:
                    raise TLSError("client closed the connection during the TLS handshake") from None
                self._incoming.write(data)
            except lib.SSLError as e:
                self._flush()  # the alert, if any, tells the client why
                raise TLSError(f"TLS handshake failed: {e.reason or e}") from None
        if not self._flush():
            raise TLSError("client went away after the TLS handshake")

    def read(self, timeout: float) -> bytes | None:
        """Decrypted client bytes, b'' at the end, None when nothing came within `timeout`."""
        lib = self._lib
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._tls.read(READ_SIZE)
            except lib.SSLWantReadError:
                pass
            except (lib.SSLZeroReturnError, lib.SSLEOFError):
                return b""
            except lib.SSLError as e:
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

    def close(self, timeout: float) -> None:
        """End TLS as it must end (RFC 8446 6.1): send close_notify, then wait up to `timeout` seconds for the
        client's, dropping what comes before it; a client that sends none costs no more.  Never raises.

        Without it the client sees a bare TCP close after our last reply (Exim logs "TLS connection was
        non-properly terminated"); closing before the client's close_notify arrives could answer it with a reset.
        """
        lib = self._lib
        deadline = time.monotonic() + timeout
        shutdown = getattr(self._tls, "unwrap", None) or self._tls.shutdown  # ssl's SSLObject, or _ssl's core
        try:
            shutdown()
        except lib.SSLWantReadError:  # ours is out; the client's has not come yet
            pass
        except lib.SSLError:  # the stream is broken: nothing more to say
            self._flush()
            return
        else:  # the client's close_notify came first: ours answers it
            self._flush()
            return
        if not self._flush():
            return
        try:
            while (left := deadline - time.monotonic()) > 0 and self.read(left):
                pass
        except TLSError:
            pass

    def write(self, data: bytes) -> bool:
        if data:
            try:
                self._tls.write(data)
            except self._lib.SSLError:
                return False
        return self._flush()

    def _flush(self) -> bool:
        pending = self._outgoing.read()
        return self.raw.write(pending) if pending else True
