"""Deployment as admins run it: real tcpserver, tcprules, swaks, supervise, runsv, the demo scripts."""

from __future__ import annotations

import filecmp
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import BIN, PASSWORD, compile_rules, credentials, free_port, keep_own_ids, need, run_program, swaks

TOP = Path(__file__).resolve().parent.parent
EXAMPLES = TOP / "examples"
EXAMPLE_ARGS = [
    "--hostname", "mail.example.org", "--bin", "/usr/local/bin", "--cvm", "cvm-local:/run/cvm-pwfile.sock",
    "--mailrules", "/etc/smtpfront/mailrules", "--patterns", "/etc/smtpfront/patterns", "--qmail-home", "/var/qmail",
    "--tls-cert", "/etc/smtpfront/cert.pem", "--tls-key", "/etc/smtpfront/key.pem",
]


def with_auth(password: str = PASSWORD) -> list[str]:
    return ["--auth", "PLAIN", *credentials(password)]


@pytest.fixture
def auth_env(base_env, cvm_socket) -> dict[str, str]:
    return {**base_env, "CVM_SASL_PLAIN": cvm_socket["module"]}


def wait_for_port(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


# -- under tcpserver -------------------------------------------------------


def test_authenticated_relay(auth_env, tcpserver, queue):
    server = tcpserver(auth_env)
    r = swaks(server.port, "someone@elsewhere.example", *with_auth())
    assert r.returncode == 0, r.stdout
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fdemo@example.org\0Tsomeone@elsewhere.example\0\0"
    assert b"with ESMTPA via TCP" in message
    assert b" ([127.0.0.1])\n  by localhost ([127.0.0.1])\n" in message  # addresses from tcpserver
    assert "tcpserver: ok" in server.log and "AUTH PLAIN username=demo" in server.log


def test_unauthenticated_relay_refused(auth_env, tcpserver, queue):
    server = tcpserver(auth_env)
    r = swaks(server.port, "someone@elsewhere.example")
    assert r.returncode != 0
    assert "<** 550 5.1.0 Mail system is not configured to accept that recipient" in r.stdout
    assert queue.messages() == []


def test_wrong_password_refused(auth_env, tcpserver, queue):
    server = tcpserver(auth_env)
    r = swaks(server.port, "someone@elsewhere.example", *with_auth("wrong"))
    assert r.returncode != 0 and "535 5.7.8" in r.stdout
    assert queue.messages() == []
    assert "wrong" not in server.log


def msmtp(port: int, to: str, auth: str) -> subprocess.CompletedProcess:
    """msmtp with `auth AUTH`: `on` (the best mechanism offered, over STARTTLS) or a mechanism (in clear)."""
    tls_options = ["--tls=on", "--tls-starttls=on", "--tls-certcheck=off"] if auth == "on" else ["--tls=off"]
    return subprocess.run(
        [need("msmtp"), "--file=/dev/null", "--host=127.0.0.1", f"--port={port}", *tls_options,
         f"--auth={auth}", "--user=demo", "--passwordeval", f"echo {PASSWORD}",
         "--from=demo@example.org", "--domain=client.example", to],
        input=f"From: demo@example.org\nTo: {to}\nSubject: msmtp\n\nhello\n", capture_output=True, text=True,
        timeout=60)


def test_cram_md5_with_cvm_pwfile_fails_and_the_log_says_what_to_unset(auth_env, certificate, tcpserver, queue,
                                                                       cvm_socket):
    """cvm-pwfile cannot check CRAM-MD5 (status 7): a client that chooses it gets 454 and does not fall back."""
    offered = tcpserver({**auth_env, "CVM_SASL_CRAM_MD5": cvm_socket["module"]})
    r = msmtp(offered.port, "someone@elsewhere.example", "cram-md5")
    assert r.returncode != 0 and "454 4.7.0" in r.stderr, r.stderr
    assert queue.messages() == []
    line = f"smtpfront: AUTH CRAM-MD5: CRAM-MD5 is not supported by {cvm_socket['module']}: unset CVM_SASL_CRAM_MD5"
    assert line in offered.log
    # as the line says: without CVM_SASL_CRAM_MD5 the client takes what is offered (PLAIN: msmtp wants TLS for it)
    plain = tcpserver({**auth_env, **certificate})
    r = msmtp(plain.port, "someone@elsewhere.example", "on")
    assert r.returncode == 0, r.stderr
    assert "AUTH PLAIN username=demo" in plain.log and "CRAM-MD5" not in plain.log
    [(envelope, _)] = queue.messages()
    assert envelope == b"Fdemo@example.org\0Tsomeone@elsewhere.example\0\0"


def test_rcpthosts_delivery_without_auth(auth_env, tcpserver, queue):
    server = tcpserver(auth_env)
    r = swaks(server.port, "user@example.org", sender="stranger@far.example")
    assert r.returncode == 0, r.stdout
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fstranger@far.example\0Tuser@example.org\0\0"
    assert b"with ESMTP via TCP" in message


def test_twenty_concurrent_clients_all_delivered(auth_env, tcpserver, queue):
    server = tcpserver(auth_env, "smtpfront-qmail", "-c", "40")
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: swaks(server.port, f"user{i}@elsewhere.example", *with_auth()), range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stdout for r in results if r.returncode]
    delivered = sorted(envelope for envelope, _ in queue.messages())
    assert delivered == sorted(f"Fdemo@example.org\0Tuser{i}@elsewhere.example\0\0".encode() for i in range(20))


