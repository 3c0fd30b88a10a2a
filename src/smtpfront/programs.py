"""The programs: `mailfront PROTOCOL BACKEND [PLUGIN...]` and the front ends, each one line of it.

    mailfront PROTOCOL BACKEND [PLUGIN...]   the driver (mailfront.html)
    smtpfront-qmail     mailfront smtp qmail cvm-authenticate <QMAIL_PLUGINS> "$@"
    smtpfront-queuedir  mailfront smtp queuedir cvm-authenticate <QMAIL_PLUGINS> "$@"
    smtpfront-echo      mailfront smtp echo "$@"   (no arguments: smtpfront-qmail's list,
                        so that `MAILRULES=rules smtpfront-echo < session` tries a rules file)
    qmqpfront-qmail     mailfront qmqp qmail <QMAIL_PLUGINS> "$@"
    qmqpfront-echo      mailfront qmqp echo "$@"
    qmtpfront-qmail     mailfront qmtp qmail <QMAIL_PLUGINS> "$@"
    qmtpfront-echo      mailfront qmtp echo "$@"

as Debian's wrappers are.  `run` is one session on fds 0, 1 and 2 with the
environment it is given, whoever started the process (tcpserver, or our own
fork server); the `main` functions are the installed commands.
"""

from __future__ import annotations

import posix  # not os: importing os costs about 1 ms on every connection
import sys

from . import __version__

QMAIL_PLUGINS = ("check-fqdn", "counters", "mailrules", "relayclient", "cvm-validate", "qmail-validate",
                 "add-received", "patterns")
SMTP_QMAIL_PLUGINS = ("cvm-authenticate", *QMAIL_PLUGINS)
# name: (protocol, back end, plugins before the arguments, plugins when there are no arguments)
FRONT_ENDS = {
    "smtpfront-qmail": ("smtp", "qmail", SMTP_QMAIL_PLUGINS, ()),
    "smtpfront-queuedir": ("smtp", "queuedir", SMTP_QMAIL_PLUGINS, ()),
    "smtpfront-echo": ("smtp", "echo", (), SMTP_QMAIL_PLUGINS),
    "qmqpfront-qmail": ("qmqp", "qmail", QMAIL_PLUGINS, ()),
    "qmqpfront-echo": ("qmqp", "echo", (), ()),
    "qmtpfront-qmail": ("qmtp", "qmail", QMAIL_PLUGINS, ()),
    "qmtpfront-echo": ("qmtp", "echo", (), ()),
}
MISSING_NAMES = "Protocol or backend name are missing from the command line"


def command_line(name: str, args: list[str]) -> tuple[str, str, list[str]] | None:
    """(protocol, back end, plugin lists) for a program and its arguments; None for `mailfront` without both."""
    if name in FRONT_ENDS:
        protocol, backend, before, without_arguments = FRONT_ENDS[name]
        return protocol, backend, [*before, *(args or without_arguments)]
    if len(args) < 2:
        return None
    return args[0], args[1], args[2:]


def run(argv: list[str], environ: dict[str, str], name: str | None = None, log=None) -> int:
    """One session, start to end, on fds 0 and 1 (log on fd 2); returns the exit code.

    `name` is the program to be (default: argv[0]'s base name); a name that is
    not a front end's is `mailfront`, which takes the protocol and back end
    from the arguments.  `log` is the session's Log (default: a new one).
    """
    from . import registry
    from .log import Log, internal_error
    from .smtp import Reply
    from .transport import Transport

    log = Log() if log is None else log
    parsed = command_line(name or argv[0].rpartition("/")[2], argv[1:])
    if parsed is None:
        log(f"Fatal: {MISSING_NAMES}")
        return 111
    protocol_name, backend_name, lists = parsed
    try:
        protocol = registry.protocol(protocol_name)
    except registry.LoadError as e:
        log(f"Fatal: {e.reply.text}")
        return 1
    transport = Transport()
    try:
        started = _start(protocol, backend_name, lists, environ, transport, log)
    except registry.LoadError as e:
        log(f"{e.reply.code} {e.reply.text}")
        protocol.refuse(transport, e.reply)
        return 1
    except Exception as e:  # noqa: BLE001 - a plugin's init failed: a log line, never a traceback
        internal_error(log, e)
        started = protocol.INTERNAL_ERROR
    try:  # from here on the byte counts are logged at the end, as by mailfront's exit handler
        if isinstance(started, Reply):
            log(f"{started.code} {started.text}")
            protocol.refuse(transport, started)
            return 1
        if started is None:  # a bad PROXY header: closed without a word
            return 1
        import time

        try:
            return protocol.serve(started, transport, log, time.monotonic)
        except Exception as e:  # noqa: BLE001 - last line of defence: a log line, never a traceback
            internal_error(log, e)
            try:
                started.reset()
            finally:
                protocol.refuse(transport, protocol.INTERNAL_ERROR)
            return 1
        finally:
            started.end()
    finally:
        log(f"bytes in: {transport.bytes_in} bytes out: {transport.bytes_out}")


