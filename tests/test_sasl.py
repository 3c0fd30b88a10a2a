"""SMTP AUTH end to end against a real cvm-pwfile, plus a CRAM-MD5 CVM written here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import subprocess
import sys
import threading

import pytest

from conftest import DEMO, PASSWORD, need
from smtpfront import cvm
from smtpfront.sasl import decode


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


PLAIN_OK = b64(f"\0{DEMO}\0{PASSWORD}")
PLAIN_BAD = b64(f"\0{DEMO}\0wrong")
OUT_OF_HOSTS = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@elsewhere.example>\r\n"


def test_decode():
    assert decode("=") is None  # as cvm's SASL library reads it: no mechanism here takes an empty response
    assert decode("dGVzdA==") == b"test"
    assert decode("!!!!") is None and decode("abc") is None and decode("") is None


def test_ehlo_advertises_auth_only_with_a_cvm(smtp, cvm_socket):
    assert "250-AUTH LOGIN PLAIN" in smtp(b"EHLO x\r\n", CVM_SASL_PLAIN=cvm_socket["module"]).lines
    r = smtp(b"EHLO x\r\nAUTH PLAIN\r\n")
    assert not any("AUTH" in line for line in r.lines)
    assert r.lines[-1] == "500 5.5.1 Not implemented."


def test_plain_inline_and_via_334_then_relay(smtp, cvm_socket, queue):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"]}
    r = smtp(f"EHLO x\r\nAUTH PLAIN {PLAIN_OK}\r\n".encode() + OUT_OF_HOSTS + b"DATA\r\nhi\r\n.\r\n", **env)
    assert r.codes[2:] == [235, 250, 250, 354, 250]
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fa@b.example\0Ty@elsewhere.example\0\0"
    assert b"with ESMTPA via TCP" in message
    r = smtp(f"AUTH PLAIN\r\n{PLAIN_OK}\r\n".encode(), **env)
    assert r.lines[1:] == ["334 ", "235 2.7.0 Authentication succeeded."]
    assert "AUTH PLAIN username=demo" in r.stderr


def test_login_with_and_without_initial_response(smtp, cvm_socket):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"]}
    r = smtp(f"AUTH LOGIN\r\n{b64(DEMO)}\r\n{b64(PASSWORD)}\r\n".encode(), **env)
    assert r.lines[1:] == ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 2.7.0 Authentication succeeded."]
    r = smtp(f"AUTH LOGIN {b64(DEMO)}\r\n{b64(PASSWORD)}\r\n".encode(), CVM_SASL_LOGIN=cvm_socket["module"])
    assert r.codes[1:] == [334, 235]


def test_domain_in_login(smtp, cvm_socket):
    # cvm-pwfile ignores the domain, so demo@anything is demo
    r = smtp(f"AUTH PLAIN {b64(f'{chr(0)}demo@mx.example{chr(0)}{PASSWORD}')}\r\n".encode(),
             CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.codes[1] == 235


def test_bad_password_unauthenticated_relay_refused(smtp, cvm_socket, queue):
    r = smtp(f"AUTH PLAIN {PLAIN_BAD}\r\n".encode() + OUT_OF_HOSTS, CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.lines[1] == "535 5.7.8 Authentication credentials invalid."
    assert r.codes[-1] == 550
    assert "wrong" not in r.stderr and PLAIN_BAD not in r.stderr


def test_failures_limit_and_cancel(smtp, cvm_socket):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"]}
    r = smtp(f"AUTH PLAIN {PLAIN_BAD}\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN {PLAIN_BAD}\r\nNOOP\r\n".encode(),
             AUTH_MAX_FAILURES="2", **env)
    assert r.lines[1:] == ["535 5.7.8 Authentication credentials invalid.", "334 VXNlcm5hbWU6",
                           "501 5.0.0 Authentication cancelled.",
                           "421 4.7.0 Too many authentication failures; closing connection."]
    assert r.returncode == 1


def test_authzid_must_match(smtp, cvm_socket):
    r = smtp(f"AUTH PLAIN {b64(f'other{chr(0)}demo{chr(0)}{PASSWORD}')}\r\n".encode(),
             CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.codes[1] == 535


def test_cvm_down_is_temporary(smtp, tmp_path):
    r = smtp(f"AUTH PLAIN {PLAIN_OK}\r\n".encode() + OUT_OF_HOSTS, CVM_SASL_PLAIN=f"cvm-local:{tmp_path}/none")
    assert r.lines[1] == "454 4.7.0 Temporary authentication failure."
    assert r.codes[-1] == 550


def test_auth_requires_tls_on_plain_connection(smtp, cvm_socket):
    r = smtp(f"EHLO x\r\nAUTH PLAIN {PLAIN_OK}\r\n".encode(), CVM_SASL_PLAIN=cvm_socket["module"],
             AUTH_REQUIRES_TLS="1")
    assert not any("AUTH" in line for line in r.lines[:-1])
    assert r.lines[-1] == "530 5.7.0 Must issue a STARTTLS command first."


def test_credentials_sent_after_a_refused_auth_are_not_logged(smtp, cvm_socket):
    """A client refused AUTH (here: TLS required) may send its base64 lines anyway, as commands."""
    user, password = b64(DEMO), b64(PASSWORD)
    plain = b64(f"\0{DEMO}\0{PASSWORD}")
    r = smtp(f"EHLO x\r\nAUTH LOGIN\r\n{user}\r\n{password}\r\nAUTH PLAIN\r\n{plain}\r\nQUIT\r\n".encode(),
             CVM_SASL_PLAIN=cvm_socket["module"], AUTH_REQUIRES_TLS="1")
    assert r.codes == [220, 250, 530, 500, 500, 530, 500, 221]
    assert "unrecognised command" in r.stderr
    for secret in (PASSWORD, password, password.rstrip("="), user):
        assert secret not in r.stderr


def test_cvm_command_mode(cvm_socket):
    need("cvm-pwfile")
    os.environ["CVM_PWFILE_PATH"] = cvm_socket["pwfile"]
    try:
        good = cvm.authenticate("cvm-command:/usr/bin/cvm-pwfile",
                                [(cvm.ACCOUNT, DEMO.encode()), (cvm.PASSWORD, PASSWORD.encode())], 5)
        bad = cvm.authenticate("/usr/bin/cvm-pwfile", [(cvm.ACCOUNT, DEMO.encode()), (cvm.PASSWORD, b"x")], 5)
    finally:
        del os.environ["CVM_PWFILE_PATH"]
    assert good.status == cvm.OK and good.facts["realname"] == "Demo User"
    assert bad.status == cvm.REJECTED


def _fake_cvm(tmp_path, answer):
    """A Unix-socket CVM whose reply is `answer(request)`: for faults no real CVM makes."""
    path = str(tmp_path / "fake.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(600)
                reply = answer(request)
                if reply is not None:
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return f"cvm-local:{path}", server


def test_cvm_faults_are_temporary(tmp_path):
    creds = [(cvm.ACCOUNT, b"u"), (cvm.PASSWORD, b"p")]

    def nonce(req):
        return req[1 : 2 + req[1]]

    cases = {
        "garbage": lambda req: b"garbage!",
        "short": lambda req: b"\0",
        "wrong nonce": lambda req: b"\0\x08" + b"X" * 8 + b"\0",
        "unterminated": lambda req: b"\0" + nonce(req) + b"\x01\x04demo",
        "status 111": lambda req: b"\x6f" + nonce(req) + b"\0",
    }
    for name, answer in cases.items():
        module, server = _fake_cvm(tmp_path, answer)
        try:
            assert cvm.authenticate(module, creds, 2).status == cvm.TEMPORARY, name
        finally:
            server.close()
            os.unlink(module[10:])
    module, server = _fake_cvm(tmp_path, lambda req: b"\0" + nonce(req) + b"\x01\x04demo\0")
    assert cvm.authenticate(module, creds, 2).status == cvm.OK
    server.close()
    os.unlink(module[10:])


def test_cvm_slow_is_bounded(tmp_path):
    """A CVM that never answers: only the client's own timeout (0.5 s) can end the wait."""
    import time

    release = threading.Event()
    module, server = _fake_cvm(tmp_path, lambda req: release.wait(120) and None)
    started = time.monotonic()
    try:
        assert cvm.authenticate(module, [(cvm.ACCOUNT, b"u")], 0.5).status == cvm.TEMPORARY
        # generous on a loaded machine, and still far below the 120 s an unbounded client would wait
        assert time.monotonic() - started < 60
    finally:
        release.set()
        server.close()


