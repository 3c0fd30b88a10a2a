"""Settings from the environment: mailfront 2.13–2.22's names (issue 12 item 5), read and then in effect."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO, PASSWORD
from smtpfront.config import ConfigError, Settings

PLAIN = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode())
WRONG = base64.b64encode(f"\0{DEMO}\0wrong".encode())


def test_auth_timeouts_default_to_the_usual_ones():
    s = Settings.from_environ({})
    assert (s.auth_timeout, s.auth_session_timeout) == (s.timeout, s.session_timeout) == (1200.0, 86400.0)
    s = Settings.from_environ({"TIMEOUT": "30", "SESSION_TIMEOUT": "600"})
    assert (s.auth_timeout, s.auth_session_timeout) == (30.0, 600.0)
    s = Settings.from_environ({"TIMEOUT": "30", "AUTH_TIMEOUT": "5", "AUTH_SESSION_TIMEOUT": "7.5"})
    assert (s.timeout, s.auth_timeout, s.session_timeout, s.auth_session_timeout) == (30.0, 5.0, 86400.0, 7.5)
    assert Settings.from_environ({"TIMEOUT": "30", "AUTH_TIMEOUT": "0"}).auth_timeout == 30.0  # 0: the default
    with pytest.raises(ConfigError, match="AUTH_TIMEOUT"):
        Settings.from_environ({"AUTH_TIMEOUT": "-1"})


def test_tls_immediate_is_a_second_name_for_smtps():
    assert not Settings.from_environ({}).smtps
    assert Settings.from_environ({"TLS_IMMEDIATE": ""}).smtps
    assert Settings.from_environ({"SMTPS": "1"}).smtps


@pytest.mark.parametrize("env, limit", [
    ({}, 3),
    ({"AUTH_MAX_FAILURES": "5"}, 5),
    ({"MAXAUTHFAIL": "5"}, 5),
    ({"MAXAUTHFAIL": "0"}, 0),  # as mailfront: no limit
    ({"AUTH_MAX_FAILURES": "2", "MAXAUTHFAIL": "5"}, 2),  # both set: the stricter
    ({"AUTH_MAX_FAILURES": "5", "MAXAUTHFAIL": "2"}, 2),
    ({"AUTH_MAX_FAILURES": "0", "MAXAUTHFAIL": "4"}, 4),  # 0 is no limit, so any limit is stricter
    ({"AUTH_MAX_FAILURES": "0", "MAXAUTHFAIL": "0"}, 0),
    ({"AUTH_MAX_FAILURES": "", "MAXAUTHFAIL": "1"}, 1),  # empty is unset
])
def test_maxauthfail_and_auth_max_failures(env, limit):
    assert Settings.from_environ(env).auth_max_failures == limit


def test_maxauthfail_must_be_a_number():
    with pytest.raises(ConfigError, match="MAXAUTHFAIL"):
        Settings.from_environ({"MAXAUTHFAIL": "three"})


def test_maxauthfail_closes_the_session(smtp, cvm_socket):
    r = smtp(b"AUTH PLAIN " + WRONG + b"\r\nAUTH PLAIN " + WRONG + b"\r\nNOOP\r\n",
             CVM_SASL_PLAIN=cvm_socket["module"], MAXAUTHFAIL="2")
    assert r.lines[1:] == ["535 5.7.8 Authentication credentials invalid.",
                           "421 4.7.0 Too many authentication failures; closing connection."]


# -- the timeouts in a session: a client that keeps its side open --------------------------------


def start(base_env, cvm_socket, **env: str) -> subprocess.Popen:
    prog = str(Path(sys.executable).parent / "smtpfront-qmail")
    return subprocess.Popen([prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**base_env, "CVM_SASL_PLAIN": cvm_socket["module"], **env})


def finish(p: subprocess.Popen) -> list[str]:
    out = p.stdout.read().decode()
    p.wait(timeout=10)
    try:
        p.stdin.close()
    except BrokenPipeError:  # what the last write left in the buffer: the program has gone
        pass
    return out.split("\r\n")[:-1]


def test_auth_timeout_applies_only_once_authenticated(base_env, cvm_socket):
    # before AUTH: TIMEOUT (short) ends the idle session, AUTH_TIMEOUT (long) does not apply
    p = start(base_env, cvm_socket, TIMEOUT="0.3", AUTH_TIMEOUT="60")
    lines = finish(p)  # stdin stays open: the client is idle, not gone
    assert lines[-1] == "421 4.4.2 Timeout; closing connection." and p.returncode == 1
    # after AUTH: AUTH_TIMEOUT (long) replaces TIMEOUT (short), so a pause longer than TIMEOUT is fine
    p = start(base_env, cvm_socket, TIMEOUT="0.3", AUTH_TIMEOUT="60")
    p.stdin.write(b"AUTH PLAIN " + PLAIN + b"\r\n")
    p.stdin.flush()
    time.sleep(1.0)
    p.stdin.write(b"QUIT\r\n")
    p.stdin.flush()
    lines = finish(p)
    assert lines[1:] == ["235 2.7.0 Authentication succeeded.", "221 2.0.0 Good bye."] and p.returncode == 0


def test_auth_timeout_shorter_after_login(base_env, cvm_socket):
    p = start(base_env, cvm_socket, TIMEOUT="60", AUTH_TIMEOUT="0.3")
    p.stdin.write(b"AUTH PLAIN " + PLAIN + b"\r\n")
    p.stdin.flush()
    lines = finish(p)
    assert lines[1:] == ["235 2.7.0 Authentication succeeded.", "421 4.4.2 Timeout; closing connection."]
    assert p.returncode == 1


def test_auth_session_timeout_after_login(base_env, cvm_socket):
    p = start(base_env, cvm_socket, TIMEOUT="60", SESSION_TIMEOUT="60", AUTH_SESSION_TIMEOUT="0.6")
    p.stdin.write(b"AUTH PLAIN " + PLAIN + b"\r\n")
    p.stdin.flush()
    for _ in range(20):  # never idle: only the session limit can end it
        time.sleep(0.2)
        try:
            p.stdin.write(b"NOOP\r\n")
            p.stdin.flush()
        except BrokenPipeError:
            break
    lines = finish(p)
    assert lines[1] == "235 2.7.0 Authentication succeeded."
    assert lines[-1] == "421 4.4.2 Session time limit exceeded; closing connection." and p.returncode == 1


def test_a_v4_mapped_client_is_the_ipv4_client(smtp, queue):
    """tcpserver -6 (or a dual-stack socket under another server) names an IPv4 client ::ffff:a.b.c.d: it is
    that IPv4 client for Received and for the programs run (issue 19 item 6)."""
    dump = queue.path.parent / "qq-env"
    script = queue.path.parent / "qq-env.sh"
    script.write_text(f"#!/bin/sh\nenv > {dump}\nexec {queue.path.parent / 'qmail-queue'}\n")
    script.chmod(0o755)
    r = smtp(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nhi\r\n.\r\n",
             QMAILQUEUE=str(script), PROTO="TCP6", TCP6REMOTEIP="::ffff:198.51.100.7", TCP6LOCALIP="::ffff:192.0.2.1",
             TCP6LOCALHOST="mx6.example", TCP6REMOTEPORT="40123", TCPREMOTEIP="::ffff:198.51.100.7")
    assert r.codes[-1] == 250
    [(_, message)] = queue.messages()
    assert message.startswith(b"Received: from c ([198.51.100.7])\n  by mx6.example ([192.0.2.1])\n"
                              b"  with ESMTP via TCP;")
    env = set(dump.read_text().splitlines())
    assert {"PROTO=TCP", "TCPREMOTEIP=198.51.100.7", "TCPLOCALIP=192.0.2.1", "TCPLOCALHOST=mx6.example",
            "TCPREMOTEPORT=40123"} <= env
