"""Benchmarks (stdlib only; `make bench`): every figure side by side with the C program, in one run.

    python bench/run.py [SCENARIO ...]      (default: all; BENCH_RUNS: runs, BENCH_IDLE: idle sessions)

session      a full AUTH session per connection (EHLO, AUTH PLAIN through cvm-pwfile, MAIL,
             RCPT, 2 KB DATA, QUIT) through smtpfront-qmail and the C smtpfront-qmail,
             against a bare `python3 -I -S -c pass`; and where our time goes, step by step
tcp          under `tcpserver -l localhost -b 100 -c 40`: sessions per second with 40
             clients, per-session latency p50/p99 (40 clients, and one at a time), and the
             private memory (PSS, USS) of 500 idle sessions
tls          what STARTTLS adds to a session, and its parts
throughput   1, 10 and 100 MB messages through smtpfront-queuedir and the C `mailfront smtp
             queuedir accept`: MB/s and peak RSS
rules, morercpthosts, bounds   start-up with big rule and cdb files; RSS at each bound

Runs are interleaved: the cases of a scenario take turns, run after run, so that a drift
in the machine's speed touches them alike.  Each figure is the median, min..max beside
it.  qmail-queue is a stand-in that reads all of the message (fd 0) and the envelope
(fd 1) before it exits 0, as the real one does.

The scenarios are functions of the command lines they compare, so that other benchmarks
add their rows with the same code: `session_cases` takes per-connection programs;
`tcp_rates` and `idle_memory` take a server command line in which the word PORT stands
for the port (`tcpserver_argv` builds tcpserver's); `tls_increment` takes a connect
function (`piped_session` for a program on a socketpair, `tcp_connect` for a server).
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
SRC = Path(__file__).resolve().parent.parent / "src"
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
IDLE = int(os.environ.get("BENCH_IDLE", "500"))  # idle sessions whose memory is measured
PASSWORD = "bench-password"
C_QMAIL = "/usr/sbin/smtpfront-qmail"
C_QUEUEDIR = ["/usr/sbin/mailfront", "smtp", "queuedir", "accept"]
QMAIL_QUEUE = """#!/bin/sh
# qmail-queue stand-in: reads the whole message (fd 0), then the whole envelope (fd 1), exits 0
exec cat - /dev/fd/3 3<&1 >/dev/null
"""


# ---- figures -------------------------------------------------------------------


def spread(samples: list[float], scale: float = 1000, digits: int = 1, unit: str = " ms") -> str:
    """'median unit (min..max)'."""
    s = sorted(samples)
    return f"{statistics.median(s) * scale:.{digits}f}{unit} ({s[0] * scale:.{digits}f}..{s[-1] * scale:.{digits}f})"


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1] if len(samples) > 1 else samples[0]


def interleaved(cases: dict[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
    """Each case's figure from `runs` rounds; in each round every case runs once, in turn."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, case in cases.items():
            results[name].append(case())
    return results


def c_available(path: str) -> bool:
    return os.path.exists(path)


# ---- one process per session, fed on stdin ---------------------------------------


def _stdin(data) -> tempfile.TemporaryFile:
    stdin = tempfile.TemporaryFile()
    for part in data if isinstance(data, list) else [data]:
        stdin.write(part)
    stdin.seek(0)
    return stdin


def timed(argv: list[str], data, env: dict[str, str]) -> float:
    """Wall time of one run fed `data` (bytes, or a list of bytes) on stdin."""
    with _stdin(data) as stdin:
        start = time.perf_counter()
        subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        return time.perf_counter() - start


def peak_rss(argv: list[str], data, env: dict[str, str]) -> int:
    """The program's own peak RSS in KiB: VmHWM, read until it exits.

    (ru_maxrss would not do: a child's figure includes the pages it had before
    exec, i.e. this harness's.)  VmHWM only grows, so the last reading is the peak.
    """
    with _stdin(data) as stdin:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        peak = 0
        while True:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
            except OSError:
                break
            if "VmHWM" not in fields:  # exited, not yet reaped
                break
            peak = max(peak, int(fields["VmHWM"].split()[0]))
            time.sleep(0.001)
        proc.wait()
    return peak