def preload(argv: list[str], environ: dict[str, str]) -> None:
    """Import everything a session of this program uses, once (smtpfront-server, before its first fork).

    The protocol, the back end and the plugins of its list, the modules their
    settings call for, and the TLS context (tls.server_context keeps it while
    the certificate and key files are the same).  A name that can't be
    loaded raises registry.LoadError, as the session itself would answer.
    """
    import select  # noqa: F401
    import time  # noqa: F401

    from . import log, pipeline, registry, session, transport  # noqa: F401
    from .config import Settings

    parsed = command_line(argv[0].rpartition("/")[2], argv[1:])
    if parsed is None:
        return
    protocol, backend, lists = parsed
    registry.protocol(protocol)
    registry.backend(backend)
    settings = Settings.from_environ(environ)
    registry.plugins(registry.plugin_names([*lists, settings.plugins or ""]))
    if settings.mailrules:
        from . import mailrules  # noqa: F401
    if settings.patterns:
        from . import patterns  # noqa: F401
    if settings.cvm_plain or settings.cvm_login or settings.cvm_cram_md5 or settings.cvm_lookup:
        from . import cvm, sasl  # noqa: F401
    if settings.auth_throttle_dir:
        from . import throttle  # noqa: F401
    if settings.auth_throttle_store:
        from . import redis, store  # noqa: F401
    if settings.proxy_protocol:
        from . import proxy  # noqa: F401
    if settings.tls_certfile:
        from . import tls

        try:  # built here once; a child that finds the files changed builds its own
            tls.server_context(settings.tls_certfile, settings.tls_keyfile, settings.tls_ciphers,
                               settings.tls_min_version)
        except (OSError, ValueError):
            pass  # the session says why, in its log, when a client asks for TLS


def _start(protocol, backend_name: str, lists: list[str], environ, transport, log):
    """The session's pipeline, initialised; or the reply that refuses the session; or None to close silently.

    Raises registry.LoadError when a back end or plugin can't be loaded.
    """
    from . import registry
    from .config import ConfigError, Settings

    try:
        settings = Settings.from_environ(environ)
    except ConfigError as e:
        log.note(str(e))
        return protocol.CONFIG_ERROR
    backend = registry.backend(backend_name)
    plugins = registry.plugins(registry.plugin_names([*lists, settings.plugins or ""]))
    if settings.proxy_protocol:
        from .proxy import read_header

        proxied = read_header(transport, settings, log)
        if proxied is None:
            return None
        settings, transport.unread = proxied
    from .pipeline import Pipeline
    from .session import Session
    from .smtp import failed

    pipeline = Pipeline(Session(settings, log, protocol.NAME), plugins, backend)
    reply = pipeline.init()
    if failed(reply):
        pipeline.end()  # what the plugins before the refusing one took
        return reply
    return pipeline


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


def main(name: str) -> None:
    """An installed command: print the version, or run one session and leave."""
    if sys.argv[1:] in (["--version"], ["-V"]):
        print(f"{name} {__version__}")
        leave(0)
    from .config import process_environ

    leave(run(sys.argv, process_environ(), name))


def mailfront() -> None:
    main("mailfront")


def smtpfront_qmail() -> None:
    main("smtpfront-qmail")


def smtpfront_queuedir() -> None:
    main("smtpfront-queuedir")


def smtpfront_echo() -> None:
    main("smtpfront-echo")


def qmqpfront_qmail() -> None:
    main("qmqpfront-qmail")


def qmqpfront_echo() -> None:
    main("qmqpfront-echo")


def qmtpfront_qmail() -> None:
    main("qmtpfront-qmail")


def qmtpfront_echo() -> None:
    main("qmtpfront-echo")
