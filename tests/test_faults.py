"""Faults made for real: a queue that closes its pipes, a full file system, clients that vanish
at every point of a session, and a fixed-seed fuzz run of the installed program."""

from __future__ import annotations

import base64
import random
import re
import resource
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BIN, DEMO, LOGS, PASSWORD, run_program

ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n"
MESSAGE = b"DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\n"
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*\r\n")


def stand_in(tmp_path, name: str, script: str):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("script", [
    "exec <&- >&-; sleep 1; exit 0",  # closes both pipes at once, then claims success
    "head -c 10 >/dev/null; exec <&- ; exit 0",  # reads a little, then goes
    "head -c 70000 >/dev/null; exit 0",  # stops reading part way through the message
])
def test_qmail_queue_closing_its_pipes_early_is_a_failure(script, smtp, tmp_path, queue):
    big = b"DATA\r\n" + b"x" * 998 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 300 + b".\r\nQUIT\r\n"
    r = smtp(ENVELOPE + big, QMAILQUEUE=stand_in(tmp_path, "qq", script))
    assert r.codes[-2] == 451, r.lines
    assert r.lines[-2].startswith("451 4.3.0")
    assert queue.messages() == [] and "Traceback" not in r.stderr


def test_queuedir_write_error_as_on_a_full_disk(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG), as a full disk refuses with ENOSPC."""
    q = tmp_path / "q"
    for sub in ("tmp", "new"):
        (q / sub).mkdir(parents=True)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error return, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    data = ENVELOPE + b"DATA\r\n" + (b"z" * 998 + b"\r\n") * 20 + b".\r\nQUIT\r\n"
    proc = subprocess.run([str(BIN / "smtpfront-queuedir")], input=data, capture_output=True,
                          env={"QUEUEDIR": str(q), "QMAILHOME": str(tmp_path), "RELAYCLIENT": ""},
                          preexec_fn=small_files)
    replies = proc.stdout.decode().split("\r\n")
    assert "451 4.3.0 Error writing queue file" in replies
    assert list((q / "new").iterdir()) == [] and list((q / "tmp").iterdir()) == []
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr


def full_session() -> bytes:
    plain = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode())
    return (b"EHLO c\r\nAUTH PLAIN\r\n" + plain + b"\r\nMAIL FROM:<a@b.example>\r\n"
            b"RCPT TO:<y@elsewhere.example>\r\nDATA\r\nSubject: t\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n")


def test_client_vanishes_at_every_point(base_env, cvm_socket, queue):
    """Cut the input at every line end and in the middle of every line; nothing half-done is queued."""
    session = full_session()
    ends = [m.end() for m in re.finditer(rb"\r\n", session)]
    cuts = sorted({*ends, *(end - 3 for end in ends), 1})
    final_dot = session.index(b"\r\n.\r\n") + 5
    env = {**base_env, "CVM_SASL_PLAIN": cvm_socket["module"]}

    def run(cut: int):
        return cut, run_program("smtpfront-qmail", session[:cut], env)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, cuts))
    for cut, r in results:
        assert "Traceback" not in r.stderr, cut
        assert all(REPLY_LINE.fullmatch(line.encode() + b"\r\n") for line in r.lines), (cut, r.lines)
        in_data = session.index(b"DATA\r\n") + 6 <= cut < final_dot
        assert r.returncode == (1 if in_data else 0), (cut, r.returncode, r.lines[-1:])
    queued = len(queue.messages())
    assert queued == sum(cut >= final_dot for cut, _ in results)  # exactly the runs that sent the final dot


# -- the installed program, fuzzed ---------------------------------------------

VERBS = [b"EHLO c", b"HELO c", b"MAIL FROM:<a@b.example>", b"MAIL FROM:<>", b"RCPT TO:<y@example.org>",
         b"RCPT TO:<x@elsewhere.example>", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY x", b"AUTH PLAIN",
         b"AUTH LOGIN", b"AUTH CRAM-MD5", b"STARTTLS", b"BDAT 10", b"MAIL FROM:<a\0b@c>", b"RCPT TO:<@x,@y:z@w>",
         b"MAIL FROM:<a@b.example> SIZE=999999999999", b"*", b"."]
JUNK = [b"\0", b"\xff\xfe", b"\r", b"\n", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"x" * 1100,
        b"A" * 13000, b"=?utf-8?", "é".encode(), b"\x1b[2J", b"%s%n"]


def fuzz_session(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 14)):
        roll = rng.random()
        if roll < 0.08:  # a whole transaction, its body salted with junk and smuggling attempts
            body = b"".join(rng.choice(JUNK + [b"line\r\n", b"..dot\r\n"]) for _ in range(rng.randint(0, 6)))
            parts.append(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n" + body + b"\r\n.\r\n")
        elif roll < 0.6:
            parts.append(rng.choice(VERBS) + rng.choice([b"\r\n", b"\r\n", b"\n", b""]))
        elif roll < 0.85:
            parts.append(rng.choice(JUNK))
        else:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
    return b"".join(parts)


def test_fuzzed_sessions_never_crash(base_env, cvm_socket, queue):
    """A fixed seed, 2,000 sessions: well-formed replies only, no traceback, exit 0 or 1."""
    rng = random.Random(20261125)
    sessions = [fuzz_session(rng) for _ in range(2000)]
    env = {**base_env, "CVM_SASL_PLAIN": cvm_socket["module"], "TIMEOUT": "5", "MAXNOTIMPL": "50"}

    def run(data: bytes):
        proc = subprocess.run([str(BIN / "smtpfront-qmail")], input=data, env=env, capture_output=True, timeout=60)
        return data, proc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, sessions))
    accepted = 0
    for data, proc in results:
        assert proc.returncode in (0, 1), (data, proc.returncode)
        assert b"Traceback" not in proc.stderr and b"internal error" not in proc.stderr, data
        assert REPLY_LINE.sub(b"", proc.stdout) == b"", (data, proc.stdout)
        accepted += proc.stdout.count(b"\r\n250 2.6.0 Accepted")
        LOGS.append(("fuzz", proc.stderr.decode("utf-8", "replace")))
    assert len(queue.messages()) == accepted
    print(f"fuzz: {len(sessions)} sessions, {accepted} messages accepted and queued")


# -- checks that cannot be made: always 4xx, never acceptance -------------------

PLAIN_OK = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode())


def test_unreadable_patterns_file_stops_the_program(smtp, tmp_path, queue):
    (tmp_path / "patterns").mkdir()  # exists; reading it fails (EISDIR) even for root
    r = smtp(ENVELOPE + MESSAGE, PATTERNS=str(tmp_path / "patterns"))
    assert r.lines == ["421 4.3.0 Could not open $PATTERNS file"] and r.returncode == 1
    assert queue.messages() == []


def test_unreadable_sender_login_map_is_451(smtp, tmp_path, cvm_socket, queue):
    (tmp_path / "owners").mkdir()
    r = smtp(b"AUTH PLAIN " + PLAIN_OK + b"\r\nMAIL FROM:<demo@b.example>\r\n",
             SENDER_LOGIN_MAP=str(tmp_path / "owners"), CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.codes == [220, 235, 451]
    assert "SENDER_LOGIN_MAP" in r.stderr


def test_unusable_throttle_store_refuses_auth(smtp, tmp_path, cvm_socket):
    store = tmp_path / "not-a-directory"
    store.write_text("")
    r = smtp(b"AUTH PLAIN " + PLAIN_OK + b"\r\n", AUTH_THROTTLE_DIR=str(store), CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.lines[-1] == "454 4.7.0 Too many failed logins; try again later."


def test_unreadable_mailrules_list_during_the_session_is_451(smtp, tmp_path, queue):
    listed = tmp_path / "blocked"
    listed.mkdir()  # passes the start-up check (it exists); a lookup can't read it
    rules = tmp_path / "rules"
    rules.write_text(f"d[[@{listed}]]:*:blocked\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\n", MAILRULES=str(rules), MAILRULES_CACHE=str(tmp_path))
    assert r.codes == [220, 451] and r.lines[-1].startswith("451 4.3.0")
    assert "MAILRULES: cannot check" in r.stderr


def test_damaged_rules_cache_during_the_session_is_451(smtp, tmp_path, queue):
    """The cache is trusted only as a cdb file whose records are all there; a missing record is a 451."""
    from smtpfront import mailrules
    from smtpfront.cdb import CDB, write_cdb

    rules = tmp_path / "rules"
    rules.write_text("d*@spam.example:*:no\nk*:*\n")
    mailrules.load(str(rules), str(tmp_path))
    [cache] = tmp_path.glob("*.cache")
    db = CDB(str(cache))
    write_cdb(str(cache), [(b"meta", db.get(b"meta"))])  # the rules are gone
    r = smtp(b"MAIL FROM:<a@spam.example>\r\n", MAILRULES=str(rules), MAILRULES_CACHE=str(tmp_path))
    assert r.codes == [220, 451] and "MAILRULES: cannot check" in r.stderr


class ListLog(list):
    """A log that keeps its lines, for the tests that drive the pieces in-process."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def note(self, line: str) -> None:
        self.append("smtpfront: " + line)


