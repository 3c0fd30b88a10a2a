"""Benchmarks (stdlib only; `make bench`): ratios measured side by side in one run.

session:    a full AUTH session through smtpfront-qmail and through the C
            smtpfront-qmail, each divided by a bare `python3 -I -S -c pass`
throughput: messages of 1, 10 and 100 MB through smtpfront-queuedir and the C
            `mailfront smtp queuedir accept`, MB/s and peak RSS
rules:      session start-up with a 10,000-line MAILRULES file (cached parse), and
            with a 100,000-entry morercpthosts.cdb
bounds:     peak RSS of sessions that push each bound (recipients, commands,
            line lengths, AUTH lines) against a plain EHLO/QUIT
concurrency: sessions per second under `tcpserver -c 40` with 40 parallel
            clients, smtpfront-qmail against the C smtpfront-qmail
tls:        EHLO/QUIT against EHLO/STARTTLS/EHLO/QUIT over a socket, and the
            server side's own cost: context set-up and handshake in one process
"""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
PASSWORD = "bench-password"


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


def median_interleaved(cases: dict[str, tuple[list[str], bytes, dict]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (argv, data, env) in cases.items():
            times[name].append(timed(argv, data, env))
    return {name: statistics.median(t) for name, t in times.items()}


def start_cvm(tmp: Path) -> tuple[subprocess.Popen, str]:
    (tmp / "pw").write_text(f"demo:{PASSWORD}:1000:1000:Demo:/:/bin/sh\n")
    sock = tmp / "cvm.sock"
    proc = subprocess.Popen(["cvm-pwfile", f"cvm-local:{sock}"], env={**os.environ, "CVM_PWFILE_PATH": str(tmp / "pw")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not sock.exists():
        time.sleep(0.01)
    return proc, f"cvm-local:{sock}"


def session_bench(tmp: Path) -> None:
    cvm_proc, module = start_cvm(tmp)
    plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode())
    body = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 26
    session = (b"EHLO bench\r\nAUTH PLAIN " + plain + b"\r\nMAIL FROM:<a@b.example>\r\n"
               b"RCPT TO:<y@elsewhere.example>\r\nDATA\r\n" + body + b".\r\nQUIT\r\n")
    env = {"PATH": os.environ["PATH"], "TCPLOCALHOST": "mx.example", "TCPREMOTEIP": "127.0.0.1",
           "CVM_SASL_PLAIN": module, "QMAILQUEUE": "/bin/true", "QMAILHOME": str(tmp)}
    bare = [sys.executable, "-I", "-S", "-c", "pass"]
    cases = {"bare python": (bare, b"", env), "smtpfront": ([str(BIN / "smtpfront-qmail")], session, env)}
    if os.path.exists("/usr/sbin/smtpfront-qmail"):
        cases["C mailfront"] = (["/usr/sbin/smtpfront-qmail"], session, env)
    # where our time goes: each step adds one part of the full session
    prog = [str(BIN / "smtpfront-qmail")]
    src = str(Path(__file__).resolve().parent.parent / "src")
    imports = (f"import sys; sys.path.insert(0, {src!r}); import smtpfront.cli, smtpfront.server, smtpfront.sasl, "
               "smtpfront.backends.qmail, smtpfront.handlers.check_fqdn, smtpfront.handlers.counters, "
               "smtpfront.handlers.qmail_validate, smtpfront.handlers.received, smtpfront.handlers.relayclient, "
               "select, posix; posix._exit(0)")  # leaving as the programs do, without teardown
    steps = {
        "+ importing our modules": ([sys.executable, "-I", "-S", "-c", imports], b"", env),
        "+ EHLO/QUIT": (prog, b"EHLO bench\r\nQUIT\r\n", env),
        "+ AUTH (CVM round trip)": (prog, session.split(b"MAIL FROM")[0] + b"QUIT\r\n", env),
        "+ MAIL, RCPT, DATA (qmail-queue)": (prog, session, env),
    }
    result = median_interleaved({**cases, **steps}, RUNS)
    cvm_proc.kill()
    base = result["bare python"]
    print(f"session ({RUNS} runs, median): bare python {base * 1000:.1f} ms")
    for name in ("smtpfront", "C mailfront"):
        if name in result:
            print(f"  {name:12} {result[name] * 1000:7.1f} ms   = {result[name] / base:.2f}x bare python")
    print("  profile of the smtpfront session, cumulative:")
    for name in steps:
        print(f"    {name:34} {result[name] * 1000:6.1f} ms")


def throughput_bench(tmp: Path) -> None:
    q = tmp / "queue"
    for sub in ("tmp", "new"):
        (q / sub).mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "QUEUEDIR": str(q), "QUEUEDIR_NOSYNC": "1", "RELAYCLIENT": "",
           "QMAILHOME": str(tmp)}
    line = b"y" * 998 + b"\r\n"
    print("throughput (queuedir, no fsync; best of 3):")
    for mb in (1, 10, 100):
        block = line * 1024
        blocks = mb * 1024 * 1024 // len(block)
        size = blocks * len(block)
        data = [b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"] + [block] * blocks
        data.append(b".\r\nQUIT\r\n")
        row = []
        for name, argv in (("smtpfront", [str(BIN / "smtpfront-queuedir")]),
                           ("C", ["/usr/sbin/mailfront", "smtp", "queuedir", "accept"])):
            if not os.path.exists(argv[0]):
                continue
            best = min(timed(argv, data, env) for _ in range(3))
            row.append((name, size / best / 1e6, peak_rss(argv, data, env) / 1024))
            for f in (q / "new").iterdir():
                f.unlink()
        text = "   ".join(f"{n}: {mbps:6.0f} MB/s, peak RSS {rss:5.1f} MB" for n, mbps, rss in row)
        ratio = f"   ratio {row[0][1] / row[1][1]:.2f}" if len(row) == 2 else ""
        print(f"  {mb:3} MB   {text}{ratio}")


def rules_bench(tmp: Path) -> None:
    rules = tmp / "rules"
    rules.write_text("".join(f"k*@host{i}.example:*:ok {i}\n" for i in range(10_000)) + "d*:*\n")
    env = {"PATH": os.environ["PATH"], "QMAILHOME": str(tmp)}
    session = b"MAIL FROM:<a@host9999.example>\r\nQUIT\r\n"
    prog = [str(BIN / "smtpfront-qmail")]
    timed(prog, session, {**env, "MAILRULES": str(rules)})  # writes the cache
    result = median_interleaved({"no rules": (prog, session, env),
                                 "10,000 rules": (prog, session, {**env, "MAILRULES": str(rules)})}, RUNS)
    from smtpfront import mailrules

    start = time.perf_counter()
    mailrules.parse(rules.read_text())
    parse = time.perf_counter() - start
    print(f"rules: session {result['no rules'] * 1000:.1f} ms without, {result['10,000 rules'] * 1000:.1f} ms with "
          f"10,000 rules (+{(result['10,000 rules'] / result['no rules'] - 1) * 100:.0f}%, cached parse); "
          f"uncached parse {parse * 1000:.0f} ms")


def morercpthosts_bench(tmp: Path) -> None:
    from smtpfront.cdb import write_cdb

    home = tmp / "morercpt"
    (home / "control").mkdir(parents=True)
    (home / "control" / "rcpthosts").write_text("example.org\n")
    write_cdb(str(home / "control" / "morercpthosts.cdb"), ((f"host{i}.example".encode(), b"") for i in range(100_000)))
    env = {"PATH": os.environ["PATH"], "QMAILHOME": str(home)}
    session = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@host99999.example>\r\nQUIT\r\n"
    prog = [str(BIN / "smtpfront-qmail")]
    plain = {**env, "QMAILHOME": str(tmp / "plain")}
    (tmp / "plain" / "control").mkdir(parents=True)
    (tmp / "plain" / "control" / "rcpthosts").write_text("example.org\nhost99999.example\n")
    result = median_interleaved({"rcpthosts": (prog, session, plain), "morercpthosts": (prog, session, env)}, RUNS)
    print(f"morercpthosts.cdb: session {result['rcpthosts'] * 1000:.1f} ms with the domain in rcpthosts, "
          f"{result['morercpthosts'] * 1000:.1f} ms found in a 100,000-entry cdb "
          f"({(result['morercpthosts'] / result['rcpthosts'] - 1) * 100:+.0f}%)")


def bounds_bench(tmp: Path) -> None:
    env = {"PATH": os.environ["PATH"], "QMAILHOME": str(tmp / "plain"), "QMAILQUEUE": "/bin/true", "RELAYCLIENT": ""}
    mail = b"MAIL FROM:<a@b.example>\r\n"
    cases = {
        "EHLO/QUIT": b"EHLO x\r\nQUIT\r\n",
        "1,001 recipients": mail + b"".join(b"RCPT TO:<user%d@example.org>\r\n" % i for i in range(1001)),
        "10,001 commands": b"NOOP\r\n" * 10001,
        "1,000 overlong command lines": (b"NOOP " + b"x" * 5000 + b"\r\n") * 1000,
        "AUTH line of 12 KB, x100": b"AUTH PLAIN " + b"A" * 12000 + b"\r\n" * 100,
        "one 10 MB body line": mail + b"RCPT TO:<u@example.org>\r\nDATA\r\n" + b"y" * 10_000_000 + b"\r\n.\r\n",
    }
    print("bounds (peak RSS, VmHWM):")
    for name, data in cases.items():
        print(f"  {name:30} {peak_rss([str(BIN / 'smtpfront-qmail')], data, env) / 1024:5.1f} MB")


def drive_clients(port: int, dialogue: bytes, sessions: int, clients: int) -> tuple[float, int]:
    """Sessions per second with `clients` threads sharing `sessions` connections; and how many failed."""
    import socket
    import threading

    remaining = [sessions]
    lock = threading.Lock()
    failures = []

    def client() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(dialogue)
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            if b"221 " not in reply:
                failures.append(reply)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sessions / (time.perf_counter() - start), len(failures)


def concurrency_bench(tmp: Path, sessions: int = 800, clients: int = 40) -> None:
    """Sessions per second through tcpserver -c 40 with `clients` parallel clients."""
    import socket

    env = {"PATH": os.environ["PATH"], "QMAILHOME": str(tmp / "plain"), "QMAILQUEUE": "/bin/true"}
    dialogue = (b"EHLO bench\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n"
                b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    print(f"concurrency (tcpserver -c 40, {clients} clients, {sessions} sessions):")
    rates = {}
    for name, program in (("smtpfront", str(BIN / "smtpfront-qmail")), ("C", "/usr/sbin/smtpfront-qmail")):
        if not os.path.exists(program):
            continue
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(["tcpserver", "-R", "-H", "-l", "localhost", "-c", "40", "127.0.0.1", str(port),
                                   program], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        rates[name], failed = drive_clients(port, dialogue, sessions, clients)
        server.terminate()
        server.wait()
        print(f"  {name:10} {rates[name]:7.0f} sessions/s" + (f"  ({failed} failed)" if failed else ""))
    if len(rates) == 2:
        print(f"  ratio {rates['smtpfront'] / rates['C']:.2f}")


def tls_session(argv: list[str], env: dict[str, str], context) -> float:
    """Wall time of one EHLO[/STARTTLS/EHLO]/QUIT session over a socketpair (context None: plain)."""
    import socket

    ours, theirs = socket.socketpair()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL, env=env)
    theirs.close()
    conn = ours.makefile("rwb")

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
        ours = context.wrap_socket(ours, server_hostname="localhost")
        conn = ours.makefile("rwb")
        command(b"EHLO bench\r\n")
    command(b"QUIT\r\n")
    conn.close()
    ours.close()
    proc.wait()
    return time.perf_counter() - start


def tls_bench(tmp: Path) -> None:
    import ssl

    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    env = {"PATH": os.environ["PATH"], "QMAILHOME": str(tmp), "TLS_CERTFILE": str(cert), "TLS_KEYFILE": str(key)}
    client = ssl.create_default_context(cafile=str(cert))
    prog = [str(BIN / "smtpfront-qmail")]
    times: dict[str, list[float]] = {"plain": [], "STARTTLS": []}
    for _ in range(RUNS):
        times["plain"].append(tls_session(prog, env, None))
        times["STARTTLS"].append(tls_session(prog, env, client))
    plain, tls = (statistics.median(times[k]) for k in ("plain", "STARTTLS"))
    from smtpfront.tls import server_context

    start = time.perf_counter()
    context = server_context(str(cert), str(key), None, "1.2")
    setup = time.perf_counter() - start
    handshakes = [memory_handshake(context, client) for _ in range(RUNS)]
    importing = statistics.median(
        timed([sys.executable, "-I", "-S", "-c", "import ssl"], b"", env) - timed([sys.executable, "-I", "-S", "-c",
                                                                                    "pass"], b"", env)
        for _ in range(RUNS)
    )
    print(f"tls ({RUNS} runs, median): EHLO/QUIT {plain * 1000:.1f} ms, with STARTTLS {tls * 1000:.1f} ms "
          f"(+{(tls - plain) * 1000:.1f} ms in all); of which: importing ssl {importing * 1000:.1f} ms, "
          f"server context set-up {setup * 1000:.1f} ms, a TLS 1.3 handshake with that context "
          f"{statistics.median(handshakes) * 1000:.2f} ms (both halves, in memory)")


def memory_handshake(server_context, client_context) -> float:
    """One handshake between two in-memory TLS endpoints with ready contexts: the CPU cost of TLS itself."""
    import ssl

    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
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


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        session_bench(tmp)
        rules_bench(tmp)
        morercpthosts_bench(tmp)
        bounds_bench(tmp)
        concurrency_bench(tmp)
        tls_bench(tmp)
        throughput_bench(tmp)


if __name__ == "__main__":
    main()
