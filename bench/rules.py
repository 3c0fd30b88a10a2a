"""What a MAILRULES file adds to a session, ours beside C's (stdlib only): `python bench/rules.py [RUNS]`.

For 10,000 and 100,000 glob rules the index cannot key by a whole address
(`k*@hostN.exa*:*`), a sender matching the last rule, one message: each
program runs with and without the rules, the four interleaved run by run,
and the figures are the CPU time (user + system) of the whole process,
median and min..max.  Printed: ours with / without, C with / without, and
the time the rules add, ours against C's (C reads its file at every
connection; ours reads the cache, built once before the runs).  A last line
does the same with a cache directory that can't be written (ours then
caches in its private directory under /tmp).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
C_QMAIL = "/usr/sbin/smtpfront-qmail"
# qmail-queue's protocol: the message on fd 0, the envelope on fd 1; read both to the end
QUEUE = "#!/bin/sh\ncat >/dev/null\nexec cat <&1 >/dev/null\n"


def cpu_ms(argv: list[str], stdin_path: str, env: dict[str, str]) -> float:
    with open(stdin_path, "rb") as stdin:
        pid = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).pid
        _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed")
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure(cases: dict[str, tuple[list[str], str, dict]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv, stdin, env in cases.values():  # warm: page cache, and our cache file
        cpu_ms(argv, stdin, env)
    for _ in range(runs):
        for name, (argv, stdin, env) in cases.items():
            times[name].append(cpu_ms(argv, stdin, env))
    return times


def show(times: list[float]) -> str:
    return f"{statistics.median(times):6.1f} ms ({min(times):.1f}..{max(times):.1f})"


def bench(size: int, runs: int, tmp: Path, base: dict[str, str], unwritable: bool = False) -> None:
    rules = tmp / f"rules{size}"
    rules.write_text("".join(f"k*@host{i}.exa*:*:ok {i}\n" for i in range(size)))
    dialogue = tmp / f"dialogue{size}"
    dialogue.write_bytes(f"MAIL FROM:<someone@host{size - 1}.example>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"
                         "Subject: bench\r\n\r\nhello\r\n.\r\nQUIT\r\n".encode())
    cache_dir = str(tmp / "no" / "such" / "dir") if unwritable else str(tmp)
    with_rules = {**base, "MAILRULES": str(rules), "MAILRULES_CACHE": cache_dir}
    ours = [str(BIN / "smtpfront-qmail")]
    times = measure({
        "ours without": (ours, str(dialogue), base),
        "ours with": (ours, str(dialogue), with_rules),
        "C without": ([C_QMAIL], str(dialogue), base),
        "C with": ([C_QMAIL], str(dialogue), with_rules),
    }, runs)
    med = {name: statistics.median(t) for name, t in times.items()}
    ours_added, c_added = med["ours with"] - med["ours without"], med["C with"] - med["C without"]
    what = " (cache directory not writable)" if unwritable else ""
    print(f"{size} glob rules{what}, {runs} runs interleaved, cpu of the whole process:")
    for name, t in times.items():
        print(f"  {name:13} {show(t)}")
    print(f"  ours with/without {med['ours with'] / med['ours without']:.2f}, "
          f"C with/without {med['C with'] / med['C without']:.2f}; added by the rules: ours {ours_added:+.1f} ms, "
          f"C {c_added:+.1f} ms, ours/C {ours_added / c_added:.2f}; sessions with rules ours/C "
          f"{med['ours with'] / med['C with']:.2f}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "qmail" / "control").mkdir(parents=True)
        (tmp / "qmail" / "control" / "rcpthosts").write_text("example.org\n")
        queue = tmp / "qmail-queue"
        queue.write_text(QUEUE)
        queue.chmod(0o755)
        base = {"PATH": "/usr/bin:/bin", "PROTO": "TCP", "TCPLOCALHOST": "mx.example", "TCPLOCALIP": "192.0.2.1",
                "TCPREMOTEIP": "198.51.100.7", "QMAILHOME": str(tmp / "qmail"), "QMAILQUEUE": str(queue)}
        for size in (10_000, 100_000):
            bench(size, runs, tmp, base)
        bench(10_000, runs, tmp, base, unwritable=True)
        Path(f"/tmp/smtpfront-rules-{os.geteuid()}/{str(tmp / 'rules10000').replace('/', '%')}.cache").unlink()


if __name__ == "__main__":
    main()