def test_internal_error_in_a_plugin_is_451_and_a_log_line():
    """A bug can't be made for real: a plugin that raises stands in for one."""
    from smtpfront import smtp
    from smtpfront.backends.echo import Echo
    from smtpfront.config import Settings
    from smtpfront.pipeline import Pipeline
    from smtpfront.plugins import Plugin
    from smtpfront.plugins.builtins import Accept
    from smtpfront.protocols.smtp import SMTP
    from smtpfront.session import Session

    class Broken(Plugin):
        def recipient(self, session, address, params):
            raise KeyError("bug")

    log = ListLog()
    pipeline = Pipeline(Session(Settings.from_environ({}), log), [Accept(), Broken()], Echo())
    handler = SMTP(pipeline, smtp.Engine(), log)
    assert handler.handle(smtp.Mail("a@b.example", ())).code == 250
    assert handler.handle(smtp.Rcpt("y@example.org", ())) == smtp.Reply(451, "4.3.0 Internal error.")
    assert log[-1].startswith("smtpfront: internal error: KeyError: 'bug' at ") and "test_faults.py" in log[-1]


@pytest.mark.parametrize("hang", [False, True])
def test_qmail_queue_wait_without_pidfd(hang, monkeypatch, fake_queue, queue):
    """Kernels before 5.3 have no pidfd_open (that can't be made for real here): the wait polls instead."""
    import posix

    from smtpfront.backends.qmail import QmailQueue

    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")

    from smtpfront.config import Settings
    from smtpfront.session import Address, Session

    monkeypatch.setattr(posix, "pidfd_open", no_pidfd)
    env = {"FAKEQ_DIR": str(queue.path), "QQ_HANG": "1" if hang else "", "QMAILQUEUE": str(fake_queue),
           "QMAILQUEUE_TIMEOUT": "1" if hang else "30"}
    session = Session(Settings.from_environ(env), ListLog())
    backend = QmailQueue()
    backend.init(session)
    backend.sender(session, Address("a@b.example"), ())
    backend.recipient(session, Address("y@example.org"), ())
    assert backend.data_start(session) is None
    backend.data_block(session, b"Subject: x\n\nbody\n")
    reply = backend.message_end(session)
    if hang:
        assert reply.text == "4.3.0 qmail-queue timed out." and queue.messages() == []
    else:
        assert reply.code == 250 and len(queue.messages()) == 1


