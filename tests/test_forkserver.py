"""smtpfront-server side by side with the real tcpserver: options, environment, logs, rules, signals, limits.

smtpfront-server is ucspi-tcp-ipv6's tcpserver.  With that package installed,
the two are compared as they are; with ucspi-tcp (IPv4 only) installed, what
the IPv6 variant adds for an IPv4 client -- the TCP6* twins of the variables,
`::ffff:` addresses and `:` kept in the `ok`/`deny` lines, its usage line -- is
checked on its own and set aside before comparing (see `as_ipv4_tcpserver`).

Both servers run with `-1 ... 127.0.0.1 0` and report the port they were given.
A fake DNS server (on 127.0.0.78:53, named by $DNSCACHEIP for both) and a fake
identd (on 127.0.0.77:113, reached by clients that connect from 127.0.0.77)
stand in for the network, so that -h, -p and -r are compared too.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, C_QMAIL, LOGS, PASSWORD, compile_rules, credentials, keep_own_ids, need, real_root, swaks
from fakenet import CLIENT_IP, DNS_IP, IDENT_QUERIES, LIAR_IP, ODD_IP, V6_IP, has_ipv6, network  # noqa: F401
from smtpfront.forkserver import UsageError, parse, pathexec_environ, safe

SERVER = str(BIN / "smtpfront-server")
# ucspi-tcp-ipv6's usage line, as its tcpserver (Debian 1:0.88-7) writes it
IPV6_USAGE = ("tcpserver: usage: tcpserver [ -461UXpPhHrRoOdDqQv ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] "
              "[ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] [ -I interface ] host port "
              "program\n")


@functools.cache
def ipv6_tcpserver() -> bool:
    """The installed tcpserver is ucspi-tcp-ipv6's (else ucspi-tcp's IPv4 one): its usage line says."""
    usage = subprocess.run([need("tcpserver")], capture_output=True, text=True, timeout=10).stderr
    return "[ -I interface ]" in usage
pytestmark = pytest.mark.usefixtures("network")  # every test may look names up


class Ucspi:
    """A running tcpserver or smtpfront-server on 127.0.0.1, on the port it chose (-1)."""

    def __init__(self, binary: str, options: list[str], program: list[str], env: dict[str, str],
                 log_path: Path, host: str = "127.0.0.1", preexec_fn=None) -> None:
        self.log_path = log_path
        self.host = "::1" if host in ("0", "::") else host
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([binary, "-1", *options, host, "0", *program], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                         preexec_fn=preexec_fn)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), (line, self.log)
        self.port = int(line)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, seconds: float = 10) -> str:
        deadline = time.monotonic() + seconds
        while text not in self.log:
            assert time.monotonic() < deadline, f"{text!r} not in log:\n{self.log}"
            time.sleep(0.02)
        return self.log

    def wait_ends(self, count: int, seconds: float = 10) -> None:
        """Until `count` children have ended and been counted out (the last `status:` line follows `end`)."""
        deadline = time.monotonic() + seconds
        while True:
            lines = self.log.splitlines()
            ends = [i for i, line in enumerate(lines) if line.startswith("tcpserver: end ")]
            if len(ends) >= count and any(line.startswith("tcpserver: status: ") for line in lines[ends[-1]:]):
                return
            assert time.monotonic() < deadline, self.log
            time.sleep(0.01)

    def talk(self, data: bytes = b"", source: str = "127.0.0.1", timeout: float = 30) -> bytes:
        """Connect (from `source`), send `data`, and read until the server closes."""
        six = ":" in source
        with socket.socket(socket.AF_INET6 if six else socket.AF_INET) as s:
            s.bind((source, 0))
            s.settimeout(timeout)
            s.connect((self.host if six or ":" not in self.host else "127.0.0.1", self.port))
            if data:
                s.sendall(data)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        LOGS.append((self.log_path.name, self.log))


@pytest.fixture
def start(tmp_path):
    """start(binary, *options, PROGRAM, env=...) or start(binary, *options, program=[...], env=...).

    Returns a running server; all are stopped after the test.
    """
    servers: list[Ucspi] = []

    def run(binary: str, *args: str, env: dict[str, str], program: list[str] | None = None,
            host: str = "127.0.0.1", preexec_fn=None) -> Ucspi:
        options, program = (list(args[:-1]), [args[-1]]) if program is None else (list(args), program)
        server = Ucspi(binary, options, program, env, tmp_path / f"server{len(servers)}.log", host, preexec_fn)
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()


def both(start, *args: str, env: dict[str, str], program: list[str] | None = None,
         host: str = "127.0.0.1") -> tuple[Ucspi, Ucspi]:
    return (start(need("tcpserver"), *args, env=env, program=program, host=host),
            start(SERVER, *args, env=env, program=program, host=host))


def plain_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "DNSCACHEIP": DNS_IP, **extra}


# -- options --------------------------------------------------------------------


def test_options_are_read_as_getopt_reads_them():
    o = parse(["-vRHc", "5", "-l0", "-x", "r.cdb", "-X", "--", "0", "smtp", "prog", "-v"], {})
    assert (o.verbosity, o.remote_info, o.remote_host, o.limit, o.local_name, o.rules, o.allow_no_rules) == (
        2, False, False, 5, b"0", "r.cdb", True)
    assert (o.host, o.port, o.program) == ("0", "smtp", ["prog", "-v"])
    o = parse(["-U", "-u", "7", "h", "p", "x"], {b"UID": b"5", b"GID": b"6"})
    assert (o.uid, o.gid) == (7, 6)
    o = parse(["h", "p", "x"], {})
    assert (o.verbosity, o.limit, o.backlog, o.remote_host, o.remote_info, o.timeout, o.paranoid) == (
        1, 40, 20, True, True, 26, False)
    for bad in (["-z", "h", "p", "x"], ["-c"], ["h", "p"], ["-c", "0", "h", "p", "x"], ["-c", "x", "h", "p", "x"]):
        with pytest.raises(UsageError):
            parse(bad, {})


@pytest.mark.parametrize("args", [["-z", "0", "0", "true"], ["-c"], ["0", "0"], [], ["-Y", "0", "0", "true"]])
def test_bad_command_lines_exit_100_as_tcpserver_does(args):
    ours = subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=10)
    theirs = subprocess.run([need("tcpserver"), *args], capture_output=True, text=True, timeout=10)
    assert ours.returncode == theirs.returncode == 100
    expected = theirs.stderr if ipv6_tcpserver() else re.sub(r"tcpserver: usage: .*\n", IPV6_USAGE, theirs.stderr)
    assert ours.stderr.replace("smtpfront-server", "tcpserver") == expected


def test_fatal_errors_as_tcpserver_words_them(start):
    busy = start(SERVER, "true", env=plain_env())
    for args in (["127.0.0.1", str(busy.port), "true"], ["127.0.0.1", "no-such-service", "true"],
                 ["nonexistent.invalid", "0", "true"]):
        ours = subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=30, env=plain_env())
        theirs = subprocess.run([need("tcpserver"), *args], capture_output=True, text=True, timeout=30,
                                env=plain_env())
        assert ours.returncode == theirs.returncode == 111
        assert ours.stderr == theirs.stderr and ours.stderr.startswith("tcpserver: fatal: ")


def test_safe_log_fields():
    assert safe(b"a:b%c d\x01") == b"a:b?c?d?"  # ucspi-tcp-ipv6 keeps the colons (ucspi-tcp writes `?`)
    assert safe(b"x" * 99) == b"x" * 99
    assert safe(b"x" * 100) == b"x" * 100 + b"..."


def test_pathexec_environment_order():
    """pathexec: a change removes the first entry of that name, the last entry takes its place."""
    base = [b"A=1", b"B=2", b"C=3"]
    changes = [(b"A", b"9"), (b"D", None), (b"C", None), (b"E", b"")]
    assert pathexec_environ(base, changes) == [b"A=9", b"B=2", b"E="]


# -- the environment and the log, side by side ------------------------------------


def masked_env(output: bytes) -> list[str]:
    return [re.sub(r"^(TCP6?LOCALPORT|TCP6?REMOTEPORT)=\d+$", r"\1=N", line) for line in output.decode().splitlines()]


def as_ipv4_tcpserver(env: list[str], log: list[str]) -> tuple[list[str], list[str]]:
    """Our environment and log as ucspi-tcp's IPv4 tcpserver gives them, once what its IPv6 variant adds for
    an IPv4 client is checked: each TCP6*IP and TCP6*PORT is its TCP* twin (addresses v4-mapped; a rule may
    change a TCP* name, not its twin), the `ok`/`deny` lines show v4-mapped addresses.  The environment comes
    sorted: the twins change its order."""
    plain = {line.split("=", 1)[0]: line for line in env if not line.startswith("TCP6")}
    for line in env:
        name, _, value = line.partition("=")
        if name.startswith("TCP6") and name.endswith(("IP", "PORT")):
            twin = plain["TCP" + name[4:]].partition("=")[2]
            assert value == ("::ffff:" + twin if name.endswith("IP") else twin), line
    return sorted(plain.values()), [ok_line(line.replace("::ffff:", "")) for line in log]


def ok_line(line: str) -> str:
    """An `ok`/`deny` line with `:` for `?`: ucspi-tcp writes `?` for a colon in a name, its IPv6 variant `:`."""
    return line.replace("?", ":") if re.match(r"tcpserver: (ok|deny) ", line) else line


def masked_log(server: Ucspi) -> list[str]:
    lines = []
    for line in server.log.splitlines():
        line = re.sub(r"^tcpserver: (pid|ok|deny|end) \d+", r"tcpserver: \1 P", line)
        line = re.sub(r"^(tcpserver: (?:ok|deny) P [^ ]*:[^ ]*:)\d+( .*:)\d+$", r"\1PORT\2PORT", line)
        lines.append(re.sub(r"^smtpfront\[\d+\]", "mailfront[P]", line))
    return lines


def compare(start, args: list[str], sources: list[str], env: dict[str, str],
            program: list[str] | None = None, host: str = "127.0.0.1") -> list[list[str]]:
    """Each source connects to both servers in turn; the environments and logs must be the same."""
    theirs, ours = both(start, "-v", *args, env=env, program=program, host=host)
    outputs = []
    for done, source in enumerate(sources, 1):
        expected, got = masked_env(theirs.talk(source=source)), masked_env(ours.talk(source=source))
        for server in (theirs, ours):
            server.wait_ends(done)
        if ipv6_tcpserver():
            assert got == expected, source
        else:
            got = as_ipv4_tcpserver(got, [])[0]
            assert got == sorted(expected), source
        outputs.append(expected)
    if ipv6_tcpserver():
        assert masked_log(ours) == masked_log(theirs)
    else:
        assert as_ipv4_tcpserver([], masked_log(ours))[1] == [ok_line(line) for line in masked_log(theirs)]
    return outputs


STALE = {"TCPREMOTEHOST": "stale.example", "TCPREMOTEINFO": "stale", "TCPLOCALHOST": "stale", "ZZZ": "last"}


def test_environment_without_lookups(start):
    [env] = compare(start, ["-R", "-H", "-l", "mx.example", "env"], ["127.0.0.1"], plain_env(**STALE))
    assert "TCPLOCALHOST=mx.example" in env and "PROTO=TCP" in env
    assert not any(line.startswith(("TCPREMOTEHOST=", "TCPREMOTEINFO=")) for line in env)


def test_environment_with_dns_and_ident(start):
    """tcpserver's defaults (-h -r, the local name looked up): names, escapes and ident as tcpserver gives them."""
    client, local, odd = compare(start, ["env"], [CLIENT_IP, "127.0.0.1", ODD_IP], plain_env(**STALE))
    assert {"TCPREMOTEHOST=client.example.com", "TCPREMOTEINFO=joeBloggs:xy", "TCPLOCALHOST=mail.server.test"} <= set(
        client)
    assert "TCPREMOTEHOST=we\\041rd\\045x.example" in odd
    assert not any(line.startswith("TCPREMOTEINFO=") for line in local)  # nothing answers on 127.0.0.1:113
    assert IDENT_QUERIES and all(re.fullmatch(rb"\d+ , \d+\r\n", q) for q in IDENT_QUERIES)


