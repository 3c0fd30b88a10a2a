"""What the clamav and spamassassin plugins cost, ours beside C's on the same daemons (stdlib only).

    python bench/scanners.py [RUNS]      (default 10; clamd and spamd are started here, as the tests start them)

session   one message of 2 KB through `mailfront smtp qmail accept add-received [PLUGIN]`, a process
          per session: no scanner, clamav (a real clamd, our own one-signature database) and
          spamassassin (a real spamd, Debian's rules, local tests only), ours and C's, the six
          interleaved run by run; wall time median (min..max), and what each scanner adds
data      DATA throughput of a 10 MB message through smtpfront-queuedir: the plugin list
          without a scanner (the one-pass path) on this tree and on the tree before the scanners
          (git's BASE_COMMIT, or $BENCH_BASE), then with clamav and with spamassassin, both told
          to skip the message by their MAXSIZE, which leaves only what keeping (and, for
          spamassassin, holding) the message in temporary files costs
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import C_QUEUEDIR, interleaved, message, queue_directory, queued, spread, timed  # noqa: E402

BIN = Path(sys.executable).parent
TOP = Path(__file__).resolve().parent.parent
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
BASE_COMMIT = "81b2b16"  # main when the scanners were added: the one-pass path before them
C_MAILFRONT = "/usr/sbin/mailfront"
QMAIL_QUEUE = "#!/bin/sh\nexec cat - /dev/fd/3 3<&1 >/dev/null\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(path: str, request: bytes, expected: bytes) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(request)
            return s.recv(100).startswith(expected)
    except OSError:
        return False


def start(argv: list[str], path: str, request: bytes, expected: bytes, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    while not (os.path.exists(path) and answers(path, request, expected)):
        if proc.poll() is not None:
            raise SystemExit(f"{argv[0]} exited: {log.read_text()[-1000:]}")
        time.sleep(0.2)
    return proc


def start_daemons(tmp: Path) -> tuple[list[subprocess.Popen], dict[str, str]]:
    (tmp / "db").mkdir()
    (tmp / "db" / "test.ndb").write_text(f"Smtpfront.Test.Virus:0:*:{b'SMTPFRONT-TEST-VIRUS-7f3a9c'.hex()}\n")
    clamd_port, spamd_port = free_port(), free_port()
    (tmp / "clamd.conf").write_text(f"DatabaseDirectory {tmp / 'db'}\nTCPSocket {clamd_port}\nTCPAddr 127.0.0.1\n"
                                    f"LocalSocket {tmp / 'clamd.sock'}\nForeground yes\nLogSyslog no\n"
                                    f"LogFile {tmp / 'clamd.log'}\nSelfCheck 0\n")
    clamd = start(["clamd", "-c", str(tmp / "clamd.conf")], str(tmp / "clamd.sock"), b"nPING\n", b"PONG",
                  tmp / "clamd.out")
    home = tmp / "spamd-home"
    home.mkdir()
    user = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chmod(tmp, 0o755)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        user = ["-u", "nobody"]
    spamd = start(["spamd", "-L", "-x", f"--listen=127.0.0.1:{spamd_port}", f"--listen={tmp / 'spamd.sock'}",
                   "-A", "127.0.0.1", "-s", "stderr", "-m", "2", "-H", str(home), *user],
                  str(tmp / "spamd.sock"), b"PING SPAMC/1.2\r\n\r\n", b"SPAMD/1.5 0 PONG", tmp / "spamd.log")
    return [clamd, spamd], {"CLAMAV_HOST": "127.0.0.1", "CLAMAV_PORT": str(clamd_port),
                            "SPAMD_HOST": "127.0.0.1", "SPAMD_PORT": str(spamd_port), "SPAMD_TIMEOUT": "60000"}


def session_bench(tmp: Path, daemons: dict[str, str]) -> None:
    queue = tmp / "qmail-queue"
    queue.write_text(QMAIL_QUEUE)
    queue.chmod(0o755)
    (tmp / "qmail" / "control").mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "TCPLOCALHOST": "mx.example", "TCPREMOTEIP": "127.0.0.1",
           "QMAILQUEUE": str(queue), "QMAILHOME": str(tmp / "qmail"), **daemons}
    body = (b"From: <a@b.example>\r\nTo: <y@example.org>\r\nDate: Thu, 3 Dec 2026 12:00:00 +0000\r\n"
            b"Message-ID: <1@b.example>\r\nSubject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 24)
    session = (b"EHLO bench\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n" + body
               + b".\r\nQUIT\r\n")
    programs = {"smtpfront": [str(BIN / "mailfront")]}
    if os.path.exists(C_MAILFRONT):
        programs["C"] = [C_MAILFRONT]
    lists = {plugin: ["smtp", "qmail", "accept", "add-received", *plugin.split()]
             for plugin in ("", "clamav", "spamassassin")}
    cases = {(name, plugin): (lambda argv=argv + names: timed(argv, session, env))
             for plugin, names in lists.items() for name, argv in programs.items()}
    result = interleaved(cases, RUNS)
    print(f"a session with one 2 KB message, a process per session ({RUNS} runs interleaved; median (min..max)):")
    for name in programs:
        base = statistics.median(result[(name, "")])
        line = f"  {name:10} no scanner {spread(result[(name, '')])}"
        for plugin in ("clamav", "spamassassin"):
            added = statistics.median(result[(name, plugin)]) - base
            line += f"   {plugin} {spread(result[(name, plugin)])} (+{added * 1000:.1f} ms)"
        print(line)
    if "C" in programs:
        for plugin in ("", "clamav", "spamassassin"):
            ratio = statistics.median(result[("smtpfront", plugin)]) / statistics.median(result[("C", plugin)])
            print(f"  ours / C, {plugin or 'no scanner'}: {ratio:.2f}")


def base_tree(tmp: Path) -> Path | None:
    """The source tree before the scanners (git archive of BASE_COMMIT), or $BENCH_BASE's src/."""
    if os.environ.get("BENCH_BASE"):
        return Path(os.environ["BENCH_BASE"]) / "src"
    out = tmp / "base"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(TOP), "archive", BASE_COMMIT, "src"], capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


