"""The programs: each is a back end and an ordered list of handlers around the engine.

    smtpfront-qmail     qmail-queue
    smtpfront-echo      echo (shows what would be queued)
    smtpfront-queuedir  files in $QUEUEDIR

All three run the same pipeline (mailfront's smtpfront-qmail list):
check-fqdn, counters, mailrules, relayclient, qmail-validate, add-received,
patterns.  `serve` is the stdin/stdout driver: it reads with the idle and
session timeouts, feeds the engine, asks the server for replies and writes
them, pipelined replies in one write.
"""

from __future__ import annotations

import posix  # not os: importing os costs about 1 ms on every connection
import sys

from .config import ConfigError, Settings, process_environ
from .log import Log
from .smtp import Reply

CONFIG_ERROR = Reply(421, "4.3.0 Configuration error; try again later.")
TIMED_OUT = Reply(421, "4.4.2 Timeout; closing connection.")
SESSION_TIMED_OUT = Reply(421, "4.4.2 Session time limit exceeded; closing connection.")
READ_SIZE = 1 << 16


class StartupError(Exception):
    """The program can't serve safely; `reply` replaces the greeting."""

    def __init__(self, reply: Reply, message: str) -> None:
        super().__init__(message)
        self.reply = reply


def build_handlers(settings: Settings, log: Log) -> list:
    """The pipeline, in mailfront's order.  Handlers with nothing to do are left out."""
    from .handlers.check_fqdn import CheckFqdn
    from .handlers.counters import Counters
    from .handlers.qmail_validate import QmailValidate
    from .handlers.received import AddReceived
    from .handlers.relayclient import RelayClient

    handlers: list = [
        CheckFqdn(settings.default_host, settings.default_domain, settings.sender_domains),
        Counters(settings.max_msgs, settings.max_rcpts, settings.max_rcpts_reject, settings.max_hops),
    ]
    if settings.sender_login_map:
        from .handlers.sender_login import SenderLogin

        handlers.append(SenderLogin(settings.sender_login_map, log))
    if settings.mailrules:
        from .handlers.rules import MailRules, load_rules

        handlers.append(MailRules(load_rules(settings.mailrules, log, settings.mailrules_cache), log))
    handlers += [
        RelayClient(),
        QmailValidate(settings.qmail_home, log),
        AddReceived(settings),
    ]
    if settings.patterns:
        from .handlers.content import Patterns, load_patterns

        handlers.append(Patterns(load_patterns(settings, log)))
    return handlers


def build_backend(name: str, settings: Settings, log: Log):
    if name == "qmail":
        from .backends.qmail import QmailQueue

        return QmailQueue(
            settings.qmail_queue, settings.qq_errmsg, settings.qmail_queue_timeout, settings.environ
        )
    if name == "echo":
        from .backends.echo import Echo

        return Echo()
    from .backends.queuedir import QueueDir

    if not settings.queuedir:
        raise StartupError(CONFIG_ERROR, "$QUEUEDIR is not set")
    return QueueDir(settings.queuedir, settings.queuedir_tmp, settings.queuedir_dest, settings.queuedir_nosync, log)


def build_auth(settings: Settings, log: Log):
    if not (settings.cvm_login or settings.cvm_plain or settings.cvm_cram_md5):
        return None
    from .sasl import Authenticator

    return Authenticator(settings, log)


def build_tls(settings: Settings, log: Log):
    """A callable giving the server's ssl context, or None when TLS can't be offered.

    The files are checked here, cheaply; the TLS library (`_ssl`, see tls.py) is
    imported only when a client asks for TLS (or at once for SMTPS).
    """
    if not settings.tls_certfile:
        if settings.smtps:
            raise StartupError(CONFIG_ERROR, "$SMTPS is set but $TLS_CERTFILE is not")
        return None
    for path in filter(None, (settings.tls_certfile, settings.tls_keyfile)):
        try:
            posix.close(posix.open(path, posix.O_RDONLY))
        except OSError as e:
            if settings.smtps:
                raise StartupError(CONFIG_ERROR, f"SMTPS: cannot read {path}: {e.strerror}") from None
            log(f"STARTTLS not offered: cannot read {path}: {e.strerror}")
            return None

    def context():
        from .tls import server_context

        return server_context(
            settings.tls_certfile, settings.tls_keyfile, settings.tls_ciphers, settings.tls_min_version
        )

    return context


def start_tls(transport, engine, server, settings: Settings, log: Log):
    """The TLS handshake on `transport`; the TLS transport, or None when it failed (logged).

    On success the engine and the server start over, as on a new connection.
    """
    from .tls import TLSError, TLSTransport

    tls = TLSTransport(transport, server.tls_context)
    try:
        tls.handshake(settings.timeout)
    except TLSError as e:
        log(str(e))
        return None
    engine.start_tls()
    server.tls_started(tls.description())
    return tls