CRAM_CVM = r'''#!/usr/bin/env python3
# A CVM that understands CHALLENGE/RESPONSE (no packaged CVM does): CRAM-MD5 for demo/secret.
# Credential tags as cvm's credentials.h numbers them: 5 CHALLENGE, 6 RESPONSE, 7 RESPONSE_TYPE.
import hmac, hashlib, os, sys
req = sys.stdin.buffer.read()
n = req[1]; nonce = req[2:2 + n]; pos = 2 + n; creds = {}
while req[pos]:
    creds[req[pos]] = req[pos + 2:pos + 2 + req[pos + 1]]; pos += 2 + req[pos + 1]
good = hmac.new(b"secret", creds[5], hashlib.md5).hexdigest().encode()
ok = creds.get(1) == b"demo" and creds.get(6) == good and creds.get(7) == b"CRAM-MD5"
sys.stdout.buffer.write(bytes([0 if ok else 100, n]) + nonce + b"\x01\x04demo\0")
'''


def test_cram_md5(smtp, tmp_path, base_env):
    script = tmp_path / "cram-cvm"
    script.write_text(CRAM_CVM)
    script.chmod(0o755)
    env = {"CVM_SASL_CRAM_MD5": f"cvm-command:{script}"}
    r = smtp(b"EHLO x\r\nAUTH CRAM-MD5\r\n", **env)
    assert "250-AUTH CRAM-MD5" in r.lines
    assert r.lines[-1] == "535 End of file reached."  # the input ended inside the exchange, as cvm's library says
    challenge = base64.b64decode(r.lines[-2][4:])
    assert challenge.startswith(b"<") and challenge.endswith(b"@mx.example>")

    # a real exchange needs the challenge before answering: drive the program interactively
    from pathlib import Path

    prog = str(Path(sys.executable).parent / "smtpfront-qmail")
    p = subprocess.Popen([prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**base_env, **env})
    p.stdout.readline()
    p.stdin.write(b"AUTH CRAM-MD5\r\n")
    p.stdin.flush()
    challenge = base64.b64decode(p.stdout.readline()[4:].strip())
    digest = hmac.new(b"secret", challenge, hashlib.md5).hexdigest()
    p.stdin.write(b64(f"demo {digest}").encode() + b"\r\nQUIT\r\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=10)
    assert out.startswith(b"235 2.7.0")
    assert digest.encode() not in err


def test_sender_login_map(smtp, cvm_socket, tmp_path):
    owners = tmp_path / "owners"
    owners.write_text("demo@b.example demo\n@shared.example demo,other\n")
    env = {"CVM_SASL_PLAIN": cvm_socket["module"], "SENDER_LOGIN_MAP": str(owners)}
    r = smtp(f"AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<demo@b.example>\r\nMAIL FROM:<x@shared.example>\r\n"
             f"MAIL FROM:<ceo@b.example>\r\n".encode(), **env)
    assert r.lines[2:] == ["250 2.1.0 Sender accepted.", "250 2.1.0 Sender accepted.",
                           "553 5.7.1 Sender address not owned by the authenticated user."]
    assert smtp(b"MAIL FROM:<ceo@b.example>\r\n", **env).codes[1] == 250  # unauthenticated: no opinion


def test_busy_cvm_listen_queue_is_waited_for(cvm_socket, tmp_path):
    """A CVM whose listen queue is full is busy, not down: the connect is retried within the timeout."""
    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    for _ in range(4):  # fill the queue until a non-blocking connect would get EAGAIN
        filler = socket.socket(socket.AF_UNIX)
        filler.setblocking(False)
        try:
            filler.connect(path)
        except BlockingIOError:
            filler.close()
            break
        fillers.append(filler)
    else:
        raise AssertionError("the listen queue never filled")

    def serve_later():
        import time

        time.sleep(0.3)
        listener.settimeout(5)  # the test must end even when the client gave up
        while True:
            conn, _ = listener.accept()
            request = b""
            while chunk := conn.recv(600):
                request += chunk
            if not request:  # a filler
                conn.close()
                continue
            with socket.socket(socket.AF_UNIX) as real:
                real.connect(cvm_socket["socket"])
                real.sendall(request)
                real.shutdown(socket.SHUT_WR)
                while chunk := real.recv(600):
                    conn.sendall(chunk)
            conn.close()
            return

    for filler in fillers:
        filler.shutdown(socket.SHUT_WR)
    server = threading.Thread(target=serve_later, daemon=True)
    server.start()
    result = cvm.authenticate(f"cvm-local:{path}", [(cvm.ACCOUNT, DEMO.encode()), (cvm.PASSWORD, PASSWORD.encode())],
                              5)
    assert result.status == cvm.OK
    server.join()
    for filler in fillers:
        filler.close()
    listener.close()


def test_cvm_udp_against_real_cvm_pwfile(smtp, cvm_socket, queue):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CVM_PWFILE_PATH": cvm_socket["pwfile"]}
    proc = subprocess.Popen([need("cvm-pwfile"), f"cvm-udp:127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert proc.stdout.readline() == b"Starting.\n"  # bound and listening
        creds = [(cvm.ACCOUNT, DEMO.encode()), (cvm.PASSWORD, PASSWORD.encode())]
        assert cvm.authenticate(f"cvm-udp:127.0.0.1:{port}", creds, 5).status == cvm.OK
        r = smtp(f"AUTH PLAIN {PLAIN_OK}\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@elsewhere.example>\r\n".encode(),
                 CVM_SASL_PLAIN=f"cvm-udp:127.0.0.1:{port}")
        assert r.codes == [220, 235, 250, 250]
        wrong = [(cvm.ACCOUNT, DEMO.encode()), (cvm.PASSWORD, b"wrong")]
        assert cvm.authenticate(f"cvm-udp:127.0.0.1:{port}", wrong, 5).status == cvm.REJECTED
    finally:
        proc.kill()
        proc.wait()
    # nobody listening any more: bounded, temporary
    assert cvm.authenticate(f"cvm-udp:127.0.0.1:{port}", creds, 0.6).status == cvm.TEMPORARY


@pytest.mark.parametrize("secret", ["", "sekrit"])
def test_the_auth_cvm_never_sees_the_lookup_secret(smtp, cvm_socket, secret):
    """A cvm-validate set-up's CVM_LOOKUP_SECRET in the service's environment: set empty, it put a command CVM
    for AUTH into lookup mode, which takes any password; set, every AUTH failed 454."""
    env = {"CVM_SASL_PLAIN": "cvm-command:/usr/bin/cvm-pwfile", "CVM_PWFILE_PATH": cvm_socket["pwfile"],
           "CVM_LOOKUP_SECRET": secret}
    wrong = smtp(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + 'wrong')}\r\nQUIT\r\n".encode(), **env)
    assert wrong.codes == [220, 535, 221]
    right = smtp(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + PASSWORD)}\r\nQUIT\r\n".encode(), **env)
    assert right.codes == [220, 235, 221]


def test_the_lookup_cvm_never_sees_a_clients_credentials(smtp, cvm_socket, tmp_path):
    """cvm-validate's command CVM, after a login: it gets the recipient's account and domain (and the lookup
    secret in its environment), never the client's login or password."""
    seen = tmp_path / "seen"
    script = tmp_path / "lookup-cvm"
    script.write_text(f"#!/bin/sh\n{{ env; echo; cat; }} > {seen}\nexit 100\n")  # "no such user"
    script.chmod(0o755)
    r = smtp(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + PASSWORD)}\r\nMAIL FROM:<a@b.example>\r\n"
             "RCPT TO:<someone@example.org>\r\n".encode(), CVM_SASL_PLAIN=cvm_socket["module"],
             CVM_LOOKUP=f"cvm-command:{script}")
    assert r.codes == [220, 235, 250, 553]
    environment, _, request = seen.read_bytes().partition(b"\n\n")
    assert b"CVM_LOOKUP_SECRET=\n" in environment + b"\n"
    assert b"someone" in request and b"example.org" in request
    for secret in (PASSWORD.encode(), DEMO.encode()):
        assert secret not in request and secret not in environment
