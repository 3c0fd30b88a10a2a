"""$TCPREMOTEINFO: the client host's ident (RFC 1413) answer, asked as tcpserver asks it.

tcpserver connects from its local address to port 113 of the client, sends
`REMOTEPORT , LOCALPORT`, and keeps what follows the third colon of the first
line of the answer, without spaces, tabs and CRs, at most 257 bytes
(ucspi-tcp 0.88 `remoteinfo.c`), up to a NUL (the C string tcpserver puts in
the environment ends there; putenv takes none); over IPv6 for an IPv6 client,
as ucspi-tcp-ipv6 asks it.  One deadline covers the whole exchange.  An
answer with fewer than three colons (`... : ERROR : NO-USER`) gives an empty
value, which is still set; a failure (refused, timed out, closed early) leaves
the variable unset.
"""

from __future__ import annotations

import socket

PORT = 113
LIMIT = 256


def remote_info(remote_ip: str, remote_port: int, local_ip: str, local_port: int, timeout: float) -> bytes | None:
    """The ident answer for this connection; None when there is none to be had."""
    import time

    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_INET6 if ":" in remote_ip else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((local_ip, 0))
            s.settimeout(timeout)
            s.connect((remote_ip, PORT))
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            s.sendall(b"%d , %d\r\n" % (remote_port, local_port))
            out = bytearray()
            colons = 0
            while True:
                s.settimeout(max(deadline - time.monotonic(), 0.001))
                data = s.recv(128)
                if not data:
                    return None
                for ch in data:
                    if ch in b" \t\r":
                        continue
                    if ch == 10:  # \n
                        return _c_string(out)
                    if colons < 3:
                        colons += ch == 58  # :
                    else:
                        out.append(ch)
                        if len(out) > LIMIT:
                            return _c_string(out)
    except OSError:  # refused, unreachable, timed out
        return None


def _c_string(out: bytearray) -> bytes:
    return bytes(out).partition(b"\0")[0]
