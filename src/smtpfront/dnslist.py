"""DNS list look-ups (RFC 5782): a client's records under several list zones at once, within a deadline.

The wire format is small pure functions (`reversed_name`, `answers`, `records`,
`txt_text`), on top of dnsname's encoder and name reader; `lookup` is the one
driver that owns the sockets and the clock.  It asks the servers as bglibs'
resolver (mailfront's) does: each server in turn, waiting 3, 11 and 45 seconds
on three rounds (a refusal or a server failure moves on at once, except on the
second round, which waits it out), and by TCP when an answer comes truncated.
Unlike it, every name is asked at once, and the whole look-up ends at the
deadline.
"""

from __future__ import annotations

import _socket

from . import dnsname
from .dnsname import DNSError

A, TXT = 1, 16
ROUNDS = (3, 11, 45)  # bglibs' dns_transmit, as strace shows it for mailfront 2.12
PATIENT_ROUND = 1


def _ipv4(text: str) -> list[int] | None:
    """Four numbers up to 255, as bglibs' ipv4_scan reads the start of `text` (what follows is ignored)."""
    parts = text.split(".", 3)
    if len(parts) < 4:
        return None
    last = parts[3]
    parts[3] = last[: len(last) - len(last.lstrip("0123456789"))]
    if not all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts):
        return None
    return [int(p) for p in parts]


def reversed_name(ip: str) -> str | None:
    """The name of an address under a list zone, zone left out: `4.3.2.1` for 1.2.3.4, and for IPv6 the 32
    nibbles reversed (RFC 5782), an IPv4-mapped address as its IPv4 one; None when `ip` is neither."""
    if ":" in ip:
        try:
            packed = _socket.inet_pton(_socket.AF_INET6, ip)
        except (OSError, ValueError):
            return None
        if packed[:12] == bytes(10) + b"\xff\xff":
            return ".".join(str(b) for b in reversed(packed[12:]))
        return ".".join(reversed(packed.hex()))
    octets = _ipv4(ip)
    return None if octets is None else ".".join(str(b) for b in reversed(octets))


def answers(packet: bytes, q: bytes) -> bool:
    """`packet` is a response to the query `q`: its id, one question, and the same question (case aside).

    The question is never compressed (nothing comes before it to point to), so its bytes compare.
    """
    question = q[12:]
    return (len(packet) >= len(q) and packet[:2] == q[:2] and packet[2] & 0x80 != 0 and packet[4:6] == b"\0\1"
            and packet[12 : len(q)].lower() == question.lower())


def truncated(packet: bytes) -> bool:
    return packet[2] & 2 != 0


def server_failed(packet: bytes) -> bool:
    """An answer that is no answer (any RCODE but 0 and NXDOMAIN): another server may have one."""
    return packet[3] & 15 not in (0, 3)


def records(packet: bytes, qtype: int) -> list[bytes]:
    """The data of each answer record of class IN and type `qtype` (none for NXDOMAIN); DNSError if malformed."""
    try:
        count = int.from_bytes(packet[6:8], "big")
        _, pos = dnsname.read_name(packet, 12)
        pos += 4
        found = []
        for _ in range(count):
            _, pos = dnsname.read_name(packet, pos)
            header = packet[pos : pos + 10]
            length = int.from_bytes(header[8:10], "big")
            if len(header) < 10 or pos + 10 + length > len(packet):
                raise DNSError("truncated answer")
            if int.from_bytes(header[:2], "big") == qtype and header[2:4] == dnsname.CLASS_IN:
                found.append(packet[pos + 10 : pos + 10 + length])
            pos += 10 + length
        return found
    except IndexError:
        raise DNSError("malformed answer") from None


def txt_text(data: bytes) -> str:
    """A TXT record's strings joined, each byte outside printable ASCII as `?` (bglibs' dns_txt); a string
    whose length overruns the record is cut short."""
    out = []
    left = 0
    for ch in data:
        if not left:
            left = ch
            continue
        left -= 1
        out.append(chr(ch) if 32 <= ch <= 126 else "?")
    return "".join(out)


def _now() -> float:
    import time

    return time.monotonic()


def _error(number: int) -> DNSError:
    import posix

    return DNSError(number, posix.strerror(number))


