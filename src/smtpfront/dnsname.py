"""The DNS look-ups tcpserver makes, done as its djbdns library does them.

tcpserver asks the name servers directly (not /etc/hosts, not NSS): the
servers are $DNSCACHEIP, else the `nameserver` lines of /etc/resolv.conf, else
127.0.0.1.  A query goes by UDP to each server in turn, waiting 1, 3, 11 and 45
seconds on the four rounds, and by TCP when the answer is truncated.  Names
come back lower-cased, with any character other than a-z, 0-9, `-` and `_`
written as a backslash and three octal digits.

`name4` gives the PTR name of an address ("" when there is none, None when the
look-up failed); `ip4` the A records of a name.  `name6` and `ip6` are their
IPv6 forms, as ucspi-tcp-ipv6's tcpserver asks them: the PTR under ip6.arpa
(in-addr.arpa for a v4-mapped address), and AAAA then A records (the A ones
v4-mapped).  All are called in a child, per connection, as tcpserver does.
"""

from __future__ import annotations

import posix

TYPE_CHECKING = False  # no typing import at run time: the rbl plugin imports this module per connection
if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUTS = (1, 3, 11, 45)
TCP_TIMEOUT = 10
PTR, A, AAAA = 12, 1, 28
MAX_NAME = 255  # octets in wire form (RFC 1035 2.3.4)
CLASS_IN = b"\0\1"


class DNSError(OSError):
    """No usable answer; errno says why, as djbdns leaves it (timed out, connection refused, ...)."""


def _error(number: int) -> DNSError:
    return DNSError(number, posix.strerror(number))