def test_environment_paranoid(start):
    client, liar, odd = compare(start, ["-p", "-R", "env"], [CLIENT_IP, LIAR_IP, ODD_IP], plain_env())
    assert "TCPREMOTEHOST=client.example.com" in client
    assert not any(line.startswith("TCPREMOTEHOST=") for line in liar)
    assert "TCPREMOTEHOST=we\\041rd\\045x.example" in odd  # the escaped name, looked up unescaped


RULES = """\
127.0.0.77:allow,RELAYCLIENT="",TCPLOCALHOST="from.rules"
=liar.example.com:allow,BY="host name"
127.0.0.80:deny
127.:allow,BY="prefix",PROTO="TCP"
"""


def test_environment_and_log_with_tcprules(start, tmp_path):
    cdb = compile_rules(tmp_path, RULES)
    client, liar, odd, local = compare(start, ["-R", "-x", cdb, "env"], [CLIENT_IP, LIAR_IP, ODD_IP, "127.0.0.1"],
                                       plain_env(**STALE))
    assert "RELAYCLIENT=" in client and "TCPLOCALHOST=from.rules" in client
    assert "BY=host name" in liar and "BY=prefix" in local
    assert odd == []  # denied: the program never ran


def test_rules_file_missing_and_unreadable(start, tmp_path):
    missing = str(tmp_path / "none.cdb")
    compare(start, ["-R", "-H", "-l", "x", "-x", missing, "env"], ["127.0.0.1"], plain_env())
    [env] = compare(start, ["-R", "-H", "-l", "x", "-X", "-x", missing, "env"], ["127.0.0.1"], plain_env())
    assert "PROTO=TCP" in env
    (tmp_path / "bad.cdb").write_bytes(b"\xff" * 3000)
    compare(start, ["-R", "-H", "-l", "x", "-x", str(tmp_path / "bad.cdb"), "env"], ["127.0.0.1"], plain_env())


