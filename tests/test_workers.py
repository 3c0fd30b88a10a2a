"""smtpfront-server -n: worker processes, and nothing of one session reaching the next.

The isolation tests run with `-n 1000 -c 1`: every session is served by the
same process (each test checks that it was, from the `ok PID` lines), unless
a session ends abnormally, when the next must be served by a new one.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import test_forkserver
from conftest import BIN, compile_rules, credentials, swaks
from smtpfront.workers import BUSY, DONE, LAST, RECORD, record, records
from test_forkserver import SERVER, Ucspi, dialogue

QMAIL = str(BIN / "smtpfront-qmail")
LOCAL = ["-R", "-H", "-l", "mx.example"]  # no look-ups: these tests need no DNS server or identd
SAME_PROCESS = ["-n", "1000", "-c", "1"]
start = test_forkserver.start  # the fixture: servers started, and stopped after the test


def pids(server: Ucspi) -> list[int]:
    """The process of each connection so far, from the `ok` and `deny` lines."""
    return [int(p) for p in re.findall(r"tcpserver: (?:ok|deny) (\d+) ", server.log)]


def talk(server: Ucspi, data: bytes, source: str = "127.0.0.1") -> bytes:
    return server.talk(data, source=source)


def test_status_records_are_read_whole():
    data = record(1234, BUSY) + record(2**31 - 1, DONE) + record(7, LAST)
    assert len(data) == 3 * RECORD
    assert records(data) == [(1234, BUSY), (2**31 - 1, DONE), (7, LAST)]
    assert records(data[:-1]) == [(1234, BUSY), (2**31 - 1, DONE)]


def test_sessions_are_served_by_the_same_worker_and_counted_as_processes_are(start, base_env, queue):
    server = start(SERVER, "-v", *LOCAL, "-n", "3", "-c", "1", QMAIL, env=base_env)  # -c 1: one worker at a time
    for n in range(7):
        assert b"250 2.6.0 Accepted" in dialogue(server.port, f"u{n}")
    server.wait_ends(7)
    served = pids(server)
    assert len(served) == 7 and [served.count(p) for p in dict.fromkeys(served)] == [3, 3, 1]
    log = server.log
    assert log.count("tcpserver: end ") == 7 and log.splitlines()[-1] == "tcpserver: status: 0/1"
    assert len(queue.messages()) == 7


def test_an_authenticated_session_then_one_from_elsewhere_that_tries_to_relay(start, base_env, cvm_socket, queue):
    env = {**base_env, "CVM_SASL_PLAIN": cvm_socket["module"]}
    server = start(SERVER, "-v", *LOCAL, *SAME_PROCESS, QMAIL, env=env)
    r = swaks(server.port, "someone@elsewhere.example", "--auth", "PLAIN", *credentials())
    assert r.returncode == 0, r.stdout
    reply = talk(server, b"EHLO c.example\r\nMAIL FROM:<demo@example.org>\r\nRCPT TO:<someone@elsewhere.example>\r\n"
                         b"RCPT TO:<user@example.org>\r\nQUIT\r\n", source="127.0.0.2")
    assert b"\r\n550 5.1.0 Mail system is not configured to accept that recipient\r\n250 " in reply
    server.wait_ends(2)
    assert len(set(pids(server))) == 1 and len(pids(server)) == 2
    assert [e for e, _ in queue.messages()] == [b"Fdemo@example.org\0Tsomeone@elsewhere.example\0\0"]
    again = talk(server, b"EHLO c.example\r\nMAIL FROM:<demo@example.org>\r\nRCPT TO:<someone@elsewhere.example>\r\n"
                         b"QUIT\r\n")  # from the address that authenticated, without AUTH this time
    assert b"550 5.1.0 Mail system is not configured to accept that recipient" in again


def test_relayclient_from_tcprules_then_a_client_whose_rule_has_none(start, base_env, queue, tmp_path):
    cdb = compile_rules(tmp_path, '127.0.0.1:allow,RELAYCLIENT="",GRANTED="yes"\n127.0.0.3:allow\n')
    server = start(SERVER, "-v", *LOCAL, *SAME_PROCESS, "-x", cdb, QMAIL, env=base_env)
    relay = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<someone@elsewhere.example>\r\nQUIT\r\n"
    assert b"250 2.1.5 Recipient accepted." in talk(server, relay, source="127.0.0.1")
    assert b"550 5.1.0 Mail system is not configured to accept that recipient" in talk(server, relay,
                                                                                      source="127.0.0.3")
    assert b"250 2.1.5 Recipient accepted." in talk(server, relay, source="127.0.0.1")  # and back
    server.wait_ends(3)
    assert len(set(pids(server))) == 1


def queue_dumping_environment(tmp_path: Path, base_env: dict[str, str]) -> dict[str, str]:
    """base_env with a qmail-queue that writes its environment to qq-env.N, N counting messages."""
    script = tmp_path / "qmail-queue-env"
    script.write_text(f"#!/bin/sh\nn=$(ls {tmp_path} | grep -c '^qq-env')\nenv | sort > {tmp_path}/qq-env.$n\n"
                      f"exec {base_env['QMAILQUEUE']}\n")
    script.chmod(0o755)
    return {**base_env, "QMAILQUEUE": str(script)}


def dumped(tmp_path: Path, n: int) -> set[str]:
    return set((tmp_path / f"qq-env.{n}").read_text().splitlines())


def test_a_mailrules_variable_is_not_seen_by_the_next_session(start, base_env, queue, tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("kapp@trusted.example:*:OK:::MARK=set-by-rules,HEADER_ADD=X-Marked: yes\n")
    env = {**queue_dumping_environment(tmp_path, base_env), "MAILRULES": str(rules),
           "MAILRULES_CACHE": str(tmp_path)}
    server = start(SERVER, "-v", *LOCAL, *SAME_PROCESS, QMAIL, env=env)
    message = (b"EHLO c.example\r\nMAIL FROM:<%s>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n"
               b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert b"250 2.6.0 Accepted" in talk(server, message % b"app@trusted.example")
    assert b"250 2.6.0 Accepted" in talk(server, message % b"other@example.net")
    server.wait_ends(2)
    assert len(set(pids(server))) == 1 and len(pids(server)) == 2
    assert "MARK=set-by-rules" in dumped(tmp_path, 0)
    assert not any(line.startswith(("MARK=", "HEADER_ADD=")) for line in dumped(tmp_path, 1))
    [(_, first), (_, second)] = queue.messages() if b"X-Marked" in queue.messages()[0][1] else reversed(
        queue.messages())
    assert b"X-Marked: yes" in first and b"X-Marked" not in second


def test_the_environment_of_each_session_is_that_of_a_process_per_connection(start, base_env, queue, tmp_path):
    """What qmail-queue inherits, and the -v lines, with -n 1 and with -n 1000 (a tcprules deny among them)."""
    cdb = compile_rules(tmp_path, '127.0.0.1:allow,RELAYCLIENT="",TCPLOCALHOST="from.rules"\n127.0.0.4:deny\n'
                                  '127.0.0.3:allow,BY="rule"\n')
    logs, environments = [], []
    for n, sessions in enumerate(("1", "1000")):
        directory = tmp_path / sessions
        directory.mkdir()
        env = {**queue_dumping_environment(directory, base_env), "ZZZ": "last"}
        server = start(SERVER, "-v", *LOCAL, "-n", sessions, "-c", "1", "-x", cdb, QMAIL, env=env)
        for source in ("127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.1"):
            denied = source == "127.0.0.4"  # closed at once: what it sent would reset the connection
            talk(server, b"" if denied else b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\n"
                 b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", source=source)
        server.wait_ends(4)
        masked = [{re.sub(r"^(TCP6?LOCALPORT|TCP6?REMOTEPORT)=\d+$", r"\1=N", line.replace(str(directory), "D"))
                   for line in dumped(directory, i)} for i in range(3)]
        environments.append(masked)
        lines = [re.sub(r"(?<=[\[ ])\d{2,}(?=[] ])", "P", line) for line in server.log.splitlines()]
        lines = [re.sub(r":\d+( |$)", r":PORT\1", line) for line in lines]
        logs.append(lines)
        assert len(set(pids(server))) == (4 if n == 0 else 1)
    assert environments[1] == environments[0]
    assert "RELAYCLIENT=" in environments[0][0] and "BY=rule" in environments[0][1]
    assert not any(line.startswith("RELAYCLIENT=") or line == "TCPLOCALHOST=from.rules"
                   for line in environments[0][1])
    assert "RELAYCLIENT=" in environments[0][2] and not any(line.startswith("BY=") for line in environments[0][2])
    status = [[line for line in lines if line.startswith("tcpserver: status: ")] for lines in logs]
    assert status[1] == status[0]  # the same counts; a worker's lines may come before the server's
    assert [line for line in logs[1] if line not in status[1]] == [line for line in logs[0] if line not in status[0]]


def test_a_session_ended_in_the_middle_of_data_ends_its_worker(start, base_env, queue):
    server = start(SERVER, "-v", *LOCAL, *SAME_PROCESS, QMAIL, env=base_env)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<dropped@example.org>\r\nDATA\r\nSubject: x\r\n\r\n"
                  b"half a message\r\n")
        while b"354 " not in s.recv(4096):
            pass
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # closed with a reset
    server.wait_log("Connection dropped")
    assert b"250 2.6.0 Accepted" in dialogue(server.port, "clean")
    server.wait_ends(2)
    first, second = pids(server)
    assert first != second
    assert [e for e, _ in queue.messages()] == [b"Fa@b.example\0Tclean@example.org\0\0"]


def test_a_worker_killed_mid_data_is_counted_out_and_replaced(start, base_env, queue):
    server = start(SERVER, "-v", *LOCAL, *SAME_PROCESS, QMAIL, env=base_env)
    assert b"250 2.6.0 Accepted" in dialogue(server.port, "before")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<killed@example.org>\r\nDATA\r\nSubject: x\r\n\r\n")
        while b"354 " not in s.recv(4096):
            pass
        os.kill(pids(server)[-1], signal.SIGKILL)
        assert s.recv(100) == b""
    server.wait_log(" status 9\n")
    assert b"250 2.6.0 Accepted" in dialogue(server.port, "after")
    server.wait_ends(3)
    first, killed, after = pids(server)
    assert first == killed != after
    assert re.search(rf"tcpserver: end {killed} status 9\ntcpserver: status: 0/1\n", server.log)
    assert sorted(e for e, _ in queue.messages()) == [b"Fa@b.example\0Tafter@example.org\0\0",
                                                      b"Fa@b.example\0Tbefore@example.org\0\0"]


def test_a_timed_out_session_ends_its_worker(start, base_env):
    server = start(SERVER, "-v", *LOCAL, *SAME_PROCESS, QMAIL, env={**base_env, "TIMEOUT": "0.5"})
    assert b"421 4.4.2 Timeout" in talk(server, b"EHLO c\r\n")
    assert b"221 " in talk(server, b"QUIT\r\n")
    server.wait_ends(2)
    first, second = pids(server)
    assert first != second


def test_sigterm_ends_the_server_free_workers_at_once_and_busy_ones_after_their_session(start, base_env, queue):
    server = start(SERVER, "-v", *LOCAL, "-n", "100", "-c", "4", QMAIL, env=base_env)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(3)]
    for conn in held:
        assert conn.recv(100).startswith(b"220 ")
    for conn in held[1:]:
        conn.sendall(b"QUIT\r\n")
        assert conn.recv(100).startswith(b"221 ")
        conn.close()
    server.wait_ends(2)
    workers = set(pids(server))
    [busy] = [p for p in workers if f"tcpserver: end {p} " not in server.log]  # the log's order is not the clients'

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in workers - {busy}):  # the free ones leave
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert Path(f"/proc/{busy}").exists()
    with socket.socket() as successor:  # the port is free for the next server, the busy worker still there
        successor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers: past TIME_WAIT
        successor.bind(("127.0.0.1", server.port))
        successor.listen(1)
    s = held[0]
    s.sendall(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<late@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    s.close()
    assert b"250 2.6.0 Accepted" in out
    while Path(f"/proc/{busy}").exists():  # and the busy one after its session
        assert time.monotonic() < deadline + 10
        time.sleep(0.02)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)
    assert [e for e, _ in queue.messages()] == [b"Fa@b.example\0Tlate@example.org\0\0"]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def private_kb(pid: int) -> int:
    """USS: the pages of this process that no other shares."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return sum(int(fields[name].split()[0]) for name in ("Private_Clean", "Private_Dirty"))


