"""The shared store (AUTH_THROTTLE_STORE) against a real redis-server: the throttle's rules, exact under parallel
processes, and what happens when Redis stops or never answers."""

from __future__ import annotations

import base64
import time

import pytest

from conftest import DEMO, PASSWORD, RedisServer, Silent, reservations_in_processes
from smtpfront.store import SharedReservation, SharedThrottle, Store
from smtpfront.throttle import LIMITS, Throttle

PLAIN_OK = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()
PLAIN_BAD = base64.b64encode(f"\0{DEMO}\0wrong".encode()).decode()


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, line: str) -> None:
        self.lines.append(line)


def waits(store, ip: str, login: str, n: int) -> list[float | None]:
    out = []
    for _ in range(n):
        reservation = store.reserve(ip, login)
        out.append(None if reservation is None else reservation.wait)
    return out


def test_the_same_rules_as_the_directory(redis_server, redis_db, tmp_path):
    shared = SharedThrottle(redis_server.url(redis_db), None, Notes())
    local = Throttle(str(tmp_path))
    for store in (shared, local):
        assert waits(store, "198.51.100.7", "demo", 12) == [0.0] * 5 + [1.0, 2.0, 4.0, 8.0, 16.0, None, None]
        assert store.reserve("198.51.100.200", "DEMO") is None  # the same network, the login in another case
        assert store.reserve("198.51.101.7", "demo") is not None
        slow, refuse, _ = LIMITS["net"]
        told = [store.reserve("192.0.2.9", f"user{i}") for i in range(refuse + 1)]
        assert [r is None for r in told] == [False] * refuse + [True]
    assert isinstance(shared.reserve("203.0.113.1", "x"), SharedReservation)


def test_a_success_releases_only_its_own_attempt(redis_server, redis_db):
    store = SharedThrottle(redis_server.url(redis_db), None, Notes())
    waits(store, "198.51.100.7", "demo", 5)
    good = store.reserve("198.51.100.7", "demo")
    assert good.wait == 1.0
    store.release(good)
    assert store.reserve("198.51.100.7", "demo").wait == 1.0


def test_keys_are_namespaced_hashed_and_expire(redis_server, redis_db):
    SharedThrottle(redis_server.url(redis_db), None, Notes()).reserve("198.51.100.7", "demo\r\nFLUSHALL")
    keys = redis_server.call("KEYS", "*", db=redis_db).split(b"\r\n")[2::2]
    names = [k for k in keys if k.startswith(b"smtpfront:throttle:")]
    assert len(names) == 3 and all(len(k) == len("smtpfront:throttle:") + 32 for k in names), keys
    ttl = int(redis_server.call("PTTL", names[0].decode(), db=redis_db)[1:-2])
    assert 0 < ttl <= 900_000


def reserve_in_processes(url: str, logins: list[str]) -> int:
    """One process per login, all at once, each reserving one attempt from 203.0.113.5; how many got one."""
    code = ("import sys; from smtpfront.store import SharedThrottle;"
            "sys.exit(SharedThrottle(sys.argv[1], None, None).reserve('203.0.113.5', sys.argv[2]) is None)")
    return reservations_in_processes(code, url, logins)


@pytest.mark.parametrize("unix", [True, False], ids=["unix", "tcp"])
def test_parallel_processes_never_get_more_than_the_budget(redis_server, redis_db, unix):
    url = redis_server.url(redis_db, unix)
    assert reserve_in_processes(url, ["demo"] * 24) == LIMITS["pair"][1]
    redis_server.call("FLUSHDB", db=redis_db)
    assert reserve_in_processes(url, [f"user{i}" for i in range(40)]) == LIMITS["net"][1]


