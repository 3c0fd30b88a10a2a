"""The PROXY protocol (HAProxy's, versions 1 and 2): the real client behind a load balancer.

With PROXY_PROTOCOL set, the connection starts with a header from the balancer
naming the client's address and port and the address it connected to.  These
replace what tcpserver saw (the balancer), for the rules, the logs and the
Received header.  A header that is missing or malformed closes the connection
without a reply: whoever sent it is not the balancer.

    v1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 587\\r\\n" (at most 107 bytes),
        or "PROXY UNKNOWN ...\\r\\n"
    v2: the 12-byte signature, version/command, family/protocol, a 16-bit length,
        then the addresses (and TLVs, which are skipped)

`parse` is sans-I/O: it is given the bytes read so far.
"""

from __future__ import annotations

import _socket as socket  # not socket: the wrapper module imports enum

V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FAMILIES = {0x11: (socket.AF_INET, 4), 0x21: (socket.AF_INET6, 16)}  # TCP over IPv4, IPv6


class ProxyError(ValueError):
    """Not a PROXY header."""


class Addresses:
    __slots__ = ("remote_ip", "remote_port", "local_ip", "local_port")

    def __init__(self, remote_ip: str, remote_port: str, local_ip: str, local_port: str) -> None:
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.local_ip = local_ip
        self.local_port = local_port


def parse(data: bytes) -> tuple[Addresses | None, int] | None:
    """(addresses, header length) once `data` holds a whole header; None while more is needed.

    The addresses are None for v1 UNKNOWN and v2 LOCAL (the balancer's own
    health check): the connection's own addresses stand.  Raises ProxyError.
    """
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data) if len(data) >= 16 else None
    if V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data):
        return None
    if not data.startswith(V1_PREFIX):
        raise ProxyError("no PROXY header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyError("PROXY v1 line too long")
        return None
    return _parse_v1(data[:end].decode("ascii", "replace")), end + 2


def _parse_v1(line: str) -> Addresses | None:
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"malformed PROXY v1 line: {line[:60]!r}")
    family = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
    remote_ip, local_ip, remote_port, local_port = parts[2:]
    for ip in (remote_ip, local_ip):
        try:
            socket.inet_pton(family, ip)
        except OSError:
            raise ProxyError(f"bad address in PROXY v1 line: {ip[:40]!r}") from None
    for port in (remote_port, local_port):
        if not (port.isdigit() and port.isascii() and int(port) <= 65535 and (port == "0" or port[0] != "0")):
            raise ProxyError(f"bad port in PROXY v1 line: {port[:10]!r}")
    return Addresses(remote_ip, remote_port, local_ip, local_port)


def _parse_v2(data: bytes) -> tuple[Addresses | None, int] | None:
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2 or command not in (0, 1):
        raise ProxyError(f"unsupported PROXY v2 version/command {data[12]:#04x}")
    size = 16 + int.from_bytes(data[14:16], "big")
    if len(data) < size:
        return None
    if command == 0:  # LOCAL
        return None, size
    family = V2_FAMILIES.get(data[13])
    if family is None:
        if data[13] >> 4 in (0, 3):  # UNSPEC or a Unix socket: no client address to take
            return None, size
        raise ProxyError(f"unsupported PROXY v2 family/protocol {data[13]:#04x}")
    af, length = family
    if size < 16 + 2 * length + 4:
        raise ProxyError("PROXY v2 addresses cut short")
    body = data[16:size]
    remote_ip = socket.inet_ntop(af, body[:length])
    local_ip = socket.inet_ntop(af, body[length : 2 * length])
    remote_port = int.from_bytes(body[2 * length : 2 * length + 2], "big")
    local_port = int.from_bytes(body[2 * length + 2 : 2 * length + 4], "big")
    return Addresses(remote_ip, str(remote_port), local_ip, str(local_port)), size


def read_header(transport, settings, log):
    """(settings for the client the header names, bytes read after it); None to close silently (logged)."""
    data = b""
    while True:
        try:
            found = parse(data)
        except ProxyError as e:
            log.note(f"PROXY protocol: {e}; closing without a reply")
            return None
        if found is not None:
            break
        chunk = transport.read(settings.timeout)
        if not chunk:
            log.note("PROXY protocol: no header before " + ("end of input" if chunk == b"" else "the timeout"))
            return None
        data += chunk
    addresses, size = found
    if settings.relayclient is not None:  # even for UNKNOWN / LOCAL: tcprules granted it to the balancer
        log.note("PROXY protocol: RELAYCLIENT from the environment is for the balancer; ignored")
    settings = settings.behind_balancer()
    if addresses is not None:
        settings = settings.proxied(addresses.remote_ip, addresses.remote_port, addresses.local_ip,
                                    addresses.local_port)
        log.note(f"PROXY protocol: client {settings.remote_ip} port {addresses.remote_port}")
    return settings, data[size:]
