"""smtpfront-server against C mailfront under tcpserver, side by side in one run.

    python bench/server.py [--rounds N] [--sessions N] [--idle N] [--only PART]

The ways to serve port 587, started together and measured in turn (A B C D E A B C D E ...):

    C            tcpserver -c 40 -b 100 -l mx.example -R -H ... /usr/sbin/smtpfront-qmail (Debian's shell wrapper)
    C-direct     tcpserver, same options ... /usr/sbin/mailfront smtp qmail <the wrapper's plugin list>
    server       smtpfront-server, same options ... smtpfront-qmail (run in the forked child; -n 1)
    n100         smtpfront-server -n 100, same options ... smtpfront-qmail (workers of up to 100 sessions)
    per-conn     tcpserver, same options ... smtpfront-qmail (a new interpreter per connection)

and reports, each as the median with min..max over the rounds:

  - sessions/s with 40 parallel clients (EHLO, MAIL, RCPT, DATA, QUIT, pipelined), the server-side CPU
    per session (the server, its children living and ended, and all they started), the p50 and p99 of a
    session's time with 40 clients, and the ratios to both Cs round by round;
  - the latency of a full AUTH session, one client, each reply awaited (EHLO, AUTH PLAIN checked by a
    real cvm-pwfile, MAIL, RCPT, DATA, QUIT): p50 and p99;
  - private memory per idle session: USS (Private_Clean + Private_Dirty) and PSS from
    /proc/PID/smaps_rollup, with N sessions connected and greeted (default 500);
  - a worker's private memory (USS) after 1 session and after 100 (`--only worker`);
  - the STARTTLS increment in smtpfront-server: EHLO/STARTTLS/EHLO/QUIT against EHLO/QUIT (the
    client's half of the handshake is in the figure too).

qmail-queue is a stand-in that reads all of fd 0 and then all of fd 1 and exits 0 (compiled with cc
when there is one, else `sh` and `cat`): a stand-in that exits without reading makes the sender's
write fail, and a 451 for that is right.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import PASSWORD, Setup, children, greeted, rollup, tcp_connect, tls_session  # bench/run.py's harness

BIN = Path(sys.executable).parent
C_PROGRAM = "/usr/sbin/smtpfront-qmail"
C_MAILFRONT = "/usr/sbin/mailfront"
C_PLUGINS = ["cvm-authenticate", "check-fqdn", "counters", "mailrules", "relayclient", "cvm-validate",
             "qmail-validate", "add-received", "patterns"]  # the wrapper's list (mailfront 2.12)
NAMES = ("C", "C-direct", "server", "n100", "per-conn")
OPTIONS = ["-c", "40", "-b", "100", "-l", "mx.example", "-R", "-H"]
STAND_IN_C = "#include <unistd.h>\nint main(void) { char b[65536];\n" \
             "  while (read(0, b, sizeof b) > 0) ; while (read(1, b, sizeof b) > 0) ; return 0; }\n"
PIPELINED = (b"EHLO bench\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n"
             b"Subject: x\r\n\r\n" + b"hello world, this is a short message\r\n" * 20 + b".\r\nQUIT\r\n")


def stand_in(tmp: Path) -> str:
    """A qmail-queue that reads everything it is given, then exits 0."""
    if shutil.which("cc"):
        (tmp / "qq.c").write_text(STAND_IN_C)
        if subprocess.run(["cc", "-O2", "-o", str(tmp / "qq"), str(tmp / "qq.c")]).returncode == 0:
            return str(tmp / "qq")
    (tmp / "qq").write_text("#!/bin/sh\ncat >/dev/null && exec cat <&1 >/dev/null\n")
    (tmp / "qq").chmod(0o755)
    return str(tmp / "qq")


def certificate(tmp: Path) -> dict[str, str]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return {"TLS_CERTFILE": str(cert), "TLS_KEYFILE": str(key)}


class Service:
    """One UCSPI server on 127.0.0.1, on the port it chose (-1)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def services(env: dict[str, str], extra: list[str] | None = None, which: tuple[str, ...] = NAMES) -> list[Service]:
    options = [*OPTIONS, *(extra or [])]
    ours = ["127.0.0.1", "0", str(BIN / "smtpfront-qmail")]
    argv = {
        "C": ["tcpserver", "-1", *options, "127.0.0.1", "0", C_PROGRAM],
        "C-direct": ["tcpserver", "-1", *options, "127.0.0.1", "0", C_MAILFRONT, "smtp", "qmail", *C_PLUGINS],
        "server": [str(BIN / "smtpfront-server"), "-1", *options, *ours],
        "n100": [str(BIN / "smtpfront-server"), "-1", *options, "-n", "100", *ours],
        "per-conn": ["tcpserver", "-1", *options, *ours],
    }
    return [Service(name, argv[name], env) for name in which
            if not name.startswith("C") or os.path.exists(C_PROGRAM)]


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    return (f"{statistics.median(values) * scale:.{digits}f} "
            f"({min(values) * scale:.{digits}f}..{max(values) * scale:.{digits}f})")


