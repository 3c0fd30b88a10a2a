"""Reaching a scanning daemon: the settings as mailfront reads them, and the addresses tried."""

from __future__ import annotations

import socket

import pytest

from smtpfront import scanners


def test_timeouts_in_milliseconds_with_mailfronts_precedence():
    env = {"CLAMD_TIMEOUT": "2000"}
    t = scanners.timeouts(env.get, "CLAMAV", "CLAMD")
    assert (t.connect, t.send, t.read) == (2, 2, 2)  # CLAMD_TIMEOUT when CLAMAV_TIMEOUT is unset
    env = {"CLAMAV_TIMEOUT": "1500", "CLAMD_TIMEOUT": "2000", "CLAMAV_CONNECT_TIMEOUT": "250"}
    t = scanners.timeouts(env.get, "CLAMAV", "CLAMD")
    assert (t.connect, t.send, t.read) == (0.25, 1.5, 1.5)
    t = scanners.timeouts({"SPAMD_TIMEOUT": "x", "SPAMD_SEND_TIMEOUT": "0"}.get, "SPAMD")
    assert (t.connect, t.send, t.read) == (5, 5, 5)  # not a number, or 0: the default


@pytest.mark.parametrize("value", ["0", "65536", "x", "-1", "3310x"])
def test_a_bad_port(value):
    with pytest.raises(ValueError):
        scanners.port(value, 3310)


def test_ports():
    assert scanners.port(None, 3310) == 3310 and scanners.port("", 783) == 783 and scanners.port("1", 783) == 1


def test_a_unix_socket_wins_over_the_host():
    assert scanners.targets("/run/clamd.sock", "127.0.0.1", 3310) == [(socket.AF_UNIX, "/run/clamd.sock")]
    assert scanners.targets(None, None, 3310) == []
    assert scanners.targets(None, "127.0.0.1", 3310) == [(socket.AF_INET, ("127.0.0.1", 3310))]


def test_every_address_is_tried_from_a_random_start(monkeypatch):
    found = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"192.0.2.{n}", 783)) for n in range(1, 5)]
    monkeypatch.setattr(scanners._socket, "getaddrinfo", lambda *args: found)
    starts = set()
    for _ in range(200):
        tried = [address[0] for _, address in scanners.addresses("spamd.example", 783)]
        first = tried.index("192.0.2.1")
        assert tried[first:] + tried[:first] == [f"192.0.2.{n}" for n in range(1, 5)]  # all, rotated, in order
        starts.add(tried[0])
    assert len(starts) == 4  # with 200 tries, every start (each missed with p = 0.75 ** 200)


def test_an_unresolvable_name():
    with pytest.raises(scanners.Unresolved):
        scanners.addresses("no-such-host.invalid", 783)
