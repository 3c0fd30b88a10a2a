"""Shared test fixtures: real programs, a real stand-in qmail-queue, a real cvm-pwfile."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import settings

# `make test` runs the property tests derandomized (the same examples every run: a red CI is the code's
# fault, not the dice's); `make fuzz` runs them again and again with random seeds.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("fuzz", derandomize=False, print_blob=True)

BIN = Path(sys.executable).parent
C_QMAIL = "/usr/sbin/smtpfront-qmail"
C_ECHO = "/usr/sbin/smtpfront-echo"
PASSWORD = "s3cret-Passw0rd"
DEMO = "demo"

# reads the message from fd 0 and the envelope from fd 1 like qmail-queue, and
# commits (renames into queue/) only a complete envelope, then exits $QQ_EXIT
FAKE_QUEUE = r'''#!/usr/bin/env python3
import os, sys
qdir = os.environ["FAKEQ_DIR"]
def slurp(fd):
    parts = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(parts)
        parts.append(b)
message = slurp(0)
code = int(os.environ.get("QQ_EXIT", "0"))
if os.environ.get("QQ_HANG"):
    import time; time.sleep(60)
envelope = slurp(1)
if code:
    sys.exit(code)
if not (envelope.startswith(b"F") and envelope.endswith(b"\0\0")):
    sys.exit(91)
name = "%d.%d" % (os.getpid(), len(os.listdir(qdir)))
with open(os.path.join(qdir, "tmp." + name), "wb") as f:
    f.write(envelope + b"\n--\n" + message)
os.rename(os.path.join(qdir, "tmp." + name), os.path.join(qdir, "msg." + name))
'''


class Queue:
    """The stand-in qmail-queue's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> list[tuple[bytes, bytes]]:
        out = []
        for f in sorted(self.path.glob("msg.*")):
            envelope, _, message = f.read_bytes().partition(b"\n--\n")
            out.append((envelope, message))
        return out


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    qdir = tmp_path / "fakeq"
    qdir.mkdir()
    return Queue(qdir)


@pytest.fixture
def fake_queue(tmp_path: Path) -> Path:
    script = tmp_path / "qmail-queue"
    script.write_text(FAKE_QUEUE)
    script.chmod(0o755)
    return script


@pytest.fixture
def qmail_home(tmp_path: Path) -> Path:
    home = tmp_path / "qmail"
    (home / "control").mkdir(parents=True)
    (home / "control" / "rcpthosts").write_text("example.org\nExample.NET\n")
    (home / "control" / "badmailfrom").write_text("bad@x.example\n@spam.example\n")
    (home / "control" / "badrcptto").write_text("bad@example.org\n")
    return home


@pytest.fixture
def base_env(qmail_home: Path, fake_queue: Path, queue: Queue) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PROTO": "TCP",
        "TCPLOCALHOST": "mx.example",
        "TCPLOCALIP": "192.0.2.1",
        "TCPREMOTEIP": "198.51.100.7",
        "TCPREMOTEHOST": "client.example",
        "QMAILHOME": str(qmail_home),
        "QMAILQUEUE": str(fake_queue),
        "FAKEQ_DIR": str(queue.path),
    }


# Every log the suite sees, checked for the test passwords when the run ends (SPEC 8).
LOGS: list[tuple[str, str]] = []
# the password and the base64 of every AUTH response that carries it (PLAIN with and without an
# authorization identity, LOGIN), with and without padding; compared case-blind, because a
# command word is upper-cased and upper-cased base64 is still read back with a few guesses
SECRETS = [PASSWORD] + [
    form
    for plain in (f"\0{DEMO}\0{PASSWORD}", f"{DEMO}\0{DEMO}\0{PASSWORD}", PASSWORD)
    for form in (base64.b64encode(plain.encode()).decode(), base64.b64encode(plain.encode()).decode().rstrip("="))
]


def leaked(text: str) -> list[str]:
    """The test secrets found in `text`, whatever their case."""
    folded = text.casefold()
    return [secret for secret in SECRETS if secret.casefold() in folded]