def test_program_that_cannot_be_run(start, tmp_path):
    (tmp_path / "noexec").write_text("#!/bin/sh\n")
    for program in ("/nonexistent/program", "no-such-program-anywhere", str(tmp_path / "noexec")):
        compare(start, ["-R", "-H", "-l", "x", program], ["127.0.0.1"], plain_env())


def test_banner_and_options_that_change_nothing_visible(start):
    [env] = compare(start, ["-B", "hello\n", "-R", "-D", "-o", "-t", "1", "-l", "0", "-b", "5", "-q", "-Q", "-v",
                            "env"], [CLIENT_IP], plain_env())
    assert env[0] == "hello" and "TCPLOCALHOST=0" in env


def test_crashing_programs_do_not_take_the_server_down(start):
    """A program killed by a signal: the same log as tcpserver's, and the next client is served."""
    compare(start, ["-R", "-H", "-l", "x"], ["127.0.0.1", "127.0.0.1"], plain_env(),
            program=["sh", "-c", "kill -SEGV $$"])


def test_privileges_dropped_as_tcpserver_drops_them(start):
    if not real_root():  # root of a user namespace only (tests/test_privileged.py): no other id can be set
        refusals = [subprocess.run([binary, "-v", "-R", "-H", "-l", "x", "-u", "65534", "-g", "65533", "127.0.0.1",
                                    "0", "id"], env=plain_env(), capture_output=True, timeout=10)
                    for binary in (need("tcpserver"), SERVER)]
        theirs, ours = ((r.returncode, r.stdout, r.stderr) for r in refusals)
        assert ours == theirs == (111, b"", b"tcpserver: fatal: unable to set gid: permission denied\n")
        return
    [ids] = compare(start, ["-R", "-H", "-l", "x", "-u", "65534", "-g", "65533", "id"], ["127.0.0.1"], plain_env())
    assert re.fullmatch(r"uid=65534\(\w+\) gid=65533(\(\w+\))? groups=65533(\(\w+\))?", ids[0])  # no other group
    [ids] = compare(start, ["-R", "-H", "-l", "x", "-U", "id"], ["127.0.0.1"], plain_env(UID="65534", GID="65534"))
    assert ids[0].startswith("uid=65534(nobody) gid=65534(nogroup)")


# -- sessions of our programs, run in the child --------------------------------------

SESSION = (b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<%s@example.org>\r\nDATA\r\n"
           b"Subject: %s\r\n\r\nhello\r\n.\r\nQUIT\r\n")


@pytest.fixture
def auth_env(base_env, cvm_socket) -> dict[str, str]:
    return {**base_env, "CVM_SASL_PLAIN": cvm_socket["module"]}


def child_pid(server: Ucspi, count: int = 1) -> int:
    """The pid of the count-th connection's child, once it has logged `ok`."""
    deadline = time.monotonic() + 10
    while len(oks := re.findall(r"tcpserver: ok (\d+) ", server.log)) < count:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.01)
    return int(oks[count - 1])


