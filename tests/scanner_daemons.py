"""Real clamd and spamd for the clamav and spamassassin tests, started once per test session.

Import the fixtures into a test module (`from scanner_daemons import clamd, spamd`).  clamd runs with a
database of our own making (freshclam can't reach the internet here): one `.ndb` signature that detects
VIRUS, named VIRUS_NAME.  spamd runs with Debian's shipped rules, local tests only (-L: no network);
GTUBE scores as spam.  Both listen on a loopback port and on a Unix socket.  With them, what the two
plugins' tests share: the session around a message, a refusal within a bound, and a fault through C's
mailfront beside ours.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, Result, free_port, need

VIRUS = b"SMTPFRONT-TEST-VIRUS-7f3a9c"  # not a virus: a string our own signature detects
VIRUS_NAME = "Smtpfront.Test.Virus.UNOFFICIAL"  # clamd adds .UNOFFICIAL to a signature not from ClamAV
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# generous: both daemons start in seconds on an idle machine, far slower on a loaded one
START_BOUND = 300
ENV = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n"
C_MAILFRONT = "/usr/sbin/mailfront"


def message(*lines: bytes) -> bytes:
    return ENV + b"DATA\r\n" + b"".join(line + b"\r\n" for line in lines) + b".\r\n"


def refused_within(smtp, queue, data: bytes, plugin: str, bound: float, reply: str, **env: str) -> Result:
    """`data` through PLUGINS=`plugin`: refused with `reply` (logged too) within `bound` seconds, nothing queued."""
    start = time.monotonic()
    r = smtp(data, PLUGINS=plugin, **env)
    took = time.monotonic() - start
    assert r.reply_to(-1) == reply
    assert queue.messages() == []
    assert f"]: {reply}" in r.stderr
    assert took < bound
    return r


def c_and_ours(plugin: str, data: bytes, env: dict[str, str]) -> list[tuple[str, bool]]:
    """`data` through `mailfront smtp qmail accept PLUGIN`, C's then ours: (the last reply, within 30 s) of each."""
    answers = []
    for program in (need(C_MAILFRONT), str(BIN / "mailfront")):
        start = time.monotonic()
        r = Result(subprocess.run([program, "smtp", "qmail", "accept", plugin], input=data, env=env,
                                  capture_output=True, timeout=60))
        answers.append((r.reply_to(-1), time.monotonic() - start < 30))  # 1 s, and room for a loaded machine
    return answers


class Daemon:
    def __init__(self, host: str, port: int, socket_path: str, proc: subprocess.Popen, log: Path) -> None:
        self.host, self.port, self.socket, self.proc, self.log = host, port, socket_path, proc, log


def _answers(path: str, request: bytes, expected: bytes) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(request)
            return s.recv(100).startswith(expected)
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen, log: Path, path: str, request: bytes, expected: bytes) -> None:
    """Until the daemon answers on its Unix socket (event-based: each try is a real request)."""
    deadline = time.monotonic() + START_BOUND
    while not (os.path.exists(path) and _answers(path, request, expected)):
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{proc.args[0]} did not answer within {START_BOUND} s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def clamd(tmp_path_factory):
    program = need("clamd")
    d = tmp_path_factory.mktemp("clamd")
    (d / "db").mkdir()
    (d / "db" / "test.ndb").write_text(f"{VIRUS_NAME.removesuffix('.UNOFFICIAL')}:0:*:{VIRUS.hex()}\n")
    port, path, log = free_port(), str(d / "clamd.sock"), d / "clamd.log"
    # no User: clamd runs as whoever runs the suite; Foreground and a log file: no daemonizing, no syslog
    (d / "clamd.conf").write_text(f"DatabaseDirectory {d / 'db'}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n"
                                  f"LocalSocket {path}\nForeground yes\nLogSyslog no\nLogFile {log}\n"
                                  f"PidFile {d / 'clamd.pid'}\nSelfCheck 0\n")
    with open(d / "clamd.out", "wb") as out:
        proc = subprocess.Popen([program, "-c", str(d / "clamd.conf")], stdout=out, stderr=subprocess.STDOUT)
    _wait_ready(proc, d / "clamd.out", path, b"nPING\n", b"PONG")
    yield Daemon("127.0.0.1", port, path, proc, log)
    _stop(proc)


@pytest.fixture(scope="session")
def spamd(tmp_path_factory):
    program = need("spamd")
    d = tmp_path_factory.mktemp("spamd")
    port, path, log = free_port(), str(d / "spamd.sock"), d / "spamd.log"
    # spamd won't run its children as root: as root, they run as nobody, with a home directory nobody can write
    home = tempfile.mkdtemp(prefix="smtpfront-spamd-")
    user = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        user = ["-u", "nobody"]
    argv = [program, "-L", "-x", f"--listen=127.0.0.1:{port}", f"--listen={path}", "-A", "127.0.0.1",
            "-s", "stderr", "-m", "4", "-H", home, "-r", str(d / "spamd.pid"), *user]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    _wait_ready(proc, log, path, b"PING SPAMC/1.2\r\n\r\n", b"SPAMD/1.5 0 PONG")
    yield Daemon("127.0.0.1", port, path, proc, log)
    _stop(proc)
    shutil.rmtree(home, ignore_errors=True)


class Broken:
    """A daemon that reads each request (to clamd's end of stream, or to the client's shutdown, as spamd) and then
    does `how`: "silent" (answers nothing, keeps the connection), "midway" (part of an answer, then closes),
    "trickle" (its answer a byte every 0.1 s)."""

    def __init__(self, how: str, answer: bytes = b"stream: Some.Virus FOU") -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.how, self.answer = how, answer
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(60)
            data = b""
            while not data.endswith(b"\0\0\0\0"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if self.how == "midway":
                conn.sendall(self.answer)
                return
            if self.how == "trickle":
                for byte in self.answer:
                    if self.release.wait(0.1):
                        return
                    conn.sendall(bytes([byte]))
                return
            self.release.wait(60)

    def close(self) -> None:
        self.release.set()
        self.server.close()
