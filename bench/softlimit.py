"""The smallest `softlimit -m` under which a full session works (`make bench`).

A full session: EHLO, AUTH PLAIN through a real cvm-pwfile, one 10 MB message
into smtpfront-qmail (qmail-queue is the stand-in of bench/run.py, which reads
all of the message and the envelope), QUIT; once over plain text and once with implicit TLS.  softlimit -m sets
RLIMIT_AS and RLIMIT_DATA, so the figure is address space, not resident memory.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import BIN, PASSWORD, Setup, make_certificate  # noqa: E402

MB = 1_000_000


def session(size: int) -> list[bytes]:
    plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode())
    line = b"x" * 998 + b"\r\n"
    return [b"EHLO bench\r\n", b"AUTH PLAIN " + plain + b"\r\n", b"MAIL FROM:<a@b.example>\r\n",
            b"RCPT TO:<y@elsewhere.example>\r\n", b"DATA\r\n", line * (size // len(line)) + b".\r\n", b"QUIT\r\n"]


def works(limit: int, env: dict[str, str], tls: ssl.SSLContext | None, size: int) -> bool:
    """Does the session end with the message accepted under `softlimit -m limit`?"""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([shutil.which("softlimit"), "-m", str(limit), str(BIN / "smtpfront-qmail")],
                            stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL, env=env)
    theirs.close()
    ours.settimeout(30)
    conn = ours
    try:
        if tls is not None:
            conn = tls.wrap_socket(ours, server_hostname="localhost")
        reader = conn.makefile("rb")
        replies = []

        def reply() -> bytes:
            while (line := reader.readline())[3:4] == b"-":
                pass
            return line

        replies.append(reply())
        for part in session(size):
            conn.sendall(part)
            replies.append(reply())
        return [r[:3] for r in replies] == [b"220", b"250", b"235", b"250", b"250", b"354", b"250", b"221"]
    except (OSError, ssl.SSLError):
        return False
    finally:
        conn.close()
        proc.wait()


def smallest(env: dict[str, str], tls: ssl.SSLContext | None, size: int) -> int:
    low, high = 1 * MB, 1000 * MB  # fails at low, works at high
    if not works(high, env, tls, size):
        raise SystemExit("the session fails even with 1000 MB")
    while high - low > MB:
        middle = (low + high) // 2
        if works(middle, env, tls, size):
            high = middle
        else:
            low = middle
    return high


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        setup = Setup(Path(d))
        cert, key = make_certificate(setup.tmp)
        env = setup.env
        tls_env = {**env, "SMTPS": "1", "TLS_CERTFILE": str(cert), "TLS_KEYFILE": str(key)}
        client = ssl.create_default_context(cafile=str(cert))
        try:
            plain = smallest(env, None, 10 * MB)
            tls = smallest(tls_env, client, 10 * MB)
        finally:
            setup.close()
        print(f"softlimit -m: a full AUTH session with a 10 MB message needs {plain / MB:.0f} MB plain, "
              f"{tls / MB:.0f} MB with TLS (smallest working limit, 1 MB steps)")


if __name__ == "__main__":
    main()
