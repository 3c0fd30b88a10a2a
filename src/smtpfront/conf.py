"""smtpfront-conf: write a supervised service directory, in the style of djb's *-conf tools.

    smtpfront-conf ACCOUNT LOGACCOUNT DIR [options]

DIR gets `run` (envdir, envuidgid, softlimit, tcpserver or, with --server,
smtpfront-server in its place), `log/run` (multilog
or svlogd), `env/` (one file per variable), `tcp` (tcprules source: relay for
localhost) with a Makefile compiling it to `tcp.cdb`.  Point svscan (or
runsvdir) at DIR with a symlink to start it.

AUTH is offered with PLAIN and LOGIN only: env/ never gets CVM_SASL_CRAM_MD5, since the
stock CVMs (cvm-pwfile, cvm-unix) cannot check CRAM-MD5 and clients that choose it
(Postfix; msmtp with `auth cram-md5`) would fail with 454 and not fall back.  A
certificate or key the service account cannot read is warned about: the service would
offer no STARTTLS (and, with AUTH_REQUIRES_TLS, no AUTH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import __version__

# The measured smallest `softlimit -m` for a full AUTH session with a 10 MB
# message is 16 MB (23 MB with TLS); see docs/performance.md.
MEMORY = 64_000_000

TCP_RULES = """\
# tcprules source for this service; `make` (in this directory) compiles it to tcp.cdb.
# Clients matching a line with RELAYCLIENT="" may relay without AUTH: here every process on
# this host (a webmail too). On a submission port where everyone logs in, drop RELAYCLIENT="".
127.0.0.1:allow,RELAYCLIENT=""
:allow
"""

MAKEFILE = """\
tcp.cdb: tcp
\ttcprules tcp.cdb tcp.tmp < tcp
"""


def daemontools_run(a: argparse.Namespace, program: str) -> str:
    return f"""#!/bin/sh
# smtpfront on port {a.port}, written by smtpfront-conf.
# Variables for the program are in ./env; relay rules in ./tcp (run make after editing).
exec 2>&1
exec envdir ./env \\
  envuidgid {a.account} \\
  softlimit -m {a.memory} \\
  {ucspi_server(a)} -v -PR -U -l {a.hostname} -c {a.concurrency} -x tcp.cdb -- {a.ip} {a.port} \\
  {program}
"""


def ucspi_server(a: argparse.Namespace) -> str:
    """tcpserver, or smtpfront-server (the same options; our programs preloaded) with --server."""
    return str(Path(a.bin) / "smtpfront-server") if a.server else "tcpserver"


def runit_run(a: argparse.Namespace, program: str) -> str:
    return f"""#!/bin/sh
# smtpfront on port {a.port} under runit, written by smtpfront-conf.
# Variables for the program are in ./env; relay rules in ./tcp (run make after editing).
exec 2>&1
exec chpst -e ./env -U {a.account} -m {a.memory} \\
  {ucspi_server(a)} -v -PR -U -l {a.hostname} -c {a.concurrency} -x tcp.cdb -- {a.ip} {a.port} \\
  {program}
