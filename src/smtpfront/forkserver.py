"""smtpfront-server: tcpserver's job, with the smtpfront programs loaded once.

    smtpfront-server [ -461UXpPhHrRoOdDqQv ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] [ -g gid ]
        [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] [ -I interface ] host port program [arg ...]

A drop-in for the `tcpserver` line of a run script: the same options with the
same meaning, the same environment for the program, the same tcprules cdb, the
same `-v` log lines -- as Debian's ucspi-tcp-ipv6 (ucspi-tcp 0.88 with the
IPv6 patch) has them: host `0` listens on IPv6 and IPv4 at once, an IPv6
client gets PROTO=TCP6, and every TCP* variable comes with its TCP6* twin.
The difference is inside: when PROGRAM is one of the smtpfront programs, the
server imports it once, before the first connection, and each connection's
child runs it in the forked process instead of starting a new interpreter.
Any other PROGRAM is executed, as tcpserver does.

Every line the server itself logs starts `tcpserver: `, as tcpserver's do, so
that log parsers keep working; only the command-line complaints name
smtpfront-server.
"""

from __future__ import annotations

import _signal as signal  # not `signal` and `socket`: their Python wrappers run code in each child, and
import _socket as socket  # every page a child writes (refcounts included) is a page it no longer shares
import posix
import select
import sys

from . import programs
from .config import process_environ
from .programs import FRONT_ENDS

PREFIX = b"tcpserver: "
DROP = b"tcpserver: warning: dropping connection, "
FATAL = b"tcpserver: fatal: "
OPTIONS = "dDvqQhHrR1UXx:t:u:g:l:b:B:c:pPoO46I:n:"  # ucspi-tcp-ipv6 tcpserver's getopt string, and -n
USAGE = ("usage: smtpfront-server [ -461UXpPhHrRoOdDqQv ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] [ -g gid ] "
         "[ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] [ -I interface ] host port program")

# The programs run in the forked child instead of being executed: name -> back end.
IN_PROCESS = frozenset(("mailfront", *FRONT_ENDS))

# djb's error_str() texts, which tcpserver's messages carry; others fall back to strerror.
ERROR_TEXTS = {
    "ENOENT": "file does not exist", "EACCES": "access denied", "EPERM": "permission denied",
    "EADDRINUSE": "address already used", "EADDRNOTAVAIL": "address not available", "ENOEXEC": "exec format error",
    "EISDIR": "is a directory", "ENOTDIR": "not a directory", "EMFILE": "process cannot open more files",
    "ENFILE": "system cannot open more files", "ENOMEM": "out of memory", "EAGAIN": "temporary failure",
    "EINVAL": "invalid argument", "EIO": "input/output error", "ETXTBSY": "text busy", "ELOOP": "symbolic link loop",
    "ENAMETOOLONG": "file name too long", "E2BIG": "argument list too long", "ETIMEDOUT": "timed out",
    "ECONNREFUSED": "connection refused",
}


class UsageError(Exception):
    """The command line is not one tcpserver would take."""


class Options:
    """The command line, with tcpserver's defaults."""

    def __init__(self) -> None:
        self.verbosity = 1  # 0 with -q, 2 with -v
        self.limit = 40
        self.backlog = 20
        self.rules: str | None = None
        self.allow_no_rules = False  # -X
        self.banner = b""
        self.uid = 0
        self.gid = 0
        self.local_name: bytes | None = None  # -l
        self.remote_host = True  # -h / -H
        self.paranoid = False  # -p / -P
        self.remote_info = True  # -r / -R
        self.timeout = 26  # -t, for the ident look-up
        self.kill_ip_options = True  # -O / -o
        self.delay = True  # -d / -D
        self.print_port = False  # -1
        self.sessions = 1  # -n: sessions a process serves (see workers)
        self.ipv4_only = False  # -4: an IPv4 socket
        self.force_v6 = False  # -6: PROTO=TCP6 and v4-mapped TCP* addresses for IPv4 clients too
        self.interface = ""  # -I: the scope of a link-local address to listen on
        self.host = ""
        self.port = ""
        self.program: list[str] = []