# These bind ports 53 and 113 (the fake DNS server and identd that tcpserver and smtpfront-server ask), which
# only root may.  Run by a user, they are left out here and run whole by tests/test_privileged.py in a user
# and network namespace of the user's own, where the user is root.
PRIVILEGED_MODULES = ("test_forkserver.py", "test_ident.py", "test_dnsname.py", "test_rbl.py")


def real_root() -> bool:
    """Root of the machine, not only of a user namespace (where ids other than its own can't be set)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def keep_own_ids(service: Path, account: str) -> None:
    """A service directory made for `account`, changed to run as whoever runs the suite, unless that is the
    machine's root: only it may set ids, even its own (tcpserver -U, setuidgid, chpst -u)."""
    if real_root():
        return
    for script, privileged, plain in ((service / "run", " -v -PR -U ", " -v -PR "),
                                      (service / "log" / "run", f"setuidgid {account} ", ""),
                                      (service / "log" / "run", f"chpst -u {account} ", "")):
        script.write_text(script.read_text().replace(privileged, plain))


def pytest_collection_modifyitems(config, items) -> None:
    if os.geteuid() == 0:
        return
    privileged = [item for item in items if item.path.name in PRIVILEGED_MODULES]
    if privileged:
        config.hook.pytest_deselected(items=privileged)
        items[:] = [item for item in items if item.path.name not in PRIVILEGED_MODULES]


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run if any program log, tcpserver log or multilog file holds a test password."""
    base = session.config._tmp_path_factory.getbasetemp() if hasattr(session.config, "_tmp_path_factory") else None
    files = [p for p in base.rglob("*") if p.is_file() and (p.suffix == ".log" or p.name == "current")] if base else []
    logs = LOGS + [(str(p), p.read_text(errors="replace")) for p in files]
    leaks = [(where, secret) for where, text in logs for secret in leaked(text)]
    if leaks:
        print(f"\nSECRET LEAKED into a log: {leaks[:5]}")
        session.exitstatus = 1
    else:
        print(f"\nsecret scan: {len(logs)} logs checked, no test password or credential in any")


class Result:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.stdout = proc.stdout
        self.stderr = proc.stderr.decode("utf-8", "replace")
        LOGS.append((" ".join(map(str, proc.args)), self.stderr))
        self.returncode = proc.returncode
        self.lines = proc.stdout.decode("utf-8", "replace").split("\r\n")[:-1]

    @property
    def codes(self) -> list[int]:
        """The code of each reply (multi-line replies count once)."""
        return [int(line[:3]) for line in self.lines if line[3:4] != "-"]

    def reply_to(self, index: int) -> str:
        return [line for line in self.lines if line[3:4] != "-"][index]


def run_program(program: str, data: bytes, env: dict[str, str], timeout: float = 30) -> Result:
    path = program if program.startswith("/") else str(BIN / program)
    proc = subprocess.run([path], input=data, env=env, capture_output=True, timeout=timeout)
    return Result(proc)


@pytest.fixture
def smtp(base_env):
    """Run a dialogue through one of our programs: smtp(b"...", VAR=value, program=...)."""

    def run(data: bytes, program: str = "smtpfront-qmail", **env: str) -> Result:
        return run_program(program, data, {**base_env, **env})

    return run


def need(program: str) -> str:
    path = shutil.which(program) or (program if os.path.exists(program) else None)
    if path is None:
        pytest.fail(f"{program} is not installed: run .ci/run or apt-get install the test packages")
    return path


def wait_for_path(path, proc: subprocess.Popen) -> None:
    """Until the daemon `proc` has made `path` (its socket): generous, as a loaded machine starts programs slowly."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{proc.args[0]} did not make {path} (exit {proc.returncode})")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def cvm_socket(tmp_path_factory):
    """A real cvm-pwfile serving the demo user on a Unix socket."""
    need("cvm-pwfile")
    d = tmp_path_factory.mktemp("cvm")
    pwfile = d / "pw"
    pwfile.write_text(f"{DEMO}:{PASSWORD}:1000:1000:Demo User:/home/demo:/bin/sh\n")
    sock = d / "cvm.sock"
    env = {**os.environ, "CVM_PWFILE_PATH": str(pwfile)}
    proc = subprocess.Popen(["cvm-pwfile", f"cvm-local:{sock}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_path(sock, proc)
    yield {"socket": str(sock), "pwfile": str(pwfile), "module": f"cvm-local:{sock}"}
    proc.kill()
    proc.wait()


def swaks(port: int, to: str, *options: str, sender: str = "demo@example.org") -> subprocess.CompletedProcess:
    """A real client: one message to 127.0.0.1:port."""
    return subprocess.run([need("swaks"), "--server", f"127.0.0.1:{port}", "--from", sender, "--to", to, *options],
                          capture_output=True, text=True, timeout=60)


def credentials(password: str = PASSWORD) -> list[str]:
    return ["--auth-user", DEMO, "--auth-password", password]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpServer:
    """A real `tcpserver` on 127.0.0.1 running one of the programs per connection."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [need("tcpserver"), "-v", "-R", "-H", "-l", "localhost", *argv[:-1], "127.0.0.1", str(self.port),
                 argv[-1]],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log_file,
            )
            for _ in range(500):
                if b"status: 0/" in log_path.read_bytes() or self.proc.poll() is not None:
                    break
                time.sleep(0.01)
            if self.proc.poll() is None:
                return
        raise RuntimeError(f"tcpserver did not start: {log_path.read_text()}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.log_file.close()


@pytest.fixture
def tcpserver(tmp_path: Path):
    """tcpserver(env, program, *options): a running server; stopped after the test."""
    servers: list[TcpServer] = []

    def start(env: dict[str, str], program: str = "smtpfront-qmail", *options: str) -> TcpServer:
        path = program if program.startswith("/") else str(BIN / program)
        server = TcpServer([*options, path], env, tmp_path / f"tcpserver{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> dict[str, str]:
    """A self-signed certificate for localhost, made with openssl for this test run."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [need("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return {"TLS_CERTFILE": str(cert), "TLS_KEYFILE": str(key)}


class RedisServer:
    """A real redis-server on a Unix socket and a free loopback port, in its own directory, saving nothing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = str(directory / "redis.sock")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [need("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(directory),
             "--databases", "1000", "--logfile", str(directory / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(1000):  # event-based: ready when it answers PING on the socket
            if self.call("PING") == b"+PONG\r\n":
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not start: {(directory / 'redis.log').read_text()}")

    def call(self, *args: str, db: int = 0) -> bytes:
        """One command (after a SELECT) on a fresh connection: the raw reply, b"" when the server is not up."""
        import socket

        def encode(words) -> bytes:
            return f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words)

        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(self.socket)
                s.sendall(encode(["SELECT", str(db)]) + encode(list(args)))
                data = b""
                while data.count(b"\r\n") < 2 or not data.endswith(b"\r\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return data.partition(b"\r\n")[2]
        except OSError:
            return b""

    def url(self, db: int, unix: bool = True) -> str:
        return f"unix:{self.socket}?db={db}" if unix else f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the run; each test takes a database of its own (`redis_db`)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


_databases = iter(range(1, 1000))


@pytest.fixture
def redis_db(redis_server) -> int:
    """A database of the session's Redis that no other test uses (flushed, in case of a rerun)."""
    db = next(_databases)
    redis_server.call("FLUSHDB", db=db)
    return db


class Silent:
    """A stand-in for Redis that accepts connections and never answers."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def reservations_in_processes(code: str, where: str, logins: list[str]) -> int:
    """One process per login, all at once, each running `code` (argv: `where`, the login; exit 0 for an attempt
    reserved, 1 for one refused); how many got one."""
    from concurrent.futures import ThreadPoolExecutor

    def one(login: str) -> int:
        return subprocess.run([sys.executable, "-c", code, where, login]).returncode

    with ThreadPoolExecutor(len(logins)) as pool:
        codes = list(pool.map(one, logins))
    assert set(codes) <= {0, 1}
    return codes.count(0)


def compile_rules(tmp_path: Path, text: str, name: str = "tcp") -> str:
    """tcpserver rules `text` made into NAME.cdb in `tmp_path` by the real tcprules; the cdb's path."""
    source = tmp_path / name
    source.write_text(text)
    cdb = tmp_path / f"{name}.cdb"
    with open(source, "rb") as f:
        subprocess.run([need("tcprules"), str(cdb), str(tmp_path / f"{name}.tmp")], stdin=f, check=True)
    return str(cdb)
