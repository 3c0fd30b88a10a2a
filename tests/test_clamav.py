"""The clamav plugin in smtpfront-qmail ($PLUGINS), against a real clamd and against broken ones."""

from __future__ import annotations

import pytest

from conftest import free_port
from scanner_daemons import (
    VIRUS,
    VIRUS_NAME,
    Broken,
    c_and_ours,
    clamd,  # noqa: F401 - a fixture
    message,
    refused_within,
)

CLEAN = message(b"Subject: t", b"", b"hello")
INFECTED = message(b"Subject: t", b"", VIRUS)
NO_SCAN = "451 4.3.0 Could not virus scan message"


def over_tcp(clamd, **extra: str) -> dict[str, str]:  # noqa: F811
    return {"PLUGINS": "clamav", "CLAMAV_HOST": clamd.host, "CLAMAV_PORT": str(clamd.port), **extra}


def test_a_virus_is_refused_and_nothing_queued(smtp, queue, clamd):  # noqa: F811
    r = smtp(INFECTED, **over_tcp(clamd))
    assert r.reply_to(-1) == f"554 5.7.0 Virus scan failed: {VIRUS_NAME} FOUND"
    assert queue.messages() == []
    assert f"554 5.7.0 Virus scan failed: {VIRUS_NAME} FOUND" in r.stderr


def test_a_clean_message_is_queued_whole(smtp, queue, clamd):  # noqa: F811
    r = smtp(CLEAN + INFECTED, **over_tcp(clamd))
    assert r.codes[5] == 250 and r.codes[-1] == 554  # and the next message of the session is scanned too
    [(_, queued)] = queue.messages()
    assert queued.startswith(b"Received: from x") and queued.endswith(b"\nSubject: t\n\nhello\n")


def test_clamd_over_its_unix_socket(smtp, queue, clamd):  # noqa: F811
    r = smtp(INFECTED, PLUGINS="clamav", CLAMD_SOCKET=clamd.socket)
    assert r.reply_to(-1).startswith("554 5.7.0 Virus scan failed: ")
    assert queue.messages() == []


def test_a_message_over_the_limit_is_not_scanned(smtp, queue, clamd):  # noqa: F811
    r = smtp(INFECTED, **over_tcp(clamd, CLAMAV_MAXSIZE="20"))
    assert r.codes[-1] == 250 and len(queue.messages()) == 1
    assert "Warning: ClamAV scanning skipped: message larger than maximum" in r.stderr


def _refused_within(smtp, queue, bound: float, reply: str = NO_SCAN, **env: str):
    return refused_within(smtp, queue, INFECTED, "clamav", bound, reply, **env)


def test_a_scanner_that_is_down(smtp, queue):
    r = _refused_within(smtp, queue, 60, CLAMAV_HOST="127.0.0.1", CLAMAV_PORT=str(free_port()))
    assert "smtpfront: clamav: 127.0.0.1:" in r.stderr and "ConnectionRefusedError" in r.stderr


def test_a_scanner_that_never_answers(smtp, queue):
    broken = Broken("silent")
    try:
        # the 1 s timeout, with room for a loaded machine: the session must not wait for the silent scanner
        r = _refused_within(smtp, queue, 30, CLAMAV_HOST="127.0.0.1", CLAMAV_PORT=str(broken.port),
                            CLAMAV_TIMEOUT="1000")
    finally:
        broken.close()
    assert "TimeoutError" in r.stderr


def test_a_scanner_that_closes_mid_answer(smtp, queue):
    broken = Broken("midway")
    try:
        r = _refused_within(smtp, queue, 60, CLAMAV_HOST="127.0.0.1", CLAMAV_PORT=str(broken.port))
    finally:
        broken.close()
    assert "clamd answered 'stream: Some.Virus FOU'" in r.stderr


def test_no_scanner_configured_or_found(smtp, queue):
    _refused_within(smtp, queue, 60)
    _refused_within(smtp, queue, 60, "451 4.3.0 Could not resolve virus scanner hostname",
                    CLAMAV_HOST="no-such-host.invalid")
    _refused_within(smtp, queue, 60, CLAMAV_HOST="127.0.0.1", CLAMAV_PORT="99999")


def test_clamd_names_when_clamav_names_are_unset(smtp, queue, clamd):  # noqa: F811
    r = smtp(INFECTED, PLUGINS="clamav", CLAMD_HOST=clamd.host, CLAMD_PORT=str(clamd.port))
    assert r.reply_to(-1).startswith("554 ")
    # and CLAMAV_ names win over CLAMD_ ones
    r = smtp(INFECTED, PLUGINS="clamav", CLAMAV_HOST=clamd.host, CLAMD_HOST="no-such-host.invalid",
             CLAMAV_PORT=str(clamd.port), CLAMD_PORT="1")
    assert r.reply_to(-1).startswith("554 ")


@pytest.mark.parametrize(("how", "answer", "c_reply"), [
    ("silent", b"", NO_SCAN),
    ("midway", b"stream: Some.Virus FOU", "554 5.7.0 Virus scan failed: Some.Virus FOU"),
    ("midway", b"stream: O", "554 5.7.0 Virus scan failed: O"),  # a clean message's answer, cut
])
def test_a_broken_scanner_answers_as_c_does_or_451(how, answer, c_reply, base_env, queue):
    """The same fault through C's plugin-clamav.so and ours, within the timeout, nothing queued: C takes any cut
    `stream: ` line for a virus and refuses for good (554); ours answers 451 (docs/differences.md)."""
    broken = Broken(how, answer)
    env = {**base_env, "CLAMAV_HOST": "127.0.0.1", "CLAMAV_PORT": str(broken.port), "CLAMAV_TIMEOUT": "1000"}
    try:
        answers = c_and_ours("clamav", INFECTED, env)
    finally:
        broken.close()
    assert answers == [(c_reply, True), (NO_SCAN, True)]
    assert queue.messages() == []