# -- more checks that cannot be made (issue 19, item 11) ---------------------------------------------------

def corrupt_cdb(path) -> None:
    """A cdb whose every hash table lies past the end of the file: opened fine, no lookup can be read."""
    path.write_bytes(b"".join((4096).to_bytes(4, "little") + (2).to_bytes(4, "little") for _ in range(256)))


@pytest.mark.parametrize("fault", ["badrcptto a directory", "rcpthosts a directory", "morercpthosts.cdb truncated",
                                   "morercpthosts.cdb tables past its end"])
def test_a_recipient_check_that_cannot_be_made_is_451(smtp, qmail_home, queue, fault):
    control = qmail_home / "control"
    if fault.endswith("a directory"):
        name = fault.split()[0]
        (control / name).unlink()
        (control / name).mkdir()  # exists; reading it fails (EISDIR), even for root
    elif fault.endswith("truncated"):
        (control / "morercpthosts.cdb").write_bytes(b"\0" * 100)
    else:
        corrupt_cdb(control / "morercpthosts.cdb")
    for extra in ({}, {"RELAYCLIENT": ""}):  # an acceptance by relayclient does not outweigh it
        r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@elsewhere.example>\r\nDATA\r\n", **extra)
        assert r.lines[2:] == ["451 4.3.0 Could not read a control file.", "503 5.5.1 You must send RCPT TO: first"]
        assert "smtpfront: cannot check recipient: " in r.stderr
    assert queue.messages() == []


