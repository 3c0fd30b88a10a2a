"""The documents stay true: every variable the programs read is in the table, every test they cite exists."""

from __future__ import annotations

import ast
import base64
import re
import socket
import subprocess
import time
from pathlib import Path

from conftest import BIN, PASSWORD, need, run_program

TOP = Path(__file__).resolve().parent.parent


def variables_read() -> set[str]:
    """The variable names config.py reads (env.get("X"), "X" in env, _number(env, "X", ...)) and session.getenv("X")."""
    tree = ast.parse((TOP / "src" / "smtpfront" / "config.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+",
                                                                                           node.value):
            names.add(node.value)
    # and what plugins and back ends look up per message through the session (getenv / getenvu)
    for source in (TOP / "src" / "smtpfront").rglob("*.py"):
        names.update(re.findall(r"getenvu?\(\s*f?\"([A-Z][A-Z0-9_]+)", source.read_text()))
    return names - {"TCP"}  # the default $PROTO, not a variable


def test_every_variable_is_documented():
    table = (TOP / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(?:\$\{PROTO\})?([A-Z][A-Z0-9_]+)(?:<[a-z]+>)?`", table))
    missing = {name for name in variables_read() if name not in documented and not name.startswith("TCP")}
    assert not missing, f"not in docs/configuration.md: {sorted(missing)}"
    assert {"TLS_CERTFILE", "PROXY_PROTOCOL", "MAILRULES", "CVM_SASL_PLAIN"} <= variables_read()


def test_cited_tests_exist():
    cited = 0
    for doc in (TOP / "docs").glob("*.md"):
        text = doc.read_text()
        for m in re.finditer(r"`(tests/test_\w+\.py)::(test_\w+)`((?:,\s*`test_\w+`)*)", text):
            source = (TOP / m.group(1)).read_text()
            for name in [m.group(2), *re.findall(r"test_\w+", m.group(3))]:
                assert re.search(rf"^def {name}\(", source, re.M), f"{doc.name} cites {m.group(1)}::{name}: gone"
                cited += 1
    assert cited >= 35


# -- the samples in the docs are what the programs print -----------------------------------------


def sample(doc: str, heading: str, index: int = 0) -> list[str]:
    """The lines of the `index`th ``` block under `heading` in docs/`doc`."""
    text = (TOP / "docs" / doc).read_text()
    section = text[text.index(f"\n{heading}\n"):]
    section = section[: m.start()] if (m := re.search(r"\n#+ ", section[len(heading) + 2:])) else section
    blocks = re.findall(r"\n```\n(.*?)\n```\n", section, re.S)
    return blocks[index].split("\n")


def numbers_out(lines: list[str]) -> list[str]:
    """Pids, ports, times and sizes change from run to run: the lines with every number as N."""
    return [re.sub(r"\d+", "N", line) for line in lines]


def test_manual_dialogue_session_is_what_smtpfront_answers(tmp_path):
    """docs/manual-dialogue.md's session, typed into the demo's set-up (smtpfront-queuedir, user demo)."""
    lines = sample("manual-dialogue.md", "## A session")
    typed = [line[3:] for line in lines if line.startswith("C:")]
    password = "the-password"  # the page's; its base64 is on the page
    (tmp_path / "passwd").write_text(f"demo:{password}:1000:1000:Demo User:/nonexistent:/bin/false\n")
    for sub in ("queue/tmp", "queue/new", "control"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "control" / "rcpthosts").write_text("localhost\n")
    sock = tmp_path / "cvm.sock"
    cvm = subprocess.Popen([need("cvm-pwfile"), f"cvm-local:{sock}"], stdout=subprocess.DEVNULL,
                           env={"CVM_PWFILE_PATH": str(tmp_path / "passwd")})
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and cvm.poll() is None
            time.sleep(0.01)
        env = {"PATH": "/usr/bin:/bin", "PROTO": "TCP", "TCPLOCALHOST": "localhost", "TCPLOCALIP": "127.0.0.1",
               "TCPREMOTEIP": "127.0.0.1", "QUEUEDIR": str(tmp_path / "queue"), "QMAILHOME": str(tmp_path),
               "CVM_SASL_PLAIN": f"cvm-local:{sock}"}
        r = run_program(str(BIN / "smtpfront-queuedir"), "".join(f"{line}\r\n" for line in typed).encode(), env)
    finally:
        cvm.kill()
        cvm.wait()
    assert [line[3:] for line in lines if line.startswith("S:")] == r.lines
    assert len(list((tmp_path / "queue" / "new").iterdir())) == 1


def as_logged(log: str) -> list[str]:
    """The log's lines as the sample shows them: no `status:` lines, and an IPv4 client's address as ucspi-tcp
    writes it in an `ok` line (ucspi-tcp-ipv6's tcpserver writes it v4-mapped)."""
    return [line.replace("::ffff:", "") if line.startswith("tcpserver: ok ") else line
            for line in log.splitlines() if "status: " not in line]


def test_deployment_log_sample_is_what_a_service_logs(base_env, certificate, cvm_socket, tcpserver, queue, tmp_path):
    """docs/deployment.md's Logs samples: the sessions it describes, under tcpserver -v, logged as shown."""
    import smtplib
    import ssl

    env = {**base_env, **certificate, "CVM_SASL_PLAIN": cvm_socket["module"]}
    server = tcpserver(env)
    context = ssl.create_default_context(cafile=certificate["TLS_CERTFILE"])

    def session(steps) -> None:
        ends = server.log.count("tcpserver: end ")
        with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.example", timeout=30) as client:
            client._host = "localhost"  # the certificate's name
            steps(client)
        deadline = time.monotonic() + 30  # generous: the machine may be loaded
        while server.log.count("tcpserver: end ") == ends:
            assert time.monotonic() < deadline, server.log
            time.sleep(0.02)

    def message(client) -> None:
        client.starttls(context=context)
        client.ehlo()
        client.user, client.password = "demo", PASSWORD
        client.auth("LOGIN", client.auth_login)
        client.mail("demo@example.org")
        client.rcpt("friend@elsewhere.example")
        client.data(b"Subject: hello\r\n\r\nHi.\r\n")

    def wrong_passwords(client) -> None:
        client.ehlo()
        client.user, client.password = "demo", "wrong"
        for mechanism, answer in (("LOGIN", client.auth_login), ("PLAIN", client.auth_plain)):
            try:
                client.auth(mechanism, answer)
            except smtplib.SMTPAuthenticationError:
                pass

    def refused_relay(client) -> None:
        client.ehlo()
        client.mail("someone@far.example")
        client.rcpt("friend@elsewhere.example")

    for steps in (message, wrong_passwords, refused_relay):
        session(steps)
    logged = as_logged(server.log)
    assert numbers_out(sample("deployment.md", "## Logs")) == numbers_out(logged)

    # smtpfront-queuedir, and a message sent in BDAT chunks
    for sub in ("tmp", "new"):
        (tmp_path / "queue" / sub).mkdir(parents=True)
    server = tcpserver({**env, "QUEUEDIR": str(tmp_path / "queue")}, "smtpfront-queuedir")
    body = b"Subject: hello\r\n\r\nHi.\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"EHLO client.example\r\nAUTH PLAIN " + base64.b64encode(f"\0demo\0{PASSWORD}".encode())
                       + b"\r\nMAIL FROM:<demo@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\n"
                       + b"BDAT 12\r\n" + body[:12] + b"BDAT %d LAST\r\n" % (len(body) - 12) + body[12:] + b"QUIT\r\n")
        while client.recv(65536):
            pass
    deadline = time.monotonic() + 30  # generous: the machine may be loaded
    while "tcpserver: end " not in server.log:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.02)
    logged = as_logged(server.log)
    assert numbers_out(sample("deployment.md", "## Logs", 1)) == numbers_out(logged)
