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
    assert "451 4.3.0 Write error (queue full?)." in replies
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
