"""STARTTLS and implicit TLS against real clients: Python's ssl, swaks, openssl s_client."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

import smtpfront
from conftest import BIN, DEMO, LOGS, PASSWORD, credentials, need, run_program, swaks

PLAIN = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()


def client_context(certificate: dict[str, str], **versions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certificate["TLS_CERTFILE"])
    for name, value in versions.items():
        setattr(context, name, value)
    return context


class SocketChannel:
    """The program with one socket as fd 0 and fd 1, as under tcpserver."""

    def __init__(self, env: dict[str, str], program: str | list[str]) -> None:
        self.sock, theirs = socket.socketpair()
        argv = [program] if isinstance(program, str) else program
        self.proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE, env=env)
        theirs.close()
        self.sock.settimeout(10)
        self.conn: socket.socket | ssl.SSLSocket = self.sock

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def recv(self) -> bytes:
        return self.conn.recv(65536)

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.conn = context.wrap_socket(self.sock, server_hostname="localhost")

    def finish(self) -> tuple[int, str]:
        self.conn.close()
        code, log = self.proc.wait(10), self.proc.stderr.read().decode()
        LOGS.append(("socket session", log))
        return code, log


class PipeChannel:
    """The program with two pipes as fd 0 and fd 1 (other UCSPI servers); TLS on memory BIOs."""

    def __init__(self, env: dict[str, str], program: str) -> None:
        self.proc = subprocess.Popen([program], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.tls: ssl.SSLObject | None = None

    def _write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read(self) -> bytes:
        return os.read(self.proc.stdout.fileno(), 65536)

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self._write(pending)

    def _until_done(self, operation):
        while True:
            try:
                result = operation()
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                data = self._read()
                if not data:
                    return b""
                self.incoming.write(data)

    def send(self, data: bytes) -> None:
        if self.tls is None:
            self._write(data)
        else:
            self.tls.write(data)
            self._flush()

    def recv(self) -> bytes:
        if self.tls is None:
            return self._read()
        return self._until_done(lambda: self.tls.read(65536))

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self._until_done(self.tls.do_handshake)

    def finish(self) -> tuple[int, str]:
        self.proc.stdin.close()
        code, log = self.proc.wait(10), self.proc.stderr.read().decode()
        LOGS.append(("pipe session", log))
        return code, log


class Client:
    """Reads whole replies from a channel."""

    def __init__(self, channel) -> None:
        self.channel = channel
        self.buffer = b""

    def reply(self) -> list[str]:
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                data = self.channel.recv()
                if not data:
                    raise EOFError(f"connection closed after {lines}")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return lines

    def command(self, line: str) -> list[str]:
        self.channel.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext) -> None:
        assert self.command("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
        assert self.buffer == b""
        self.channel.start_tls(context)


FALLBACK = """#!{python} -IS
import sys
sys.path.append({parent!r})
from smtpfront import tls
tls.use_native = False  # through `ssl`, as on a Python where using _ssl directly was not tested
from smtpfront.programs import main
main("smtpfront-qmail")
"""


@pytest.fixture(scope="module", params=["_ssl", "ssl"])
def program(request, tmp_path_factory) -> str:
    """smtpfront-qmail as installed (TLS from `_ssl` on the Pythons tls.NATIVE_VERSIONS names), and forced to `ssl`."""
    if request.param == "_ssl":
        return str(BIN / "smtpfront-qmail")
    path = tmp_path_factory.mktemp("fallback") / "smtpfront-qmail-ssl"
    path.write_text(FALLBACK.format(python=sys.executable, parent=str(Path(smtpfront.__file__).parent.parent)))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def tls_env(base_env, certificate, cvm_socket) -> dict[str, str]:
    return {**base_env, **certificate, "CVM_SASL_PLAIN": cvm_socket["module"]}


@pytest.mark.parametrize("channel_type", [SocketChannel, PipeChannel])
def test_starttls_resets_session_and_marks_received(channel_type, tls_env, certificate, queue, program):
    channel = channel_type(tls_env, program)
    c = Client(channel)
    assert c.reply()[0].startswith("220 ")
    ehlo = c.command("EHLO client.example")
    assert "250-STARTTLS" in ehlo or "250 STARTTLS" in ehlo
    assert c.command("MAIL FROM:<before@b.example>")[0].startswith("250")
    c.starttls(client_context(certificate))
    # the transaction and the EHLO from before TLS are forgotten
    assert c.command("RCPT TO:<y@example.org>")[0].startswith("503")
    ehlo = c.command("EHLO client.example")
    assert not any("STARTTLS" in line for line in ehlo)
    assert c.command("STARTTLS")[0].startswith("503")
    assert c.command(f"AUTH PLAIN {PLAIN}")[0].startswith("235")
    assert c.command("MAIL FROM:<a@b.example>")[0].startswith("250")
    assert c.command("RCPT TO:<y@elsewhere.example>")[0].startswith("250")  # authenticated: relays
    assert c.command("DATA")[0].startswith("354")
    assert c.command("Subject: tls\r\n\r\nbody\r\n.")[0].startswith("250")
    assert c.command("QUIT")[0].startswith("221")
    code, log = channel.finish()
    assert code == 0
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fa@b.example\0Ty@elsewhere.example\0\0"
    received = message.split(b"\n\n")[0].decode()
    assert "with ESMTPSA via TCP (TLSv1.3 TLS_" in received
    assert "TLS started: TLSv1.3 TLS_" in log
    assert "Traceback" not in log


def test_pipelined_plaintext_after_starttls_is_discarded(tls_env, certificate, queue, program):
    """CVE-2011-0411 class: the NOOP sent with STARTTLS in one write is never answered."""
    channel = SocketChannel(tls_env, program)
    c = Client(channel)
    c.reply()
    c.command("EHLO client.example")
    channel.send(b"STARTTLS\r\nNOOP injected\r\nMAIL FROM:<evil@x.example>\r\n")
    assert c.reply() == ["220 2.0.0 Ready to start TLS"]
    channel.start_tls(client_context(certificate))
    # had the NOOP or MAIL been kept, their replies would come before HELO's
    assert c.command("HELO client.example") == ["250 mx.example"]
    assert c.command("RCPT TO:<y@example.org>")[0].startswith("503")  # no MAIL survived
    assert c.command("QUIT")[0].startswith("221")
    assert c.buffer == b""
    code, log = channel.finish()
    assert code == 0 and queue.messages() == []


def test_broken_tls_record_ends_session_quietly(tls_env, certificate, queue, program):
    channel = SocketChannel(tls_env, program)
    c = Client(channel)
    c.reply()
    c.starttls(client_context(certificate))
    assert c.command("MAIL FROM:<a@b.example>")[0].startswith("250")
    assert c.command("RCPT TO:<y@example.org>")[0].startswith("250")
    assert c.command("DATA")[0].startswith("354")
    channel.conn.sendall(b"Subject: half\r\n")
    os.write(channel.conn.fileno(), b"\x17\x03\x03\x00\x10" + b"\x00" * 16)  # a forged record
    code, log = channel.finish()
    assert code == 1
    assert "TLS error" in log and "Traceback" not in log and "internal error" not in log
    assert queue.messages() == []


def test_auth_requires_tls(tls_env, certificate, program):
    channel = SocketChannel({**tls_env, "AUTH_REQUIRES_TLS": "1"}, program)
    c = Client(channel)
    c.reply()
    ehlo = c.command("EHLO client.example")
    assert not any("AUTH" in line for line in ehlo)
    assert c.command(f"AUTH PLAIN {PLAIN}") == ["530 5.7.0 Must issue a STARTTLS command first."]
    c.starttls(client_context(certificate))
    ehlo = c.command("EHLO client.example")
    assert "250-AUTH LOGIN PLAIN" in ehlo
    assert c.command(f"AUTH PLAIN {PLAIN}")[0].startswith("235")
    c.command("QUIT")
    code, log = channel.finish()
    assert code == 0


@pytest.mark.parametrize("channel_type, name", [(SocketChannel, "SMTPS"), (PipeChannel, "SMTPS"),
                                                (SocketChannel, "TLS_IMMEDIATE")])  # mailfront 2.2x's name
def test_smtps_handshake_before_greeting(channel_type, name, tls_env, certificate, program):
    channel = channel_type({**tls_env, name: "1"}, program)
    channel.start_tls(client_context(certificate))
    c = Client(channel)
    assert c.reply()[0].startswith("220 ")
    ehlo = c.command("EHLO client.example")
    assert not any("STARTTLS" in line for line in ehlo)
    assert c.command("STARTTLS")[0].startswith("503")
    assert c.command(f"AUTH PLAIN {PLAIN}")[0].startswith("235")
    assert c.command("QUIT")[0].startswith("221")
    code, log = channel.finish()
    assert code == 0 and "TLS started: TLSv1.3" in log


def test_min_version_refuses_older_client(tls_env, certificate, program):
    channel = SocketChannel({**tls_env, "TLS_MIN_VERSION": "1.3"}, program)
    c = Client(channel)
    c.reply()
    assert c.command("STARTTLS")[0].startswith("220")
    old = client_context(certificate, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        channel.start_tls(old)
    code, log = channel.finish()
    assert code == 1
    assert "TLS handshake failed" in log and "Traceback" not in log


def test_bad_min_version_is_a_configuration_error(tls_env):
    r = run_program("smtpfront-qmail", b"", {**tls_env, "TLS_MIN_VERSION": "1.0"})
    assert r.lines == ["421 4.3.0 Configuration error; try again later."]
    assert "TLS_MIN_VERSION" in r.stderr


def test_unreadable_certificate_means_no_starttls(tls_env, tmp_path):
    r = run_program("smtpfront-qmail", b"EHLO x\r\nSTARTTLS\r\nQUIT\r\n",
                    {**tls_env, "TLS_CERTFILE": str(tmp_path / "missing.pem")})
    assert not any("STARTTLS" in line for line in r.lines)
    assert r.codes == [220, 250, 500, 221]
    assert f"STARTTLS not offered: cannot read {tmp_path / 'missing.pem'}" in r.stderr


def test_garbage_certificate_gives_454(tls_env, tmp_path, program):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    r = run_program(program, b"EHLO x\r\nSTARTTLS\r\nNOOP\r\nQUIT\r\n",
                    {**tls_env, "TLS_CERTFILE": str(bad), "TLS_KEYFILE": str(bad)})
    assert "250-STARTTLS" in r.lines or "250 STARTTLS" in r.lines
    assert r.codes == [220, 250, 454, 250, 221]
    assert "TLS not available" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["SMTPS", "TLS_IMMEDIATE"])
def test_smtps_without_certificate_refuses_to_serve(name, tls_env):
    env = {k: v for k, v in tls_env.items() if not k.startswith("TLS_")}
    r = run_program("smtpfront-qmail", b"", {**env, name: "1"})
    assert r.returncode == 1 and "SMTPS" in r.stderr and r.codes == [421]


@pytest.mark.parametrize("after_starttls", [b"", b"\x16\x03\x01\x02\x00\x01", b"GET / HTTP/1.0\r\n\r\n"])
def test_client_drops_or_talks_nonsense_during_handshake(after_starttls, tls_env, queue, program):
    channel = SocketChannel(tls_env, program)
    c = Client(channel)
    c.reply()
    assert c.command("STARTTLS")[0].startswith("220")
    channel.send(after_starttls)
    channel.sock.shutdown(socket.SHUT_WR)
    code, log = channel.finish()
    assert code == 1
    assert "handshake" in log and "Traceback" not in log
    assert queue.messages() == []


# -- real clients under real tcpserver ------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth_under_tcpserver(mechanism, tls_env, tcpserver, queue, program):
    server = tcpserver({**tls_env, "AUTH_REQUIRES_TLS": "1"}, program)
    r = swaks(server.port, "y@elsewhere.example", "--tls", "--auth", mechanism, *credentials())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in r.stdout and "<~  250 2.6.0 Accepted" in r.stdout
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fdemo@example.org\0Ty@elsewhere.example\0\0"
    assert b"with ESMTPSA via TCP (TLSv1.3 TLS_" in message


def test_swaks_implicit_tls_under_tcpserver(tls_env, tcpserver, queue, program):
    server = tcpserver({**tls_env, "SMTPS": "1"}, program)
    r = swaks(server.port, "y@elsewhere.example", "--tlsc", "--auth", "LOGIN", *credentials())
    assert r.returncode == 0, r.stdout + r.stderr
    [(envelope, message)] = queue.messages()
    assert b"with ESMTPSA via TCP (TLSv1.3 TLS_" in message


def test_swaks_without_tls_cannot_auth_when_tls_required(tls_env, tcpserver, queue, program):
    server = tcpserver({**tls_env, "AUTH_REQUIRES_TLS": "1"}, program)
    r = swaks(server.port, "y@elsewhere.example", "--auth", "PLAIN", *credentials())
    assert r.returncode != 0
    assert queue.messages() == []


def test_openssl_s_client_starttls(tls_env, certificate, tcpserver, program):
    server = tcpserver(tls_env, program)
    r = subprocess.run(
        [need("openssl"), "s_client", "-connect", f"127.0.0.1:{server.port}", "-starttls", "smtp",
         "-CAfile", certificate["TLS_CERTFILE"], "-verify_return_error", "-servername", "localhost", "-quiet"],
        input=b"EHLO client.example\r\nQUIT\r\n", capture_output=True, timeout=30,
    )
    out = r.stdout.decode()
    assert "250-AUTH LOGIN PLAIN" in out and "STARTTLS" not in out
    assert "221 " in out


def test_tls_module_not_imported_without_tls(base_env, tmp_path):
    """A plain session never pays for `ssl`."""
    r = subprocess.run(
        [str(BIN / "python"), "-X", "importtime", "-c", "from smtpfront.programs import smtpfront_qmail as m; m()"],
        input=b"EHLO x\r\nQUIT\r\n", env={**base_env, "TLS_CERTFILE": str(Path(__file__))},
        capture_output=True, timeout=30,
    )
    assert b"250 STARTTLS\r\n" in r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.decode().splitlines() if "|" in line}
    assert "smtpfront.programs" in imported
    assert "ssl" not in imported and "_ssl" not in imported


# -- which TLS library: `_ssl` directly, or `ssl` ----------------------------


def test_tls_from_ssl_directly_or_through_the_ssl_module(tls_env, certificate, program):
    """The installed program builds TLS from `_ssl` without importing `ssl` (where tested); the fallback uses `ssl`."""
    from smtpfront import tls

    native = program == str(BIN / "smtpfront-qmail") and tls.library_name() == "_ssl"
    channel = SocketChannel({**tls_env, "SMTPS": "1"}, [sys.executable, "-I", "-S", "-X", "importtime", program])
    channel.start_tls(client_context(certificate))
    c = Client(channel)
    assert c.reply()[0].startswith("220 ")
    assert c.command(f"AUTH PLAIN {PLAIN}")[0].startswith("235")
    assert c.command("QUIT")[0].startswith("221")
    code, log = channel.finish()
    imported = {line.split("|")[-1].strip() for line in log.splitlines() if line.startswith("import time:")}
    assert code == 0 and "TLS started: TLSv1.3 TLS_" in log
    assert "smtpfront.tls" in imported and "_ssl" in imported
    assert ("ssl" in imported) is not native
    assert ("enum" in imported) is not native


def test_library_guard(monkeypatch):
    from smtpfront import tls

    # the CPython versions on which the suite has run both ways (docs/performance.md)
    tested = sys.implementation.name == "cpython" and sys.version_info[:2] in ((3, 11), (3, 12), (3, 13))
    assert tls.library_name() == ("_ssl" if tested else "ssl")
    monkeypatch.setattr(tls, "NATIVE_VERSIONS", ())  # a newer Python than the ones tested
    assert tls.library_name() == "ssl"
    monkeypatch.undo()
    monkeypatch.setattr(tls, "NATIVE_PARTS", (*tls.NATIVE_PARTS, "_no_such_part"))  # _ssl changed
    assert tls.library_name() == "ssl"


# -- the end of a TLS session: close_notify --------------------------------


@pytest.fixture
def ucspi(tmp_path):
    """ucspi(SERVER, env, program): tcpserver or smtpfront-server on 127.0.0.1 running `program`; its port and log."""
    procs = []

    def start(server: str, env: dict[str, str], program: str) -> tuple[int, Path]:
        log = tmp_path / f"ucspi{len(procs)}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([server, "-1", "-v", "-R", "-H", "-l", "localhost", "127.0.0.1", "0", program],
                                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=f)
        procs.append(proc)
        return int(proc.stdout.readline()), log

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait()
        proc.stdout.close()


def tls_session(port: int, certificate: dict[str, str], smtps: bool, commands: bytes) -> ssl.SSLSocket:
    """A TLS session (STARTTLS, or SMTPS) that has sent `commands`; ragged EOFs raise (ssl.SSLEOFError)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if not smtps:
        reply = b""
        sock.sendall(b"EHLO client.example\r\nSTARTTLS\r\n")
        while not reply.endswith(b"220 2.0.0 Ready to start TLS\r\n"):
            chunk = sock.recv(4096)
            assert chunk, reply
            reply += chunk
    conn = client_context(certificate).wrap_socket(sock, server_hostname="localhost", suppress_ragged_eofs=False)
    conn.sendall(commands)
    return conn