def session_cases(programs: dict[str, list[str]], data, env: dict[str, str]) -> dict[str, Callable[[], float]]:
    """Cases for `interleaved`: each program started afresh and fed `data` on stdin, as tcpserver would."""
    return {name: (lambda argv=argv: timed(argv, data, env)) for name, argv in programs.items()}


# ---- the common set-up: a CVM, a qmail-queue stand-in, the AUTH session --------------


class Setup:
    """What every scenario shares: a running cvm-pwfile, the qmail-queue stand-in, the environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / "pw").write_text(f"demo:{PASSWORD}:1000:1000:Demo:/:/bin/sh\n")
        sock = tmp / "cvm.sock"
        self.cvm = subprocess.Popen(["cvm-pwfile", f"cvm-local:{sock}"],
                                    env={**os.environ, "CVM_PWFILE_PATH": str(tmp / "pw")},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not sock.exists():
            time.sleep(0.01)
        self.queue = tmp / "qmail-queue"
        self.queue.write_text(QMAIL_QUEUE)
        self.queue.chmod(0o755)
        (tmp / "plain" / "control").mkdir(parents=True)
        self.env = {"PATH": os.environ["PATH"], "TCPLOCALHOST": "mx.example", "TCPREMOTEIP": "127.0.0.1",
                    "CVM_SASL_PLAIN": f"cvm-local:{sock}", "QMAILQUEUE": str(self.queue),
                    "QMAILHOME": str(tmp / "plain")}

    def close(self) -> None:
        self.cvm.kill()
        self.cvm.wait()


def auth_session() -> bytes:
    plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode())
    body = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 26
    return (b"EHLO bench\r\nAUTH PLAIN " + plain + b"\r\nMAIL FROM:<a@b.example>\r\n"
            b"RCPT TO:<y@elsewhere.example>\r\nDATA\r\n" + body + b".\r\nQUIT\r\n")


# ---- scenario: a session per connection ----------------------------------------------


def session_bench(setup: Setup) -> None:
    session = auth_session()
    env = setup.env
    prog = [str(BIN / "smtpfront-qmail")]
    programs = {"bare python": [sys.executable, "-I", "-S", "-c", "pass"], "smtpfront": prog}
    if c_available(C_QMAIL):
        programs["C mailfront"] = [C_QMAIL]
    imports = (f"import sys; sys.path.append({str(SRC)!r}); "
               "from smtpfront import programs, registry, pipeline, session, config, log, transport, sasl, cvm; "
               "registry.protocol('smtp'), registry.backend('qmail'), registry.plugins(programs.SMTP_QMAIL_PLUGINS); "
               "import select, posix; posix._exit(0)")  # leaving as the programs do, without teardown
    steps = {  # each adds one part of the full session
        "+ importing our modules": ([sys.executable, "-I", "-S", "-c", imports], b""),
        "+ EHLO/QUIT": (prog, b"EHLO bench\r\nQUIT\r\n"),
        "+ AUTH (CVM round trip)": (prog, session.split(b"MAIL FROM")[0] + b"QUIT\r\n"),
        "+ MAIL, RCPT, DATA (qmail-queue)": (prog, session),
    }
    cases = session_cases(programs, session, env)
    cases.update({name: (lambda argv=argv, data=data: timed(argv, data, env)) for name, (argv, data) in steps.items()})
    result = interleaved(cases, RUNS)
    base = statistics.median(result["bare python"])
    print(f"session ({RUNS} runs interleaved; median (min..max)): bare python {spread(result['bare python'])}")
    for name in ("smtpfront", "C mailfront"):
        if name in result:
            print(f"  {name:12} {spread(result[name]):26} = {statistics.median(result[name]) / base:.2f}x bare python")
    print("  profile of the smtpfront session, cumulative:")
    for name in steps:
        print(f"    {name:34} {spread(result[name])}")


# ---- scenario: a listening server ----------------------------------------------------


def tcpserver_argv(program: str, limit: int = 40) -> list[str]:
    """tcpserver as deployed, without the DNS lookups that stall a session in a hundred for 3 s."""
    return ["tcpserver", "-R", "-H", "-l", "localhost", "-b", "100", "-c", str(limit), "127.0.0.1", "PORT", program]


class Listening:
    """The server `argv` (PORT: a free port) runs from `with` to the end of the block."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.argv = [str(self.port) if word == "PORT" else word for word in argv]
        self.env = env

    def __enter__(self) -> Listening:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.argv} does not listen")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()

    def children(self) -> list[int]:
        """The server's child processes: one a session."""
        return children(self.proc.pid)