# -- throughput ---------------------------------------------------------------------


def sessions_per_second(port: int, sessions: int, clients: int = 40) -> tuple[float, int, list[float]]:
    """`sessions` pipelined sessions, `clients` at a time, from one event loop (cheaper than threads:
    the clients share the two processors with the servers); the rate, the number that failed, and each
    session's time from connect to close."""
    import selectors

    sel = selectors.DefaultSelector()
    started = failures = done = 0
    replies: dict[socket.socket, bytearray] = {}
    began: dict[socket.socket, float] = {}
    times: list[float] = []

    def connect() -> None:
        nonlocal started
        conn = socket.socket()
        conn.setblocking(False)
        began[conn] = time.perf_counter()
        conn.connect_ex(("127.0.0.1", port))
        replies[conn] = bytearray()
        sel.register(conn, selectors.EVENT_WRITE)
        started += 1

    begin = time.perf_counter()
    for _ in range(min(clients, sessions)):
        connect()
    while done < sessions:
        for key, events in sel.select():
            conn = key.fileobj
            if events & selectors.EVENT_WRITE:
                conn.sendall(PIPELINED)  # small: fits in the socket buffer
                sel.modify(conn, selectors.EVENT_READ)
                continue
            try:
                chunk = conn.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                replies[conn] += chunk
                continue
            reply = replies.pop(conn)
            times.append(time.perf_counter() - began.pop(conn))
            sel.unregister(conn)
            conn.close()
            done += 1
            if not (b"250 2.6.0" in reply and b"221 " in reply):
                failures += 1
            if started < sessions:
                connect()
    sel.close()
    return sessions / (time.perf_counter() - begin), failures, times


def cpu_seconds(pid: int) -> float:
    """The server's processor time, its living children's, and that of every process they reaped:
    utime+stime+cutime+cstime of each (a worker of -n 100 lives across rounds)."""
    total = 0
    for process in (pid, *children(pid)):
        try:
            with open(f"/proc/{process}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended since: its time is in the server's cutime now... or soon (then a tick is lost)
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def ratios(mine: list[float], theirs: list[float]) -> str:
    return spread([m / t for m, t in zip(mine, theirs, strict=True)], 1, 2)


def throughput(servers: list[Service], rounds: int, sessions: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {s.name: [] for s in servers}
    cpu: dict[str, list[float]] = {s.name: [] for s in servers}
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    failed = {s.name: 0 for s in servers}
    for s in servers:  # warm-up: page cache, first imports, the workers started
        sessions_per_second(s.port, 200)
    for _ in range(rounds):
        for s in servers:
            before = cpu_seconds(s.proc.pid)
            rate, failures, session_times = sessions_per_second(s.port, sessions)
            time.sleep(0.2)  # the last children reaped
            cpu[s.name].append((cpu_seconds(s.proc.pid) - before) / sessions)
            rates[s.name].append(rate)
            times[s.name] += session_times
            failed[s.name] += failures
    print(f"sessions/s, 40 clients, {sessions} sessions a round, {rounds} rounds: median (min..max); "
          "server-side CPU per session (ms, the server and all it started); a session's time with 40 clients "
          "(p50, p99 ms)")
    for name, values in rates.items():
        p99 = statistics.quantiles(times[name], n=100)[98]
        print(f"  {name:9} {spread(values):>18}   CPU {spread(cpu[name], 1000, 2)}   "
              f"p50 {statistics.median(times[name]) * 1000:.1f} p99 {p99 * 1000:.1f}"
              + (f"   {failed[name]} failed" if failed[name] else ""))
    for base in ("C", "C-direct"):
        if base in rates:
            print(f"  against {base}, round by round: rate, CPU per session")
            for name in rates:
                if name != base:
                    print(f"    {name:9} x{ratios(rates[name], rates[base])}   CPU x{ratios(cpu[name], cpu[base])}")
    return rates


# -- latency of a full AUTH session --------------------------------------------------


def auth_session(port: int, plain: bytes) -> float:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        f = conn.makefile("rwb")

        def reply() -> bytes:
            while (line := f.readline())[3:4] == b"-":
                pass
            return line

        assert reply().startswith(b"220")
        for command, code in ((b"EHLO bench", b"250"), (b"AUTH PLAIN " + plain, b"235"),
                              (b"MAIL FROM:<demo@b.example>", b"250"), (b"RCPT TO:<u@elsewhere.example>", b"250"),
                              (b"DATA", b"354"),
                              (b"Subject: x\r\n\r\n" + b"hello world, this is a short message\r\n" * 20 + b".", b"250"),
                              (b"QUIT", b"221")):
            f.write(command + b"\r\n")
            f.flush()
            line = reply()
            assert line.startswith(code), line
    return time.perf_counter() - start


def latency(servers: list[Service], runs: int) -> dict[str, list[float]]:
    plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode())
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    for s in servers:
        auth_session(s.port, plain)
    for _ in range(runs):
        for s in servers:
            times[s.name].append(auth_session(s.port, plain))
    print(f"full AUTH session, one client, {runs} sessions each, interleaved: p50, p99, min..max (ms)")
    for name, values in times.items():
        p99 = statistics.quantiles(values, n=100)[98]
        against = "".join(f"  p50 x{statistics.median(values) / statistics.median(times[base]):.2f} {base}"
                          for base in ("C", "C-direct") if base in times and base != name)
        print(f"  {name:9} p50 {statistics.median(values) * 1000:6.2f}  p99 {p99 * 1000:6.2f}  "
              f"({min(values) * 1000:.2f}..{max(values) * 1000:.2f}){against}")
    return times


# -- memory of idle sessions --------------------------------------------------------


def idle_memory(env: dict[str, str], count: int) -> None:
    print(f"memory of {count} idle sessions (connected, greeted, waiting), per session: median (min..max) kB")
    extra = ["-c", str(count + 10), "-b", str(count + 10)]
    for s in services(env, extra, which=("C", "C-direct", "server", "n100")):
        conns = []
        try:
            conns = greeted(s.port, count)
            time.sleep(0.5)
            pids = children(s.proc.pid)
            figures = [rollup(pid) for pid in pids]
            server = rollup(s.proc.pid)
        finally:
            for conn in conns:
                conn.close()
            s.stop()
        uss = [f["uss"] for f in figures]
        pss = [f["pss"] for f in figures]
        print(f"  {s.name:9} {len(pids)} sessions: USS {spread(uss)}  PSS {spread(pss)}  "
              f"(the server itself: USS {server['uss']}, RSS {server['rss']})")


def worker_memory(env: dict[str, str]) -> None:
    """One worker (-c 1 -n 100): its USS while it holds its 2nd session, and its 100th (full AUTH sessions before)."""
    [s] = services(env, ["-c", "1"], which=("n100",))
    plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode())

    def holding_a_session() -> int:
        [conn] = greeted(s.port, 1)
        [worker] = children(s.proc.pid)
        uss = rollup(worker)["uss"]
        conn.close()
        return uss

    try:
        auth_session(s.port, plain)
        second = holding_a_session()
        for _ in range(97):
            auth_session(s.port, plain)
        hundredth = holding_a_session()
    finally:
        s.stop()
    print(f"a worker's USS holding a greeted session: its 2nd {second} kB, its 100th {hundredth} kB "
          f"({hundredth - second:+d} kB)")