def test_a_rule_switching_patterns_to_an_unreadable_file_is_451(smtp, tmp_path, queue):
    good = tmp_path / "patterns"
    good.write_text("/nothing matches this*\n")
    (tmp_path / "unreadable").mkdir()
    rules = tmp_path / "rules"
    rules.write_text(f"n*@switch.example:*::::PATTERNS={tmp_path}/unreadable\n")
    message = b"RCPT TO:<y@example.org>\r\n" + MESSAGE
    r = smtp(b"MAIL FROM:<a@switch.example>\r\n" + message + b"MAIL FROM:<a@other.example>\r\n" + message,
             PATTERNS=str(good), MAILRULES=str(rules), MAILRULES_CACHE=str(tmp_path))
    assert r.lines[3] == "451 4.3.0 Could not open $PATTERNS file"
    assert r.lines[-1].startswith("250 2.6.0 ")  # the next message, without the rule, is checked and taken
    assert f"smtpfront: PATTERNS: {tmp_path}/unreadable: Is a directory" in r.stderr
    assert len(queue.messages()) == 1


@pytest.mark.parametrize("form", ["text", "cdb"])
def test_a_missing_sender_login_map_is_451_with_a_log_line(smtp, tmp_path, cvm_socket, queue, form):
    """A missing .cdb map refused every sender (553: not owned) and said nothing; now as the text form."""
    missing = tmp_path / ("owners.cdb" if form == "cdb" else "owners")
    r = smtp(b"AUTH PLAIN " + PLAIN_OK + b"\r\nMAIL FROM:<demo@b.example>\r\n",
             SENDER_LOGIN_MAP=str(missing), CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.lines[-1] == "451 4.3.0 Could not read a control file."
    assert f"smtpfront: SENDER_LOGIN_MAP: {missing}: file not found" in r.stderr


def test_a_sender_login_map_cdb_owns_and_a_corrupt_one_is_451(smtp, tmp_path, cvm_socket):
    from test_cdb import make_cdb

    owners = tmp_path / "owners.cdb"
    make_cdb(owners, {b"demo@b.example": b"other,Demo", b"@c.example": b"demo", b"x@b.example": b"other"})
    env = {"SENDER_LOGIN_MAP": str(owners), "CVM_SASL_PLAIN": cvm_socket["module"]}
    r = smtp(b"AUTH PLAIN " + PLAIN_OK + b"\r\n" + b"".join(b"MAIL FROM:<%s>\r\n" % a for a in (
        b"demo@b.example", b"anyone@c.example", b"x@b.example", b"")), **env)
    assert r.codes[1:] == [235, 250, 250, 553, 553]
    corrupt_cdb(owners)
    r = smtp(b"AUTH PLAIN " + PLAIN_OK + b"\r\nMAIL FROM:<demo@b.example>\r\n", **env)
    assert r.lines[-1] == "451 4.3.0 Could not read a control file." and "SENDER_LOGIN_MAP" in r.stderr


# qmail-queue stand-ins that take no part of the message: one never exits, one exits 0 once its envelope pipe
# is closed (as a qmail-queue would that read nothing, saw the end of its envelope and claimed success)
NEVER_READS = {"hangs": "exec sleep 600\n",
               "exits 0": "exec python3 -c 'import select; select.select([1], [], []); raise SystemExit(0)'\n"}


@pytest.mark.parametrize("child", NEVER_READS)
def test_qmail_queue_alive_but_not_reading(base_env, tmp_path, queue, child):
    """The message fills the pipe; after QMAILQUEUE_TIMEOUT without a read the message is refused."""
    big = b"DATA\r\n" + (b"y" * 998 + b"\r\n") * 300 + b".\r\nQUIT\r\n"  # 300 kB: more than a pipe holds
    r = run_program("smtpfront-qmail", ENVELOPE + big, {
        **base_env, "QMAILQUEUE": stand_in(tmp_path, "qq", NEVER_READS[child]), "QMAILQUEUE_TIMEOUT": "1"},
        timeout=120)  # a second or two of QMAILQUEUE_TIMEOUT; the bound is for a loaded machine
    expected = {"hangs": "451 4.3.0 qmail-queue timed out.", "exits 0": "451 4.3.0 Writing data to qmail-queue failed."}
    assert r.lines[-2:] == [expected[child], "221 2.0.0 Good bye."]
    assert queue.messages() == [] and "Traceback" not in r.stderr


def without_dac_override(argv: list[str]) -> list[str]:
    """Run as root without the capabilities that ignore file modes, so that a mode refuses root too; a user
    is refused by modes anyway."""
    import os

    if os.geteuid() != 0:
        return argv
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps, *argv]


