"""The DNS look-ups tcpserver makes, against a fake DNS server (tests/fakenet.py)."""

from __future__ import annotations

import errno
import time

import pytest

from fakenet import DNS_IP, network  # noqa: F401 - a fixture
from smtpfront import dnsname
from smtpfront.dnsname import DNSError, ip4, ip6, name4, name6, resolvers, to_dot

pytestmark = pytest.mark.usefixtures("network")
SERVERS = [DNS_IP]
NOBODY = "127.0.0.81"  # nothing listens there: refused


def test_resolvers_as_djbdns_finds_them(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.0.0.1\nnameserver\t 0.0.0.0\nnameserver ::1\nsearch x\n"
                    "nameserver 10.0.0.2 # after\n")
    assert resolvers({}, str(conf)) == ["10.0.0.1", "127.0.0.1", "10.0.0.2"]
    assert resolvers({b"DNSCACHEIP": b"192.0.2.5"}, str(conf)) == ["192.0.2.5"]
    assert resolvers({b"DNSCACHEIP": b"192.0.2.5.192.0.2.6"}, str(conf)) == ["192.0.2.5", "192.0.2.6"]
    assert resolvers({}, str(tmp_path / "none")) == ["127.0.0.1"]


def test_names_lower_cased_and_escaped():
    assert name4("127.0.0.1", SERVERS) == "mail.server.test"
    assert name4("127.0.0.80", SERVERS) == "we\\041rd\\045x.example"
    assert name4("127.0.0.99", SERVERS) == ""  # NXDOMAIN: no name, not a failure
    assert to_dot([]) == "."


def test_addresses():
    assert ip4("Client.Example.COM", SERVERS) == ["10.0.0.1", "127.0.0.77"]
    assert ip4("192.0.2.9", [NOBODY]) == ["192.0.2.9"]  # no look-up for a dotted quad
    assert ip4("nothing.example", SERVERS) == []


def test_truncated_answer_is_asked_again_by_tcp():
    assert ip4("big.example", SERVERS) == [f"10.0.1.{i}" for i in range(1, 41)]


def test_first_server_down_the_next_one_answers(monkeypatch):
    monkeypatch.setattr(dnsname, "TIMEOUTS", (0.2, 0.2, 0.2, 0.2))
    assert name4("127.0.0.77", [NOBODY, DNS_IP]) == "client.example.com"


@pytest.mark.parametrize(("servers", "name", "number"), [([DNS_IP], "servfail.example", errno.EAGAIN),
                                                         ([NOBODY], "x.example", errno.ECONNREFUSED)])
def test_failures_wait_out_the_third_round_as_djbdns(monkeypatch, servers, name, number):
    monkeypatch.setattr(dnsname, "TIMEOUTS", (0.3, 0.3, 0.3, 0.3))
    began = time.monotonic()
    with pytest.raises(DNSError) as failure:
        ip4(name, servers)
    assert failure.value.errno == number
    assert time.monotonic() - began >= 0.3  # the third round waited; the others moved on at once


def test_names_read_back_as_djbdns_reads_them():
    assert dnsname.encode_name("we\\041rd\\045x.example") == b"\x07we!rd%x\x07example\x00"
    assert dnsname.encode_name("a..b.") == b"\x01a\x01b\x00"
    assert dnsname.encode_name("x\\.y") == b"\x03x.y\x00"
    with pytest.raises(DNSError):
        dnsname.encode_name("x" * 64 + ".example")


def test_ipv6_names_and_addresses_as_tcpserver_ipv6_asks_them():
    """PTR under ip6.arpa (in-addr.arpa for v4-mapped); AAAA records, then A records v4-mapped."""
    assert name6("::1", SERVERS) == "six.example.com"
    assert name6("0:0::1", SERVERS) == "six.example.com"
    assert name6("::ffff:127.0.0.80", SERVERS) == "we\\041rd\\045x.example"
    assert name6("2001:db8::1", SERVERS) == ""
    assert ip6("Six.Example.com", SERVERS) == ["::1"]
    assert ip6("client.example.com", SERVERS) == ["::ffff:10.0.0.1", "::ffff:127.0.0.77"]
    assert ip6("2001:DB8:0:1:1:1:1:1", [NOBODY]) == ["2001:db8::1:1:1:1:1"]  # a literal, as tcpserver-ipv6 writes it
    assert ip6("192.0.2.9", [NOBODY]) == ["::ffff:192.0.2.9"]
    assert ip6("nothing.example", SERVERS) == []


def test_a_name_longer_than_255_octets_is_an_error():
    """As djbdns' dns_packet_getname: tcpserver then sets no TCPREMOTEHOST (a PTR answer may say anything)."""
    def wire(*sizes: int) -> bytes:
        return b"".join(bytes([n]) + b"a" * n for n in sizes) + b"\0"

    longest = wire(63, 63, 63, 61)  # 255 octets
    assert len(longest) == 255 and dnsname.read_name(longest, 0) == ([b"a" * 63] * 3 + [b"a" * 61], 255)
    with pytest.raises(DNSError, match="name too long"):
        dnsname.read_name(wire(63, 63, 63, 62), 0)
    # pointers don't make a name longer than its labels: one too many is still too many
    packet = wire(63, 63) + bytes([63]) + b"a" * 63 + bytes([63]) + b"a" * 63 + b"\xc0\x00"
    with pytest.raises(DNSError, match="name too long"):
        dnsname.read_name(packet, 129)
