"""Three hosts, one budget: three smtpfront-server instances behind a real HAProxy (round robin, send-proxy-v2)
sharing one real redis-server, as docs/deployment.md's "Running on several hosts" sets them up."""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BIN, DEMO, LOGS, PASSWORD, free_port, need
from smtpfront.throttle import LIMITS

HAPROXY = """\
global
  log stderr format short local0 notice
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend mx
  bind 127.0.0.1:{port}
  default_backend hosts
backend hosts
  balance roundrobin
{servers}
"""


class Host:
    """smtpfront-server running smtpfront-qmail on a loopback port of its own."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "smtpfront-server"), "-1", "-v", "-R", "-H", "-l", "mx.example", "-c", "100",
                 "127.0.0.1", "0", str(BIN / "smtpfront-qmail")],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        self.port = int(self.proc.stdout.readline())

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        LOGS.append((self.log_path.name, self.log))


@pytest.fixture
def three_hosts(tmp_path):
    """three_hosts(envs): three hosts, each with its environment, behind HAProxy; the balancer's port and the hosts."""
    hosts: list[Host] = []
    procs: list[subprocess.Popen] = []

    def start(envs: list[dict[str, str]]) -> tuple[int, list[Host]]:
        trio = [Host(env, tmp_path / f"host{len(hosts) + i}.log") for i, env in enumerate(envs)]
        hosts.extend(trio)
        port = free_port()
        config = tmp_path / f"haproxy{len(procs)}.cfg"
        config.write_text(HAPROXY.format(port=port, servers="\n".join(
            f"  server host{i} 127.0.0.1:{host.port} send-proxy-v2" for i, host in enumerate(trio))))
        with open(tmp_path / f"haproxy{len(procs)}.log", "wb") as log:
            procs.append(subprocess.Popen([need("haproxy"), "-db", "-f", str(config)], stdout=log,
                                          stderr=subprocess.STDOUT))
        for _ in range(1000):  # ready when it accepts (event-based: no fixed sleep)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                time.sleep(0.01)
        for host in trio:  # that probe went to one of them: wait for it to be over
            deadline = time.monotonic() + 30
            while "tcpserver: ok" in host.log and "tcpserver: end" not in host.log and time.monotonic() < deadline:
                time.sleep(0.01)
        return port, trio

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait()
    for host in hosts:
        host.stop()


def converse(port: int, lines: list[str]) -> list[str]:
    """A session through the balancer: the greeting, then the (last line of the) reply to each line."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")

        def reply() -> str:
            while True:
                line = f.readline().decode()
                if line[3:4] != "-":
                    return line.rstrip("\r\n")

        out = [reply()]
        for line in lines:
            s.sendall(line.encode() + b"\r\n")
            out.append(reply())
        return out


def plain(password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{DEMO}\0{password}".encode()).decode()


@pytest.fixture
def counted_cvm(tmp_path, cvm_socket) -> tuple[str, Path]:
    """A command CVM (the real cvm-pwfile) that notes each time it is asked; its path and its tally file."""
    calls = tmp_path / "cvm-calls"
    calls.touch()
    script = tmp_path / "cvm-counted"
    script.write_text(f"#!/bin/sh\necho . >> {calls}\nCVM_PWFILE_PATH={cvm_socket['pwfile']} exec "
                      f"{need('cvm-pwfile')}\n")
    script.chmod(0o755)
    return str(script), calls


@pytest.mark.parametrize("store", ["redis", "a directory per host"])
def test_wrong_passwords_spread_over_three_hosts_get_one_budget(store, base_env, counted_cvm, three_hosts,
                                                                 redis_server, redis_db, tmp_path):
    """60 wrong passwords, all at once, round robin over the three hosts: with the store, the CVM is asked
    no more often than one host allows (LIMITS["pair"] refuses from 10); with a directory per host (the
    old way), three times as often."""
    cvm, calls = counted_cvm
    env = {**base_env, "PROXY_PROTOCOL": "1", "CVM_SASL_PLAIN": cvm, "AUTH_MAX_FAILURES": "0"}
    if store == "redis":
        envs = [{**env, "AUTH_THROTTLE_STORE": redis_server.url(redis_db, unix=False)}] * 3
    else:  # each host its own directory, as three machines have
        envs = []
        for i in range(3):
            (tmp_path / f"throttle{i}").mkdir()
            envs.append({**env, "AUTH_THROTTLE_DIR": str(tmp_path / f"throttle{i}")})
    port, hosts = three_hosts(envs)
    with ThreadPoolExecutor(60) as pool:
        replies = list(pool.map(lambda _: converse(port, ["EHLO c", plain("wrong"), "QUIT"]), range(60)))
    answers = [r[2][:3] for r in replies]
    budget = LIMITS["pair"][1]
    asked = len(calls.read_text().split())
    if store == "redis":
        assert asked == budget and answers.count("535") == budget and answers.count("454") == 60 - budget
    else:
        assert asked == 3 * budget  # round robin: 20 guesses a host, 10 of them checked on each
    assert all("AUTH" in host.log for host in hosts)  # every host took its share


def test_a_login_limited_to_100_recipients_an_hour_is_refused_its_101st_on_every_host(
        base_env, cvm_socket, three_hosts, redis_server, redis_db):
    env = {**base_env, "PROXY_PROTOCOL": "1", "CVM_SASL_PLAIN": cvm_socket["module"], "PLUGINS": "+limits",
           "LIMITS_STORE": redis_server.url(redis_db), "LIMIT_RECIPIENTS_PER_LOGIN": "100/1h"}
    port, hosts = three_hosts([env] * 3)
    rcpts = [f"RCPT TO:<r{i}@elsewhere.example>" for i in range(10)]
    for _ in range(10):  # 100 recipients in 10 sessions, round robin over the hosts
        replies = converse(port, ["EHLO c", plain(PASSWORD), "MAIL FROM:<demo@example.org>", *rcpts, "QUIT"])
        assert [r[:3] for r in replies[2:-1]] == ["235"] + ["250"] * 11
    for _ in range(3):  # the 101st, on each host in turn
        replies = converse(port, ["EHLO c", plain(PASSWORD), "MAIL FROM:<demo@example.org>", rcpts[0], "QUIT"])
        assert replies[4].startswith("451 4.7.1 Too many recipients for this login (100 per 1h); try again in ")
    for host in hosts:
        deadline = time.monotonic() + 30  # the log line may trail the reply a moment
        while "limit LIMIT_RECIPIENTS_PER_LOGIN reached: login demo, client 127.0.0.1" not in host.log:
            assert time.monotonic() < deadline, host.log
            time.sleep(0.02)