def test_concurrency_limit_is_honoured(auth_env, tcpserver):
    server = tcpserver(auth_env, "smtpfront-qmail", "-c", "2")
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    for conn in held:
        assert conn.recv(100).startswith(b"220 ")
    third = socket.create_connection(("127.0.0.1", server.port), timeout=1)
    with pytest.raises(socket.timeout):
        third.recv(100)  # queued by the kernel; tcpserver does not accept it while 2 are open
    held[0].sendall(b"QUIT\r\n")
    held[0].recv(100)
    held[0].close()
    third.settimeout(5)
    assert third.recv(100).startswith(b"220 ")
    for conn in (held[1], third):
        conn.close()
    assert "status: 2/2" in server.log


def test_relayclient_from_tcprules_cdb(auth_env, tcpserver, queue, tmp_path):
    cdb = compile_rules(tmp_path, '127.0.0.1:allow,RELAYCLIENT=""\n:allow\n')
    server = tcpserver(auth_env, "smtpfront-qmail", "-x", cdb)
    r = swaks(server.port, "someone@elsewhere.example", sender="app@internal.example")
    assert r.returncode == 0, r.stdout
    [(envelope, _)] = queue.messages()
    assert envelope == b"Fapp@internal.example\0Tsomeone@elsewhere.example\0\0"


def test_submission_rule_without_relayclient_makes_local_clients_log_in(auth_env, tcpserver, queue, tmp_path):
    """The guide's stricter `tcp` for a pure submission port: 127.0.0.1 relays only after AUTH."""
    cdb = compile_rules(tmp_path, ":allow\n")
    server = tcpserver(auth_env, "smtpfront-qmail", "-x", cdb)
    r = swaks(server.port, "someone@elsewhere.example", sender="app@internal.example")
    assert r.returncode != 0 and "550 5.1.0" in r.stdout
    r = swaks(server.port, "someone@elsewhere.example", *with_auth())
    assert r.returncode == 0, r.stdout
    assert [envelope for envelope, _ in queue.messages()] == [b"Fdemo@example.org\0Tsomeone@elsewhere.example\0\0"]


def test_cvm_pwfile_with_hashed_passwords_as_the_guide_says(auth_env, tcpserver, queue, tmp_path):
    """CVM_PWFILE_PWCMP=crypt and a hash from `openssl passwd -6`, in /etc/passwd's format."""
    hashed = subprocess.run([need("openssl"), "passwd", "-6", PASSWORD], capture_output=True, text=True,
                            check=True).stdout.strip()
    (tmp_path / "passwd").write_text(f"demo:{hashed}:1000:1000:Demo User:/nonexistent:/bin/false\n")
    sock = tmp_path / "cvm.sock"
    cvm = subprocess.Popen([need("cvm-pwfile"), f"cvm-local:{sock}"], stdout=subprocess.DEVNULL,
                           env={"CVM_PWFILE_PATH": str(tmp_path / "passwd"), "CVM_PWFILE_PWCMP": "crypt"})
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and cvm.poll() is None
            time.sleep(0.01)
        server = tcpserver({**auth_env, "CVM_SASL_PLAIN": f"cvm-local:{sock}"})
        good = swaks(server.port, "someone@elsewhere.example", *with_auth())
        wrong = swaks(server.port, "someone@elsewhere.example", *with_auth(hashed))  # the hash is no password
    finally:
        cvm.kill()
        cvm.wait()
    assert good.returncode == 0, good.stdout
    assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout
    assert len(queue.messages()) == 1