def _number(flag: str, text: str, minimum: int = 0) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise UsageError(f"-{flag} needs a number" + (f" of at least {minimum}" if minimum else "") + f": {text!r}")
    return int(text)


def parse(argv: list[str], environ: dict[bytes, bytes]) -> Options:
    """tcpserver's options (getopt rules: clustered flags, `--`, the first non-option ends them)."""
    o = Options()
    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        arg = args.pop(0)
        if arg == "--":
            break
        i = 1
        while i < len(arg):
            flag = arg[i]
            i += 1
            where = OPTIONS.find(flag)
            if flag == ":" or where < 0:
                raise UsageError(f"illegal option -- {flag}")
            value = ""
            if OPTIONS[where + 1 : where + 2] == ":":
                if i < len(arg):
                    value, i = arg[i:], len(arg)
                elif args:
                    value = args.pop(0)
                else:
                    raise UsageError(f"option requires an argument -- {flag}")
            _apply(o, flag, value, environ)
    if len(args) < 3:
        raise UsageError("")
    o.host, o.port, o.program = args[0], args[1], args[2:]
    return o


# flag -> (option, value) for the flags that take no argument
FLAGS = {"d": ("delay", True), "D": ("delay", False), "v": ("verbosity", 2), "q": ("verbosity", 0),
         "Q": ("verbosity", 1), "h": ("remote_host", True), "H": ("remote_host", False), "r": ("remote_info", True),
         "R": ("remote_info", False), "p": ("paranoid", True), "P": ("paranoid", False),
         "o": ("kill_ip_options", False), "O": ("kill_ip_options", True), "1": ("print_port", True),
         "X": ("allow_no_rules", True), "4": ("ipv4_only", True), "6": ("force_v6", True)}
# flag -> (option, smallest value) for the numbers
NUMBERS = {"c": ("limit", 1), "b": ("backlog", 0), "t": ("timeout", 0), "u": ("uid", 0), "g": ("gid", 0),
           "n": ("sessions", 1)}


def _apply(o: Options, flag: str, value: str, environ: dict[bytes, bytes]) -> None:
    if flag in FLAGS:
        setattr(o, *FLAGS[flag])
    elif flag in NUMBERS:
        name, minimum = NUMBERS[flag]
        setattr(o, name, _number(flag, value, minimum))
    elif flag == "U":  # as envuidgid left them; a missing variable leaves the setting alone
        for variable, name in ((b"UID", "uid"), (b"GID", "gid")):
            if variable in environ:
                setattr(o, name, _number(flag, environ[variable].decode("latin-1")))
    elif flag == "x":
        o.rules = value
    elif flag == "B":
        o.banner = value.encode("utf-8", "surrogateescape")
    elif flag == "l":
        o.local_name = value.encode("utf-8", "surrogateescape")
    elif flag == "I":
        o.interface = value


# -- messages ------------------------------------------------------------------


