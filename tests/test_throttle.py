"""The AUTH throttle store ($AUTH_THROTTLE_DIR): its schedule, its reservations, and the program using it.

Parallel guessing under real tcpserver and the lock-out of a user from everywhere are in test_security.py.
"""

from __future__ import annotations

import base64
from pathlib import Path

from conftest import DEMO, PASSWORD, reservations_in_processes
from smtpfront.throttle import LIMITS, WINDOW, Throttle, network_key

PLAIN_OK = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode()).decode()
PLAIN_BAD = base64.b64encode(f"\0{DEMO}\0wrong".encode()).decode()


def waits(store: Throttle, ip: str, login: str, n: int) -> list[float | None]:
    """What n attempts in a row are told, each kept as a failure."""
    out = []
    for _ in range(n):
        reservation = store.reserve(ip, login)
        out.append(None if reservation is None else reservation.wait)
    return out


def test_one_login_from_one_network_waits_then_is_refused(tmp_path):
    store = Throttle(str(tmp_path))
    assert waits(store, "198.51.100.7", "demo", 12) == [0.0] * 5 + [1.0, 2.0, 4.0, 8.0, 16.0, None, None]
    # the same network is one client: another address in it, or the login in another case, counts the same
    assert store.reserve("198.51.100.200", "DEMO") is None
    assert store.reserve("198.51.101.7", "demo") is not None


def test_many_logins_from_one_network_are_refused_at_the_network_limit(tmp_path):
    store = Throttle(str(tmp_path))
    slow, refuse, longest = LIMITS["net"]
    told = [store.reserve("192.0.2.9", f"user{i}") for i in range(refuse + 1)]
    assert [r.wait for r in told[:slow]] == [0.0] * slow
    assert [r.wait for r in told[slow:refuse]] == [min(2.0**i, longest) for i in range(refuse - slow)]
    assert told[refuse] is None


def test_failures_from_everywhere_only_slow_a_login_down(tmp_path):
    store = Throttle(str(tmp_path))
    slow, refuse, longest = LIMITS["login"]
    assert refuse is None
    told = [store.reserve(f"10.{i}.0.1", "demo") for i in range(100)]
    assert all(r is not None for r in told)
    assert [r.wait for r in told[: slow + 3]] == [0.0] * slow + [1.0, 2.0, 4.0]
    assert max(r.wait for r in told) == longest


def test_a_success_releases_only_its_own_attempt(tmp_path):
    store = Throttle(str(tmp_path))
    waits(store, "198.51.100.7", "demo", 5)
    good = store.reserve("198.51.100.7", "demo")
    assert good.wait == 1.0
    store.release(good)
    assert store.reserve("198.51.100.7", "demo").wait == 1.0  # the five failures stand; the success is gone


def test_the_window_expires(tmp_path):
    now = [1000.0]
    store = Throttle(str(tmp_path), clock=lambda: now[0])
    waits(store, "198.51.100.7", "demo", 10)
    assert store.reserve("198.51.100.7", "demo") is None
    now[0] += WINDOW - 1
    assert store.reserve("198.51.100.7", "demo") is None
    now[0] += 2
    assert store.reserve("198.51.100.7", "demo").wait == 0.0


def reserve_in_processes(directory: str, logins: list[str]) -> int:
    """One process per login, all at once, each reserving one attempt from 203.0.113.5; how many got one."""
    code = ("import sys; from smtpfront.throttle import Throttle;"
            "sys.exit(Throttle(sys.argv[1]).reserve('203.0.113.5', sys.argv[2]) is None)")
    return reservations_in_processes(code, directory, logins)