def _udp(server: str, queries: dict[int, bytes], wait: float, patient: bool,
         packets: dict[int, bytes], errors: dict[int, int]) -> None:
    """Ask one server every query at once; answers go into `packets`, and why each other query failed into
    `errors`, by the queries' keys.  A refusal (ICMP port unreachable) or a server failure gives up on this
    server at once, unless `patient`."""
    import errno

    family = _socket.AF_INET6 if ":" in server else _socket.AF_INET
    waiting = dict(queries)
    sock = _socket.socket(family, _socket.SOCK_DGRAM)
    try:
        try:
            sock.connect((server, 53))
            for q in waiting.values():
                sock.send(q)
        except OSError as e:
            errors.update(dict.fromkeys(waiting, e.errno or errno.EIO))
            return
        deadline = _now() + wait
        while waiting and (left := deadline - _now()) > 0:
            sock.settimeout(left)
            try:
                packet = sock.recv(513)
            except TimeoutError:
                break
            except ConnectionRefusedError:
                if patient:
                    continue
                errors.update(dict.fromkeys(waiting, errno.ECONNREFUSED))
                return
            except OSError as e:
                errors.update(dict.fromkeys(waiting, e.errno or errno.EIO))
                return
            key = next((k for k, q in waiting.items() if answers(packet, q)), None)
            if key is None or len(packet) > 512:
                continue
            if server_failed(packet) and not truncated(packet):
                if patient:
                    continue
                errors[key] = errno.EAGAIN
            else:
                packets[key] = packet
            del waiting[key]
        errors.update(dict.fromkeys(waiting, errno.ETIMEDOUT))
    finally:
        sock.close()


def _tcp(servers: list[str], qname: bytes, qtype: int, deadline: float) -> bytes:
    """The answer by TCP, from the first server that gives one before the deadline (for a truncated answer)."""
    import errno

    number = errno.ETIMEDOUT
    for server in servers:
        left = deadline - _now()
        if left <= 0:
            break
        q = dnsname.query(qname, qtype)
        sock = _socket.socket(_socket.AF_INET6 if ":" in server else _socket.AF_INET, _socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect((server, 53))
            sock.sendall(len(q).to_bytes(2, "big") + q)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                sock.settimeout(max(deadline - _now(), 0.001))
                chunk = sock.recv(65536)
                if not chunk:
                    raise _error(errno.EIO)
                data += chunk
            packet = data[2 : 2 + int.from_bytes(data[:2], "big")]
            if answers(packet, q) and not server_failed(packet):
                return packet
            number = errno.EAGAIN
        except TimeoutError:
            number = errno.ETIMEDOUT
        except OSError as e:
            number = e.errno or errno.EIO
        finally:
            sock.close()
    raise _error(number)


def lookup(questions: list[tuple[str, int]], servers: list[str], deadline: float) -> list[list[bytes]]:
    """The records answering each (name, type), in order ([] for a name that does not exist).

    Raises DNSError (errno set) when any question has no answer by `deadline`
    (a time.monotonic() value) or only failures.
    """
    import errno

    # the names' bytes as the environment gave them (a zone in UTF-8 goes as UTF-8, as mailfront sends it)
    qnames = [dnsname.encode_name(name.encode("utf-8", "surrogateescape").decode("latin-1")) for name, _ in questions]
    packets: dict[int, bytes] = {}
    errors: dict[int, int] = {}
    for round, wait in enumerate(ROUNDS):
        for server in servers:
            pending = [i for i in range(len(questions)) if i not in packets]
            if not pending:
                break
            left = deadline - _now()
            if left <= 0:
                raise _error(errno.ETIMEDOUT)
            queries = {i: dnsname.query(qnames[i], questions[i][1]) for i in pending}
            _udp(server, queries, min(wait, left), round == PATIENT_ROUND, packets, errors)
    missing = [i for i in range(len(questions)) if i not in packets]
    if missing:
        raise _error(errors.get(missing[0], errno.ETIMEDOUT))
    found = []
    for i, (_, qtype) in enumerate(questions):
        packet = packets[i]
        if truncated(packet):
            packet = _tcp(servers, qnames[i], qtype, deadline)
        found.append(records(packet, qtype))
    return found
