"""What the rbl plugin adds to a session, ours beside C's, against the same rbldnsd: `python bench/rbl.py [RUNS]`.

Root only (port 53: neither program's resolver knows another); the script runs
itself again in a private network namespace (`unshare -n`), where rbldnsd
serves three zones on 127.0.0.90:53 and both programs find it by $DNSCACHEIP.
A session is `mailfront smtp echo [rbl] accept` fed HELO, MAIL, RCPT and QUIT
from an unlisted client (the common case: every look-up answered NXDOMAIN),
with one zone and with three; and a listed client, refused at MAIL.  The cases
take turns, run after run; each figure is the wall time of the whole process,
median and min..max.  Printed: each program's time with and without rbl, and
what rbl adds to each (the median with rbl less the median without).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, interleaved, spread, timed  # noqa: E402

C_MAILFRONT = "/usr/sbin/mailfront"
DNS_IP = "127.0.0.90"
ZONE = ":127.0.0.2:Listed: $\n127.0.0.9\n"
SESSION = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n"


def bench(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="rbl-bench-"))
    work.chmod(0o755)  # rbldnsd reads the zones as nobody
    zones = ["bl1.test", "bl2.test", "bl3.test"]
    for zone in zones:
        (work / zone).write_text(ZONE)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    daemon = subprocess.Popen(["rbldnsd", "-n", "-u", "nobody", "-b", f"{DNS_IP}/53", "-w", str(work),
                               *(f"{zone}:ip4set:{zone}" for zone in zones)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = {"PATH": os.environ["PATH"], "DNSCACHEIP": DNS_IP, "TCPREMOTEIP": "127.0.0.11"}
        programs = {"ours": [str(BIN / "mailfront"), "smtp", "echo"], "C": [C_MAILFRONT, "smtp", "echo"]}
        variants = {
            "without rbl": (["accept"], {}),
            "rbl, 1 zone": (["rbl", "accept"], {"RBL_BLACKLISTS": zones[0]}),
            "rbl, 3 zones": (["rbl", "accept"], {"RBL_BLACKLISTS": ",".join(zones)}),
            "rbl, listed": (["rbl", "accept"], {"RBL_BLACKLISTS": zones[0], "TCPREMOTEIP": "127.0.0.9"}),
        }
        for argv in programs.values():  # rbldnsd answers before the runs start (and both programs are cached)
            for _ in range(20):
                done = subprocess.run([*argv, "rbl", "accept"], input=SESSION, capture_output=True,
                                      env={**base, "RBL_BLACKLISTS": zones[0], "TCPREMOTEIP": "127.0.0.9"})
                if b"451 Blocked" in done.stdout:
                    break
            else:
                sys.exit(f"{argv} gets no answer from rbldnsd: {done.stdout!r}")
        cases = {f"{who} {variant}": (lambda argv=argv, plugins=plugins, env=env:
                                      timed([*argv, *plugins], SESSION, {**base, **env}))
                 for who, argv in programs.items() for variant, (plugins, env) in variants.items()}
        results = interleaved(cases, runs)
    finally:
        daemon.terminate()
        daemon.wait()
    print(f"rbl: session wall time, {runs} runs interleaved, median (min..max)")
    for name, samples in results.items():
        print(f"  {name:24} {spread(samples)}")
    for variant in list(variants)[1:]:
        medians = {who: (statistics.median(results[f"{who} {variant}"]),
                         statistics.median(results[f"{who} without rbl"])) for who in programs}
        added = "; ".join(f"{(with_ - without) * 1000:+.1f} ms to {who}'s ({(with_ / without - 1) * 100:+.0f}%)"
                          for who, (with_, without) in medians.items())
        print(f"  {variant}: rbl adds {added}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    if os.environ.get("RBL_BENCH_NETNS") != "1":
        if os.geteuid() != 0:
            sys.exit("bench/rbl.py: needs root (rbldnsd on port 53 of a private network namespace)")
        env = {**os.environ, "RBL_BENCH_NETNS": "1"}
        sys.exit(subprocess.run(["unshare", "-n", sys.executable, __file__, str(runs)], env=env).returncode)
    bench(runs)


if __name__ == "__main__":
    main()
