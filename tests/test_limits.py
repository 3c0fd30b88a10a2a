"""The limits plugin against a real redis-server: each limit, exact counts under parallel sessions, and a store that
stops or never answers (mail flows)."""

from __future__ import annotations

import base64
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BIN, DEMO, PASSWORD, RedisServer, Silent
from smtpfront.plugins.limits import ConfigError, rate, say

PLAIN_OK = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()


def rcpts(n: int, sender: str = "a@b.example") -> bytes:
    return (f"EHLO c\r\nMAIL FROM:<{sender}>\r\n" + "".join(f"RCPT TO:<u{i}@example.org>\r\n" for i in range(n))
            + "QUIT\r\n").encode()


def test_rates():
    assert rate("X", "100/1h") == (100, 3600.0)
    assert rate("X", "5/90") == rate("X", "5/90s") == (5, 90.0)
    assert rate("X", "1/2d") == (1, 172800.0)
    assert [say(p) for p in (3600.0, 90.0, 120.0, 86400.0)] == ["1h", "90s", "2m", "1d"]
    for bad in ("100", "0/1h", "10/0", "10/1w", "-1/1h", "1e3/1h", "10/h", "10/400d", "１/1h"):
        with pytest.raises(ConfigError):
            rate("X", bad)


@pytest.mark.parametrize("env", [{"LIMIT_RECIPIENTS_PER_LOGIN": "100"}, {"LIMIT_SESSIONS_PER_IP": "x"},
                                 {"LIMIT_TARPIT": "nan", "LIMIT_SESSIONS_PER_IP": "1"},
                                 {"LIMIT_SESSIONS_PER_NET": "3", "LIMITS_STORE": ""}])
def test_a_bad_setting_refuses_the_session(env, smtp, redis_server, redis_db):
    r = smtp(rcpts(1), PLUGINS="limits", **{"LIMITS_STORE": redis_server.url(redis_db), **env})
    assert r.lines == ["421 4.3.0 Configuration error; try again later."]
    assert "smtpfront: " in r.stderr and "Traceback" not in r.stderr


def test_off_unless_set_and_no_connection_then(smtp, tmp_path):
    r = smtp(rcpts(3), PLUGINS="limits", RELAYCLIENT="", LIMITS_STORE=f"unix:{tmp_path}/none.sock")
    assert r.codes == [220, 250, 250, 250, 250, 250, 221] and "limits" not in r.stderr


def test_recipients_per_login_hold_across_sessions(smtp, cvm_socket, redis_server, redis_db):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"], "PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db),
           "LIMIT_RECIPIENTS_PER_LOGIN": "3/1h"}
    r = smtp(f"EHLO c\r\nAUTH PLAIN {PLAIN_OK}\r\n".encode() + rcpts(4)[8:], **env)
    assert r.codes[3:] == [250, 250, 250, 250, 451, 221], r.lines
    assert r.reply_to(7).startswith("451 4.7.1 Too many recipients for this login (3 per 1h); try again in ")
    assert "smtpfront: limit LIMIT_RECIPIENTS_PER_LOGIN reached: login demo, client 198.51.100.7, retry in" \
        in r.stderr
    r = smtp(f"EHLO c\r\nAUTH PLAIN {PLAIN_OK}\r\n".encode() + rcpts(1)[8:], **env)
    assert r.codes[3:] == [250, 451, 221]
    # not authenticated and not relaying: the login's limit is not this client's
    assert smtp(rcpts(1), **env).codes == [220, 250, 250, 250, 221]


def test_messages_per_login(smtp, cvm_socket, redis_server, redis_db):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"], "PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db),
           "LIMIT_MESSAGES_PER_LOGIN": "2/10m"}
    mail = b"MAIL FROM:<demo@example.org>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nSubject: t\r\n\r\nhi\r\n.\r\n"
    r = smtp(f"EHLO c\r\nAUTH PLAIN {PLAIN_OK}\r\n".encode() + mail * 3 + b"QUIT\r\n", **env)
    assert r.codes[3:13] == [250, 250, 354, 250] * 2 + [451, 503], r.lines
    assert "451 4.7.1 Too many messages for this login (2 per 10m); try again in " in r.stdout.decode()