def test_queuedir_whose_directory_cannot_be_synced_after_the_link(base_env, tmp_path):
    """new/ may be written (the link is made) but not opened to be synced: the message is not taken, and the
    link is taken back, so that no reader of new/ picks up a message whose directory entry may not last."""
    root = tmp_path / "q"
    (root / "tmp").mkdir(parents=True)
    (root / "new").mkdir(mode=0o333)
    (root / "new").chmod(0o333)  # write and search, no read: link() works, open() for the fsync does not
    r = subprocess.run(without_dac_override([str(BIN / "smtpfront-queuedir")]), input=ENVELOPE + MESSAGE,
                       env={**base_env, "QUEUEDIR": str(root), "RELAYCLIENT": ""}, capture_output=True, timeout=30)
    LOGS.append(("queuedir", r.stderr.decode()))
    assert r.stdout.split(b"\r\n")[-2] == b"451 4.3.0 Error writing queue file"
    assert b"smtpfront: queuedir: cannot queue " in r.stderr and b"Permission denied" in r.stderr
    (root / "new").chmod(0o755)
    assert list((root / "new").iterdir()) == [] and list((root / "tmp").iterdir()) == []


@pytest.mark.parametrize(("program", "partial"), [("qmqpfront-qmail", b"100:5:hello,"),
                                                  ("qmtpfront-qmail", b"100:\nhello")])
def test_qmqp_and_qmtp_time_out_without_taking_anything(base_env, queue, program, partial):
    proc = subprocess.Popen([str(BIN / program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**base_env, "TIMEOUT": "1"})
    proc.stdin.write(partial)
    proc.stdin.flush()  # and the input stays open: the client is silent, not gone
    try:
        proc.wait(timeout=60)
    finally:
        proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    LOGS.append((program, err))
    assert proc.returncode == 1 and out == b""
    assert "smtpfront: timed out" in err
    assert queue.messages() == []


@pytest.mark.parametrize("oversize", ["login", "password", "request"])
def test_credentials_a_cvm_request_cannot_carry_are_refused(smtp, cvm_socket, queue, oversize):
    """A CVM credential is at most 255 octets and a request 512: what can't be sent is no valid login (535),
    never sent cut short, and the session goes on."""
    login, password = {"login": ("d" * 256, PASSWORD), "password": (DEMO, "p" * 256),
                       "request": ("d" * 200 + "@" + "e" * 100, "p" * 250)}[oversize]
    plain = base64.b64encode(f"\0{login}\0{password}".encode())
    r = smtp(b"AUTH PLAIN " + plain + b"\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n", CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.lines[1:] == ["535 5.7.8 Authentication credentials invalid.", "235 2.7.0 Authentication succeeded."]
    assert "SASL AUTH PLAIN failed" in r.stderr and "Traceback" not in r.stderr