class Logger:
    """tcpserver's messages on fd 2: errors unless -q, status lines with -v."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def __call__(self, line: bytes, level: int = 2) -> None:
        if self.verbosity >= level:
            try:
                posix.write(2, line + b"\n")
            except OSError:
                pass

    def error(self, line: bytes) -> None:
        self(line, 1)


def error_text(e: OSError) -> bytes:
    import errno

    name = errno.errorcode.get(e.errno or 0)
    if name in ERROR_TEXTS:
        return ERROR_TEXTS[name].encode()
    if e.errno is None:  # ours, e.g. a truncated cdb: djb's cdb says "protocol error"
        return b"protocol error"
    return posix.strerror(e.errno).lower().encode()


def safe(text: bytes) -> bytes:
    """ucspi-tcp-ipv6 tcpserver's safecats: printable ASCII but `%` (`:` stays, for IPv6 addresses),
    at most 100 bytes, then `...`."""
    out = bytes(c if 33 <= c <= 126 and c != 37 else 63 for c in text[:100])
    return out + b"..." if len(text) >= 100 else out


# -- the environment -------------------------------------------------------------


def pathexec_environ(base: list[bytes], changes: list[tuple[bytes, bytes | None]]) -> list[bytes]:
    """The environment tcpserver hands on: its own, changed as pathexec() changes it.

    Each change removes the first variable of that name (the last entry takes its
    place) and appends NAME=value unless the value is None: the order, too, is tcpserver's.
    """
    env = list(base)
    for name, value in changes:
        prefix = name + b"="
        for t, entry in enumerate(env):
            if entry.startswith(prefix):
                env[t] = env[-1]
                env.pop()
                break
        if value is not None:
            env.append(prefix + value)
    return env


class Connection:
    """What the child learns about its client before PROGRAM starts (tcpserver's `doit`)."""

    def __init__(self, sock: socket.socket, remote: tuple[str, int], options: Options, local_port: int,
                 environ: dict[bytes, bytes], log: Logger) -> None:
        self.sock = sock
        self.options = options
        self.environ = environ
        self.log = log
        self.remote_ip6 = _fmt(remote[0])  # the TCP6* form, ::ffff:a.b.c.d for an IPv4 client
        # an IPv4 client gets PROTO=TCP and IPv4 TCP* addresses, unless -6
        self.v4 = self.remote_ip6.startswith(b"::ffff:") and not options.force_v6
        self.remote_ip = remote[0].removeprefix("::ffff:").encode() if self.v4 else self.remote_ip6
        self.remote_port = b"%d" % remote[1]
        self.local_port = b"%d" % local_port
        self.local_ip = self.local_ip6 = b""
        self.local_host = options.local_name
        self.remote_host: bytes | None = None
        self.remote_info: bytes | None = None
        self._servers: list[str] | None = None

    def servers(self) -> list[str]:
        if self._servers is None:
            from .dnsname import resolvers

            self._servers = resolvers(self.environ)
        return self._servers

    def prepare(self) -> tuple[bool, list[tuple[bytes, bytes | None]]]:
        """(deny, the environment changes) for this connection; logs `ok` or `deny` with -v."""
        o = self.options
        pid = b"%d" % posix.getpid()
        verbose = self.log.verbosity >= 2  # the lines are built only to be written
        if verbose:
            self.log(PREFIX + b"pid " + pid + b" from " + self.remote_ip)
        if o.kill_ip_options:
            try:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"")
            except OSError:
                pass
        if not o.delay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if o.banner:
            try:
                self.sock.sendall(o.banner)
            except OSError as e:
                self.drop(b"unable to print banner: " + error_text(e))
        try:
            local = self.sock.getsockname()[0]
        except OSError as e:
            self.drop(b"unable to get local address: " + error_text(e))
        self.local_ip6 = _fmt(local)
        self.local_ip = local.removeprefix("::ffff:").encode() if self.v4 else self.local_ip6
        if self.local_host is None:
            self.local_host = self._name(self.local_ip6)
        if o.remote_host:
            self.remote_host = self._name(self.remote_ip6)
            if self.remote_host is not None and o.paranoid:
                from .dnsname import DNSError, ip6

                try:
                    addresses = ip6(self.remote_host.decode("latin-1"), self.servers())
                except DNSError:
                    addresses = []
                if self.remote_ip6.decode() not in addresses:
                    self.remote_host = None
        if o.remote_info:
            from .ident import remote_info
            from .ip6 import unmap

            self.remote_info = remote_info(unmap(self.remote_ip6.decode()), int(self.remote_port),
                                           unmap(self.local_ip6.decode()), int(self.local_port), o.timeout)
        changes: list[tuple[bytes, bytes | None]] = [(b"PROTO", b"TCP" if self.v4 else b"TCP6")]
        for name, value in ((b"LOCALIP", self.local_ip), (b"LOCALPORT", self.local_port),
                            (b"LOCALHOST", self.local_host), (b"REMOTEIP", self.remote_ip),
                            (b"REMOTEPORT", self.remote_port), (b"REMOTEHOST", self.remote_host),
                            (b"REMOTEINFO", self.remote_info)):
            changes.append((b"TCP" + name, value))  # each TCP* with its TCP6* twin, in tcpserver-ipv6's order
            changes.append((b"TCP6" + name, self.local_ip6 if name == b"LOCALIP" else
                            self.remote_ip6 if name == b"REMOTEIP" else value))
        deny = False
        if o.rules is not None:
            deny, variables = self.rules(o.rules)
            changes += [(name, value) for name, value in variables if name]
        if verbose:
            self.log(PREFIX + (b"deny " if deny else b"ok ") + pid + b" " + safe(self.local_host or b"") + b":"
                     + safe(self.local_ip6) + b":" + safe(self.local_port) + b" " + safe(self.remote_host or b"")
                     + b":" + safe(self.remote_ip6) + b":" + safe(self.remote_info or b"") + b":"
                     + safe(self.remote_port))
        return deny, changes

    def _name(self, ip: bytes) -> bytes | None:
        """The PTR name; None when there is none or the look-up failed (tcpserver does not say which)."""
        from .dnsname import DNSError, name6

        try:
            name = name6(ip.decode(), self.servers())
        except DNSError:
            return None
        return name.encode("latin-1") or None

    def rules(self, path: str) -> tuple[bool, list[tuple[bytes, bytes]]]:
        from .ip6 import unmap
        from .tcprules import instructions, lookup

        try:  # an IPv4 client's keys are IPv4 ones, even with -6 (tcprules(1) of ucspi-tcp-ipv6)
            found = lookup(path, unmap(self.remote_ip6.decode()).encode(), self.remote_host, self.remote_info)
        except OSError as e:
            if not (isinstance(e, FileNotFoundError) and self.options.allow_no_rules):  # -X: no file, no rules
                self.drop(b"unable to read " + path.encode("utf-8", "surrogateescape") + b": " + error_text(e))
            return False, []
        return instructions(found[1]) if found else (False, [])

    def drop(self, why: bytes) -> None:
        self.log.error(DROP + why)
        posix._exit(111)