def until_close_notify(conn: ssl.SSLSocket) -> list[str]:
    """The replies up to the server's close_notify (recv gives b''); a bare TCP close raises ssl.SSLEOFError."""
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out.decode().split("\r\n")[:-1]


BAD_PLAIN = base64.b64encode(f"\0{DEMO}\0wrong".encode()).decode()


@pytest.mark.parametrize("server", ["tcpserver", "smtpfront-server"])
@pytest.mark.parametrize("smtps, commands, last", [
    (False, b"QUIT\r\n", "221 2.0.0 Good bye."),
    (True, b"EHLO client.example\r\nQUIT\r\n", "221 2.0.0 Good bye."),
    (False, f"AUTH PLAIN {BAD_PLAIN}\r\n".encode(), "421 4.7.0 Too many authentication failures; closing connection."),
])
def test_close_notify_after_the_last_reply(server, smtps, commands, last, tls_env, certificate, ucspi, program):
    """As Exim and openssl s_client expect: the session's TLS ends with close_notify, not a bare TCP close."""
    binary = need("tcpserver") if server == "tcpserver" else str(BIN / "smtpfront-server")
    port, _ = ucspi(binary, {**tls_env, "AUTH_MAX_FAILURES": "1", **({"SMTPS": "1"} if smtps else {})}, program)
    with tls_session(port, certificate, smtps, commands) as conn:
        assert until_close_notify(conn)[-1] == last
        conn.unwrap()  # ours answers it, as a client should


def test_a_client_that_never_answers_close_notify_does_not_hold_the_session(tls_env, certificate, ucspi, program):
    port, log = ucspi(need("tcpserver"), {**tls_env, "SMTPS": "1", "TIMEOUT": "600"}, program)
    with tls_session(port, certificate, True, b"QUIT\r\n") as conn:
        assert until_close_notify(conn)[-1] == "221 2.0.0 Good bye."
        # no close_notify of ours, no TCP close: the session ends all the same, long before TIMEOUT
        deadline = time.monotonic() + 60  # generous: the machine may be loaded (the bound is a few seconds)
        while " status 0" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert conn.fileno() >= 0  # still open on our side