"""


def log_run(a: argparse.Namespace) -> str:
    if a.runit:
        return f"#!/bin/sh\nexec chpst -u {a.logaccount} svlogd -tt ./main\n"
    return f"#!/bin/sh\nexec setuidgid {a.logaccount} multilog t ./main\n"


def environment(a: argparse.Namespace) -> dict[str, str]:
    env = {"CVM_SASL_PLAIN": a.cvm, "DATABYTES": str(a.databytes), "SMTPGREETING": f"{a.hostname} smtpfront"}
    optional = {
        "MAILRULES": a.mailrules,
        "PATTERNS": a.patterns,
        "QMAILHOME": a.qmail_home,
        "QUEUEDIR": a.queuedir if a.backend == "queuedir" else None,
        "TLS_CERTFILE": a.tls_cert,
        "TLS_KEYFILE": a.tls_key,
    }
    env.update({name: value for name, value in optional.items() if value})
    if a.tls_cert and not a.smtps:
        env["AUTH_REQUIRES_TLS"] = "1"
    if a.smtps:
        env["SMTPS"] = "1"
    return env


def permitted(path: Path, account: str, bits: int) -> bool | None:
    """Whether ACCOUNT, with its uid and primary group only (as envuidgid and chpst -U set them), may reach
    PATH and has BITS (4 read, 2 write, 1 execute) on it; the directories on the way are checked as named and on
    the way to each link's target (a venv's python3 may lead into a home).  None when the account or the
    file does not exist."""
    import pwd

    try:
        user = pwd.getpwnam(account)
        named = path.absolute()
        hops = [named]  # the path, then each link it leads through (the kernel follows at most 40)
        while hops[-1].is_symlink() and len(hops) <= 40:
            hops.append((hops[-1].parent / os.readlink(hops[-1])).absolute())
        parents = {parent for hop in [*hops, named.resolve()] for parent in hop.parents}
        stats = [(parent.stat(), 0o1) for parent in sorted(parents)] + [(named.stat(), bits)]
    except (KeyError, OSError):
        return None
    if user.pw_uid == 0:
        return True
    for st, wanted in stats:
        shift = 6 if st.st_uid == user.pw_uid else 3 if st.st_gid == user.pw_gid else 0
        if st.st_mode >> shift & wanted != wanted:
            return False
    return True


def cannot_run(program: Path, account: str) -> str | None:
    """Why ACCOUNT cannot run PROGRAM, a script's interpreter included; None when it can or it can't be told."""
    if permitted(program, account, 0o1) is False:
        return f"cannot execute {program}"
    try:
        with open(program, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    words = first[2:].split() if first.startswith(b"#!") else []
    if not words:
        return None
    interpreter = words[0].decode(errors="replace")
    if permitted(Path(interpreter), account, 0o1) is False:
        return f"cannot execute {interpreter}, the interpreter of {program}"
    if permitted(program, account, 0o4) is False:
        return f"cannot read {program}"
    return None


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smtpfront-conf", description=__doc__.split("\n\n")[0])
    p.add_argument("account", help="account the SMTP service runs as (envuidgid)")
    p.add_argument("logaccount", help="account the logger runs as")
    p.add_argument("dir", help="the service directory to create (must not exist)")
    p.add_argument("--port", help="port to listen on (587; 465 with --smtps)")
    p.add_argument("--ip", default="0", help="address to listen on (0: all)")
    p.add_argument("--hostname", default=os.uname().nodename, help="this host's name (greeting, Received)")
    p.add_argument("--backend", choices=("qmail", "queuedir", "echo"), default="qmail")
    p.add_argument("--bin", default=str(Path(sys.argv[0]).resolve().parent),
                   help="directory holding the smtpfront programs (default: this one's)")
    p.add_argument("--cvm", default="cvm-local:/run/cvm-pwfile.sock",
                   help="CVM for AUTH PLAIN and LOGIN (never CRAM-MD5: cvm-pwfile and cvm-unix cannot check it)")
    p.add_argument("--concurrency", type=int, default=40)
    p.add_argument("--memory", type=int, default=MEMORY, help="softlimit -m, bytes")
    p.add_argument("--databytes", type=int, default=26_214_400)
    p.add_argument("--mailrules")
    p.add_argument("--patterns")
    p.add_argument("--qmail-home", help="qmail's directory, for qmail-validate's control files (and qmail-queue"
                   " with --backend qmail); default: /var/qmail with --backend qmail, else DIR/qmail, made here")
    p.add_argument("--queuedir")
    p.add_argument("--tls-cert", help="PEM certificate (chain); ACCOUNT must be able to read it")
    p.add_argument("--tls-key", help="PEM key; ACCOUNT must be able to read it (e.g. root:GROUP, mode 640)")
    p.add_argument("--smtps", action="store_true", help="implicit TLS (port 465)")
    p.add_argument("--runit", action="store_true", help="write chpst/svlogd scripts for runit")
    p.add_argument("-V", "--version", action="version", version=f"smtpfront-conf {__version__}")
    p.add_argument("--server", action="store_true",
                   help="run smtpfront-server in tcpserver's place (the program loaded once, a fork per connection)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.smtps and not a.tls_cert:
        print("smtpfront-conf: --smtps needs --tls-cert", file=sys.stderr)
        return 2
    if a.backend == "queuedir" and not a.queuedir:
        print("smtpfront-conf: --backend queuedir needs --queuedir", file=sys.stderr)
        return 2
    a.port = a.port or ("465" if a.smtps else "587")
    program = str(Path(a.bin) / f"smtpfront-{a.backend}")
    for path in [program, *([ucspi_server(a)] if a.server else [])]:
        why = cannot_run(Path(path), a.account)
        if why:  # the service would start, and log `access denied` at every connection
            print(f"smtpfront-conf: {a.account} {why}, so the service could not run: build the venv with an"
                  f" interpreter {a.account} can run (`/usr/bin/python3 -m venv /opt/smtpfront`, not a Python under"
                  " a home only its owner may enter); nothing written", file=sys.stderr)
            return 1
    top = Path(a.dir)
    try:
        top.mkdir(parents=True)
    except FileExistsError:
        print(f"smtpfront-conf: {top} exists; not overwriting it", file=sys.stderr)
        return 1
    if a.qmail_home is None and a.backend != "qmail":
        # every front end runs qmail-validate, which needs the directory even with no control file in it
        (top / "qmail" / "control").mkdir(parents=True)
        a.qmail_home = str((top / "qmail").absolute())
    (top / "log" / "main").mkdir(parents=True)
    (top / "env").mkdir()
    write(top / "run", (runit_run if a.runit else daemontools_run)(a, program), 0o755)
    write(top / "log" / "run", log_run(a), 0o755)
    for name, value in environment(a).items():
        write(top / "env" / name, value + "\n")
    write(top / "tcp", TCP_RULES)
    write(top / "Makefile", MAKEFILE)
    try:
        shutil.chown(top / "log" / "main", a.logaccount)
    except (LookupError, PermissionError) as e:
        print(f"smtpfront-conf: could not give log/main to {a.logaccount}: {e}", file=sys.stderr)
    if shutil.which("tcprules"):
        with open(top / "tcp", "rb") as rules:
            subprocess.run(["tcprules", str(top / "tcp.cdb"), str(top / "tcp.tmp")], stdin=rules, check=True)
    else:
        print("smtpfront-conf: tcprules not found; run make in the directory once ucspi-tcp is installed",
              file=sys.stderr)
    if not Path(a.qmail_home or "/var/qmail").is_dir():
        print(f"smtpfront-conf: warning: {a.qmail_home or '/var/qmail'} is not a directory: the service will answer"
              " every client 451 until it is (--qmail-home)", file=sys.stderr)
    for sub in ("tmp", "new") if a.queuedir else ():
        if not permitted(Path(a.queuedir) / sub, a.account, 0o3):
            print(f"smtpfront-conf: warning: {a.account} cannot write {a.queuedir}/{sub} (or it does not exist):"
                  " every message will be refused with 451 until it can", file=sys.stderr)
    for path in sorted({a.tls_cert, a.tls_key} - {None}):
        if permitted(Path(path), a.account, 0o4) is False:
            print(f"smtpfront-conf: warning: {a.account} cannot read {path}: the service will offer no STARTTLS"
                  " (and, with AUTH_REQUIRES_TLS, no AUTH) until it can", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