def _fmt(ip: str) -> bytes:
    """An address from the socket (IPv4 from a -4 socket, else IPv6) as ucspi-tcp-ipv6 writes it."""
    from .ip6 import fmt, pack

    return fmt(pack(ip)).encode()


# -- running PROGRAM --------------------------------------------------------------


def find_program(name: str, path: bytes | None) -> str | None:
    """The file pathexec() would run for `name` (first executable match on $PATH), or None."""
    if "/" in name:
        return name
    for directory in (path or b"/bin:/usr/bin").decode("utf-8", "surrogateescape").split(":"):
        candidate = f"{directory or '.'}/{name}"
        if posix.access(candidate, posix.X_OK):
            return candidate
    return None


def in_process_name(program: list[str], environ: dict[bytes, bytes]) -> str | None:
    """PROGRAM's name when it is one of ours (then it runs in the child), else None (it is executed).

    Ours means: one of the names in IN_PROCESS, and the file found on $PATH is a
    smtpfront launcher or console script (C mailfront's programs of the same names are not).
    """
    name = program[0].rpartition("/")[2]
    if name not in IN_PROCESS:
        return None
    path = find_program(program[0], environ.get(b"PATH"))
    try:
        with open(path or "", "rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    return name if head.startswith(b"#!") and b"smtpfront." in head else None


def startup_environ() -> list[bytes]:
    """The environment this process was started with, in its order: what tcpserver would hand on.

    Python adds to its own (LC_CTYPE, when it coerces the C locale); the kernel's
    copy in /proc/self/environ is the original.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            return [entry for entry in f.read().split(b"\0") if entry]
    except OSError:
        return [k + b"=" + v for k, v in posix.environ.items()]


def change_environ(changes: list[tuple[bytes, bytes | None]]) -> None:
    """Make tcpserver's changes to this process's environment: Python's view (os.environ, where
    imported, is the same dict) and the C library's.

    Only the changed entries are touched: every object the child frees or rewrites
    is a page it no longer shares with the server.
    """
    environ = posix.environ
    for name, value in changes:
        if value is None:
            if environ.pop(name, None) is not None:
                posix.unsetenv(name)
        else:
            environ[name] = value
            posix.putenv(name, value)


def execute(program: list[str], env: list[bytes], path: bytes | None, log: Logger) -> None:
    """Run PROGRAM as tcpserver's pathexec() does; returns only to say it could not.

    A name without a slash is tried in each directory of the server's $PATH;
    the error reported is the last one other than "file does not exist", if any.
    """
    import errno

    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; a program starts with the defaults
        signal.signal(sig, signal.SIG_DFL)
    argv = [arg.encode("utf-8", "surrogateescape") for arg in program]
    environ = dict(entry.split(b"=", 1) for entry in env if b"=" in entry)
    if b"/" in argv[0]:
        files = [argv[0]]
    else:
        files = [(directory or b".") + b"/" + argv[0] for directory in (path or b"/bin:/usr/bin").split(b":")]
    error: OSError = FileNotFoundError(errno.ENOENT, "")
    for file in files:
        try:
            posix.execve(file, argv, environ)
        except OSError as e:
            if e.errno != errno.ENOENT:
                error = e
                if e.errno not in (errno.EACCES, errno.EPERM, errno.EISDIR):
                    break
    log.error(DROP + b"unable to run " + argv[0] + b": " + error_text(error))


# -- the server -----------------------------------------------------------------


class Server:
    """The listening socket, the children, and the loop between them."""

    def __init__(self, options: Options, log: Logger, environ: dict[bytes, bytes]) -> None:
        self.options = options
        self.log = log
        self.environ = environ  # the server's own, fixed at start (as tcpserver's)
        self.exec_env = startup_environ()  # what an executed PROGRAM starts from
        self.children = 0
        self.in_process: str | None = None
        self.sock: socket.socket | None = None
        self.local_port = 0
        self.wake_r = self.wake_w = -1

    def fatal(self, why: bytes) -> None:
        self.log.error(FATAL + why)
        posix._exit(111)

    def bind(self) -> None:
        import errno

        from .ip6 import MAPPED, fmt, pack

        o = self.options
        host = o.host
        if host in ("", "0", "::"):  # "::": the real one says "no IP address" for it; we take it as "0"
            address = bytes(16)
        else:
            try:
                address = pack(host)
            except ValueError:
                from .dnsname import DNSError, ip6, resolvers

                try:
                    addresses = ip6(host, resolvers(self.environ))
                except DNSError as e:
                    self.fatal(b"temporarily unable to figure out IP address for " + host.encode() + b": "
                               + error_text(e))
                if not addresses:
                    self.fatal(b"no IP address for " + host.encode())
                address = pack(addresses[0])
        if o.port.isdigit():
            port = int(o.port) & 0xFFFF
        else:
            try:
                port = socket.getservbyname(o.port, "tcp")
            except OSError:
                self.fatal(b"unable to figure out port number for " + o.port.encode())
        try:
            scope = socket.if_nametoindex(o.interface) if o.interface else 0
        except OSError:  # as tcpserver-ipv6: an unknown interface is no scope
            scope = 0
        sock = None
        if not o.ipv4_only:
            try:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            except OSError:  # a kernel without IPv6: as tcpserver-ipv6, IPv4 it is
                pass
        try:
            if sock is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            self.fatal(b"unable to create socket: " + error_text(e))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # host 0: IPv6 and IPv4 clients
                sock.bind((fmt(address), port, 0, scope))
            elif address[:12] == MAPPED or address == bytes(16):
                sock.bind((".".join(map(str, address[12:])) if address[:12] == MAPPED else "0.0.0.0", port))
            else:
                raise OSError(errno.EADDRNOTAVAIL, "")  # an IPv6 address on an IPv4 socket
        except OSError as e:
            self.fatal(b"unable to bind: " + error_text(e))
        self.local_port = sock.getsockname()[1]
        try:
            sock.listen(o.backlog)
        except OSError as e:
            self.fatal(b"unable to listen: " + error_text(e))
        sock.setblocking(False)  # accept only what poll announced; a vanished client must not block the loop
        self.sock = sock

    def drop_privileges(self) -> None:
        o = self.options
        if o.gid:
            try:
                posix.setgroups([o.gid])
                posix.setgid(o.gid)
            except OSError as e:
                self.fatal(b"unable to set gid: " + error_text(e))
        if o.uid:
            try:
                posix.setuid(o.uid)
            except OSError as e:
                self.fatal(b"unable to set uid: " + error_text(e))

    def catch_signals(self) -> None:
        """SIGCHLD and SIGTERM only wake the loop (through a pipe); the loop does the work.

        So nothing runs inside a handler, a child that ends while the server is
        busy is reaped on the next turn, and several at once are all reaped.
        """
        self.wake_r, self.wake_w = posix.pipe()
        for fd in (self.wake_r, self.wake_w):
            posix.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, _wake)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # like tcpserver: no traceback, just gone

    def status(self) -> None:
        if self.log.verbosity >= 2:
            self.log(PREFIX + b"status: %d/%d" % (self.children, self.options.limit))

    def reap(self) -> None:
        # each turn: every child that has ended, however many signals came
        while self.children and (ended := ended_child()):
            pid, wstat = ended
            self.log(PREFIX + b"end %d status %d" % (pid, wstat))
            self.children -= 1
            self.status()

    def loop(self) -> None:
        """Accept and fork until SIGTERM.

        Each turn does as little as it can: every page the server writes after a
        fork becomes a private copy in each child that still shares the old one.
        """
        assert self.sock is not None
        if self.options.sessions > 1 and self.in_process is not None:  # an executed program is one a process
            from .workers import Pool

            Pool(self, self.options.sessions).loop()
            return
        listening, wake, limit = self.sock.fileno(), self.wake_r, self.options.limit
        accept = self.sock._accept  # (fd, address): no socket object in the server
        both, alone = [wake, listening], [wake]
        self.status()
        pause = None
        while True:
            ready = select.select(both if self.children < limit and pause is None else alone, [], [], pause)[0]
            pause = None
            if wake in ready:
                if signal.SIGTERM in wake_signals(wake):
                    self.sock.close()
                    posix._exit(0)  # as tcpserver: running sessions go on by themselves
                self.reap()
            if listening in ready and self.children < limit:
                try:
                    fd, remote = accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError:  # out of descriptors or buffers: wait a little instead of spinning
                    pause = 0.1
                    continue
                self.fork(fd, remote)

    def fork(self, fd: int, remote: tuple[str, int]) -> None:
        self.children += 1  # counted before the fork, as tcpserver does
        self.status()
        try:
            pid = posix.fork()
        except OSError as e:
            self.log.error(DROP + b"unable to fork: " + error_text(e))
            self.children -= 1
            self.status()
        else:
            if pid == 0:
                try:
                    self.child(fd, remote)
                except BaseException as e:  # noqa: BLE001 - a log line, and never back into the parent's loop
                    self.log.error(DROP + f"{type(e).__name__}: {e}".encode("utf-8", "backslashreplace"))
                finally:
                    posix._exit(111)
        posix.close(fd)

    def child(self, fd: int, remote: tuple[str, int]) -> None:
        import gc

        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        assert self.sock is not None
        self.sock.close()
        posix.close(self.wake_r)
        posix.close(self.wake_w)
        gc.enable()
        conn = socket.socket(fileno=fd)  # held to the end: a denied connection closes with the process
        changes = self.on_stdio(conn, remote)
        if changes is None:
            posix._exit(100)
        if self.in_process is None:
            execute(self.options.program, pathexec_environ(self.exec_env, changes), self.environ.get(b"PATH"),
                    self.log)
            posix._exit(111)
        change_environ(changes)
        programs.leave(self.run_program())

    def on_stdio(self, conn: socket.socket, remote: tuple[str, int]) -> list[tuple[bytes, bytes | None]] | None:
        """The connection moved to fds 0 and 1, and the environment changes it brings; None (nothing moved)
        when the rules deny it."""
        deny, changes = Connection(conn, remote, self.options, self.local_port, self.environ, self.log).prepare()
        if deny:
            return None
        fd = conn.detach()
        for target in (0, 1):
            posix.dup2(fd, target)
        if fd > 1:
            posix.close(fd)
        return changes

    def run_program(self, log=None) -> int:
        """The program, in this process, on fds 0 and 1: its exit code (111, and a log line, after an internal
        error: never a traceback)."""
        try:
            return programs.run(self.options.program, process_environ(), log=log)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        except BaseException as e:  # noqa: BLE001 - the session ends here, with a log line, not a traceback
            self.log.error(PREFIX + b"warning: " + self.options.program[0].encode() + b": "
                           + f"{type(e).__name__}: {e}".encode("utf-8", "backslashreplace"))
            return 111


def ended_child() -> tuple[int, int] | None:
    """(pid, wait status) of a child that has ended; None when none has, or there are none."""
    try:
        pid, wstat = posix.waitpid(-1, posix.WNOHANG)
    except ChildProcessError:
        return None
    return (pid, wstat) if pid else None


def wake_signals(wake: int) -> bytes:
    """The numbers of the signals caught since the last read of the wake-up pipe (none when another read
    took them)."""
    try:
        return posix.read(wake, 512)
    except BlockingIOError:
        return b""


def _wake(signum: int, frame: object) -> None:
    """Nothing: the signal's number is already in the wake-up pipe."""


