"""A fake DNS server and identd on loopback addresses, for the look-ups tcpserver makes.

The DNS server (127.0.0.78:53, UDP and TCP, named by $DNSCACHEIP) answers from
RECORDS, written out by hand here rather than with the code under test (names
starting `servfail.` fail; `big.` answers come truncated by UDP); the identd
(127.0.0.77:113) answers every query for clients that connect from 127.0.0.77, and
another on [::1]:113 for IPv6 clients on ::1, where the machine has it.
Both need root (ports below 1024), as the test suite has in CI.
"""

from __future__ import annotations

import socket
import threading

import pytest

DNS_IP = "127.0.0.78"
CLIENT_IP = "127.0.0.77"  # has a PTR name that agrees with its A record, and an identd
LIAR_IP = "127.0.0.79"  # has a PTR name whose A record is elsewhere (-p drops it)
ODD_IP = "127.0.0.80"  # has a PTR name with characters tcpserver escapes
V6_IP = "::1"  # has a PTR name (under ip6.arpa) whose AAAA record agrees, and an identd
V6_PTR = ".".join("1" + "0" * 31) + ".ip6.arpa"  # the nibbles of ::1, least significant first


def has_ipv6() -> bool:
    """The machine has ::1 (a network namespace has it once lo is up; some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind((V6_IP, 0))
        return True
    except OSError:
        return False


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"


RECORDS = {  # (name, type) -> answers, written by hand here: not with the code under test
    ("1.0.0.127.in-addr.arpa", 12): [dns_name("Mail.Server.TEST")],
    ("77.0.0.127.in-addr.arpa", 12): [dns_name("Client.Example.com")],
    ("79.0.0.127.in-addr.arpa", 12): [dns_name("liar.example.com")],
    ("80.0.0.127.in-addr.arpa", 12): [bytes([7]) + b"we!rd%x" + dns_name("example")],
    ("client.example.com", 1): [bytes([10, 0, 0, 1]), bytes([127, 0, 0, 77])],
    ("liar.example.com", 1): [bytes([10, 9, 9, 9])],
    ("we!rd%x.example", 1): [bytes([127, 0, 0, 80])],
    ("big.example", 1): [bytes([10, 0, 1, i]) for i in range(1, 41)],
    (V6_PTR, 12): [dns_name("Six.Example.com")],
    ("six.example.com", 28): [bytes(15) + b"\1"],  # AAAA ::1
}


def dns_answer(query: bytes, tcp: bool = False) -> bytes:
    pos, labels = 12, []
    while query[pos]:
        labels.append(query[pos + 1 : pos + 1 + query[pos]].decode().lower())
        pos += 1 + query[pos]
    qtype = int.from_bytes(query[pos + 1 : pos + 3], "big")
    question = query[12 : pos + 5]
    answers = RECORDS.get((".".join(labels), qtype), [])
    flags = b"\x81\x80" if answers else b"\x81\x83"  # NXDOMAIN when there is nothing
    if labels[:1] == ["servfail"]:
        flags = b"\x81\x82"
    if labels[:1] == ["big"] and not tcp:
        return query[:2] + b"\x83\x80\0\1\0\0\0\0\0\0" + question
    out = query[:2] + flags + b"\0\1" + len(answers).to_bytes(2, "big") + b"\0\0\0\0" + question
    for data in answers:
        out += b"\xc0\x0c" + qtype.to_bytes(2, "big") + b"\0\1\0\0\1\0" + len(data).to_bytes(2, "big") + data
    return out


IDENT_QUERIES: list[bytes] = []
STOP = threading.Event()


def requests(sock: socket.socket, receive):
    """What `receive` gets from `sock` until STOP is set (polled, so that the socket can be closed)."""
    sock.settimeout(0.1)
    while not STOP.is_set():
        try:
            yield receive()
        except TimeoutError:
            continue


def serve_dns(sock: socket.socket) -> None:
    for query, peer in requests(sock, lambda: sock.recvfrom(512)):
        sock.sendto(dns_answer(query), peer)


def answer_dns_tcp(conn: socket.socket, answer) -> None:
    """One query over TCP (its 2-byte length first) on `conn`, answered with `answer(query)`; closes `conn`."""
    with conn:
        conn.settimeout(5)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            data += conn.recv(1000)
        reply = answer(data[2:])
        conn.sendall(len(reply).to_bytes(2, "big") + reply)


def serve_dns_tcp(sock: socket.socket) -> None:
    for conn, _ in requests(sock, sock.accept):
        answer_dns_tcp(conn, lambda query: dns_answer(query, tcp=True))


def serve_ident(sock: socket.socket) -> None:
    for conn, _ in requests(sock, sock.accept):
        with conn:
            conn.settimeout(5)
            request = conn.recv(100)
            IDENT_QUERIES.append(request)
            conn.sendall(request.strip() + b" : USERID : UNIX : joe\tBloggs:x y\r\n")


@pytest.fixture(scope="module")
def network():
    """The fake DNS server and identd; the variable that points both servers at the DNS."""
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind((DNS_IP, 53))
    dns_tcp, ident = listener(DNS_IP, 53), listener(CLIENT_IP, 113)
    idents = [ident, listener(V6_IP, 113)] if has_ipv6() else [ident]
    threads = [threading.Thread(target=serve_dns, args=(dns,), daemon=True),
               threading.Thread(target=serve_dns_tcp, args=(dns_tcp,), daemon=True),
               *(threading.Thread(target=serve_ident, args=(sock,), daemon=True) for sock in idents)]
    STOP.clear()
    for t in threads:
        t.start()
    yield {"DNSCACHEIP": DNS_IP}
    STOP.set()
    for t in threads:
        t.join()
    for sock in (dns, dns_tcp, *idents):
        sock.close()


def listener(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    sock.listen(50)
    return sock


