"""The qmail back end: pipe the message into qmail-queue.

The message goes to the child's fd 0, then the envelope to its fd 1;
qmail-queue commits only after reading a complete envelope, so the envelope
is written only once the whole message has been, and a message that must not
be queued is stopped by killing the child before its envelope pipe closes.
"""

from __future__ import annotations

import _signal
import posix
import select
import time

from ..plugins import Plugin
from ..smtp import Reply
from . import envelope

# qmail-queue(8) exit codes and mailfront's replies to them
EXIT_REPLIES = {
    11: Reply(554, "5.1.3 Address too long."),
    31: Reply(554, "5.3.0 Message refused."),
    51: Reply(451, "4.3.0 Out of memory."),
    52: Reply(451, "4.3.0 Timeout."),
    53: Reply(451, "4.3.0 Write error (queue full?)."),
    54: Reply(451, "4.3.0 Unable to read the message or envelope."),
    55: Reply(451, "4.3.0 Unable to read a configuration file."),
    56: Reply(451, "4.3.0 Network problem."),
    61: Reply(451, "4.3.0 Problem with the qmail home directory."),
    62: Reply(451, "4.3.0 Problem with the qmail queue directory."),
    63: Reply(451, "4.3.0 Problem with queue/pid."),
    64: Reply(451, "4.3.0 Problem with queue/mess."),
    65: Reply(451, "4.3.0 Problem with queue/intd."),
    66: Reply(451, "4.3.0 Problem with queue/todo."),
    71: Reply(451, "4.3.0 Message refused by mail server."),
    72: Reply(451, "4.3.0 Connection to mail server timed out."),
    73: Reply(451, "4.3.0 Connection to mail server rejected."),
    74: Reply(451, "4.3.0 Communication with mail server failed."),
    81: Reply(451, "4.3.0 Internal qmail-queue bug."),
    91: Reply(451, "4.3.0 Envelope format error."),
}
PERMANENT = Reply(554, "5.3.0 Message rejected by qmail-queue.")
TEMPORARY = Reply(451, "4.3.0 Temporary qmail-queue failure.")
CRASHED = Reply(451, "4.3.0 qmail-queue crashed.")
CANNOT_START = Reply(451, "4.3.0 Could not start qmail-queue.")
WRITE_FAILED = Reply(451, "4.3.0 Writing data to qmail-queue failed.")
HUNG = Reply(451, "4.3.0 qmail-queue timed out.")
SIGKILL = 9  # not signal.SIGKILL: importing signal (and enum) costs more than the rest of start-up


def exit_reply(code: int, errmsg: str | None) -> Reply:
    """The reply to a qmail-queue exit code other than 0; $QQERRMSG_<code> (`errmsg`) replaces the text."""
    reply = EXIT_REPLIES.get(code) or (PERMANENT if 11 <= code <= 40 else TEMPORARY)
    if errmsg is not None:
        return Reply(reply.code, errmsg)
    return reply


class QmailQueue(Plugin):
    pid = 0

    def init(self, session) -> None:
        self.timeout = session.settings.qmail_queue_timeout
        self.addresses: list[str] = []  # the sender, then the recipients
        return None

    def reset(self, session) -> None:
        self.abort()
        self.addresses = []

    def sender(self, session, address, params) -> None:
        self.addresses = [address.text]

    def recipient(self, session, address, params) -> None:
        self.addresses.append(address.text)

    def data_start(self, session) -> Reply | None:
        home = session.getenv("QMAILHOME") or session.settings.qmail_home
        program = session.getenv("QMAILQUEUE") or home + "/bin/qmail-queue"
        self.size = 0
        self.failed = False
        msg_r, self.msg_w = posix.pipe()
        env_r, self.env_w = posix.pipe()
        environ = {**session.settings.environ, **session.env}
        try:
            self.pid = posix.posix_spawn(
                program,
                [program],
                environ,
                file_actions=[(posix.POSIX_SPAWN_DUP2, msg_r, 0), (posix.POSIX_SPAWN_DUP2, env_r, 1)],
                # as after C's fork and exec: no signal ignored or blocked (Python ignores SIGPIPE and SIGXFSZ,
                # a supervisor may have left others); _signal is loaded at start-up, signal would add enum
                setsigdef=_signal.valid_signals(),
                setsigmask=(),
            )
        except OSError:
            posix.close(self.msg_w)
            posix.close(self.env_w)
            return CANNOT_START
        finally:
            posix.close(msg_r)
            posix.close(env_r)
        posix.set_blocking(self.msg_w, False)
        posix.set_blocking(self.env_w, False)
        return None

    def _write_all(self, fd: int, data: bytes) -> bool:
        """False when the child is gone or read nothing for the timeout (the client's own pace doesn't count)."""
        view = memoryview(data)
        deadline = None
        while view:
            try:
                view = view[posix.write(fd, view) :]
            except BlockingIOError:
                deadline = deadline or time.monotonic() + self.timeout
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    return False
            except OSError:  # EPIPE: the child is gone
                return False
        return True

    def data_block(self, session, block: bytes) -> None:
        if not self.failed:
            self.failed = not self._write_all(self.msg_w, block)
            self.size += len(block)

    def message_end(self, session) -> Reply:
        posix.close(self.msg_w)
        # the envelope is written only after the whole message went through (and, in QMQP and
        # QMTP, the addresses come after the message)
        if not self.failed:
            self.failed = not self._write_all(self.env_w, envelope(self.addresses[0], self.addresses[1:]))
        posix.close(self.env_w)
        status = self._wait()
        pid, self.pid = self.pid, 0
        if status is None:
            return HUNG
        if posix.WIFSIGNALED(status):
            return CRASHED
        code = posix.WEXITSTATUS(status)
        if code:
            return exit_reply(code, session.getenv(f"QQERRMSG_{code}"))
        if self.failed:
            return WRITE_FAILED
        accepted = f"2.6.0 Accepted message qp {pid} bytes {self.size}"
        session.log(accepted)
        return Reply(250, accepted)

    def _wait(self) -> int | None:
        """The child's exit status, or None when it did not exit within the timeout after the message (it is killed).

        The timeout starts here, not at DATA: a slow client must not use up the time the child
        has to commit and exit, or it would be killed after committing and the reply would be 451.
        """
        deadline = time.monotonic() + self.timeout
        try:
            exited = posix.pidfd_open(self.pid)  # readable when the child exits (Linux 5.3)
        except (AttributeError, OSError):
            exited = None
        try:
            pause = 0.0005  # without a pidfd: poll, backing off
            while True:
                pid, status = posix.waitpid(self.pid, posix.WNOHANG)
                if pid:
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    posix.kill(self.pid, SIGKILL)
                    posix.waitpid(self.pid, 0)
                    return None
                if exited is not None:
                    select.select([exited], [], [], left)
                else:
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, 0.05)
        finally:
            if exited is not None:
                posix.close(exited)

    def abort(self) -> None:
        if not self.pid:
            return
        # killed before its envelope pipe closes, qmail-queue can't commit
        posix.kill(self.pid, SIGKILL)
        posix.close(self.msg_w)
        posix.close(self.env_w)
        posix.waitpid(self.pid, 0)
        self.pid = 0
