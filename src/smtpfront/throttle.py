"""Failed logins remembered across connections ($AUTH_THROTTLE_DIR).

A process lives for one connection, so a per-session limit is undone by
reconnecting.  This store keeps, per key (the client's network, IPv4 /24 or
IPv6 /64, and the login name), the failures of the last WINDOW seconds in a
small file, read and written under an fcntl lock so that concurrent
processes count every failure.  From THRESHOLD failures on, each attempt
waits 2^(failures - THRESHOLD) seconds; once that would exceed MAX_DELAY
the attempt is refused with 454 instead.  Entries expire with the window, so
nobody is locked out for good, and a success does not reset them: an
attacker's own good login can't wipe the record of his guesses.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time

WINDOW = 900.0
THRESHOLD = 5
MAX_DELAY = 16.0


def network_key(ip: str) -> str:
    if ":" in ip:
        import ipaddress

        try:
            net = ipaddress.ip_network(ip + "/64", strict=False)
        except ValueError:
            return "net:" + ip
        return "net:" + str(net)
    return "net:" + ".".join(ip.split(".")[:3]) + ".0/24"


class Throttle:
    def __init__(self, directory: str, clock=time.time) -> None:
        self.directory = directory
        self.clock = clock

    @staticmethod
    def keys(remote_ip: str, login: str) -> list[str]:
        """What a failure counts against: the client's network and the login."""
        return [network_key(remote_ip), "user:" + login.lower()]

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(key.encode()).hexdigest()[:32])

    def _update(self, key: str, add: bool) -> int:
        """The failures of `key` within the window, after adding one if `add`."""
        fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = self.clock()
            stamps = [float(s) for s in os.read(fd, 65536).split() if s]
            stamps = [s for s in stamps if now - s < WINDOW]
            if add:
                stamps.append(now)
                stamps = stamps[-64:]
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, " ".join(f"{s:.3f}" for s in stamps).encode())
            return len(stamps)
        finally:
            os.close(fd)

    def delay(self, keys: list[str]) -> float | None:
        """Seconds to wait before the next attempt, or None when it must be refused."""
        failures = max(self._update(k, False) for k in keys)
        if failures < THRESHOLD:
            return 0.0
        wait = 2.0 ** (failures - THRESHOLD)
        return None if wait > MAX_DELAY else wait

    def check(self, keys: list[str], sleep) -> bool:
        """Wait as the record asks; True when the attempt is refused."""
        try:
            wait = self.delay(keys)
        except OSError:
            return True  # can't tell: fail closed
        if wait is None:
            return True
        if wait:
            sleep(wait)
        return False

    def record_failure(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self._update(key, True)
            except OSError:
                pass