def test_descriptors_and_memory_stay_bounded_over_10000_sessions(start, base_env, cvm_socket, queue, tmp_path):
    """Bounds: not one descriptor more, and private memory within 1.5 MB of what it was after 100 sessions
    (the first sessions import what they use and fill the interpreter's caches)."""
    (tmp_path / "rules").write_text("drule@x.example:*:refused by rule\n")
    env = {**base_env, "CVM_SASL_PLAIN": cvm_socket["module"], "MAILRULES": str(tmp_path / "rules"),
           "MAILRULES_CACHE": str(tmp_path)}
    server = start(SERVER, "-v", *LOCAL, "-n", "100000", "-c", "1", QMAIL, env=env)
    plain = base64.b64encode(b"\0demo\0" + credentials()[3].encode())
    sessions = [b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nRSET\r\nQUIT\r\n",
                b"EHLO c\r\nAUTH PLAIN " + plain + b"\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@else.example>\r\n"
                b"QUIT\r\n",
                b"HELO c\r\nMAIL FROM:<rule@x.example>\r\nNOOP\r\nQUIT\r\n"]

    def idle_worker(sessions: int) -> int:
        """The worker, once it has logged the end of its sessions-th session (then it holds only its own)."""
        deadline = time.monotonic() + 30
        while server.log.count("tcpserver: end ") < sessions:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        [worker] = children(server.proc.pid)
        return worker

    for n in range(10_000):
        out = talk(server, sessions[n % 3])
        assert out.endswith(b"221 2.0.0 Good bye.\r\n") and (n % 3 != 2 or b"553 refused by rule" in out), out
        if n == 99:
            worker = idle_worker(100)
            fds, memory = fd_count(worker), private_kb(worker)
    assert idle_worker(10_000) == worker  # the same process all along
    assert fd_count(worker) == fds
    grown = private_kb(worker) - memory
    print(f"worker USS after 100 sessions: {memory} kB; after 10,000: {memory + grown} kB")
    assert grown <= 1536, (memory, grown)
    assert set(pids(server)) == {worker}


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]



