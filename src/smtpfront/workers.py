"""smtpfront-server -n: worker processes that each serve up to N sessions, one at a time.

The server forks a worker when a client is waiting and no worker is free, at
most `-c` of them (tcpserver's limit, counted the same way); the workers accept
on the listening socket themselves.  Through one pipe each tells the server
when a session starts and when it ends, so that the server's `status:` lines
count sessions as they count processes with `-n 1` (Postfix's master and its
children keep count the same way).  On SIGTERM the server passes the signal
on to its workers and leaves: each closes its copy of the listening socket at
once (a new server can bind the port straight away), a free worker leaves, a
busy one after its session.  Should the server vanish without a word, a pipe
that only it holds open reads end-of-file, and the workers leave as well.

Between sessions a worker puts back everything a session may change: the
process environment (the server's own, then the next connection's), fds 0
and 1, the interpreter's output buffers, and the objects the session left (a
collection).  A session that did not end cleanly (an exit code other than 0,
an internal error, a descriptor left open) ends its worker: the next client
gets a fresh process.
"""

from __future__ import annotations

import _signal as signal
import posix
import select
import sys

from .forkserver import DROP, PREFIX, Server, change_environ, ended_child, error_text, wake_signals

RECORD = 8  # pid (4 bytes), kind, 3 spare: written whole, as a pipe writes up to PIPE_BUF bytes
BUSY, DONE, LAST = 1, 2, 3  # a session started; it ended and the worker stays; it ended and the worker leaves
FREE, LEAVING = 4, 5  # the server's other states of a worker


def record(pid: int, kind: int) -> bytes:
    return pid.to_bytes(4, "little") + bytes((kind, 0, 0, 0))


def records(data: bytes) -> list[tuple[int, int]]:
    """(pid, kind) for each whole record in `data`."""
    return [(int.from_bytes(data[i : i + 4], "little"), data[i + 4]) for i in range(0, len(data) - RECORD + 1, RECORD)]


def restore_environ(base: dict[bytes, bytes]) -> None:
    """Make this process's environment `base` again, Python's view and the C library's."""
    environ = posix.environ
    change_environ([(name, None) for name in environ if name not in base]
                   + [(name, value) for name, value in base.items() if environ.get(name) != value])


def open_fds() -> set[str]:
    return set(posix.listdir("/proc/self/fd"))


class Pool:
    """The server's side: the workers by pid, what each is doing, and the loop that starts them."""

    def __init__(self, server: Server, sessions: int) -> None:
        self.server = server
        self.sessions = sessions  # each worker's at most
        self.state: dict[int, int] = {}  # pid -> FREE, BUSY or LEAVING
        self.free = 0  # workers started or between sessions: one of them will take the next client
        self.status_r, self.status_w = posix.pipe()
        self.alive_r, self.alive_w = posix.pipe()  # the server alone holds alive_w: EOF when it is gone
        posix.set_blocking(self.status_r, False)

    def loop(self) -> None:
        server = self.server
        assert server.sock is not None
        listening, wake, status, limit = server.sock.fileno(), server.wake_r, self.status_r, server.options.limit
        server.status()
        pause = None
        while True:
            watch = [wake, status]
            if not self.free and len(self.state) < limit and pause is None:
                watch.append(listening)  # a client waits for a worker only when none is free
            ready = select.select(watch, [], [], pause)[0]
            pause = None
            if wake in ready:
                if signal.SIGTERM in wake_signals(wake):
                    for pid in self.state:
                        try:
                            posix.kill(pid, signal.SIGTERM)
                        except ProcessLookupError:
                            pass
                    posix._exit(0)  # as tcpserver: running sessions go on by themselves
                self.read_status()  # first: a worker wrote its last record before it exited
                self.reap()
            elif status in ready:
                self.read_status()
            if listening in ready and not self.free and len(self.state) < limit:
                pause = self.fork()

    def read_status(self) -> None:
        server = self.server
        while True:
            try:
                data = posix.read(self.status_r, RECORD * 512)
            except BlockingIOError:
                return
            for pid, kind in records(data):
                state = self.state.get(pid)
                if state is None:  # not a worker of ours (can't be), or one already reaped
                    continue
                if kind == BUSY:
                    self.state[pid] = BUSY
                    self.free -= 1
                    server.children += 1
                else:  # the worker logged the session's end line
                    server.children -= 1
                    if kind == DONE:
                        self.state[pid] = FREE
                        self.free += 1
                    else:
                        self.state[pid] = LEAVING
                server.status()
            if len(data) < RECORD * 512:
                return

    def reap(self) -> None:
        server = self.server
        while self.state and (ended := ended_child()):
            pid, wstat = ended
            state = self.state.pop(pid, None)
            if state == BUSY:  # ended inside a session (killed, or a fatal error): its end line, as a child's
                server.log(PREFIX + b"end %d status %d" % (pid, wstat))
                server.children -= 1
                server.status()
            elif state == FREE:
                self.free -= 1

    def fork(self) -> float | None:
        """Start a worker; the pause before the next try when the system can't."""
        try:
            pid = posix.fork()
        except OSError as e:
            self.server.log.error(PREFIX + b"warning: unable to fork: " + error_text(e))
            return 0.1
        if pid == 0:
            try:
                Worker(self).run()
            except BaseException as e:  # noqa: BLE001 - a log line, and never back into the server's loop
                self.server.log.error(DROP + f"{type(e).__name__}: {e}".encode("utf-8", "backslashreplace"))
            finally:
                posix._exit(111)
        self.state[pid] = FREE
        self.free += 1
        return None


