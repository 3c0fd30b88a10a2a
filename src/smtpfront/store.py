"""The shared store: counts kept in Redis, so that every host behind a balancer spends one budget.

Every count is a sorted set of the events' times (milliseconds, Redis's own
clock: the hosts' clocks may differ) and one Lua script does the whole of a
check: drop what fell out of the period, count what is left, record the new
event only when the limit allows it.  One script is atomic in Redis, so
parallel sessions on any number of hosts can't both take the last place.
That is a sliding window, exact to the millisecond: an event is let through
when fewer than `limit` events were let through in the `period` before it,
whenever the period started (a fixed window lets 2x through across its
boundary).  A set holds at most `limit` members, and every key expires with
its period.

Keys start with `smtpfront:`; the ones a client chooses the contents of (a
login, an address) are hashed, so that they are short and no byte of them
reaches a log or a key name unescaped.
"""

from __future__ import annotations

import posix

from .redis import Connection, Script, StoreError, parse_url
from .throttle import KEEP, LIMITS, WINDOW, Throttle, record_keys, wait

PREFIX = "smtpfront:"

# KEYS: the throttle's keys; ARGV: window (ms), the attempt's member, then each key's refusal count (0: never)
RESERVE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  counts[i] = redis.call('ZCARD', key)
  local refuse = tonumber(ARGV[2 + i])
  if refuse > 0 and counts[i] >= refuse then return {} end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('ZREMRANGEBYRANK', key, 0, -1 - tonumber(ARGV[#ARGV]))
  redis.call('PEXPIRE', key, window)
end
return counts
""")
# KEYS: sets; ARGV[1]: the member to take out of each
RELEASE = Script("""
for _, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[1]) end
return 0
""")
# KEYS[1]: the events; ARGV: period (ms), limit, the new event's member.
# {1, 0} when it is let through; {0, ms until the oldest leaves the period} when not
HIT = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + period - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], period)
return {1, 0}
""")
# KEYS: the sessions' sets (one per address, per network); ARGV: lifetime (ms), the session's member,
# then each key's limit.  A member's score is when it expires.  0 when the session may start, else
# the 1-based index of the key that is full.  With every limit 0 it only renews the session's lifetime.
ENTER = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[2 + i])
  if limit > 0 and redis.call('ZCARD', key) >= limit then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[2])
  redis.call('PEXPIRE', key, ttl)
end
return 0
""")


def key(kind: str, value: str) -> str:
    import _sha256  # not hashlib, whose import costs more than the hash

    return f"{PREFIX}{kind}:{_sha256.sha256(value.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}"


def member() -> str:
    """A name for one event, unique across hosts and processes."""
    return f"{posix.getpid()}.{posix.urandom(8).hex()}"


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


class Store:
    """One session's use of the store at a URL; raises StoreError (a bad URL too) from every call."""

    def __init__(self, url: str) -> None:
        self.text = url
        self.connection: Connection | None = None

    def _connection(self) -> Connection:
        if self.connection is None:
            try:
                self.connection = Connection(parse_url(self.text))
            except ValueError as e:
                raise StoreError(f"bad store URL: {e}") from None
        return self.connection

    def run(self, script: Script, keys: list[str], args: list):
        return self._connection().run(script, keys, args)

    def hit(self, key: str, limit: int, period: float) -> float:
        """Record one event if fewer than `limit` were in the last `period` seconds: 0.0; else the seconds
        until one leaves the period."""
        admitted, wait_ms = self.run(HIT, [key], [_ms(period), limit, member()])
        return 0.0 if admitted else max(wait_ms, 1) / 1000

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class SharedReservation:
    """An attempt counted in the store."""

    __slots__ = ("keys", "member", "wait")

    def __init__(self, keys: list[str], member: str, wait: float) -> None:
        self.keys = keys
        self.member = member
        self.wait = wait


class SharedThrottle:
    """The AUTH throttle (same rules, same interface as throttle.Throttle) on the store.

    When the store can't be used, the session's attempts go to `fallback`
    (the local directory), with a log line; without one they are refused
    (`reserve` raises OSError), as an unusable directory's are.
    """

    def __init__(self, url: str, fallback: Throttle | None, log) -> None:
        self.store = Store(url)
        self.fallback = fallback
        self.log = log

    def reserve(self, remote_ip: str, login: str) -> SharedReservation | object | None:
        if not (self.store.connection and self.store.connection.broken):
            kinds = record_keys(remote_ip, login)
            keys = [key("throttle", k) for _, k in kinds]
            refusals = [LIMITS[kind][1] or 0 for kind, _ in kinds]
            name = member()
            try:
                counts = self.store.run(RESERVE, keys, [_ms(WINDOW), name, *refusals, KEEP])
            except StoreError as e:
                self.log.note(f"AUTH throttle store unusable ({e}); "
                              + ("using AUTH_THROTTLE_DIR" if self.fallback else "AUTH refused"))
            else:
                if not counts:
                    return None
                waits = [wait(n, *LIMITS[kind]) for n, (kind, _) in zip(counts, kinds, strict=True)]
                return SharedReservation(keys, name, max(waits))
        if self.fallback is None:
            raise OSError("the AUTH throttle store is unusable")
        return self.fallback.reserve(remote_ip, login)

    def release(self, reservation) -> None:
        if not isinstance(reservation, SharedReservation):
            self.fallback.release(reservation)
            return
        try:
            self.store.run(RELEASE, reservation.keys, [reservation.member])
        except StoreError:
            pass  # it stays counted, as a failure, until the window passes

    attempt = Throttle.attempt