def test_parallel_processes_never_get_more_than_the_budget(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    assert reserve_in_processes(str(tmp_path / "one"), ["demo"] * 24) == LIMITS["pair"][1]
    assert reserve_in_processes(str(tmp_path / "many"), [f"user{i}" for i in range(40)]) == LIMITS["net"][1]


def test_an_unusable_store_refuses(tmp_path):
    (tmp_path / "file").write_text("")
    assert Throttle(str(tmp_path / "file")).attempt("198.51.100.7", "demo", sleep=None) is None


def test_a_damaged_record_is_read_as_what_it_still_holds(tmp_path):
    store = Throttle(str(tmp_path))
    store.reserve("198.51.100.7", "demo")
    for path in tmp_path.iterdir():
        path.write_bytes(path.read_bytes() + b" garbage nan \xff")
    assert waits(store, "198.51.100.7", "demo", 5) == [0.0] * 4 + [1.0]


def test_network_keys():
    assert network_key("198.51.100.7") == network_key("198.51.100.200") == "net:198.51.100.0/24"
    assert network_key("2001:db8::1") == network_key("2001:db8::ffff") == "net:2001:db8::/64"


def test_v4_mapped_clients_are_their_own_ipv4_networks(tmp_path):
    """Behind a dual-stack balancer every IPv4 client arrives as ::ffff:a.b.c.d: each is still its own /24,
    not one /64 for all IPv4 (issue 19 item 6)."""
    assert network_key("::ffff:198.51.100.7") == network_key("198.51.100.7") == "net:198.51.100.0/24"
    store = Throttle(str(tmp_path))
    assert waits(store, "::ffff:198.51.100.7", "demo", 11)[-1] is None
    assert store.reserve("::ffff:203.0.113.9", "demo") is not None  # another IPv4 client is not locked out
    assert store.reserve("198.51.100.8", "demo") is None  # the same network, however written


def test_the_program_waits_refuses_and_releases(smtp, cvm_socket, tmp_path):
    env = {"CVM_SASL_PLAIN": cvm_socket["module"], "AUTH_THROTTLE_DIR": str(tmp_path), "AUTH_MAX_FAILURES": "0"}
    slow, refuse, _ = LIMITS["pair"]
    for _ in range(slow):
        assert smtp(f"AUTH PLAIN {PLAIN_BAD}\r\n".encode(), **env).codes[1] == 535
    store = Throttle(str(tmp_path))
    # a success: the attempt is released, so the next one is told the same wait (and it is waited for)
    assert smtp(f"AUTH PLAIN {PLAIN_OK}\r\n".encode(), **env).codes[1] == 235
    assert store.reserve("198.51.100.7", "demo").wait == 1.0
    for _ in range(refuse - slow - 1):
        store.reserve("198.51.100.7", "demo")
    r = smtp(f"AUTH PLAIN {PLAIN_OK}\r\n".encode(), **env)
    assert r.lines[1] == "454 4.7.0 Too many failed logins; try again later."
    assert "smtpfront: AUTH PLAIN refused: throttled" in r.stderr


SPELLINGS = ["demo", "DEMO", "demo@", "Demo@x.example", "demo@other.example"]


def test_every_spelling_a_cvm_takes_for_one_login_shares_its_budget(smtp, cvm_socket, tmp_path):
    # cvm-pwfile, which has no domains, takes each of these for `demo` ...
    for login in SPELLINGS:
        plain = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
        assert smtp(f"AUTH PLAIN {plain}\r\n".encode(), CVM_SASL_PLAIN=cvm_socket["module"]).codes[1] == 235
    # ... so they are one login to the throttle: ten guesses in all, not ten each
    store = Throttle(str(tmp_path))
    told = [store.reserve("198.51.100.7", SPELLINGS[i % len(SPELLINGS)]) for i in range(12)]
    assert [None if r is None else r.wait for r in told] == [0.0] * 5 + [1.0, 2.0, 4.0, 8.0, 16.0, None, None]
    assert all(store.reserve("198.51.100.9", login) is None for login in SPELLINGS)


def test_a_link_in_the_store_is_never_written_through(tmp_path):
    """Someone who may write the directory plants a link where a key's file will be: the store is unusable
    (AUTH is refused) rather than writing stamps into whatever the link names."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    store = Throttle(str(store_dir))
    Path(store._path("user:demo")).symlink_to(victim)
    assert store.attempt("198.51.100.7", "demo", lambda seconds: None) is None
    assert victim.read_text() == "precious\n"