def main(argv: list[str] | None = None) -> int:
    import gc

    gc.disable()  # no collections in the server: the objects children share stay untouched
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):  # tcpserver has neither option
        from . import __version__

        posix.write(1, f"smtpfront-server {__version__}\n".encode())
        return 0
    environ = dict(posix.environ)
    try:
        options = parse(args, environ)
    except UsageError as e:
        for line in (f"smtpfront-server: {e}" if str(e) else "", f"smtpfront-server: {USAGE}"):
            if line:
                posix.write(2, line.encode() + b"\n")
        return 100
    log = Logger(options.verbosity)
    server = Server(options, log, environ)
    server.catch_signals()
    server.bind()
    server.drop_privileges()
    if options.print_port:
        posix.write(1, b"%d\n" % server.local_port)
    null = posix.open("/dev/null", posix.O_RDWR)
    for fd in (0, 1):  # as tcpserver closes them: the service's stdin/stdout are not the children's
        posix.dup2(null, fd)
    posix.close(null)
    server.in_process = in_process_name(options.program, environ)
    if server.in_process is not None:
        try:
            programs.preload(options.program, process_environ())
        except Exception as e:  # noqa: BLE001 - still a server: the program is executed per connection
            log.error(PREFIX + b"warning: cannot load " + options.program[0].encode("utf-8", "surrogateescape")
                      + f" here ({type(e).__name__}: {e}); running it as a program".encode("utf-8", "replace"))
            server.in_process = None
    # what every child uses, imported once here and shared: dnsname and ident import socket (about 10 ms a child)
    from . import ip6  # noqa: F401 - every child writes its addresses with it
    if options.remote_host or options.local_name is None:
        from . import dnsname  # noqa: F401
    if options.remote_info:
        from . import ident  # noqa: F401
    if options.rules is not None:
        from . import tcprules  # noqa: F401
    gc.freeze()  # what the children share is never touched by their collections
    server.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
