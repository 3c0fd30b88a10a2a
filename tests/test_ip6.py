"""IPv6 addresses as ucspi-tcp-ipv6 writes them, and v4-mapped ones read as IPv4.

The expected texts are what Debian's ucspi-tcp-ipv6 tcpserver (1:0.88-7) set as
$TCP6REMOTEIP for clients on those addresses, observed by hand.
"""

from __future__ import annotations

import socket

import pytest

from smtpfront.ip6 import fmt, pack, unmap


@pytest.mark.parametrize(("address", "written"), [
    ("2001:db8:0:1:1:1:1:1", "2001:db8::1:1:1:1:1"),  # one zero group is `::` too (inet_ntop: `0`)
    ("2001:0:0:1:0:0:1:1", "2001::1:0:0:1:1"),  # the first of two runs as long
    ("2001:db8::aBcD:1", "2001:db8::abcd:1"),
    ("2001:db8:1:2::5", "2001:db8:1:2::5"),
    ("::1", "::1"),
    ("::", "::"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    ("1::", "1::"),
])
def test_written_as_tcpserver_writes_it(address, written):
    assert fmt(socket.inet_pton(socket.AF_INET6, address)) == written


def test_ipv4_is_packed_v4_mapped():
    assert pack("192.0.2.7") == pack("::ffff:192.0.2.7") == bytes(10) + b"\xff\xff\xc0\x00\x02\x07"
    for bad in ("", "0", "example.org", "1.2.3", ":::", "[::1]"):
        with pytest.raises(ValueError):
            pack(bad)


@pytest.mark.parametrize(("ip", "plain"), [
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("::FFFF:198.51.100.7", "198.51.100.7"),
    ("::ffff:c633:6407", "198.51.100.7"),
    ("0:0:0:0:0:ffff:198.51.100.7", "198.51.100.7"),
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8::7", "2001:db8::7"),
    ("::1", "::1"),
    ("::198.51.100.7", "::198.51.100.7"),  # IPv4-compatible, not mapped: left alone
    ("not an address", "not an address"),
    ("", ""),
])
def test_unmap(ip, plain):
    assert unmap(ip) == plain