def test_auth_session_with_swaks_runs_in_the_forked_child(start, auth_env, queue):
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", str(BIN / "smtpfront-qmail"), env=auth_env)
    r = swaks(server.port, "someone@elsewhere.example", "--auth", "PLAIN", *credentials())
    assert r.returncode == 0, r.stdout
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fdemo@example.org\0Tsomeone@elsewhere.example\0\0"
    assert b"with ESMTPA via TCP" in message and b"\n  by mx.example ([127.0.0.1])\n" in message
    log = server.wait_log("bytes in:")
    pid = child_pid(server)
    assert f"mailfront[{pid}]: " in log and "username=demo" in log and PASSWORD not in log
    with socket.create_connection(("127.0.0.1", server.port)) as held:  # a session still open: its process
        assert held.recv(100).startswith(b"220 mx.example")
        cmdline = Path(f"/proc/{child_pid(server, 2)}/cmdline").read_bytes().split(b"\0")
        assert b"smtpfront-server" in b" ".join(cmdline)  # the server's own process image: no exec
        held.sendall(b"QUIT\r\n")
        assert held.recv(100).startswith(b"221 ")


def test_c_program_of_the_same_name_is_executed(start, base_env):
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", C_QMAIL, env=base_env)
    with socket.create_connection(("127.0.0.1", server.port)) as held:
        assert held.recv(100) == b"220 mx.example mailfront ESMTP\r\n"
        cmdline = Path(f"/proc/{child_pid(server)}/cmdline").read_bytes()
        assert b"mailfront" in cmdline and b"smtpfront-server" not in cmdline


def test_queue_sees_the_environment_tcpserver_gives(start, base_env, queue, tmp_path):
    """qmail-queue inherits the session's environment: compare it under tcpserver (exec) and here (in-process)."""
    dump = tmp_path / "qq-env"
    script = tmp_path / "qmail-queue-env"
    script.write_text(f"#!/bin/sh\nenv | sort > {dump}.$$\nexec {base_env['QMAILQUEUE']}\n")
    script.chmod(0o755)
    cdb = compile_rules(tmp_path, RULES)
    env = {**base_env, "QMAILQUEUE": str(script), "DNSCACHEIP": DNS_IP}
    theirs, ours = both(start, "-x", cdb, str(BIN / "smtpfront-qmail"), env=env)
    for server in (theirs, ours):
        reply = server.talk(SESSION % (b"u", b"env"), source=CLIENT_IP)
        assert b"250 2.6.0 Accepted" in reply
    [first, second] = [masked_env(p.read_bytes()) for p in sorted(tmp_path.glob("qq-env.*"), key=os.path.getmtime)]
    assert (second if ipv6_tcpserver() else as_ipv4_tcpserver(second, [])[0]) == first
    assert {"TCPREMOTEHOST=client.example.com", "TCPREMOTEINFO=joeBloggs:xy", "TCPLOCALHOST=from.rules",
            "RELAYCLIENT="} <= set(second)
    assert len(queue.messages()) == 2


def test_tcprules_deny_relayclient_and_allow_only_some(start, auth_env, queue, tmp_path):
    cdb = compile_rules(tmp_path, '127.0.0.1:allow,RELAYCLIENT=""\n127.0.0.2:deny\n127.0.0.3:allow\n:deny\n')
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", "-x", cdb, str(BIN / "smtpfront-qmail"),
                   env=auth_env)

    def send(source: str, to: str) -> subprocess.CompletedProcess:
        return swaks(server.port, to, "--local-interface", source, sender="app@internal.example")

    assert send("127.0.0.1", "someone@elsewhere.example").returncode == 0  # RELAYCLIENT="" from tcp.cdb
    refused = send("127.0.0.3", "someone@elsewhere.example")
    assert refused.returncode != 0 and "<** 550 5.1.0" in refused.stdout
    assert send("127.0.0.3", "user@example.org").returncode == 0
    for source in ("127.0.0.2", "127.0.0.4"):  # denied: closed before any greeting
        assert server.talk(b"", source=source) == b""
    assert sorted(e for e, _ in queue.messages()) == [b"Fapp@internal.example\0Tsomeone@elsewhere.example\0\0",
                                                      b"Fapp@internal.example\0Tuser@example.org\0\0"]
    server.wait_ends(5)
    log = server.log
    assert len(re.findall(r"tcpserver: deny \d+ mx.example:::ffff:127.0.0.1:\d+ :::ffff:127.0.0.[24]::\d+", log)) == 2
    assert "status 25600" in log  # exit 100, as tcpserver's denied children


def test_settings_are_read_for_each_connection(start, base_env, queue, qmail_home, tmp_path):
    """MAILRULES and control files changed while the server runs apply to the next connection."""
    rules = tmp_path / "rules"
    rules.write_text("d*@junk.example:*:first rules\n")
    server = start(SERVER, "-R", "-H", "-l", "mx.example", str(BIN / "smtpfront-qmail"),
                   env={**base_env, "MAILRULES": str(rules), "MAILRULES_CACHE": str(tmp_path)})
    probe = b"MAIL FROM:<x@junk.example>\r\nRSET\r\nMAIL FROM:<x@ok.example>\r\nRCPT TO:<u@later.example>\r\nQUIT\r\n"
    codes = [line[:3] for line in server.talk(probe).split(b"\r\n")[1:5]]
    assert codes == [b"553", b"250", b"250", b"550"]
    rules.write_text("d*@other.example:*:second rules\n")
    (qmail_home / "control" / "rcpthosts").write_text("later.example\n")
    codes = [line[:3] for line in server.talk(probe).split(b"\r\n")[1:5]]
    assert codes == [b"250", b"250", b"250", b"250"]


