"""PROXY protocol v1 and v2: the parser, and the programs behind a (simulated) load balancer."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BIN, run_program
from smtpfront.proxy import V2_SIGNATURE, ProxyError, parse

V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40123 587\r\n"
V1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40123 587\r\n"


def v2(command: int = 1, family: int = 0x11, addresses: bytes | None = None, tlvs: bytes = b"") -> bytes:
    if addresses is None:
        addresses = (socket.inet_pton(socket.AF_INET, "203.0.113.7") + socket.inet_pton(socket.AF_INET, "192.0.2.1")
                     + (40123).to_bytes(2, "big") + (587).to_bytes(2, "big"))
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


def fields(found):
    addresses, size = found
    if addresses is None:
        return None, size
    return (addresses.remote_ip, addresses.remote_port, addresses.local_ip, addresses.local_port), size


# -- the parser --------------------------------------------------------------


def test_v1_tcp4_tcp6_unknown():
    assert fields(parse(V1 + b"EHLO x\r\n")) == (("203.0.113.7", "40123", "192.0.2.1", "587"), len(V1))
    assert fields(parse(V1_6)) == (("2001:db8::7", "40123", "2001:db8::1", "587"), len(V1_6))
    assert fields(parse(b"PROXY UNKNOWN\r\n")) == (None, 15)
    assert fields(parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))[0] is None


def test_v2_tcp4_tcp6_local_unix():
    header = v2(tlvs=b"\x03\x00\x04abcd")  # a CRC32C TLV, skipped
    assert fields(parse(header + b"EHLO")) == (("203.0.113.7", "40123", "192.0.2.1", "587"), len(header))
    six = v2(family=0x21, addresses=socket.inet_pton(socket.AF_INET6, "2001:db8::7")
             + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + b"\x9c\xbb\x02\x4b")
    assert fields(parse(six)) == (("2001:db8::7", "40123", "2001:db8::1", "587"), len(six))
    assert fields(parse(v2(command=0, family=0, addresses=b""))) == (None, 16)
    assert fields(parse(v2(family=0x31, addresses=b"\0" * 216))) == (None, 16 + 216)


@pytest.mark.parametrize("header", [V1, V1_6, v2(), b"PROXY UNKNOWN\r\n"])
def test_every_prefix_asks_for_more(header):
    for i in range(len(header)):
        assert parse(header[:i]) is None
    assert parse(header) is not None


@pytest.mark.parametrize("bad", [
    b"EHLO x\r\n",
    b"proxy TCP4 203.0.113.7 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.777 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 01 2\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 2\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1\r\n",
    b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.7  192.0.2.1 1 2\r\n",
    b"PROXY TCP4 " + b"1" * 120,
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\0" * 12,  # version 3
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\0" * 12,  # command 2
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\0" * 12,  # UDP
    V2_SIGNATURE + b"\x21\x11\x00\x08" + b"\0" * 8,  # addresses cut short
])
def test_malformed_headers_raise(bad):
    with pytest.raises(ProxyError):
        parse(bad)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([b"", b"PROXY ", V2_SIGNATURE]))
def test_parser_never_fails_otherwise(data, prefix):
    try:
        found = parse(prefix + data)
    except ProxyError:
        return
    if found is not None:
        assert 0 < found[1] <= len(prefix + data)


# -- the programs ------------------------------------------------------------

DIALOGUE = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"


@pytest.mark.parametrize("header", [V1, v2()], ids=["v1", "v2"])
def test_client_address_comes_from_the_header(header, smtp, queue):
    r = smtp(header + DIALOGUE, PROXY_PROTOCOL="1", TCPREMOTEIP="10.0.0.5", TCPREMOTEHOST="balancer.internal")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    [(_, message)] = queue.messages()
    assert message.startswith(b"Received: from c ([203.0.113.7])\n  by mx.example ([192.0.2.1])")
    assert b"10.0.0.5" not in message and b"balancer" not in message
    assert "PROXY protocol: client 203.0.113.7 port 40123" in r.stderr


V1_MAPPED = b"PROXY TCP6 ::ffff:203.0.113.7 ::ffff:192.0.2.1 40123 587\r\n"
V2_MAPPED = v2(family=0x21, addresses=socket.inet_pton(socket.AF_INET6, "::ffff:203.0.113.7")
               + socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.1") + (40123).to_bytes(2, "big")
               + (587).to_bytes(2, "big"))


@pytest.mark.parametrize("header", [V1_MAPPED, V2_MAPPED], ids=["v1", "v2"])
def test_a_v4_mapped_client_is_the_ipv4_client(header, smtp, queue, tmp_path):
    """HAProxy `bind :::587 v4v6` sends every IPv4 client as ::ffff:a.b.c.d: Received, the log and the
    throttle see the IPv4 address (issue 19 item 6)."""
    r = smtp(header + DIALOGUE, PROXY_PROTOCOL="1", PROTO="TCP6", TCP6REMOTEIP="2001:db8::5",
             TCP6LOCALIP="2001:db8::1", TCP6LOCALHOST="mx.example")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    [(_, message)] = queue.messages()
    assert message.startswith(b"Received: from c ([203.0.113.7])\n  by mx.example ([192.0.2.1])\n  with ESMTP via TCP;")
    assert "PROXY protocol: client 203.0.113.7 port 40123" in r.stderr


def test_an_ipv6_client_behind_an_ipv4_balancer(smtp, queue):
    r = smtp(V1_6 + DIALOGUE, PROXY_PROTOCOL="1", TCPREMOTEIP="10.0.0.5")
    assert r.codes[-1] == 221
    [(_, message)] = queue.messages()
    assert message.startswith(b"Received: from c ([IPv6:2001:db8::7])\n  by mx.example ([IPv6:2001:db8::1])\n"
                              b"  with ESMTP via TCP6;")


def test_local_command_keeps_the_connection_addresses(smtp, queue):
    r = smtp(v2(command=0, family=0, addresses=b"") + DIALOGUE, PROXY_PROTOCOL="1", TCPREMOTEIP="10.0.0.5")
    assert r.codes[-1] == 221
    assert b"[10.0.0.5]" in queue.messages()[0][1]


@pytest.mark.parametrize("data", [b"EHLO c\r\n", b"PROXY TCP4 1.2.3.4\r\nEHLO c\r\n", b"", b"PROXY TCP4 1.2.3"])
def test_missing_or_malformed_header_closes_without_a_reply(data, smtp, queue):
    r = smtp(data + DIALOGUE if data else b"", PROXY_PROTOCOL="1")
    assert r.stdout == b"" and r.returncode == 1
    assert "PROXY protocol:" in r.stderr and "Traceback" not in r.stderr
    assert queue.messages() == []


def test_off_by_default(smtp):
    r = smtp(V1 + b"QUIT\r\n")
    assert r.codes == [220, 500, 221]


def test_relayclient_granted_to_the_balancer_is_not_the_clients(smtp, queue):
    r = smtp(V1 + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@elsewhere.example>\r\nQUIT\r\n", PROXY_PROTOCOL="1",
             RELAYCLIENT="")
    assert r.codes == [220, 250, 550, 221]
    assert "RELAYCLIENT from the environment is for the balancer; ignored" in r.stderr


def test_v2_then_implicit_tls_under_tcpserver(base_env, certificate, tcpserver, queue):
    server = tcpserver({**base_env, **certificate, "PROXY_PROTOCOL": "1", "SMTPS": "1"})
    context = ssl.create_default_context(cafile=certificate["TLS_CERTFILE"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(v2())
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220 ")
            conn.sendall(DIALOGUE)
            out = reader.read()
    assert b"250 2.6.0 Accepted" in out and out.endswith(b"221 2.0.0 Good bye.\r\n")
    [(_, message)] = queue.messages()
    assert b"Received: from c ([203.0.113.7])" in message and b"ESMTPS" in message


def test_v1_early_bytes_after_the_header_are_kept(base_env, queue):
    """A header and the first command in one write: the command is not lost."""
    proc = subprocess.run([str(BIN / "smtpfront-qmail")], input=V1 + DIALOGUE,
                          env={**base_env, "PROXY_PROTOCOL": "1"}, capture_output=True)
    assert b"\r\n250 2.6.0 Accepted" in proc.stdout and proc.stdout.endswith(b"\r\n221 2.0.0 Good bye.\r\n")
    assert len(queue.messages()) == 1
    assert run_program("smtpfront-qmail", V1, {**base_env, "PROXY_PROTOCOL": "1"}).codes == [220]


def test_bytes_are_counted_when_the_program_stops_after_the_header(smtp, tmp_path):
    r = smtp(V1, PROXY_PROTOCOL="1", MAILRULES=str(tmp_path / "missing"))
    assert r.lines == ["421 4.3.0 Could not open $MAILRULES file"]
    assert r.stderr.splitlines()[-1].endswith(f"bytes in: {len(V1)} bytes out: {len(r.stdout)}")
    r = smtp(b"EHLO x\r\n", PROXY_PROTOCOL="1")
    assert r.stderr.splitlines()[-1].endswith("bytes in: 8 bytes out: 0")
