"""Benchmarks (stdlib only; `make bench`): ratios measured side by side in one run.

session:    a full AUTH session through smtpfront-qmail and through the C
            smtpfront-qmail, each divided by a bare `python3 -I -S -c pass`
throughput: messages of 1, 10 and 100 MB through smtpfront-queuedir and the C
            `mailfront smtp queuedir accept`, MB/s and peak RSS
rules:      session start-up with a 10,000-line MAILRULES file (cached parse)
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


def timed(argv: list[str], data, env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one run fed `data` (bytes, or a list of bytes) on stdin."""
    with tempfile.TemporaryFile() as stdin:
        for part in data if isinstance(data, list) else [data]:
            stdin.write(part)
        stdin.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss


def median_interleaved(cases: dict[str, tuple[list[str], bytes, dict]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (argv, data, env) in cases.items():
            times[name].append(timed(argv, data, env)[0])
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
    result = median_interleaved(cases, RUNS)
    cvm_proc.kill()
    base = result["bare python"]
    print(f"session ({RUNS} runs, median): bare python {base * 1000:.1f} ms")
    for name in ("smtpfront", "C mailfront"):
        if name in result:
            print(f"  {name:12} {result[name] * 1000:7.1f} ms   = {result[name] / base:.2f}x bare python")


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
        # as a list of blocks: the harness itself stays small, so forked children measure their own RSS
        data = [b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"] + [block] * blocks
        data.append(b".\r\nQUIT\r\n")
        row = []
        for name, argv in (("smtpfront", [str(BIN / "smtpfront-queuedir")]),
                           ("C", ["/usr/sbin/mailfront", "smtp", "queuedir", "accept"])):
            if not os.path.exists(argv[0]):
                continue
            best = min((timed(argv, data, env) for _ in range(3)), key=lambda r: r[0])
            row.append((name, size / best[0] / 1e6, best[1] / 1024))
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
    server_context(str(cert), str(key), None, "1.2")
    setup = time.perf_counter() - start
    print(f"tls ({RUNS} runs, median): EHLO/QUIT {plain * 1000:.1f} ms, with STARTTLS {tls * 1000:.1f} ms "
          f"(+{(tls - plain) * 1000:.1f} ms, incl. importing ssl and the client's half); "
          f"server context set-up {setup * 1000:.1f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        session_bench(tmp)
        rules_bench(tmp)
        tls_bench(tmp)
        throughput_bench(tmp)


if __name__ == "__main__":
    main()
