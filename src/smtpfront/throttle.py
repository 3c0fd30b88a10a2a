"""Failed logins remembered across connections ($AUTH_THROTTLE_DIR).

A process lives for one connection, so a per-session limit is undone by
reconnecting.  This store keeps the failures of the last WINDOW seconds under
three keys, each a small file read and written under an fcntl lock:

    pair   one login from one client network (IPv4 /24, IPv6 /64)
    net    every login from that network
    login  one login from every network

Each key has a LIMITS row: from `slow` failures on, every attempt first waits
2^(failures - slow) seconds, at most `longest`; from `refuse` failures on the
attempt is refused (454).  The login key has no refusal: failures from
elsewhere may slow a user down but never lock them out (anyone who knows an
address could), so refusal is only ever for the network the guesses come from.

An attempt is *reserved* before the CVM is asked: the check of every key and
the recording of the attempt are one step under the locks, so parallel
connections can never get more CVM checks than the budget.  A success or a
CVM that could not answer releases the reservation; a failure keeps it.  A
success releases only its own attempt, so an attacker's own good login can't
wipe the record of his guesses.  Entries expire with the window.
"""

from __future__ import annotations

import fcntl
import posix
import time

WINDOW = 900.0
# key: (failures from which each attempt waits, failures from which it is refused, longest wait)
LIMITS: dict[str, tuple[int, int | None, float]] = {
    "pair": (5, 10, 16.0),
    "net": (20, 30, 16.0),
    "login": (10, None, 4.0),
}
KEEP = 64  # stamps kept per key: more than any refusal needs


def network_key(ip: str) -> str:
    if ":" in ip:
        from .ip6 import unmap

        ip = unmap(ip)  # ::ffff:a.b.c.d is that IPv4 client, in its own /24: not every IPv4 client in one /64
    if ":" in ip:
        import ipaddress

        try:
            net = ipaddress.ip_network(ip + "/64", strict=False)
        except ValueError:
            return "net:" + ip
        return "net:" + str(net)
    return "net:" + ".".join(ip.split(".")[:3]) + ".0/24"


def login_key(login: str) -> str:
    """The login as the budget counts it: case-folded, and only the part before the last `@` (the account
    the CVM is asked for), since a CVM without domains (cvm-pwfile, cvm-unix) takes `DEMO`, `demo@` and
    `demo@any.example` all for `demo`; a CVM with domains shares one budget between `info@a` and `info@b`."""
    return (login.rpartition("@")[0] if "@" in login else login).casefold()


def record_keys(remote_ip: str, login: str) -> list[tuple[str, str]]:
    """The (kind, key) pairs an attempt counts against, whichever store keeps them."""
    login = login_key(login)
    net = network_key(remote_ip)
    return [("pair", f"pair:{net} {login}"), ("net", net), ("login", "user:" + login)]


def wait(failures: int, slow: int, refuse: int | None, longest: float) -> float | None:
    """Seconds an attempt waits after `failures` recent failures; None when it is refused."""
    if refuse is not None and failures >= refuse:
        return None
    if failures < slow:
        return 0.0
    return min(2.0 ** (failures - slow), longest)


class Reservation:
    """One attempt, counted as a failure until it is released."""

    __slots__ = ("paths", "stamp", "wait")

    def __init__(self, paths: list[str], stamp: str, wait: float) -> None:
        self.paths = paths
        self.stamp = stamp
        self.wait = wait


class Throttle:
    def __init__(self, directory: str, clock=time.time) -> None:
        self.directory = directory
        self.clock = clock

    def _path(self, key: str) -> str:
        import _sha256  # not hashlib, whose import (OpenSSL's) costs a session milliseconds

        return f"{self.directory}/{_sha256.sha256(key.encode()).hexdigest()[:32]}"

    def _read(self, fd: int, now: float) -> list[str]:
        """The stamps of the locked file `fd` still within the window."""
        data = b""
        while chunk := posix.read(fd, 65536):
            data += chunk
        return [s for s in data.decode("ascii", "replace").split() if _within(s, now)]

    @staticmethod
    def _write(fd: int, stamps: list[str]) -> None:
        posix.lseek(fd, 0, 0)
        posix.ftruncate(fd, 0)
        posix.write(fd, " ".join(stamps[-KEEP:]).encode())

    def _locked(self, paths: list[str]) -> list[int]:
        """The files, opened and locked in order (always the same order: no deadlock)."""
        fds: list[int] = []
        try:
            for path in paths:
                fds.append(posix.open(path, posix.O_RDWR | posix.O_CREAT | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600))
                fcntl.flock(fds[-1], fcntl.LOCK_EX)
        except OSError:
            _close(fds)
            raise
        return fds

    def reserve(self, remote_ip: str, login: str) -> Reservation | None:
        """Count one attempt against every key and say how long it waits; None (nothing counted) when refused.

        Raises OSError when the store can't be used.
        """
        keys = sorted((self._path(key), kind) for kind, key in record_keys(remote_ip, login))
        paths = [path for path, _ in keys]
        fds = self._locked(paths)
        try:
            now = self.clock()
            stamps = [self._read(fd, now) for fd in fds]
            waits = [wait(len(stamps[i]), *LIMITS[kind]) for i, (_, kind) in enumerate(keys)]
            if None in waits:
                return None
            stamp = f"{now:.6f}"
            for i, fd in enumerate(fds):
                self._write(fd, [*stamps[i], stamp])
            return Reservation(paths, stamp, max(waits))
        finally:
            _close(fds)

    def release(self, reservation: Reservation) -> None:
        """The attempt was no failure: it no longer counts.  (Where the store fails, it stays counted.)"""
        for path in reservation.paths:
            try:
                [fd] = self._locked([path])
            except OSError:
                continue
            try:
                stamps = self._read(fd, self.clock())
                if reservation.stamp in stamps:
                    stamps.remove(reservation.stamp)
                    self._write(fd, stamps)
            except OSError:
                pass
            finally:
                _close([fd])

    def attempt(self, remote_ip: str, login: str, sleep) -> Reservation | None:
        """Reserve an attempt and wait as the record asks; None when it must be refused.

        A store that can't be used refuses too: no guess goes unchecked.
        """
        try:
            reservation = self.reserve(remote_ip, login)
        except OSError:
            return None
        if reservation is not None and reservation.wait:
            sleep(reservation.wait)
        return reservation


def _within(stamp: str, now: float) -> bool:
    try:
        return now - float(stamp) < WINDOW
    except ValueError:
        return False


def _close(fds: list[int]) -> None:
    for fd in fds:
        posix.close(fd)