def dialogue(port: int, recipient: str, pause: float = 0.0, source: str = "127.0.0.1") -> bytes:
    """One message, with a pause in the middle of DATA; the server's replies (b"" when refused)."""
    try:
        with socket.socket() as s:
            s.bind((source, 0))
            s.settimeout(60)
            s.connect(("127.0.0.1", port))
            s.sendall(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<%s@example.org>\r\nDATA\r\n"
                      b"Subject: x\r\n\r\nfirst half\r\n" % recipient.encode())
            time.sleep(pause)
            s.sendall(b"second half\r\n.\r\nQUIT\r\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out
    except OSError:  # refused, or reset: queued in the backlog when the server stopped listening
        return b""


def test_sigterm_with_40_clients_loses_nothing_and_acknowledges_nothing_twice(start, base_env, queue):
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", "-c", "40", "-b", "100",
                   str(BIN / "smtpfront-qmail"), env=base_env)
    acknowledged: list[str] = []
    finished_after_term: list[str] = []
    term = threading.Event()
    numbers = iter(range(100_000))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                name = f"u{next(numbers)}"
            began_before_term = not term.is_set()
            if not began_before_term:
                return
            reply = dialogue(server.port, name, pause=0.05)
            if b"250 2.6.0 Accepted" in reply:
                with lock:
                    acknowledged.append(name)
                    if term.is_set():
                        finished_after_term.append(name)
            elif not reply:
                return

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    term.set()
    assert server.proc.wait(timeout=10) == 0  # gone at once, as tcpserver
    for t in threads:
        t.join(timeout=60)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)
    queued = [envelope.split(b"\0")[1].removeprefix(b"T").split(b"@")[0].decode() for envelope, _ in queue.messages()]
    assert len(acknowledged) >= 20 and finished_after_term  # sessions open at SIGTERM went on to the end
    assert sorted(queued) == sorted(acknowledged) and len(set(queued)) == len(queued)


def test_the_limit_is_never_exceeded(start, base_env):
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", "-c", "3", str(BIN / "smtpfront-qmail"),
                   env=base_env)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    for conn in held:
        assert conn.recv(100).startswith(b"220 ")
    fourth = socket.create_connection(("127.0.0.1", server.port), timeout=1)
    with pytest.raises(socket.timeout):
        fourth.recv(100)  # left in the kernel's queue while 3 are open
    held[0].sendall(b"QUIT\r\n")
    held[0].recv(100)
    held[0].close()
    fourth.settimeout(5)
    assert fourth.recv(100).startswith(b"220 ")
    for conn in (*held[1:], fourth):
        conn.close()
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda i=i: results.append(dialogue(server.port, f"x{i}", 0.05)))
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(b"221 2.0.0" in r for r in results)
    server.wait_ends(24)
    counts = [int(n) for n in re.findall(r"tcpserver: status: (\d+)/3", server.log)]
    assert max(counts) == 3 and counts[-1] == 0


def test_no_child_is_lost_when_many_end_at_once(start, base_env):
    """SIGCHLDs merge; every child must still be reaped and counted out."""
    server = start(SERVER, "-v", "-R", "-H", "-l", "x", "-c", "100", str(BIN / "smtpfront-qmail"), env=base_env)
    conns = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(60)]
    for conn in conns:
        assert conn.recv(100).startswith(b"220 ")
    for conn in conns:  # all end together
        conn.sendall(b"QUIT\r\n")
    for conn in conns:
        conn.recv(100)
        conn.close()
    server.wait_ends(60)
    assert server.log.splitlines()[-1] == "tcpserver: status: 0/100"
    assert server.log.count("tcpserver: end ") == server.log.count("tcpserver: pid ") == 60


def test_a_session_killed_does_not_take_the_server_down(start, base_env, queue):
    server = start(SERVER, "-v", "-R", "-H", "-l", "x", str(BIN / "smtpfront-qmail"), env=base_env)
    with socket.create_connection(("127.0.0.1", server.port)) as victim:
        victim.recv(100)
        os.kill(child_pid(server), signal.SIGKILL)
        assert victim.recv(100) == b""
    server.wait_ends(1)
    assert re.search(r"tcpserver: end \d+ status 9\n", server.log)
    assert b"250 2.6.0 Accepted" in dialogue(server.port, "after")
    assert len(queue.messages()) == 1


# -- as a service ------------------------------------------------------------------


