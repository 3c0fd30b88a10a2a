"""A client for Credential Validation Modules, protocol version 2.

Request:  2, nonce length, nonce, (tag, length, bytes)..., 0
Response: status, nonce length, nonce (echoed), (tag, length, bytes)..., 0

Status 0 is success, 100 "credentials rejected", anything else a temporary
failure, as is any reply that is short, malformed or carries another nonce.
Modules are named `cvm-local:/socket`, `cvm-udp:host:port`,
`cvm-command:/path` or just `/path` (a command).
"""

from __future__ import annotations

import posix

# credential tags, as cvm's credentials.h numbers them
ACCOUNT, DOMAIN, PASSWORD, SECRET, CHALLENGE, RESPONSE, RESPONSE_TYPE = 1, 2, 3, 4, 5, 6, 7
FACT_NAMES = {
    1: "username",
    2: "userid",
    3: "groupid",
    4: "realname",
    5: "directory",
    6: "shell",
    7: "groupname",
    8: "supp_groupid",
    9: "sys_username",
    10: "sys_directory",
    14: "domain",
    15: "mailbox",
    16: "outofscope",
}
OK, REJECTED, TEMPORARY = "ok", "rejected", "temporary"
MAX_PACKET = 512
UDP_TRIES = 3


class _Rejected(Exception):
    """A command CVM said "rejected" by its exit code alone."""


class Result:
    """`status` is OK, REJECTED or TEMPORARY; `facts` maps fact names to values; `why` explains a failure."""

    __slots__ = ("status", "facts", "why")

    def __init__(self, status: str, facts: dict[str, str] | None = None, why: str = "") -> None:
        self.status = status
        self.facts = facts or {}
        self.why = why

    def __repr__(self) -> str:
        return f"Result({self.status!r}, why={self.why!r})"


def build_request(nonce: bytes, credentials: list[tuple[int, bytes]]) -> bytes:
    parts = [bytes((2, len(nonce))), nonce]
    for tag, value in credentials:
        if len(value) > 255:
            raise ValueError("credential longer than 255 bytes")
        parts.append(bytes((tag, len(value))) + value)
    parts.append(b"\0")
    request = b"".join(parts)
    if len(request) > MAX_PACKET:
        raise ValueError("request longer than 512 bytes")
    return request


def parse_response(data: bytes, nonce: bytes) -> Result:
    if len(data) < 3 or len(data) > MAX_PACKET:
        return Result(TEMPORARY, why=f"reply of {len(data)} bytes")
    status = data[0]
    n = data[1]
    if data[2 : 2 + n] != nonce or n != len(nonce):
        return Result(TEMPORARY, why="reply with a wrong nonce")
    facts: dict[str, str] = {}
    pos = 2 + n
    while True:
        if pos >= len(data):
            return Result(TEMPORARY, why="reply not terminated")
        tag = data[pos]
        if tag == 0:
            break
        if pos + 1 >= len(data) or pos + 2 + data[pos + 1] > len(data):
            return Result(TEMPORARY, why="truncated fact")
        length = data[pos + 1]
        if tag in FACT_NAMES:
            facts.setdefault(FACT_NAMES[tag], data[pos + 2 : pos + 2 + length].decode("utf-8", "replace"))
        pos += 2 + length
    if status == 0:
        return Result(OK, facts)
    if status == 100:
        return Result(REJECTED, facts, why="credentials rejected")
    return Result(TEMPORARY, why=f"status {status}")


# _socket, not socket: the wrapper module imports enum, a cost paid on every connection
def _exchange_local(path: str, request: bytes, timeout: float) -> bytes:
    import _socket as socket
    import time

    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:  # the CVM's listen queue is full: it is busy, not down
                if time.monotonic() >= deadline:
                    raise TimeoutError("the CVM's listen queue stayed full") from None
                time.sleep(0.01)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks, size = [], 0
        while size <= MAX_PACKET:
            chunk = sock.recv(MAX_PACKET + 1)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def _exchange_udp(address: str, request: bytes, timeout: float) -> bytes:
    import _socket as socket

    host, _, port = address.rpartition(":")
    family, kind, proto, _, addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout / UDP_TRIES)
        sock.connect(addr)
        for _ in range(UDP_TRIES):
            sock.send(request)
            try:
                return sock.recv(MAX_PACKET + 1)
            except TimeoutError:
                continue
    finally:
        sock.close()
    raise TimeoutError("no reply")


def _exchange_command(path: str, request: bytes, timeout: float, env: dict[str, str] | None) -> bytes:
    import subprocess

    done = subprocess.run([path], input=request, capture_output=True, timeout=timeout, check=False, env=env)
    if done.returncode != 0:
        # a command reports rejection by its exit code and may print nothing
        if done.returncode == 100:
            raise _Rejected
        raise OSError(f"{path} exited {done.returncode}")
    return done.stdout


def exchange(module: str, request: bytes, timeout: float, env: dict[str, str] | None = None) -> bytes:
    if module.startswith("cvm-local:"):
        return _exchange_local(module[10:], request, timeout)
    if module.startswith("cvm-udp:"):
        return _exchange_udp(module[8:], request, timeout)
    if module.startswith("cvm-command:"):
        module = module[12:]
    return _exchange_command(module, request, timeout, env)


def authenticate(module: str, credentials: list[tuple[int, bytes]], timeout: float,
                 env: dict[str, str] | None = None) -> Result:
    """Ask a CVM; every failure to get a well-formed answer is TEMPORARY.

    `env` is the environment of a command CVM (default: this process's).
    """
    nonce = posix.urandom(8)
    try:
        request = build_request(nonce, credentials)
    except ValueError as e:
        return Result(REJECTED, why=str(e))
    try:
        reply = exchange(module, request, timeout, env)
    except _Rejected:
        return Result(REJECTED, why="credentials rejected")
    except (OSError, TimeoutError, ValueError) as e:
        return Result(TEMPORARY, why=f"{module}: {e}")
    except Exception as e:  # subprocess.TimeoutExpired and the like
        return Result(TEMPORARY, why=f"{module}: {type(e).__name__}")
    return parse_response(reply, nonce)