def one_session(port: int, dialogue: bytes) -> tuple[float, bool]:
    """Connect, send the whole dialogue, read to the end: (seconds, ended with 221)."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(dialogue)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return time.perf_counter() - start, b"\r\n221 " in reply


def drive(port: int, dialogue: bytes, sessions: int, clients: int) -> tuple[float, list[float], int]:
    """`clients` threads share `sessions` sessions: (sessions per second, each session's seconds, failures)."""
    remaining = [sessions]
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def client() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            seconds, ok = one_session(port, dialogue)
            with lock:
                latencies.append(seconds)
                failures[0] += not ok

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sessions / (time.perf_counter() - start), latencies, failures[0]


def tcp_rates(servers: dict[str, list[str]], env: dict[str, str], dialogue: bytes, sessions: int, clients: int,
              rounds: int) -> dict[str, tuple[list[float], list[float], int]]:
    """For each server command line: sessions/s of each round, all session latencies, failures.  Interleaved."""
    results: dict[str, tuple[list[float], list[float], int]] = {name: ([], [], 0) for name in servers}
    for _ in range(rounds):
        for name, argv in servers.items():
            with Listening(argv, env) as server:
                rate, latencies, failed = drive(server.port, dialogue, sessions, clients)
            rates, all_latencies, failures = results[name]
            rates.append(rate)
            all_latencies += latencies
            results[name] = (rates, all_latencies, failures + failed)
    return results


def children(pid: int) -> list[int]:
    """A single-threaded process's children (a server's: one a session)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def rollup(pid: int) -> dict[str, int]:
    """A process's memory in kB from /proc/PID/smaps_rollup: USS (private), PSS and RSS."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        kb = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f) if v.strip().endswith("kB")}
    return {"uss": kb["Private_Clean"] + kb["Private_Dirty"], "pss": kb["Pss"], "rss": kb["Rss"]}


def greeted(port: int, count: int) -> list[socket.socket]:
    """`count` connections to the server, each greeted: its session set up and waiting."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for conn in conns:
        conn.settimeout(30)
        while b"\r\n" not in conn.recv(4096):
            pass
    return conns


def idle_memory(argv: list[str], env: dict[str, str], sessions: int) -> tuple[float, float, float]:
    """`sessions` connections, each greeted and then idle: per session (PSS, USS, RSS) in MB, from smaps_rollup."""
    with Listening(argv, env) as server:
        conns = []
        try:
            conns = greeted(server.port, sessions)
            time.sleep(0.5)
            figures = []
            for pid in server.children():
                try:
                    figures.append(rollup(pid))
                except (OSError, ValueError, KeyError):
                    continue
        finally:
            for conn in conns:
                conn.close()
    counted = len(figures)
    if counted < sessions:
        print(f"    (only {counted} of {sessions} sessions were running)")
    per = max(counted, 1) * 1024
    return tuple(sum(f[key] for f in figures) / per for key in ("pss", "uss", "rss"))


def tcp_bench(setup: Setup, sessions: int = 400, clients: int = 40, idle: int = IDLE) -> None:
    env = setup.env
    servers = {"smtpfront": tcpserver_argv(str(BIN / "smtpfront-qmail"))}
    if c_available(C_QMAIL):
        servers["C"] = tcpserver_argv(C_QMAIL)
    dialogue = auth_session()
    rounds = max(RUNS // 7, 2)
    print(f"tcp (full AUTH sessions; tcpserver -l localhost -b 100 -c 40; {rounds} rounds interleaved):")
    loaded = tcp_rates(servers, env, dialogue, sessions, clients, rounds)
    single = tcp_rates(servers, env, dialogue, RUNS * 5 // rounds, 1, rounds)
    for name in servers:
        rates, latencies, failed = loaded[name]
        _, alone, failed_alone = single[name]
        print(f"  {name:10} {spread(rates, 1, 0, ' sessions/s')} with {clients} clients; latency p50 "
              f"{percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms; one client "
              f"at a time: p50 {percentile(alone, 50) * 1000:.1f} ms, p99 {percentile(alone, 99) * 1000:.1f} ms"
              + (f"  ({failed + failed_alone} sessions failed)" if failed + failed_alone else ""))
    if len(servers) == 2:
        ratio = statistics.median(loaded["smtpfront"][0]) / statistics.median(loaded["C"][0])
        print(f"  sessions/s ratio {ratio:.2f}")
    print(f"  {idle} idle sessions (after the greeting), per session:")
    for name, argv in servers.items():
        wide = argv[:]
        wide[wide.index("-c") + 1] = str(idle + 10)
        pss, uss, rss = idle_memory(wide, env, idle)
        print(f"    {name:10} PSS {pss:5.2f} MB   USS (private) {uss:5.2f} MB   RSS {rss:5.2f} MB")


# ---- scenario: STARTTLS ----------------------------------------------------------------


def piped_session(argv: list[str], env: dict[str, str]) -> Callable[[], tuple[socket.socket, Callable[[], None]]]:
    """A connect function for `tls_increment`: the program on a socketpair, as tcpserver runs it."""

    def connect() -> tuple[socket.socket, Callable[[], None]]:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL, env=env)
        theirs.close()
        return ours, proc.wait

    return connect


def tcp_connect(port: int) -> Callable[[], tuple[socket.socket, Callable[[], None]]]:
    """A connect function for `tls_increment`: a connection to a listening server (`Listening.port`)."""

    def connect() -> tuple[socket.socket, Callable[[], None]]:
        return socket.create_connection(("127.0.0.1", port)), lambda: None

    return connect


def tls_session(connect, context, answer: bool = False) -> float:
    """Wall time of one EHLO[/STARTTLS/EHLO]/QUIT session (context None: plain), connection to exit.

    After 221 the client closes at once, or (`answer`) reads the server's close_notify and sends its own first."""
    start = time.perf_counter()
    sock, finish = connect()
    conn = sock.makefile("rwb")

    def command(line: bytes) -> None:
        conn.write(line)
        conn.flush()
        while conn.readline()[3:4] == b"-":
            pass

    conn.readline()
    command(b"EHLO bench\r\n")
    if context is not None:
        command(b"STARTTLS\r\n")
        conn.close()
        sock = context.wrap_socket(sock, server_hostname="localhost")
        conn = sock.makefile("rwb")
        command(b"EHLO bench\r\n")
    command(b"QUIT\r\n")
    conn.close()
    if answer:
        sock = sock.unwrap()
    sock.close()
    finish()
    return time.perf_counter() - start


def tls_increment(connect, context, runs: int) -> tuple[list[float], list[float]]:
    """Plain and STARTTLS sessions, interleaved: (plain seconds, STARTTLS seconds)."""
    result = interleaved({"plain": lambda: tls_session(connect, None), "tls": lambda: tls_session(connect, context)},
                         runs)
    return result["plain"], result["tls"]


def make_certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def tls_bench(setup: Setup) -> None:
    import ssl

    from smtpfront import tls

    cert, key = make_certificate(setup.tmp)
    env = {**setup.env, "TLS_CERTFILE": str(cert), "TLS_KEYFILE": str(key)}
    client = ssl.create_default_context(cafile=str(cert))
    plain, with_tls = tls_increment(piped_session([str(BIN / "smtpfront-qmail")], env), client, RUNS)
    added = [t - p for p, t in zip(plain, with_tls, strict=True)]
    bare = [sys.executable, "-I", "-S", "-c"]
    parts = interleaved({
        "pass": lambda: timed(bare + ["pass"], b"", env),
        "_ssl": lambda: timed(bare + ["import _ssl"], b"", env),
        "ssl": lambda: timed(bare + ["import ssl"], b"", env),
    }, RUNS)
    start = time.perf_counter()
    context = tls.server_context(str(cert), str(key), None, "1.2")
    setup_time = time.perf_counter() - start
    handshakes = [memory_handshake(context, client) for _ in range(RUNS)]
    connect = piped_session([str(BIN / "smtpfront-qmail")], env)
    ends = interleaved({"closes": lambda: tls_session(connect, client),
                        "answers": lambda: tls_session(connect, client, answer=True)}, RUNS)
    base = statistics.median(parts["pass"])
    print(f"tls ({RUNS} runs interleaved; per connection; TLS from {tls.library_name()}):")
    print(f"  EHLO/QUIT {spread(plain)}, EHLO/STARTTLS/EHLO/QUIT {spread(with_tls)}: STARTTLS adds {spread(added)}")
    print(f"  parts: importing _ssl {(statistics.median(parts['_ssl']) - base) * 1000:.1f} ms (ssl would be "
          f"{(statistics.median(parts['ssl']) - base) * 1000:.1f} ms), server context {setup_time * 1000:.1f} ms, "
          f"a TLS 1.3 handshake {statistics.median(handshakes) * 1000:.2f} ms (both halves, in memory)")
    print(f"  the end (close_notify, then the server waits for the client's): the client closing at once "
          f"{spread(ends['closes'])}, answering with its own close_notify {spread(ends['answers'])}")


def memory_handshake(server_context, client_context) -> float:
    """One handshake between two in-memory TLS endpoints with ready contexts: the CPU cost of TLS itself."""
    import ssl

    from smtpfront.tls import server_side

    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_side(server_context, s_in, s_out)
    start = time.perf_counter()
    done = set()
    while len(done) < 2:
        for name, end, outgoing, peer_in in (("c", client, c_out, s_in), ("s", server, s_out, c_in)):
            if name not in done:
                try:
                    end.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(outgoing.read())
    return time.perf_counter() - start


# ---- scenario: big messages --------------------------------------------------------------


def message(mb: int, line: bytes) -> list[bytes]:
    """A session with one message of about `mb` MB of `line`s (after a header), as a list of blocks."""
    block = line * (65536 // len(line) + 1)
    blocks = mb * 1024 * 1024 // len(block)
    return ([b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nSubject: bench\r\n\r\n"]
            + [block] * blocks + [b".\r\nQUIT\r\n"])


def queued(argv: list[str], data: list[bytes], env: dict[str, str], queue: Path) -> float:
    """MB/s of one run into the queue directory, emptied afterwards."""
    seconds = timed(argv, data, env)
    files = list((queue / "new").iterdir())
    if len(files) != 1:
        raise RuntimeError(f"{argv} queued {len(files)} messages")
    files[0].unlink()
    return sum(map(len, data)) / 1e6 / seconds


def queue_directory(setup: Setup, name: str) -> tuple[Path, dict[str, str]]:
    """A queue directory for the queuedir back end, and the environment that sends messages there unsynced."""
    q = setup.tmp / name
    for sub in ("tmp", "new"):
        (q / sub).mkdir(parents=True, exist_ok=True)
    return q, {"PATH": os.environ["PATH"], "QUEUEDIR": str(q), "QUEUEDIR_NOSYNC": "1", "RELAYCLIENT": "",
               "QMAILHOME": str(setup.tmp / "plain")}


def throughput_bench(setup: Setup) -> None:
    q, env = queue_directory(setup, "queue")
    programs = {"smtpfront": [str(BIN / "smtpfront-queuedir")]}
    if c_available(C_QUEUEDIR[0]):
        programs["C"] = C_QUEUEDIR
    text = b"The quick brown fox jumps over the lazy dog; see www.example.org. Thanks.\r\n"
    runs = max(RUNS // 4, 3)
    print(f"throughput (queuedir, no fsync; {runs} runs interleaved; MB/s median (min..max); peak RSS):")
    for mb, shape, line in ((1, "998-byte lines", b"y" * 998 + b"\r\n"), (10, "998-byte lines", b"y" * 998 + b"\r\n"),
                            (100, "998-byte lines", b"y" * 998 + b"\r\n"), (10, "text, 76-byte lines", text)):
        data = message(mb, line)

        result = interleaved({name: (lambda argv=argv, data=data: queued(argv, data, env, q))
                              for name, argv in programs.items()}, runs)
        rss = {name: peak_rss(argv, data, env) / 1024 for name, argv in programs.items()}
        for f in (q / "new").iterdir():
            f.unlink()
        row = "   ".join(f"{name}: {spread(result[name], 1, 0, '')}, {rss[name]:.1f} MB" for name in programs)
        ratio = (f"   ratio {statistics.median(result['smtpfront']) / statistics.median(result['C']):.2f}"
                 if "C" in result else "")
        print(f"  {mb:3} MB {shape:20} {row}{ratio}")


def chunked(mb: int, line: bytes) -> list[bytes]:
    """The same message as `message` sends, in BDAT chunks of one block each (RFC 3030)."""
    blocks = message(mb, line)
    head, body, tail = blocks[0], blocks[1:-1], blocks[-1]
    envelope, _, header = head.partition(b"DATA\r\n")
    out = [envelope + b"BDAT %d\r\n" % len(header) + header]
    out += [b"BDAT %d\r\n" % len(block) + block for block in body]
    return out + [b"BDAT 0 LAST\r\n" + tail.removeprefix(b".\r\n")]


def bdat_bench(setup: Setup) -> None:
    """BDAT beside DATA through smtpfront-queuedir (the C program has no BDAT)."""
    q, env = queue_directory(setup, "queue-bdat")
    argv = [str(BIN / "smtpfront-queuedir")]
    runs = max(RUNS // 4, 3)
    print(f"BDAT beside DATA (smtpfront-queuedir, no fsync, 64 KiB chunks; {runs} runs interleaved; MB/s):")
    for mb in (10, 100):
        line = b"y" * 998 + b"\r\n"
        sessions = {"DATA": message(mb, line), "BDAT": chunked(mb, line)}
        result = interleaved({name: (lambda data=data: queued(argv, data, env, q)) for name, data in sessions.items()},
                             runs)
        ratio = statistics.median(result["BDAT"]) / statistics.median(result["DATA"])
        print(f"  {mb:3} MB   DATA {spread(result['DATA'], 1, 0, '')}   BDAT {spread(result['BDAT'], 1, 0, '')}"
              f"   BDAT/DATA {ratio:.2f}")


# ---- scenarios: rules, cdb, bounds -------------------------------------------------------


def rules_bench(setup: Setup) -> None:
    tmp = setup.tmp
    rules = tmp / "rules"
    rules.write_text("".join(f"k*@host{i}.example:*:ok {i}\n" for i in range(10_000)) + "d*:*\n")
    env = {"PATH": os.environ["PATH"], "QMAILHOME": str(tmp / "plain")}
    session = b"MAIL FROM:<a@host9999.example>\r\nQUIT\r\n"
    prog = [str(BIN / "smtpfront-qmail")]
    timed(prog, session, {**env, "MAILRULES": str(rules)})  # writes the cache
    result = interleaved(session_cases({"no rules": prog}, session, env)
                         | {"10,000 rules": lambda: timed(prog, session, {**env, "MAILRULES": str(rules)})}, RUNS)
    without, with_rules = (statistics.median(result[k]) for k in ("no rules", "10,000 rules"))
    print(f"rules: session {spread(result['no rules'])} without, {spread(result['10,000 rules'])} with 10,000 "
          f"rules ({(with_rules / without - 1) * 100:+.0f}%)")


def morercpthosts_bench(setup: Setup) -> None:
    from smtpfront.cdb import write_cdb

    tmp = setup.tmp
    home = tmp / "morercpt"
    (home / "control").mkdir(parents=True)
    (home / "control" / "rcpthosts").write_text("example.org\n")
    write_cdb(str(home / "control" / "morercpthosts.cdb"), ((f"host{i}.example".encode(), b"") for i in range(100_000)))
    small = tmp / "small"
    (small / "control").mkdir(parents=True)
    (small / "control" / "rcpthosts").write_text("example.org\nhost99999.example\n")
    session = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@host99999.example>\r\nQUIT\r\n"
    prog = [str(BIN / "smtpfront-qmail")]
    env = {"PATH": os.environ["PATH"]}
    result = interleaved({"rcpthosts": lambda: timed(prog, session, {**env, "QMAILHOME": str(small)}),
                          "cdb": lambda: timed(prog, session, {**env, "QMAILHOME": str(home)})}, RUNS)
    a, b = (statistics.median(result[k]) for k in ("rcpthosts", "cdb"))
    print(f"morercpthosts.cdb: session {spread(result['rcpthosts'])} with the domain in rcpthosts, "
          f"{spread(result['cdb'])} found in a 100,000-entry cdb ({(b / a - 1) * 100:+.0f}%)")


def bounds_bench(setup: Setup) -> None:
    env = {**setup.env, "RELAYCLIENT": ""}
    mail = b"MAIL FROM:<a@b.example>\r\n"
    cases = {
        "EHLO/QUIT": b"EHLO x\r\nQUIT\r\n",
        "1,001 recipients": mail + b"".join(b"RCPT TO:<user%d@example.org>\r\n" % i for i in range(1001)),
        "10,001 commands": b"NOOP\r\n" * 10001,
        "1,000 overlong command lines": (b"NOOP " + b"x" * 5000 + b"\r\n") * 1000,
        "AUTH line of 12 KB, x100": b"AUTH PLAIN " + b"A" * 12000 + b"\r\n" * 100,
        "one 10 MB body line": mail + b"RCPT TO:<u@example.org>\r\nDATA\r\n" + b"y" * 10_000_000 + b"\r\n.\r\n",
        "10 MB of empty body lines": mail + b"RCPT TO:<u@example.org>\r\nDATA\r\n" + b"\r\n" * 5_000_000 + b".\r\n",
    }
    print("bounds (peak RSS, VmHWM):")
    for name, data in cases.items():
        print(f"  {name:30} {peak_rss([str(BIN / 'smtpfront-qmail')], data, env) / 1024:5.1f} MB")


def qmqp_package(recipients: int) -> bytes:
    def ns(data: bytes) -> bytes:
        return b"%d:%s," % (len(data), data)

    return ns(ns(b"Subject: bench\n\nbody\n") + ns(b"a@b.example")
              + b"".join(ns(b"user%d@example.org" % i) for i in range(recipients)))


def qmqp_bench(setup: Setup, recipients: int = 200_000, runs: int = 3) -> None:
    """One QMQP package with many recipients (issue 19: a million took 169 MB and 9 s of CPU): peak RSS and wall
    time, ours (at most 1,000 taken, the rest read and dropped) and C's (all taken)."""
    data = qmqp_package(recipients)
    env = {**setup.env, "RELAYCLIENT": ""}
    programs = {"smtpfront": [str(BIN / "qmqpfront-qmail")]}
    if c_available("/usr/sbin/qmqpfront-qmail"):
        programs["C mailfront"] = ["/usr/sbin/qmqpfront-qmail"]
    times = interleaved(session_cases(programs, data, env), runs)
    print(f"a QMQP package of {recipients:,} recipients ({len(data) / 1e6:.1f} MB):")
    for name, argv in programs.items():
        print(f"  {name:12} {peak_rss(argv, data, env) / 1024:6.1f} MB peak, {spread(times[name], 1, 2, ' s')}")


SCENARIOS = {
    "session": session_bench,
    "tcp": tcp_bench,
    "tls": tls_bench,
    "rules": rules_bench,
    "morercpthosts": morercpthosts_bench,
    "bounds": bounds_bench,
    "throughput": throughput_bench,
    "bdat": bdat_bench,
    "qmqp": qmqp_bench,
}


def main(argv: list[str]) -> None:
    unknown = [name for name in argv if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown}; choose from {' '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory() as d:
        setup = Setup(Path(d))
        try:
            for name in argv or SCENARIOS:
                SCENARIOS[name](setup)
        finally:
            setup.close()


if __name__ == "__main__":
    main(sys.argv[1:])