def read_proxy_header(transport, settings: Settings, log: Log):
    """(settings for the client the PROXY header names, bytes after the header); None to close silently."""
    from .proxy import ProxyError, parse

    data = b""
    while True:
        try:
            found = parse(data)
        except ProxyError as e:
            log(f"PROXY protocol: {e}; closing without a reply")
            return None
        if found is not None:
            break
        chunk = transport.read(settings.timeout)
        if not chunk:
            log("PROXY protocol: no header before " + ("end of input" if chunk == b"" else "the timeout"))
            return None
        data += chunk
    addresses, size = found
    if addresses is not None:
        if settings.relayclient is not None:
            log("PROXY protocol: RELAYCLIENT from the environment is for the balancer; ignored")
        settings = settings.proxied(addresses.remote_ip, addresses.remote_port, addresses.local_ip,
                                    addresses.local_port)
        log(f"PROXY protocol: client {addresses.remote_ip} port {addresses.remote_port}")
    return settings, data[size:]


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


def serve(engine, server, transport, settings: Settings, log: Log, clock) -> int:
    """Run one session to its end; returns the exit code."""
    from .smtp import Closed, StartTLS

    session_end = clock() + settings.session_timeout
    if settings.smtps:  # implicit TLS (RFC 8314): the handshake comes before the greeting
        transport = start_tls(transport, engine, server, settings, log) if server.tls_ready() else None
        if transport is None:
            return 1
    engine.send(server.greeting())
    exit_code = 0
    while True:
        event = engine.next_event()
        if engine.log:
            for line in engine.log:
                log(line)
            engine.log.clear()
        if event is None:
            if not transport.write(engine.data_to_send()):
                server.closed(Closed(in_data=engine.mode == "data", exit_code=1))
                return 1
            if engine.mode == "closed":
                return exit_code
            now = clock()
            wait = min(settings.timeout, session_end - now)
            try:
                data = transport.read(wait) if wait > 0 else None
            except ConnectionError as e:  # a broken TLS record: the client is gone for us
                log(str(e))
                data = b""
            if data is None:
                reply = SESSION_TIMED_OUT if clock() >= session_end else TIMED_OUT
                engine.send(reply)
                log(reply.lines()[-1])
                server.closed(Closed(in_data=engine.mode == "data", exit_code=1))
                engine.close(1)
                exit_code = 1
                continue
            engine.receive_data(data)
            continue
        reply = server.handle(event)
        if event.needs_reply:
            engine.respond(reply)
        if isinstance(event, Closed):
            exit_code = event.exit_code
        elif isinstance(event, StartTLS) and reply.code == 220:
            if not transport.write(engine.data_to_send()):
                return 1
            transport = start_tls(transport, engine, server, settings, log)
            if transport is None:
                return 1


def run(backend_name: str) -> int:
    """One connection, start to end; returns the exit code.  The byte counts are logged last, whatever happened."""
    log = Log()
    transport = Transport()
    try:
        return _run(backend_name, transport, log)
    finally:
        log(f"bytes in: {transport.bytes_in} bytes out: {transport.bytes_out}")


def _run(backend_name: str, transport: Transport, log: Log) -> int:
    import time

    try:
        settings = Settings.from_environ(process_environ())
        if settings.proxy_protocol:
            proxied = read_proxy_header(transport, settings, log)
            if proxied is None:
                return 1
            settings, transport.unread = proxied
        handlers = build_handlers(settings, log)
        backend = build_backend(backend_name, settings, log)
        auth = build_auth(settings, log)
        tls = build_tls(settings, log)
    except (ConfigError, StartupError) as e:
        log(str(e))
        reply = getattr(e, "reply", CONFIG_ERROR)  # a ConfigError has none
        log(reply.lines()[-1])
        transport.write(reply.encode())
        return 1
    from .server import Server
    from .session import Session
    from .smtp import Engine

    server = Server(Session(settings), handlers, backend, log, auth=auth, tls=tls)
    engine = Engine(max_notimpl=settings.max_notimpl, normalize_bare_eol=settings.bare_eol == "normalize")
    try:
        return serve(engine, server, transport, settings, log, time.monotonic)
    except Exception as e:  # noqa: BLE001 - last line of defence: a log line, never a traceback
        log(f"internal error: {type(e).__name__}: {e}")
        server.reset()
        transport.write(Reply(451, "4.3.0 Internal error.").encode())
        return 1


def leave(code: int) -> None:
    """Exit without the interpreter's teardown of every module (about 2 ms a connection).

    Safe here: the replies and the log went out with posix.write, back ends close
    and sync their own files, and nothing is registered with atexit.
    """
    for stream in (sys.stdout, sys.stderr):  # anything the standard library may have printed
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, gone, or None
            pass
    posix._exit(code)


def qmail() -> None:
    leave(run("qmail"))


def echo() -> None:
    leave(run("echo"))


def queuedir() -> None:
    leave(run("queuedir"))