def launcher(src: Path) -> list[str]:
    """smtpfront-queuedir from `src`, started as our launchers start it (python -I -S)."""
    code = (f"import sys; sys.path.append({str(src)!r}); from smtpfront.programs import smtpfront_queuedir; "
            "sys.exit(smtpfront_queuedir())")
    return [sys.executable, "-I", "-S", "-c", code]


def data_bench(tmp: Path, daemons: dict[str, str]) -> None:
    class Setup:  # what run.queue_directory needs
        pass

    setup = Setup()
    setup.tmp = tmp
    (tmp / "plain").mkdir(exist_ok=True)
    q, env = queue_directory(setup, "queue")
    env = {**env, **daemons, "CLAMAV_MAXSIZE": "1", "SPAMD_MAXSIZE": "1"}
    ours = launcher(TOP / "src")
    cases = {"one pass (this tree)": (ours, {})}
    base = base_tree(tmp)
    if base is not None:
        cases["one pass (before)"] = (launcher(base), {})
    cases["clamav (kept copy)"] = (ours, {"PLUGINS": "clamav"})
    cases["spamassassin (held)"] = (ours, {"PLUGINS": "spamassassin"})
    if os.path.exists(C_QUEUEDIR[0]):
        cases["C, no scanner"] = (C_QUEUEDIR, {})
    data = message(10, b"y" * 998 + b"\r\n")
    result = interleaved({name: (lambda argv=argv, extra=extra: queued(argv, data, {**env, **extra}, q))
                          for name, (argv, extra) in cases.items()}, RUNS)
    first = statistics.median(result["one pass (this tree)"])
    print(f"DATA, 10 MB of 998-byte lines through smtpfront-queuedir, no fsync ({RUNS} runs interleaved; MB/s):")
    for name in cases:
        print(f"  {name:22} {spread(result[name], 1, 0, '')}   {statistics.median(result[name]) / first:.2f}"
              " of one pass (this tree)")


def main() -> None:
    for program in ("clamd", "spamd"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is not installed (apt-get install clamav-daemon spamd)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        procs, daemons = start_daemons(tmp)
        try:
            session_bench(tmp, daemons)
            data_bench(tmp, daemons)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