def test_redis_stopped_mid_run_falls_back_to_the_directory(tmp_path):
    server = RedisServer(tmp_path)
    notes = Notes()
    store = SharedThrottle(server.url(0), Throttle(str(tmp_path)), notes)
    try:
        assert waits(store, "198.51.100.7", "demo", 3) == [0.0] * 3
        assert list(tmp_path.glob("[0-9a-f]" * 32)) == []  # the directory is not used while Redis answers
    finally:
        server.stop()
    reservation = store.reserve("198.51.100.7", "demo")
    assert reservation is not None and not isinstance(reservation, SharedReservation)
    assert len(list(tmp_path.glob("[0-9a-f]" * 32))) == 3
    assert len(notes.lines) == 1 and "using AUTH_THROTTLE_DIR" in notes.lines[0]
    store.release(reservation)  # into the directory it came from
    assert waits(store, "198.51.100.7", "demo", 6) == [0.0] * 5 + [1.0]
    assert len(notes.lines) == 1  # one line a session: the broken connection isn't tried again


def test_without_a_directory_an_unusable_store_refuses(tmp_path):
    notes = Notes()
    store = SharedThrottle(f"unix:{tmp_path}/no.sock", None, notes)
    assert store.attempt("198.51.100.7", "demo", sleep=None) is None
    assert "AUTH refused" in notes.lines[0]
    assert SharedThrottle("http://nowhere", None, notes).attempt("198.51.100.7", "demo", sleep=None) is None
    assert "bad store URL" in notes.lines[1]


def test_a_redis_that_never_answers_falls_back_within_the_timeout(tmp_path):
    silent = Silent()
    try:
        notes = Notes()
        store = SharedThrottle(f"redis://127.0.0.1:{silent.port}?timeout_ms=100", Throttle(str(tmp_path)), notes)
        start = time.monotonic()
        assert waits(store, "198.51.100.7", "demo", 3) == [0.0] * 3
        assert time.monotonic() - start < 5  # one 0.1 s timeout, then the directory; the slack is for a loaded host
        assert len(notes.lines) == 1 and "timed out" in notes.lines[0]
    finally:
        silent.close()


def redis_now_ms(redis_server) -> int:
    reply = redis_server.call("TIME").split(b"\r\n")
    return int(reply[2]) * 1000 + int(reply[4]) // 1000


def test_hit_is_a_sliding_window(redis_server, redis_db):
    """Events put in the past by hand (Redis's clock): what counts is the last `period` before now, wherever a
    fixed window would have started."""
    store = Store(redis_server.url(redis_db))
    now = redis_now_ms(redis_server)
    redis_server.call("ZADD", "k", str(now - 61_000), "gone", str(now - 50_000), "a", str(now - 20_000), "b",
                      db=redis_db)
    assert store.hit("k", 3, 60) == 0.0  # "gone" fell out of the minute: a, b and this one
    retry = store.hit("k", 3, 60)
    assert 9.0 < retry <= 10.0  # refused until "a" is a minute old
    assert redis_server.call("ZCARD", "k", db=redis_db) == b":3\r\n"  # the refused one is not recorded
    assert 0 < int(redis_server.call("PTTL", "k", db=redis_db)[1:-2]) <= 60_000


def test_the_program_refuses_on_the_shared_budget(smtp, cvm_socket, redis_server, redis_db):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"], "AUTH_THROTTLE_STORE": redis_server.url(redis_db),
           "AUTH_MAX_FAILURES": "0"}
    store = SharedThrottle(redis_server.url(redis_db), None, Notes())
    waits(store, "198.51.100.7", "demo", LIMITS["pair"][0])
    r = smtp(f"AUTH PLAIN {PLAIN_OK}\r\n".encode(), **env)  # waited 1 s, then the CVM said yes
    assert r.codes[1] == 235
    waits(store, "198.51.100.7", "demo", LIMITS["pair"][1] - LIMITS["pair"][0])
    r = smtp(f"AUTH PLAIN {PLAIN_BAD}\r\n".encode(), **env)
    assert r.lines[1] == "454 4.7.0 Too many failed logins; try again later."
    assert "smtpfront: AUTH PLAIN refused: throttled" in r.stderr