# -- STARTTLS ---------------------------------------------------------------------------


def starttls(env: dict[str, str], tls_env: dict[str, str], runs: int) -> None:
    client = ssl.create_default_context(cafile=tls_env["TLS_CERTFILE"])
    print(f"STARTTLS increment, {runs} runs each, interleaved: EHLO/QUIT vs EHLO/STARTTLS/EHLO/QUIT, median (ms)")
    for s in services({**env, **tls_env}, which=("server", "n100", "per-conn")):
        plain, tls = [], []
        connect = tcp_connect(s.port)
        tls_session(connect, client)
        for _ in range(runs):
            plain.append(tls_session(connect, None))
            tls.append(tls_session(connect, client))
        s.stop()
        increments = [t - p for p, t in zip(plain, tls, strict=True)]
        print(f"  {s.name:9} plain {statistics.median(plain) * 1000:6.2f}  with STARTTLS "
              f"{statistics.median(tls) * 1000:6.2f}  increment {spread(increments, 1000, 2)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--sessions", type=int, default=300, help="sessions a round in the throughput test")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--idle", type=int, default=500)
    p.add_argument("--tls-runs", type=int, default=100)
    p.add_argument("--only", choices=("throughput", "latency", "memory", "worker", "starttls"), action="append",
                   help="run only this part (may be repeated)")
    a = p.parse_args()
    parts = set(a.only or ("throughput", "latency", "memory", "worker", "starttls"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        setup = Setup(tmp)  # a cvm-pwfile and a qmail home, as bench/run.py's scenarios have them
        (tmp / "plain" / "control" / "rcpthosts").write_text("example.org\n")
        env = {name: setup.env[name] for name in ("PATH", "QMAILHOME", "CVM_SASL_PLAIN")}
        env["QMAILQUEUE"] = stand_in(tmp)
        try:
            if parts & {"throughput", "latency"}:
                servers = services(env)
                try:
                    if "throughput" in parts:
                        throughput(servers, a.rounds, a.sessions)
                    if "latency" in parts:
                        latency(servers, a.latency_runs)
                finally:
                    for s in servers:
                        s.stop()
            if "memory" in parts:
                idle_memory(env, a.idle)
            if "worker" in parts:
                worker_memory(env)
            if "starttls" in parts:
                starttls(env, certificate(tmp), a.tls_runs)
        finally:
            setup.close()


if __name__ == "__main__":
    main()