def test_service_from_smtpfront_conf_under_svscan(auth_env, queue, tmp_path):
    account = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    svc = tmp_path / "service" / "smtpfront"
    r = subprocess.run([str(BIN / "smtpfront-conf"), account, account, str(svc), "--server", "--ip", "127.0.0.1",
                        "--port", str(port), "--hostname", "mx.example", "--cvm", auth_env["CVM_SASL_PLAIN"],
                        "--qmail-home", auth_env["QMAILHOME"]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{BIN}/smtpfront-server -v -PR -U -l mx.example -c 40 -x tcp.cdb -- 127.0.0.1 {port}" in (
        svc / "run").read_text()
    keep_own_ids(svc, account)
    for name in ("QMAILQUEUE", "FAKEQ_DIR", "PATH"):
        (svc / "env" / name).write_text(auth_env[name] + "\n")
    scan = subprocess.Popen([need("svscan"), str(svc.parent)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": auth_env["PATH"]})
    log = svc / "log" / "main" / "current"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.05)
        r = swaks(port, "someone@elsewhere.example", "--auth", "PLAIN", *credentials())
        assert r.returncode == 0, r.stdout
        r = swaks(port, "someone@elsewhere.example")  # tcp.cdb gives 127.0.0.1 RELAYCLIENT=""
        assert r.returncode == 0, r.stdout
        assert len(queue.messages()) == 2
        while time.monotonic() < deadline and (b"status: 0/40" not in log.read_bytes().split(b"end ")[-1]
                                                if log.exists() else True):
            time.sleep(0.1)
        text = log.read_text()
        assert text.startswith("@4000") and "tcpserver: status: 1/40" in text
        assert "username=demo" in text and PASSWORD not in text
        status = subprocess.run([need("svstat"), str(svc)], capture_output=True, text=True).stdout
        assert ": up (pid " in status
        server_pid = int(status.split("(pid ")[1].split(")")[0])
        assert b"smtpfront-server" in Path(f"/proc/{server_pid}/cmdline").read_bytes()
    finally:
        subprocess.run([need("svc"), "-dx", str(svc), str(svc / "log")])
        scan.terminate()
        scan.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # svc -d: the server is gone and the port closed
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("still listening after svc -d")


# -- TLS ----------------------------------------------------------------------------


def new_certificate(directory: Path) -> tuple[Path, Path]:
    directory.mkdir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([need("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def served_certificate(port: int) -> bytes:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        f = conn.makefile("rwb")
        f.readline()
        f.write(b"EHLO c\r\nSTARTTLS\r\n")
        f.flush()
        while not f.readline().startswith(b"220 "):
            pass
        with context.wrap_socket(conn) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(b"QUIT\r\n")
            tls.recv(100)
    return der


def pem_to_der(path: Path) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_starttls_in_the_child_and_a_renewed_certificate_is_used(start, base_env, queue, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    first, second = new_certificate(tmp_path / "first"), new_certificate(tmp_path / "second")
    for path in first:
        (live / path.name).write_bytes(path.read_bytes())
    env = {**base_env, "TLS_CERTFILE": str(live / "cert.pem"), "TLS_KEYFILE": str(live / "key.pem")}
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", str(BIN / "smtpfront-qmail"), env=env)
    r = swaks(server.port, "user@example.org", "--tls")
    assert r.returncode == 0, r.stdout
    assert b"with ESMTPS via TCP" in queue.messages()[0][1]
    assert served_certificate(server.port) == pem_to_der(first[0])
    for path in second:  # renewed as certbot does it: new files put in place
        (live / f"{path.name}.new").write_bytes(path.read_bytes())
        (live / f"{path.name}.new").rename(live / path.name)
    assert served_certificate(server.port) == pem_to_der(second[0])
    assert "TLS started: TLSv1.3" in server.wait_log("TLS started")


def test_a_program_that_cannot_be_loaded_is_run_per_connection(start, base_env, tmp_path):
    """A broken installation: the server says so, executes the program instead, and keeps serving."""
    import shutil
    import sys

    import smtpfront
    from smtpfront.launchers import write_launchers

    site = tmp_path / "site"
    shutil.copytree(Path(smtpfront.__file__).parent, site / "smtpfront")
    (site / "smtpfront" / "plugins" / "counters.py").write_text("def broken(:\n")
    write_launchers(tmp_path, sys.executable, str(site))
    server = start(str(tmp_path / "smtpfront-server"), "-v", "-R", "-H", "-l", "x", str(tmp_path / "smtpfront-qmail"),
                   env=base_env)
    assert "SyntaxError" in server.wait_log("tcpserver: warning: cannot load ")
    for _ in range(2):  # the executed program fails as it would under tcpserver: closed, with a 451
        assert server.talk() == b"451 4.3.0 Internal error.\r\n"
    server.wait_ends(2)
    assert server.proc.poll() is None


def test_workers_look_up_apply_rules_and_log_as_children_do(start, base_env, queue, tmp_path):
    """tcpserver against smtpfront-server -n 1000 -c 1 (one process for every session): -h, -p and -r look-ups,
    tcp.cdb keys by address and by name, a deny, what qmail-queue inherits, and the -v lines."""
    cdb = compile_rules(tmp_path, RULES)
    message = (b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"
               b"QUIT\r\n")
    environments, logs = [], []
    for name, binary, extra in (("theirs", need("tcpserver"), []), ("ours", SERVER, ["-n", "1000"])):
        dumps = tmp_path / name
        dumps.mkdir()
        script = dumps / "qmail-queue-env"
        script.write_text(f"#!/bin/sh\nenv | sort > {dumps}/env.$(ls {dumps} | grep -c '^env')\n"
                          f"exec {base_env['QMAILQUEUE']}\n")
        script.chmod(0o755)
        env = {**base_env, "QMAILQUEUE": str(script), "DNSCACHEIP": DNS_IP, **STALE}
        server = start(binary, "-v", "-p", "-c", "1", "-x", cdb, *extra, str(BIN / "smtpfront-qmail"), env=env)
        for done, source in enumerate((CLIENT_IP, LIAR_IP, ODD_IP, "127.0.0.1", CLIENT_IP), 1):
            server.talk(b"" if source == ODD_IP else message, source=source)  # ODD_IP is denied
            server.wait_ends(done)
        environments.append([masked_env((dumps / f"env.{n}").read_bytes().replace(str(dumps).encode(), b"D"))
                             for n in range(4)])
        masked = (re.sub(r"qp \d+", "qp Q", line) for line in masked_log(server))  # qmail-queue's pid, in the
        logs.append([re.sub(r"^mailfront\[\d+\]", "mailfront[P]", re.sub(r"bytes out: \d+", "bytes out: N", line))
                     for line in masked])  # reply too: as many bytes out as its digits
        if name == "ours":
            assert len(set(re.findall(r"tcpserver: (?:ok|deny) (\d+) ", server.log))) == 1
    if not ipv6_tcpserver():  # ours as ucspi-tcp's IPv4 tcpserver gives them, its IPv6 additions checked
        environments[1] = [as_ipv4_tcpserver(env, [])[0] for env in environments[1]]
        environments[0] = [sorted(env) for env in environments[0]]
        logs[1] = as_ipv4_tcpserver([], logs[1])[1]
        logs[0] = [ok_line(line) for line in logs[0]]
    assert environments[1] == environments[0]
    client, liar, local, client_again = environments[1]
    assert {"TCPREMOTEHOST=client.example.com", "TCPREMOTEINFO=joeBloggs:xy", "RELAYCLIENT="} <= set(client)
    assert "BY=host name" not in liar and "BY=prefix" in liar  # -p: the liar's name is dropped
    assert not any(line.startswith(("RELAYCLIENT=", "TCPREMOTEINFO=", "TCPREMOTEHOST=c")) for line in local)
    assert client_again == client
    status = [[line for line in log if line.startswith("tcpserver: status: ")] for log in logs]
    assert status[1] == status[0]  # the same counts; a worker's lines may come before the server's
    assert [line for line in logs[1] if line not in status[1]] == [line for line in logs[0] if line not in status[0]]


# -- IPv6 --------------------------------------------------------------------------------
# Compared with ucspi-tcp-ipv6's tcpserver where it is installed; otherwise checked against what it was seen
# to give (Debian 1:0.88-7, by hand), which these expectations spell out.

ipv6 = pytest.mark.skipif(not has_ipv6(), reason="the machine has no ::1")


def ipv6_env(proto: str, local: str, remote: str, *more: str, local_host: str = "mx.example") -> list[str]:
    """tcpserver-ipv6's environment for a client (PATH and DNSCACHEIP from plain_env first): each TCP*
    variable followed by its TCP6* twin, whose addresses are IPv6 (v4-mapped for an IPv4 client)."""
    six = {local: local if ":" in local else "::ffff:" + local, remote: remote if ":" in remote else "::ffff:" + remote}
    lines = [f"PATH={os.environ['PATH']}", f"DNSCACHEIP={DNS_IP}", f"PROTO={proto}"]
    for name, value in (("LOCALIP", local), ("LOCALPORT", "N"), ("LOCALHOST", local_host), ("REMOTEIP", remote),
                        ("REMOTEPORT", "N"), *(item.split("=") for item in more)):
        lines += [f"TCP{name}={value}", f"TCP6{name}={six.get(value, value) if name.endswith('IP') else value}"]
    return lines


def run_or_compare(start, args: list[str], sources: list[str], host: str = "0") -> tuple[list[list[str]], list[str]]:
    """(environments, masked log) of ours, compared with tcpserver-ipv6's where it is installed."""
    if ipv6_tcpserver():
        outputs = compare(start, args, sources, plain_env(), host=host)
    server = start(SERVER, "-v", *args, env=plain_env(), host=host)
    mine = []
    for done, source in enumerate(sources, 1):
        mine.append(masked_env(server.talk(source=source)))
        server.wait_ends(done)
    if ipv6_tcpserver():
        assert mine == outputs
    return mine, masked_log(server)


@ipv6
def test_host_0_serves_ipv6_and_ipv4_clients(start):
    """Dual-stack, as tcpserver-ipv6: an IPv6 client is PROTO=TCP6, an IPv4 one PROTO=TCP with v4-mapped twins."""
    (six, four), log = run_or_compare(start, ["-R", "-H", "-l", "mx.example", "env"], [V6_IP, "127.0.0.1"])
    assert six == ipv6_env("TCP6", "::1", "::1")
    assert four == ipv6_env("TCP", "127.0.0.1", "127.0.0.1")
    assert [line for line in log if " from " in line or " ok " in line] == [
        "tcpserver: pid P from ::1", "tcpserver: ok P mx.example:::1:PORT :::1::PORT",
        "tcpserver: pid P from 127.0.0.1", "tcpserver: ok P mx.example:::ffff:127.0.0.1:PORT :::ffff:127.0.0.1::PORT"]


@ipv6
@pytest.mark.parametrize("host", ["::", "::1", "0::0"])
def test_ipv6_hosts(start, host):
    """`::` too, which tcpserver-ipv6 refuses ("no IP address"): a deliberate difference (docs/differences.md)."""
    server = start(SERVER, "-R", "-H", "-l", "x", "env", env=plain_env(), host=host)
    assert "PROTO=TCP6" in masked_env(server.talk(source=V6_IP))
    if host != "::1":
        assert "PROTO=TCP" in masked_env(server.talk(source="127.0.0.1"))


@ipv6
def test_a_host_name_is_its_aaaa_address(start):
    server = start(SERVER, "-R", "-H", "-l", "x", "env", env=plain_env(), host="six.example.com")
    with socket.create_connection((V6_IP, server.port), timeout=30) as s:
        assert b"TCPREMOTEIP=::1\n" in s.makefile("rb").read()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=30)


@ipv6
def test_minus_4_and_minus_6(start):
    """-4: an IPv4 socket (no IPv6 client), the TCP6* twins still set; -6: PROTO=TCP6 and v4-mapped TCP* too."""
    [four], _ = run_or_compare(start, ["-4", "-R", "-H", "-l", "mx.example", "env"], ["127.0.0.1"])
    assert four == ipv6_env("TCP", "127.0.0.1", "127.0.0.1")
    server = start(SERVER, "-4", "-R", "-H", "-l", "x", "env", env=plain_env(), host="0")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((V6_IP, server.port), timeout=30)
    [mapped], log = run_or_compare(start, ["-6", "-R", "-H", "-l", "mx.example", "env"], ["127.0.0.1"])
    assert mapped == ipv6_env("TCP6", "::ffff:127.0.0.1", "::ffff:127.0.0.1")
    assert "tcpserver: pid P from ::ffff:127.0.0.1" in log


@ipv6
def test_lookups_for_an_ipv6_client(start):
    """-h -p -r: the PTR under ip6.arpa (its AAAA agrees, so -p keeps it) and ident over IPv6."""
    IDENT_QUERIES.clear()
    [env], log = run_or_compare(start, ["-p", "env"], [V6_IP])
    assert env == ipv6_env("TCP6", "::1", "::1", "REMOTEHOST=six.example.com", "REMOTEINFO=joeBloggs:xy",
                           local_host="six.example.com")
    assert IDENT_QUERIES and all(re.fullmatch(rb"\d+ , \d+\r\n", q) for q in IDENT_QUERIES)
    assert re.search(r"tcpserver: ok P six.example.com:::1:PORT six.example.com:::1:joeBloggs:xy:PORT", "\n".join(log))


def ipv6_rules(tmp_path: Path, records: dict[str, bytes], text: str) -> str:
    """A rules cdb with IPv6 keys: from `text` by tcprules where it is ucspi-tcp-ipv6's (ucspi-tcp's takes the
    first colon for the end of the address), else the same `records` (what that tcprules writes) by cdb -c."""
    if ipv6_tcpserver():
        return compile_rules(tmp_path, text)
    data = b"".join(b"+%d,%d:%s->%s\n" % (len(k.encode()), len(v), k.encode(), v) for k, v in records.items()) + b"\n"
    subprocess.run([need("cdb"), "-c", "-t", str(tmp_path / "tcp.tmp"), str(tmp_path / "tcp.cdb")], input=data,
                   check=True)
    return str(tmp_path / "tcp.cdb")


@ipv6
def test_tcprules_for_ipv6_and_v4_mapped_clients(start, tmp_path):
    """An IPv6 client's keys: the address as tcpserver-ipv6 writes it, then prefixes ending in `:`; an IPv4 client
    on the dual-stack socket is looked up as IPv4 (a `::ffff:` rule never matches)."""
    cdb = ipv6_rules(tmp_path, {"::ffff:127.0.0.1": b"D\0", "::1": b"+WHO=six\0", "127.": b"+WHO=four\0", "": b"D\0"},
                     '::ffff:127.0.0.1:deny\n::1:allow,WHO="six"\n127.:allow,WHO="four"\n:deny\n')
    (six, four), log = run_or_compare(start, ["-R", "-H", "-l", "mx.example", "-x", cdb, "env"], [V6_IP, "127.0.0.1"])
    assert six[-1] == "WHO=six" and four[-1] == "WHO=four"
    cdb = ipv6_rules(tmp_path, {"::": b"+WHO=prefix\0", "": b"D\0"}, ':::allow,WHO="prefix"\n:deny\n')
    (prefixed, four), log = run_or_compare(start, ["-R", "-H", "-l", "mx.example", "-x", cdb, "env"],
                                           [V6_IP, "127.0.0.1"])
    assert prefixed[-1] == "WHO=prefix" and four == []  # `::` is a prefix of ::1, not of an IPv4 client
    cdb = ipv6_rules(tmp_path, {"::1": b"D\0"}, "::1:deny\n")
    [denied], log = run_or_compare(start, ["-R", "-H", "-l", "mx.example", "-x", cdb, "env"], [V6_IP])
    assert denied == [] and "tcpserver: deny P mx.example:::1:PORT :::1::PORT" in log


@ipv6
def test_submission_over_ipv6_with_swaks(start, auth_env, queue):
    """The issue's case: `smtpfront-server ... :: PORT smtpfront-qmail`; swaks authenticates and relays over
    IPv6 and over IPv4; Received writes the address literal as C mailfront and RFC 5321 do (`[IPv6:::1]`)."""
    server = start(SERVER, "-v", "-R", "-H", "-l", "mx.example", str(BIN / "smtpfront-qmail"), env=auth_env,
                   host="::")
    for address in (V6_IP, "127.0.0.1"):
        r = subprocess.run([need("swaks"), "--server", address, "--port", str(server.port), "--from",
                            "demo@example.org", "--to", "someone@elsewhere.example", "--auth", "PLAIN", *credentials()],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout
    [(_, six), (_, four)] = [m for m in queue.messages()]
    assert b"([IPv6:::1])\n  by mx.example ([IPv6:::1])\n  with ESMTPA via TCP6;" in six
    assert b"([127.0.0.1])\n  by mx.example ([127.0.0.1])\n  with ESMTPA via TCP;" in four
    assert "username=demo" in server.log


# -- the server's own resources running out (issue 19, item 11) ----------------------------------------

def test_fork_failing_drops_the_connection_and_the_server_goes_on(start):
    """A soft RLIMIT_NPROC of 0 makes fork fail for real (root is exempt from it: where they can, the servers run
    as nobody): both servers log the same line, close on the client, count it out and go on."""
    import resource

    def no_processes() -> None:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, resource.getrlimit(resource.RLIMIT_NPROC)[1]))

    ids = ["-u", "65534", "-g", "65534"] if real_root() else []
    for binary in (need("tcpserver"), SERVER):
        server = start(binary, "-v", "-R", "-H", "-l", "x", *ids, env=plain_env(), program=["sh", "-c", "echo hi"],
                       preexec_fn=no_processes)
        server.wait_log("tcpserver: status: 0/40")
        for count in (1, 2):
            assert server.talk() == b""
            deadline = time.monotonic() + 10
            while (log := server.log).count("unable to fork: ") < count or not log.endswith("status: 0/40\n"):
                assert time.monotonic() < deadline, log
                time.sleep(0.01)
        assert server.proc.poll() is None
        lines = log.splitlines()
        assert lines[-1] == "tcpserver: status: 0/40" and lines[-3] == "tcpserver: status: 1/40", log
        assert re.fullmatch(r"tcpserver: warning: dropping connection, unable to fork: .+", lines[-2]), log


def test_accept_out_of_descriptors_waits_and_serves_the_client_later(start):
    """RLIMIT_NOFILE lowered to the server's lowest free descriptor makes accept() fail with EMFILE for real:
    the client waits in the listen queue (the server neither dies nor drops it) and is served once the server
    has descriptors again."""
    import resource

    server = start(SERVER, "-v", "-R", "-H", "-l", "x", env=plain_env(), program=["sh", "-c", "echo hello"])
    server.wait_log("tcpserver: status: 0/40")  # in its loop, with all it opens at start-up open
    pid = server.proc.pid
    open_fds = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = min(set(range(len(open_fds) + 1)) - open_fds)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
    with socket.create_connection(("127.0.0.1", server.port), timeout=1) as client:
        with pytest.raises(TimeoutError):  # while the server has no descriptor to take the connection with
            client.recv(100)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        client.settimeout(30)
        out = b""
        while chunk := client.recv(100):
            out += chunk
    assert out == b"hello\n" and server.proc.poll() is None