def resolvers(environ: dict[bytes, bytes], resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    """The servers to ask, as djbdns' dns_resolvconfip finds them (at most 16)."""
    servers = _dotted_quads(environ.get(b"DNSCACHEIP", b"").decode("latin-1"))
    if not servers:
        try:
            with open(resolv_conf, "rb") as f:
                lines = f.read().decode("latin-1").split("\n")
        except OSError:
            lines = []
        for line in lines:
            if line[:11] in ("nameserver ", "nameserver\t"):
                found = _dotted_quads(line[11:].lstrip(" \t"), 1)
                servers += ["127.0.0.1" if ip == "0.0.0.0" else ip for ip in found]
    return servers[:16] or ["127.0.0.1"]


def _dotted_quads(text: str, limit: int = 16) -> list[str]:
    """Leading IPv4 addresses in `text`, separated by dots (djbdns' ip4_scan loop)."""
    found = []
    while len(found) < limit:
        text = text.lstrip(".") if found else text
        parts = []
        for _ in range(4):
            digits = len(text) - len(text.lstrip("0123456789"))
            if not digits:
                break
            parts.append(int(text[:digits]) & 255)
            text = text[digits:]
            if len(parts) < 4:
                if text[:1] != ".":
                    break
                text = text[1:]
        if len(parts) != 4:
            break
        found.append(".".join(map(str, parts)))
    return found


def encode_name(name: str) -> bytes:
    """A name in DNS wire form, read as djbdns' dns_domain_fromdot reads it: `\\ooo` and `\\c` escapes,
    empty labels skipped, a label longer than 63 bytes an error."""
    labels: list[bytes] = []
    label = bytearray()
    data = name.encode("latin-1")
    i = 0
    while i < len(data):
        ch = data[i]
        i += 1
        if ch == 46:  # .
            if label:
                labels.append(bytes(label))
                label.clear()
            continue
        if ch == 92 and i < len(data):  # backslash
            ch = data[i]
            i += 1
            if 48 <= ch <= 55:
                ch -= 48
                for _ in range(2):
                    if i < len(data) and 48 <= data[i] <= 55:
                        ch = (ch << 3) + data[i] - 48
                        i += 1
                ch &= 255
        if len(label) >= 63:
            raise DNSError("label too long")
        label.append(ch)
    if label:
        labels.append(bytes(label))
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def query(qname: bytes, qtype: int) -> bytes:
    """A recursive query with a fresh random id."""
    return posix.urandom(2) + b"\1\0\0\1\0\0\0\0\0\0" + qname + qtype.to_bytes(2, "big") + CLASS_IN


def read_name(packet: bytes, pos: int) -> tuple[list[bytes], int]:
    """The labels of the name at `pos` (compression pointers followed) and the position after it.

    A name longer than 255 octets in wire form is an error, as djbdns' dns_packet_getname has it.
    """
    labels: list[bytes] = []
    size = 1  # the root's zero octet
    end = None
    for _ in range(128):  # a pointer loop is garbage, not a hang
        length = packet[pos]
        if length >= 192:
            if end is None:
                end = pos + 2
            pos = (length & 63) << 8 | packet[pos + 1]
            continue
        if length >= 64:
            raise DNSError("bad label")
        if length == 0:
            return labels, pos + 1 if end is None else end
        labels.append(packet[pos + 1 : pos + 1 + length])
        if pos + 1 + length > len(packet):
            raise DNSError("truncated name")
        size += 1 + length
        if size > MAX_NAME:
            raise DNSError("name too long")
        pos += 1 + length
    raise DNSError("name too long")


def to_dot(labels: list[bytes]) -> str:
    """djbdns' dns_domain_todot_cat: lower case, everything unusual as \\ooo."""
    if not labels:
        return "."
    out = []
    for label in labels:
        text = []
        for c in label.lower():
            ch = chr(c)
            text.append(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else f"\\{c:03o}")
        out.append("".join(text))
    return ".".join(out)


def _relevant(packet: bytes, q: bytes) -> bool:
    """The answer is to our question (djbdns' irrelevant(), negated)."""
    try:
        if len(packet) < 12 or packet[:2] != q[:2] or packet[4:6] != b"\0\1":
            return False
        labels, pos = read_name(packet, 12)
        asked, _ = read_name(q, 12)
        return ([label.lower() for label in labels] == [label.lower() for label in asked]
                and packet[pos : pos + 4] == q[-4:])
    except (DNSError, IndexError):
        return False


def _failed(packet: bytes) -> bool:
    """A server failure (any RCODE but 0 and NXDOMAIN): try the next server."""
    return packet[3] & 15 not in (0, 3)


def _udp(server: str, q: bytes, timeout: float, patient: bool) -> bytes:
    """The answer to `q` from one server; DNSError when none came in time.

    A refusal (ICMP port unreachable) or a server failure moves on at once, except
    on the third round (`patient`), where djbdns waits out the timeout instead.
    """
    import errno
    import select
    import socket  # here, not at the top (see TYPE_CHECKING)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((server, 53))
            s.send(q)
        except OSError as e:
            raise _error(e.errno or errno.EIO) from None
        deadline = _now() + timeout
        while (left := deadline - _now()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            try:
                packet = s.recv(513)
            except ConnectionRefusedError:
                if patient:
                    continue
                raise _error(errno.ECONNREFUSED) from None
            except OSError as e:
                raise _error(e.errno or errno.EIO) from None
            if len(packet) > 512 or not _relevant(packet, q):
                continue
            if _failed(packet) and not packet[2] & 2:
                if patient:
                    continue
                raise _error(errno.EAGAIN)
            return packet
        raise _error(errno.ETIMEDOUT)


def _tcp(server: str, q: bytes) -> bytes:
    import errno
    import socket

    try:
        with socket.create_connection((server, 53), timeout=TCP_TIMEOUT) as s:
            s.sendall(len(q).to_bytes(2, "big") + q)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                chunk = s.recv(65536)
                if not chunk:
                    raise _error(errno.EIO)
                data += chunk
    except TimeoutError:
        raise _error(errno.ETIMEDOUT) from None
    except DNSError:
        raise
    except OSError as e:
        raise _error(e.errno or errno.EIO) from None
    packet = data[2 : 2 + int.from_bytes(data[:2], "big")]
    if not _relevant(packet, q) or _failed(packet):
        raise _error(errno.EAGAIN)
    return packet


def _now() -> float:
    import time

    return time.monotonic()


def resolve(servers: list[str], qname: bytes, qtype: int) -> bytes:
    """The answer packet, asking the servers as djbdns' dns_transmit does; DNSError when none answered.

    Four rounds over the servers by UDP (a fresh query id each time); a
    truncated answer switches to TCP, over all servers from the first.
    """
    import errno

    error = _error(errno.ETIMEDOUT)
    for round, timeout in enumerate(TIMEOUTS):
        for server in servers:
            q = query(qname, qtype)
            try:
                packet = _udp(server, q, timeout, patient=round == 2)
            except DNSError as e:
                error = e
                continue
            if packet[2] & 2:  # truncated
                return _resolve_tcp(servers, qname, qtype)
            return packet
    raise error


def _resolve_tcp(servers: list[str], qname: bytes, qtype: int) -> bytes:
    error = None
    for server in servers:
        try:
            return _tcp(server, query(qname, qtype))
        except DNSError as e:
            error = e
    assert error is not None
    raise error


def _answers(packet: bytes, qtype: int) -> Iterator[tuple[int, int]]:
    """(position, length) of the data of each answer record of class IN and type `qtype`."""
    count = int.from_bytes(packet[6:8], "big")
    _, pos = read_name(packet, 12)
    pos += 4
    for _ in range(count):
        _, pos = read_name(packet, pos)
        header = packet[pos : pos + 10]
        if len(header) < 10:
            raise DNSError("truncated answer")
        length = int.from_bytes(header[8:10], "big")
        if int.from_bytes(header[:2], "big") == qtype and header[2:4] == CLASS_IN:
            yield pos + 10, length
        pos += 10 + length


def _ptr(qname: bytes, servers: list[str]) -> str:
    """The first PTR record's name for `qname`, "" when it has none; DNSError when the look-up failed."""
    packet = resolve(servers, qname, PTR)
    try:
        for pos, _ in _answers(packet, PTR):
            return to_dot(read_name(packet, pos)[0])
    except IndexError:
        raise DNSError("malformed answer") from None
    return ""


def name4(ip: str, servers: list[str]) -> str:
    """The host name for an IPv4 address, "" when it has none; DNSError when the look-up failed."""
    return _ptr(encode_name(".".join(reversed(ip.split("."))) + ".in-addr.arpa"), servers)


def ip4(name: str, servers: list[str]) -> list[str]:
    """The IPv4 addresses of a name (a dotted quad stands for itself); DNSError when the look-up failed."""
    if all(c in "0123456789.[]" for c in name):
        return _dotted_quads(name.strip("[]"), 1)
    packet = resolve(servers, encode_name(name), A)
    try:
        return [".".join(map(str, packet[pos : pos + 4])) for pos, length in _answers(packet, A) if length == 4]
    except IndexError:
        raise DNSError("malformed answer") from None


def name6(ip: str, servers: list[str]) -> str:
    """The host name for an IPv6 address (PTR under ip6.arpa; a v4-mapped one as name4), "" when it has none."""
    from .ip6 import MAPPED, pack

    packed = pack(ip)
    if packed[:12] == MAPPED:
        return name4(".".join(map(str, packed[12:])), servers)
    return _ptr(encode_name(".".join(reversed(packed.hex())) + ".ip6.arpa"), servers)


def ip6(name: str, servers: list[str]) -> list[str]:
    """The addresses of a name as ucspi-tcp-ipv6 writes them: its AAAA records, then its A records v4-mapped
    (an address literal stands for itself); DNSError when a look-up failed."""
    from .ip6 import MAPPED, fmt, pack

    try:
        return [fmt(pack(name))]
    except ValueError:
        pass
    qname = encode_name(name)
    found = []
    for qtype, size in ((AAAA, 16), (A, 4)):
        packet = resolve(servers, qname, qtype)
        try:
            found += [fmt(packet[pos : pos + 16] if size == 16 else MAPPED + packet[pos : pos + 4])
                      for pos, length in _answers(packet, qtype) if length == size]
        except IndexError:
            raise DNSError("malformed answer") from None
    return found