def test_too_small_softlimit_fails_clearly_and_accepts_nothing(auth_env, queue):
    """The seed deployment's softlimit -m 3000000: Python cannot start; no reply, nothing queued."""
    session = b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nhi\r\n.\r\n"
    r = subprocess.run([need("softlimit"), "-m", "3000000", str(BIN / "smtpfront-qmail")], input=session,
                       capture_output=True, env=auth_env, timeout=30)
    assert r.returncode != 0 and r.stdout == b""
    assert r.stderr.strip() or r.returncode < 0  # the loader says why, or (Debian's python3.11) it dies of SIGSEGV
    assert queue.messages() == []
    r = subprocess.run([need("softlimit"), "-m", "64000000", str(BIN / "smtpfront-qmail")], input=session,
                       capture_output=True, env=auth_env, timeout=30)
    assert r.returncode == 0 and len(queue.messages()) == 1  # the examples' limit works


# -- service directories ---------------------------------------------------


@pytest.mark.parametrize("flavour", ["daemontools", "runit"])
def test_examples_are_what_smtpfront_conf_writes(flavour, tmp_path):
    out = tmp_path / "svc"
    extra = ["--runit"] if flavour == "runit" else []
    r = subprocess.run([str(BIN / "smtpfront-conf"), "smtpfront", "smtplog", str(out), *EXAMPLE_ARGS, *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    example = EXAMPLES / flavour / "smtpfront-587"
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != "tcp.cdb")
    committed = sorted(p.relative_to(example) for p in example.rglob("*") if p.is_file())
    assert written == committed
    _, mismatch, errors = filecmp.cmpfiles(out, example, [str(p) for p in written], shallow=False)
    assert mismatch == [] and errors == []
    assert os.access(out / "run", os.X_OK) and os.access(out / "log" / "run", os.X_OK)
    assert (out / "tcp.cdb").exists()  # compiled with tcprules


def test_smtpfront_conf_refuses_to_overwrite(tmp_path):
    r = subprocess.run([str(BIN / "smtpfront-conf"), "root", "root", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "exists" in r.stderr


def scripts() -> list[str]:
    """Every program pip installs ([project.scripts])."""
    import tomllib

    with open(TOP / "pyproject.toml", "rb") as f:
        return sorted(tomllib.load(f)["project"]["scripts"])


@pytest.mark.parametrize("program", scripts())
@pytest.mark.parametrize("option", ["--version", "-V"])
def test_version(program, option):
    from smtpfront import __version__

    r = subprocess.run([str(BIN / program), option], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{program} {__version__}\n", "")
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


@pytest.mark.parametrize("cvm", ["cvm-local:/run/cvm-pwfile.sock", "cvm-command:/usr/bin/cvm-unix"])
def test_smtpfront_conf_never_offers_cram_md5(cvm, tmp_path):
    """The stock CVMs cannot check CRAM-MD5; offering it breaks clients that choose it first."""
    r = subprocess.run([str(BIN / "smtpfront-conf"), "root", "root", str(tmp_path / "svc"), "--cvm", cvm],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "svc" / "env").iterdir() if p.name.startswith("CVM_")) == [
        "CVM_SASL_PLAIN"]
    assert "never CRAM-MD5" in subprocess.run([str(BIN / "smtpfront-conf"), "--help"], capture_output=True,
                                              text=True).stdout


@pytest.fixture
def public_bin():
    """A directory anyone may enter (pytest's tmp is its owner's alone) for programs the service account runs."""
    top = Path(tempfile.mkdtemp(prefix="smtpfront-conf-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top)


def stub_programs(directory: Path, interpreter: str) -> Path:
    """smtpfront-qmail and smtpfront-server stand-ins in DIRECTORY/bin, scripts for INTERPRETER."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(mode=0o755, parents=True)
    for name in ("smtpfront-qmail", "smtpfront-server"):
        (bin_dir / name).write_text(f"#!{interpreter} -IS\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("server", [[], ["--server"]])
def test_smtpfront_conf_refuses_programs_the_account_cannot_run(server, public_bin, tmp_path):
    """A venv whose python3 leads into a 0700 home (pyenv under /root): the service would only log `access denied`."""
    private = Path(tempfile.mkdtemp(dir=public_bin))  # 0700, as a home is
    (private / "python3").symlink_to("/bin/sh")
    (public_bin / "python3").symlink_to(private / "python3")  # the venv's link, itself in reach
    denied = stub_programs(public_bin / "venv", str(public_bin / "python3"))
    r = subprocess.run([str(BIN / "smtpfront-conf"), "nobody", "nobody", str(tmp_path / "svc"), "--bin", str(denied),
                        *server], capture_output=True, text=True)
    assert r.returncode == 1 and not (tmp_path / "svc").exists()
    assert r.stderr == (
        f"smtpfront-conf: nobody cannot execute {public_bin / 'python3'}, the interpreter of {denied}/smtpfront-qmail,"
        " so the service could not run: build the venv with an interpreter nobody can run (`/usr/bin/python3 -m venv"
        " /opt/smtpfront`, not a Python under a home only its owner may enter); nothing written\n")
    allowed = stub_programs(public_bin / "system", "/bin/sh")
    r = subprocess.run([str(BIN / "smtpfront-conf"), "nobody", "nobody", str(tmp_path / "svc"), "--bin", str(allowed),
                        *server], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if server:  # the server is checked too
        (allowed / "smtpfront-server").chmod(0o700)
        r = subprocess.run([str(BIN / "smtpfront-conf"), "nobody", "nobody", str(tmp_path / "svc2"), "--bin",
                            str(allowed), *server], capture_output=True, text=True)
        assert r.returncode == 1 and f"nobody cannot execute {allowed}/smtpfront-server, so" in r.stderr


@pytest.mark.parametrize("backend", ["qmail", "queuedir", "echo"])
def test_smtpfront_conf_qmail_home_for_every_backend(backend, tmp_path):
    """Every front end runs qmail-validate: QMAILHOME is written whatever the back end, and checked."""
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    missing = tmp_path / "no-qmail"
    queue = ["--queuedir", str(tmp_path)] if backend == "queuedir" else []
    given = subprocess.run([str(BIN / "smtpfront-conf"), me, me, str(tmp_path / "a"), "--backend", backend, *queue,
                            "--qmail-home", str(missing)], capture_output=True, text=True)
    assert given.returncode == 0 and (tmp_path / "a" / "env" / "QMAILHOME").read_text() == f"{missing}\n"
    assert f"warning: {missing} is not a directory: the service will answer every client 451" in given.stderr
    if backend != "qmail":  # a qmail directory of the service's own, with an empty control/
        made = subprocess.run([str(BIN / "smtpfront-conf"), me, me, str(tmp_path / "b"), "--backend", backend,
                               *queue], capture_output=True, text=True)
        assert made.returncode == 0 and "not a directory" not in made.stderr
        assert (tmp_path / "b" / "env" / "QMAILHOME").read_text() == f"{tmp_path / 'b' / 'qmail'}\n"
        assert list((tmp_path / "b" / "qmail" / "control").iterdir()) == []


def test_smtpfront_conf_warns_when_the_queue_directory_is_not_ready(tmp_path):
    """The queuedir back end writes into QUEUEDIR/tmp and links into QUEUEDIR/new, as the service account."""
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    queue_dir = tmp_path / "q"

    def conf(name: str) -> str:
        r = subprocess.run([str(BIN / "smtpfront-conf"), me, me, str(tmp_path / name), "--backend", "queuedir",
                            "--queuedir", str(queue_dir)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stderr

    warnings = conf("a")
    for sub in ("tmp", "new"):
        assert f"{me} cannot write {queue_dir}/{sub} (or it does not exist): every message will be refused" in warnings
        (queue_dir / sub).mkdir(parents=True)
    assert conf("b") == ""


def test_smtpfront_conf_warns_when_the_account_cannot_read_the_key(tmp_path, certificate, public_bin):
    """A key only root can read: tcpserver runs the program as the account, which then offers no STARTTLS."""
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    os.chmod(certificate["TLS_KEYFILE"], 0o600)  # its owner alone, as openssl wrote it
    tls = ["--tls-cert", certificate["TLS_CERTFILE"], "--tls-key", certificate["TLS_KEYFILE"]]
    readable = subprocess.run([str(BIN / "smtpfront-conf"), me, me, str(tmp_path / "a"), *tls], capture_output=True,
                              text=True)
    assert readable.returncode == 0 and "cannot read" not in readable.stderr, readable.stderr
    programs = ["--bin", str(stub_programs(public_bin, "/bin/sh"))]  # nobody may not enter pytest's tmp
    nobody = subprocess.run([str(BIN / "smtpfront-conf"), "nobody", me, str(tmp_path / "b"), *tls, *programs],
                            capture_output=True, text=True)
    assert nobody.returncode == 0
    assert f"nobody cannot read {certificate['TLS_KEYFILE']}: the service will offer no STARTTLS" in nobody.stderr
    # the certificate is world-readable, but the directories on its way (pytest's 0700 tmp) are not
    assert f"nobody cannot read {certificate['TLS_CERTFILE']}" in nobody.stderr


def service_dir(tmp_path: Path, auth_env: dict[str, str], port: int | None, *extra: str,
                qmail_home: bool = True) -> Path:
    """A service directory from smtpfront-conf, for this test's paths, ports and stand-in queue.

    Without `qmail_home`, no --qmail-home: what smtpfront-conf chooses by itself."""
    account = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    svc = tmp_path / "service" / "smtpfront"
    r = subprocess.run(
        [str(BIN / "smtpfront-conf"), account, account, str(svc), "--ip", "127.0.0.1",
         *(["--port", str(port)] if port else []), "--hostname", "mx.example", "--cvm", auth_env["CVM_SASL_PLAIN"],
         *(["--qmail-home", auth_env["QMAILHOME"]] if qmail_home else []), *extra],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    for name in ("QMAILQUEUE", "FAKEQ_DIR", "PATH"):
        (svc / "env" / name).write_text(auth_env[name] + "\n")
    keep_own_ids(svc, account)
    return svc


def test_daemontools_service_under_svscan(auth_env, queue, tmp_path):
    port = free_port()
    svc = service_dir(tmp_path, auth_env, port)
    scan = subprocess.Popen([need("svscan"), str(svc.parent)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": auth_env["PATH"]})
    try:
        wait_for_port(port)
        r = swaks(port, "someone@elsewhere.example", *with_auth())
        assert r.returncode == 0, r.stdout
        r = swaks(port, "someone@elsewhere.example")  # tcp.cdb gives 127.0.0.1 RELAYCLIENT=""
        assert r.returncode == 0, r.stdout
        assert len(queue.messages()) == 2
        status = subprocess.run([need("svstat"), str(svc)], capture_output=True, text=True).stdout
        assert ": up (pid " in status
        deadline = time.monotonic() + 10
        log = svc / "log" / "main" / "current"
        while time.monotonic() < deadline and b"bytes in:" not in (log.read_bytes() if log.exists() else b""):
            time.sleep(0.1)
        text = log.read_text()
        assert text.startswith("@4000")  # multilog t: TAI64N stamps
        assert "tcpserver: status: 1/40" in text and "AUTH PLAIN username=demo" in text
        assert PASSWORD not in text
    finally:
        subprocess.run([need("svc"), "-dx", str(svc), str(svc / "log")])
        scan.terminate()
        scan.wait()
        time.sleep(0.2)


@contextmanager
def svscan(svc: Path, env: dict[str, str]):
    """svscan on the service's parent directory, stopped (the service and its logger too) afterwards."""
    scan = subprocess.Popen([need("svscan"), str(svc.parent)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": env["PATH"]})
    try:
        yield
    finally:
        subprocess.run([need("svc"), "-dx", str(svc), str(svc / "log")])
        scan.terminate()
        scan.wait()


def service_log(svc: Path, until: str) -> str:
    """log/main/current once it holds `until` (multilog writes it a little after the session ends)."""
    log = svc / "log" / "main" / "current"
    deadline = time.monotonic() + 30  # generous: the machine may be loaded
    while time.monotonic() < deadline and until.encode() not in (log.read_bytes() if log.exists() else b""):
        time.sleep(0.1)
    return log.read_text()


@pytest.mark.parametrize("backend", ["qmail", "queuedir", "echo"])
def test_generated_service_takes_mail_with_each_backend(backend, auth_env, queue, tmp_path):
    """On a host without /var/qmail, as the docs say to run it: only the qmail back end is given --qmail-home."""
    port = free_port()
    extra = ["--backend", backend]
    if backend == "queuedir":
        for sub in ("tmp", "new"):
            (tmp_path / "spool" / sub).mkdir(parents=True)
        extra += ["--queuedir", str(tmp_path / "spool")]
    svc = service_dir(tmp_path, auth_env, port, *extra, qmail_home=backend == "qmail")
    with svscan(svc, auth_env):
        wait_for_port(port)
        r = swaks(port, "someone@elsewhere.example", *with_auth())
        assert r.returncode == 0, r.stdout
        log = service_log(svc, "bytes in:")
    assert "Could not change to the qmail directory" not in r.stdout + log
    queued = (queue.messages() if backend == "qmail" else list((tmp_path / "spool" / "new").iterdir())
              if backend == "queuedir" else [])
    assert len(queued) == (backend != "echo")
    if backend == "echo":
        assert re.search(r"<- {2}250 Received \d+ bytes\.", r.stdout), r.stdout
    else:  # the accepted message is logged, the qmail back end's qp or the queuedir's file
        name = "qp" if backend == "qmail" else f"file {queued[0].name}"
        assert re.search(rf"2\.6\.0 Accepted message {name}.* bytes \d+", log), log


def test_smtps_service_listens_on_465_and_takes_mail(auth_env, certificate, queue, tmp_path):
    tls = ["--smtps", "--tls-cert", certificate["TLS_CERTFILE"], "--tls-key", certificate["TLS_KEYFILE"]]
    default = service_dir(tmp_path / "default", auth_env, None, *tls)
    assert "-- 127.0.0.1 465 \\\n" in (default / "run").read_text()
    assert (default / "env" / "SMTPS").read_text() == "1\n"
    port = free_port()  # 465 may be taken, or need root: the same service on a free port
    svc = service_dir(tmp_path, auth_env, port, *tls)
    with svscan(svc, auth_env):
        wait_for_port(port)
        r = swaks(port, "someone@elsewhere.example", "--tlsc", *with_auth())
        assert r.returncode == 0, r.stdout
        log = service_log(svc, "bytes in:")
    assert "TLS started: TLSv1.3" in log and "AUTH PLAIN username=demo" in log
    [(envelope, _)] = queue.messages()
    assert envelope == b"Fdemo@example.org\0Tsomeone@elsewhere.example\0\0"


def test_runit_service_under_runsv(auth_env, queue, tmp_path):
    port = free_port()
    svc = service_dir(tmp_path, auth_env, port, "--runit")
    runsv = subprocess.Popen([need("runsv"), str(svc)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={"PATH": auth_env["PATH"]})
    try:
        wait_for_port(port)
        r = swaks(port, "someone@elsewhere.example", *with_auth())
        assert r.returncode == 0, r.stdout
        assert len(queue.messages()) == 1
        deadline = time.monotonic() + 10
        log = svc / "log" / "main" / "current"
        while time.monotonic() < deadline and b"bytes in:" not in (log.read_bytes() if log.exists() else b""):
            time.sleep(0.1)
        assert "AUTH PLAIN username=demo" in log.read_text()
    finally:
        subprocess.run([need("sv"), "exit", str(svc)], capture_output=True)
        runsv.terminate()
        runsv.wait()


# -- systemd and the demo ---------------------------------------------------


def test_systemd_remote_addr_is_read_as_tcpremoteip(base_env, queue):
    env = {k: v for k, v in base_env.items() if k != "TCPREMOTEIP"}
    r = run_program("smtpfront-qmail", b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"
                    b"hi\r\n.\r\n", {**env, "REMOTE_ADDR": "::ffff:203.0.113.9", "REMOTE_PORT": "40000"})
    assert r.codes[-1] == 250
    [(_, message)] = queue.messages()
    assert b"(client.example [203.0.113.9])" in message


def test_systemd_ipv6_client_is_proto_tcp6(base_env, queue):
    """systemd's REMOTE_ADDR of an IPv6 client: PROTO=TCP6 as tcpserver-ipv6 would set it, so Received says IPv6."""
    env = {k: v for k, v in base_env.items() if k not in ("TCPREMOTEIP", "TCPLOCALIP", "TCPREMOTEHOST")}
    r = run_program("smtpfront-qmail", b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"
                    b"hi\r\n.\r\n", {**env, "REMOTE_ADDR": "2001:db8::9", "REMOTE_PORT": "40000"})
    assert r.codes[-1] == 250
    [(_, message)] = queue.messages()
    assert message.startswith(b"Received: from c ([IPv6:2001:db8::9])\n  by mx.example\n  with SMTP via TCP6;")


def test_systemd_units_verify(tmp_path):
    analyze = need("systemd-analyze")
    for name in ("smtpfront.socket", "smtpfront@.service"):
        text = (EXAMPLES / "systemd" / name).read_text()
        text = text.replace("/usr/local/bin/smtpfront-qmail", str(BIN / "smtpfront-qmail"))
        text = text.replace("EnvironmentFile=/etc/smtpfront/environment",
                            f"EnvironmentFile={EXAMPLES / 'systemd' / 'environment'}")
        text = text.replace("User=smtpfront", "User=root").replace("Group=smtpfront", "Group=root")
        (tmp_path / name).write_text(text)
    for name in ("smtpfront.socket", "smtpfront@.service"):
        r = subprocess.run([analyze, "verify", str(tmp_path / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert "Accept=yes" in (tmp_path / "smtpfront.socket").read_text()


def start_demo(env: dict[str, str]) -> tuple[subprocess.Popen, bytes]:
    """run-demo in its own session, read until its banner is complete."""
    # SIGINT as at a terminal, even when this suite runs in the background of a shell (which ignores it there)
    demo = subprocess.Popen([str(EXAMPLES / "demo" / "run-demo")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    banner = b""
    deadline = time.monotonic() + 60  # it may first install packages
    while b"Queued messages appear" not in banner and time.monotonic() < deadline and demo.poll() is None:
        if select.select([demo.stdout], [], [], 1)[0]:
            banner += os.read(demo.stdout.fileno(), 4096)
    return demo, banner


def stop_demo(demo: subprocess.Popen, banner: bytes) -> str:
    """Ctrl-C, as a person stops it; everything it printed."""
    os.killpg(demo.pid, signal.SIGINT)
    return (banner + demo.communicate(timeout=60)[0]).decode()  # generous: once 15 s ran out on a loaded machine


def demo_env(tmp_path: Path, port: int, var: str = "var", password: str = "demo-pw-1") -> dict[str, str]:
    return {**os.environ, "DEMO_PORT": str(port), "DEMO_VAR": str(tmp_path / var), "DEMO_PASSWORD": password}


def test_make_run_demo_and_ctrl_c(tmp_path):
    port = free_port()
    env = demo_env(tmp_path, port)
    demo, banner = start_demo(env)
    try:
        wait_for_port(port)
        sent = subprocess.run([str(EXAMPLES / "demo" / "send-demo")], env=env, capture_output=True, text=True,
                              timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [queued] = list((tmp_path / "var" / "queue" / "new").iterdir())
        assert b"with ESMTPA via TCP" in queued.read_bytes()
        assert "Subject: smtpfront demo" in sent.stdout
    finally:
        out = stop_demo(demo, banner)
    assert "password: demo-pw-1" in out and f"swaks --server 127.0.0.1:{port} --auth PLAIN" in out
    assert "printf '\\0demo\\0%s' 'demo-pw-1' | base64" in out
    assert "stopped cvm-pwfile and tcpserver." in out
    assert f"man -M {TOP / '.venv' / 'share' / 'man'} smtpfront-qmail" in out
    pages = re.search(r"Manual pages \((.*)\):", out).group(1).split()
    assert "smtpfront-qmail" in pages and "smtpfront-conf" in pages
    # cvm-pwfile's own lines go to var/cvm.log, not into the banner
    cvm_log = (tmp_path / "var" / "cvm.log").read_text()
    assert "+ demo@" in cvm_log and "+ demo@" not in out and "Starting." not in out
    time.sleep(0.2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_make_run_twice_refuses_the_second_and_leaves_the_first_alone(tmp_path):
    port = free_port()
    env = demo_env(tmp_path, port)
    demo, banner = start_demo(env)
    var = tmp_path / "var"
    try:
        wait_for_port(port)
        files = ("passwd", "cvm.sock")
        before = [((var / name).stat().st_ino, (var / name).stat().st_mtime_ns) for name in files]
        # the same demo again (same var): refused by the lock, before anything is written
        again = subprocess.run([str(EXAMPLES / "demo" / "run-demo")], env={**env, "DEMO_PASSWORD": "other-pw"},
                               capture_output=True, text=True, timeout=60)
        # another var on the same port: refused because the port is taken
        other = subprocess.run([str(EXAMPLES / "demo" / "run-demo")], env=demo_env(tmp_path, port, "var2"),
                               capture_output=True, text=True, timeout=60)
        refusals = [(again, f"a demo is already running with {var}"), (other, f"127.0.0.1:{port} is already in use")]
        for r, why in refusals:
            assert r.returncode == 1, r.stdout + r.stderr
            assert why in r.stderr and "listening" not in r.stdout and "unable to bind" not in r.stderr
        assert not (tmp_path / "var2" / "passwd").exists()
        assert [((var / name).stat().st_ino, (var / name).stat().st_mtime_ns) for name in files] == before
        assert (var / "demo-password").read_text() == "demo-pw-1\n"
        # the first still authenticates its user
        sent = subprocess.run([str(EXAMPLES / "demo" / "send-demo")], env=env, capture_output=True, text=True,
                              timeout=60)
        assert sent.returncode == 0 and "235 2.7.0" in sent.stdout, sent.stdout + sent.stderr
    finally:
        out = stop_demo(demo, banner)
    assert out.count("smtpfront is listening") == 1


def test_sample_rules_and_patterns_do_what_they_say(smtp, queue, tmp_path):
    env = {"MAILRULES": str(EXAMPLES / "mailrules.sample"), "MAILRULES_CACHE": str(tmp_path),
           "PATTERNS": str(EXAMPLES / "patterns.sample")}
    r = smtp(b"MAIL FROM:<x@spam.example>\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<old-sales@example.org>\r\n"
             b"RCPT TO:<migrating@example.org>\r\nRCPT TO:<postmaster@example.org>\r\nQUIT\r\n", **env)
    assert r.lines[1:] == [
        "553 Mail from this domain is not accepted (#5.7.1)",
        "250 2.1.0 Sender accepted.",
        "553 This address is no longer in use; write to sales@example.org (#5.1.1)",
        "451 Mailbox is being moved; try again later (#4.2.1)",
        "250 OK",  # k without a text, as in C mailfront
        "221 2.0.0 Good bye.",
    ]
    envelope = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n"
    spam = smtp(envelope + b"Subject: get FREE MONEY now\r\n\r\nhi\r\n.\r\n", **env)
    exe = smtp(envelope + b"Subject: tool\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAA\r\n.\r\n", **env)
    link = smtp(envelope + b"Subject: hi\r\n\r\ntext\r\nsee https://phish.example/login\r\n.\r\n", **env)
    fine = smtp(envelope + b"Subject: free money is a myth\r\n\r\nTVqQ in the middle\r\n.\r\n", **env)
    assert spam.lines[-1] == "554 Message refused: looks like spam (#5.7.1)"
    assert exe.lines[-1] == "554 Executable attachments are not accepted (#5.3.4)"
    assert link.lines[-1] == "554 Message refused: looks like spam (#5.7.1)"  # '/': any line
    assert fine.codes[-1] == 250
    assert len(queue.messages()) == 1


def test_install_packages_says_what_to_run_when_not_root():
    """make run on a machine where it may not install: a clear message, not a half-started demo."""
    script = EXAMPLES / "demo" / "install-packages"
    assert subprocess.run([str(script)], capture_output=True).returncode == 0  # nothing missing: nothing done
    # As root, become nobody first. The script is read on stdin, in /: the clone may sit in a directory
    # nobody cannot enter (a 0700 home, mktemp -d).
    nobody = [need("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    with open(script, "rb") as source:
        r = subprocess.run([*nobody, "bash", "-s", "ucspi-tcp", "cvm"], stdin=source, cwd="/", capture_output=True,
                           text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == "missing: ucspi-tcp cvm -- run: sudo apt-get install ucspi-tcp cvm"