def test_a_session_with_an_internal_error_ends_its_worker(start, base_env, tmp_path):
    """A bug met in a session (here one put into a copy of the package): the client gets its 451, the session
    goes on, and the next client gets a fresh process."""
    import shutil
    import sys

    import smtpfront
    from smtpfront.launchers import write_launchers

    site = tmp_path / "site"
    shutil.copytree(Path(smtpfront.__file__).parent, site / "smtpfront")
    plugin = site / "smtpfront" / "plugins" / "check_fqdn.py"
    bug = "        if address.text == 'bug@example.net':\n            raise KeyError('bug')\n"
    plugin.write_text(plugin.read_text().replace("        if address.text:\n", bug + "        if address.text:\n", 1))
    write_launchers(tmp_path, sys.executable, str(site))
    server = start(str(tmp_path / "smtpfront-server"), "-v", *LOCAL, *SAME_PROCESS, str(tmp_path / "smtpfront-qmail"),
                   env=base_env)
    out = talk(server, b"EHLO c\r\nMAIL FROM:<ok@example.net>\r\nMAIL FROM:<bug@example.net>\r\nQUIT\r\n")
    assert b"\r\n250 2.1.0 Sender accepted.\r\n451 4.3.0 Internal error.\r\n221 " in out
    assert b"221 " in talk(server, b"QUIT\r\n")
    server.wait_ends(2)
    assert "smtpfront: internal error: KeyError: 'bug'" in server.log
    first, second = pids(server)
    assert first != second


def test_workers_leave_when_their_server_is_killed(start, base_env):
    """SIGKILL: no word from the server; its free workers see the pipe only it held open close, and go."""
    server = start(SERVER, "-v", *LOCAL, "-n", "100", "-c", "2", QMAIL, env=base_env)
    assert b"221 " in talk(server, b"QUIT\r\n")
    server.wait_ends(1)
    [worker] = pids(server)
    assert Path(f"/proc/{worker}").exists()
    server.proc.kill()
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists():
        assert time.monotonic() < deadline, "the worker stayed"
        time.sleep(0.02)