class Worker:
    """A worker's side: accept, serve, put back, again; at most `sessions` times."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.server = pool.server
        self.pid = posix.getpid()

    def run(self) -> None:
        import gc

        server, pool = self.server, self.pool
        assert server.sock is not None
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.busy = self.leaving = False
        signal.signal(signal.SIGTERM, self.terminate)
        for fd in (server.wake_r, server.wake_w, pool.status_r, pool.alive_w):
            posix.close(fd)
        gc.enable()
        self.null = posix.open("/dev/null", posix.O_RDWR)
        poller = select.epoll()
        poller.register(server.sock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)  # one free worker woken
        poller.register(pool.alive_r, select.EPOLLIN)
        self.poller = poller
        baseline = open_fds()
        code = 0
        for served in range(1, pool.sessions + 1):
            fd, remote = self.accept()
            self.busy = True
            self.report(BUSY)
            code, clean = self.session(fd, remote)
            self.busy = False
            left_open = open_fds() - baseline
            if left_open:
                server.log.error(PREFIX + b"warning: worker %d: a session left descriptors open (%s); "
                                 b"the worker ends" % (self.pid, " ".join(sorted(left_open)).encode()))
            last = served == pool.sessions or not clean or bool(left_open) or self.leaving
            server.log(PREFIX + b"end %d status %d" % (self.pid, (code & 0xFF) << 8))  # where -n 1 has it
            self.report(LAST if last else DONE)
            if last:
                break
        posix._exit(code & 0xFF)

    def terminate(self, signum: int, frame: object) -> None:
        """SIGTERM (the server's leaving): let go of the port now; leave now, or after the session."""
        if not self.leaving:
            self.leaving = True
            posix.close(self.server.sock.detach())  # the socket object is not used again
        if not self.busy:
            posix._exit(0)

    def report(self, kind: int) -> None:
        try:
            posix.write(self.pool.status_w, record(self.pid, kind))
        except OSError:
            pass  # the server is gone: the session goes on, and the worker leaves after it

    def accept(self) -> tuple[int, tuple[str, int]]:
        """The next client; leaves when the server is gone."""
        accept = self.server.sock._accept
        alive = self.pool.alive_r
        while True:
            try:
                events = self.poller.poll()
            except KeyboardInterrupt:  # SIGINT to the process group (a terminal's ^C): between sessions, no word
                posix._exit(0)
            if any(fd == alive for fd, _ in events):
                posix._exit(0)
            try:
                return accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # another worker took it, or the client went
            except OSError:  # out of descriptors or buffers: wait a little instead of spinning
                self.poller.poll(0.1)

    def session(self, fd: int, remote: tuple[str, int]) -> tuple[int, bool]:
        """One connection, as a child of `-n 1` serves it; (exit code, whether it ended cleanly)."""
        import _socket as socket
        import gc

        from .log import Log

        server = self.server
        conn = socket.socket(fileno=fd)
        changes = server.on_stdio(conn, remote)
        if changes is None:
            conn.close()
            return 100, True
        change_environ(changes)
        log = Log()
        code = server.run_program(log)
        for stream in (sys.stdout, sys.stderr):  # to this client, not the next
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        for target in (0, 1):  # the connection closes here: the worker holds nothing of it
            posix.dup2(self.null, target)
        restore_environ(server.environ)  # the server's own, as it started: every session starts from it
        faulted = getattr(log, "faulted", False)
        del log, conn
        gc.collect()  # the session's objects (the handler's cycles among them) go now, not sessions later
        return code, code == 0 and not faulted