def test_exact_counts_under_40_parallel_sessions(smtp, queue, redis_server, redis_db):
    """40 sessions at once, 3 recipients each, for a relaying client's sender limited to 100: exactly 100 pass."""
    env = {"PLUGINS": "+limits", "RELAYCLIENT": "", "LIMITS_STORE": redis_server.url(redis_db),
           "LIMIT_RECIPIENTS_PER_SENDER": "100/1h"}
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda _: smtp(rcpts(3, "bulk@b.example"), **env), range(40)))
    codes = [code for r in results for code in r.codes[3:-1]]
    assert len(codes) == 120 and codes.count(250) == 100 and codes.count(451) == 20, codes
    assert smtp(rcpts(1, "other@b.example"), **env).codes[3] == 250  # another sender has its own count


def test_connections_per_address(smtp, redis_server, redis_db):
    env = {"PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db), "LIMIT_CONNECTIONS_PER_IP": "3/1h"}
    assert [smtp(b"QUIT\r\n", **env).codes for _ in range(3)] == [[220, 221]] * 3
    r = smtp(b"QUIT\r\n", **env)
    assert r.lines[0].startswith("421 4.7.1 Too many connections from your address (3 per 1h); try again in ")
    assert "limit LIMIT_CONNECTIONS_PER_IP reached: address 198.51.100.7" in r.stderr
    assert smtp(b"QUIT\r\n", TCPREMOTEIP="198.51.100.8", **env).codes == [220, 221]


class Held:
    """A session kept open: started, greeted, waiting for our next line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([str(BIN / "smtpfront-qmail")], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.greeting = self.proc.stdout.readline().decode()

    def quit(self) -> None:
        self.proc.communicate(b"QUIT\r\n", timeout=30)


def test_sessions_at_once_per_address_and_network(base_env, redis_server, redis_db):
    env = {**base_env, "PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db),
           "LIMIT_SESSIONS_PER_IP": "2", "LIMIT_SESSIONS_PER_NET": "3"}
    held = [Held(env), Held(env)]
    assert [h.greeting[:4] for h in held] == ["220 "] * 2
    third = Held(env)
    assert third.greeting == "421 4.7.1 Too many sessions from your address at once (2); try again later.\r\n"
    third.proc.communicate(timeout=30)
    other = Held({**env, "TCPREMOTEIP": "198.51.100.9"})  # the same /24: its third
    assert other.greeting.startswith("220 ")
    fourth = Held({**env, "TCPREMOTEIP": "198.51.100.10"})
    assert fourth.greeting.startswith("421 4.7.1 Too many sessions from your network at once (3)")
    fourth.proc.communicate(timeout=30)
    held[0].quit()  # its place is freed as it ends
    again = Held(env)
    assert again.greeting.startswith("220 ")
    for h in (held[1], other, again):
        h.quit()
    assert redis_server.call("DBSIZE", db=redis_db) == b":0\r\n"  # every place freed: the sets are gone


def test_a_killed_session_frees_its_place_when_its_lifetime_ends(base_env, redis_server, redis_db):
    env = {**base_env, "PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db),
           "LIMIT_SESSIONS_PER_IP": "1", "TIMEOUT": "1"}
    held = Held(env)
    held.proc.kill()
    held.proc.communicate()
    refused = Held(env)
    assert refused.greeting.startswith("421 ")  # the killed one still holds the place
    refused.proc.communicate(timeout=30)
    [k] = redis_server.call("KEYS", "*sessions*", db=redis_db).split(b"\r\n")[2::2]
    ttl = int(redis_server.call("PTTL", k.decode(), db=redis_db)[1:-2])
    assert 0 < ttl <= 61_000  # TIMEOUT + 60 s: then it is free


def test_tarpit_waits_before_refusing(smtp, redis_server, redis_db):
    env = {"PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db), "RELAYCLIENT": "",
           "LIMIT_RECIPIENTS_PER_SENDER": "1/1h", "LIMIT_TARPIT": "1.5"}
    assert smtp(rcpts(1), **env).codes == [220, 250, 250, 250, 221]
    start = time.monotonic()
    assert smtp(rcpts(1), **env).codes == [220, 250, 250, 451, 221]
    assert time.monotonic() - start >= 1.5


def test_redis_stopped_mid_run_fails_open(smtp, tmp_path):
    server = RedisServer(tmp_path)
    env = {"PLUGINS": "limits", "LIMITS_STORE": server.url(0, unix=False), "RELAYCLIENT": "",
           "LIMIT_RECIPIENTS_PER_SENDER": "2/1h", "LIMIT_CONNECTIONS_PER_IP": "100/1h"}
    try:
        assert smtp(rcpts(3), **env).codes == [220, 250, 250, 250, 250, 451, 221]
    finally:
        server.stop()
    r = smtp(rcpts(3), **env)
    assert r.codes == [220, 250, 250, 250, 250, 250, 221]
    notes = [line for line in r.stderr.splitlines() if "limits not applied" in line]
    assert len(notes) == 1 and f"127.0.0.1:{server.port}" in notes[0], r.stderr


def test_a_redis_that_never_answers_costs_one_timeout_a_session(smtp):
    silent = Silent()
    try:
        env = {"PLUGINS": "limits", "LIMITS_STORE": f"redis://127.0.0.1:{silent.port}?timeout_ms=200",
               "RELAYCLIENT": "", "LIMIT_RECIPIENTS_PER_SENDER": "2/1h", "LIMIT_SESSIONS_PER_IP": "1"}
        start = time.monotonic()
        r = smtp(rcpts(5), **env)
        elapsed = time.monotonic() - start
        assert r.codes == [220, 250, 250] + [250] * 5 + [221]
        assert [line for line in r.stderr.splitlines() if "limits not applied" in line] == [
            f"mailfront[{r.stderr.split('[')[1].split(']')[0]}]: smtpfront: limits not applied: store unusable: "
            f"redis://127.0.0.1:{silent.port}/0: timed out"]
        assert elapsed < 15  # one 0.2 s timeout, not one per command; the slack is for a loaded machine
    finally:
        silent.close()


@pytest.mark.parametrize("how", ["QUIT", "the client goes away", "a later plugin refuses the session"])
def test_a_session_gives_its_place_back_however_it_ends(how, smtp, redis_server, redis_db, tmp_path):
    env = {"PLUGINS": "+limits", "LIMITS_STORE": redis_server.url(redis_db), "LIMIT_SESSIONS_PER_IP": "1"}
    if how == "a later plugin refuses the session":
        env["PATTERNS"] = str(tmp_path / "missing")
    r = smtp(b"EHLO c\r\nQUIT\r\n" if how == "QUIT" else b"EHLO c\r\n", **env)
    assert r.codes[0] == (421 if "refuses" in how else 220)
    assert "limit LIMIT_SESSIONS_PER_IP" not in r.stderr
    assert redis_server.call("DBSIZE", db=redis_db) == b":0\r\n"  # no place left taken


def test_a_login_spelled_another_way_shares_its_budget(smtp, cvm_socket, redis_server, redis_db):
    """cvm-pwfile takes DEMO and demo@any.example for demo: each spelling must not bring a budget of its own."""
    env = {"CVM_SASL_PLAIN": cvm_socket["module"], "PLUGINS": "limits", "LIMITS_STORE": redis_server.url(redis_db),
           "LIMIT_RECIPIENTS_PER_LOGIN": "2/1h"}
    for login, codes in (("demo", [250, 250, 250]), ("DEMO", [250, 451]), ("demo@any.example", [250, 451])):
        plain = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
        r = smtp(f"EHLO c\r\nAUTH PLAIN {plain}\r\n".encode() + rcpts(len(codes) - 1)[8:], **env)
        assert r.codes[2] == 235 and r.codes[3:-1] == codes, (login, r.lines)
