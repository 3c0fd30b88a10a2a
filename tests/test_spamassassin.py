"""The spamassassin plugin in smtpfront-qmail and smtpfront-queuedir, against a real spamd and broken ones."""

from __future__ import annotations

import pytest

from conftest import free_port
from scanner_daemons import (
    GTUBE,
    Broken,
    c_and_ours,
    message,
    refused_within,
    spamd,  # noqa: F401 - a fixture
)

HAM = message(b"From: <a@b.example>", b"To: <y@example.org>", b"Date: Thu, 3 Dec 2026 12:00:00 +0000",
              b"Message-ID: <1@b.example>", b"Subject: hello", b"", b"Just a plain hello.")
SPAM = message(b"Subject: t", b"", GTUBE)
NO_SCAN = "451 4.3.0 Could not SpamAssassin scan message"


def over_tcp(spamd, **extra: str) -> dict[str, str]:  # noqa: F811
    return {"PLUGINS": "spamassassin", "SPAMD_HOST": spamd.host, "SPAMD_PORT": str(spamd.port), **extra}


def test_the_back_end_gets_spamds_message(smtp, queue, spamd):  # noqa: F811
    r = smtp(HAM, **over_tcp(spamd))
    [(_, queued)] = queue.messages()
    assert r.codes[-1] == 250 and r.reply_to(-1).endswith(f" bytes {len(queued)}")
    head, _, body = queued.partition(b"\n\n")
    assert b"\nX-Spam-Status: No, score=" in head and b"\nReceived: from x" in head
    assert body == b"Just a plain hello.\n"


def test_spam_is_marked_or_refused(smtp, queue, spamd):  # noqa: F811
    r = smtp(SPAM, **over_tcp(spamd))
    [(_, queued)] = queue.messages()
    assert r.codes[-1] == 250 and b"X-Spam-Flag: YES" in queued
    r = smtp(SPAM, **over_tcp(spamd, SPAMD_REJECT=""))
    assert r.reply_to(-1) == "554 5.3.0 Spam detected, message refused"
    r = smtp(SPAM + HAM.replace(b"HELO x\r\n", b""), **over_tcp(spamd, SPAMD_REJECT="Go away"))
    assert r.codes[5] == 554 and r.reply_to(5) == "554 Go away"
    assert r.codes[-1] == 250  # the next message of the session is not spam
    assert len(queue.messages()) == 2


def test_spamd_over_its_unix_socket(smtp, queue, spamd):  # noqa: F811
    r = smtp(SPAM, PLUGINS="spamassassin", SPAMD_PATH=spamd.socket, SPAMD_REJECT="")
    assert r.reply_to(-1) == "554 5.3.0 Spam detected, message refused"
    assert queue.messages() == []


def test_the_queuedir_back_end_gets_spamds_message_too(smtp, tmp_path, spamd):  # noqa: F811
    for sub in ("tmp", "new"):
        (tmp_path / "qd" / sub).mkdir(parents=True)
    r = smtp(HAM, program="smtpfront-queuedir", QUEUEDIR=str(tmp_path / "qd"), **over_tcp(spamd))
    assert r.codes[-1] == 250
    [queued] = (tmp_path / "qd" / "new").iterdir()
    assert b"\nX-Spam-Status: No, score=" in queued.read_bytes()


def test_a_message_over_the_limit_goes_on_unscanned(smtp, queue, spamd):  # noqa: F811
    r = smtp(SPAM, **over_tcp(spamd, SPAMD_MAXSIZE="20", SPAMD_REJECT=""))
    [(_, queued)] = queue.messages()
    assert r.codes[-1] == 250 and b"X-Spam" not in queued
    assert "Warning: SpamAssassin scanning skipped: message larger than maximum" in r.stderr


def test_the_message_waits_under_tmpdir(smtp, queue, spamd, tmp_path):  # noqa: F811
    r = smtp(HAM, TMPDIR=str(tmp_path / "missing"), **over_tcp(spamd))
    assert r.reply_to(4) == "451 4.3.0 Could not keep the message in a temporary file"  # DATA's answer
    assert queue.messages() == []
    r = smtp(HAM, TMPDIR=str(tmp_path), **over_tcp(spamd))
    assert r.codes[-1] == 250 and list(tmp_path.glob("tmp*")) == []  # nameless files: nothing left behind


def _refused_within(smtp, queue, bound: float, reply: str = NO_SCAN, **env: str):
    return refused_within(smtp, queue, HAM, "spamassassin", bound, reply, **env)


def test_a_spamd_that_is_down(smtp, queue):
    r = _refused_within(smtp, queue, 60, SPAMD_HOST="127.0.0.1", SPAMD_PORT=str(free_port()))
    assert "ConnectionRefusedError" in r.stderr


def test_a_spamd_that_never_answers(smtp, queue):
    broken = Broken("silent")
    try:
        # the 1 s timeout, with room for a loaded machine: the session must not wait for the silent spamd
        r = _refused_within(smtp, queue, 30, SPAMD_HOST="127.0.0.1", SPAMD_PORT=str(broken.port),
                            SPAMD_TIMEOUT="1000")
    finally:
        broken.close()
    assert "TimeoutError" in r.stderr


def test_a_spamd_that_closes_mid_message(smtp, queue):
    # mailfront would queue the cut message
    broken = Broken("midway", b"SPAMD/1.1 0 EX_OK\r\nContent-length: 500\r\n\r\nX-Spam-Status: No\nSubject: cut")
    try:
        r = _refused_within(smtp, queue, 60, SPAMD_HOST="127.0.0.1", SPAMD_PORT=str(broken.port))
    finally:
        broken.close()
    assert "where spamd announced 500" in r.stderr


def test_no_spamd_configured_or_found(smtp, queue):
    _refused_within(smtp, queue, 60)
    _refused_within(smtp, queue, 60, "451 4.3.0 Could not resolve SpamAssassin hostname",
                    SPAMD_HOST="no-such-host.invalid")


@pytest.mark.parametrize("how", ["silent", "midway"])
def test_a_broken_spamd_answers_as_c_does(how, base_env, queue):
    """The same fault through C's plugin-spamassassin.so and ours: C's 451 within the timeout, nothing queued.
    (Midway here is a cut status line: C would queue a message cut after a whole status line, see
    test_a_spamd_that_closes_mid_message.)"""
    broken = Broken(how, b"SPAMD/1.1 0 EX")
    env = {**base_env, "SPAMD_HOST": "127.0.0.1", "SPAMD_PORT": str(broken.port), "SPAMD_TIMEOUT": "1000"}
    try:
        answers = c_and_ours("spamassassin", HAM, env)
    finally:
        broken.close()
    assert answers == [(NO_SCAN, True), (NO_SCAN, True)]
    assert queue.messages() == []
