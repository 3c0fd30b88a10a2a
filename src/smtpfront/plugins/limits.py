"""limits: how much one client, login or sender may do, counted in the shared store so that it holds on every host.

Each limit is off unless its variable is set (by envdir, or by tcprules per
client); a count per period is `N/PERIOD`, the period in seconds or with a
unit (`100/1h`, `30/10m`, `5/90s`, `1000/1d`):

    LIMIT_SESSIONS_PER_IP       N   sessions at once from one address
    LIMIT_SESSIONS_PER_NET      N   ... from its network (IPv4 /24, IPv6 /64)
    LIMIT_CONNECTIONS_PER_IP    N/PERIOD   sessions started by one address
    LIMIT_MESSAGES_PER_LOGIN    N/PERIOD   MAIL commands of an authenticated login
    LIMIT_RECIPIENTS_PER_LOGIN  N/PERIOD   RCPT commands of an authenticated login
    LIMIT_MESSAGES_PER_SENDER   N/PERIOD   the same for a relaying client that did not
    LIMIT_RECIPIENTS_PER_SENDER N/PERIOD   authenticate, per envelope sender
    LIMIT_TARPIT                seconds to wait before refusing
    LIMITS_STORE                the store (redis.py's URLs)

Past a limit the session is refused (`421 4.7.1`, in place of the greeting)
or the command is (`451 4.7.1`), saying which limit and when to retry; the
log line starts `smtpfront: limit NAME reached:`.  An event is counted when
this plugin lets it through (a recipient another plugin then refuses still
counts: put `limits` first to count attempts, last to count acceptances).
Periods slide (store.py says how).  A store that can't be used fails open:
mail flows, with one log line a session.  A session's place among the
concurrent ones is freed when it ends, and expires by itself if its process
is killed (after TIMEOUT + 60 s without a command).
"""

from __future__ import annotations

import time

from ..redis import StoreError
from ..smtp import Reply
from ..store import ENTER, RELEASE, Store, key, member
from ..throttle import login_key, network_key
from . import Plugin

CONFIG_ERROR = Reply(421, "4.3.0 Configuration error; try again later.")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TARPIT = 600.0
# name: what it counts, for the reply
RATES = {
    "LIMIT_CONNECTIONS_PER_IP": "connections from your address",
    "LIMIT_MESSAGES_PER_LOGIN": "messages for this login",
    "LIMIT_RECIPIENTS_PER_LOGIN": "recipients for this login",
    "LIMIT_MESSAGES_PER_SENDER": "messages from this sender",
    "LIMIT_RECIPIENTS_PER_SENDER": "recipients from this sender",
}
SESSIONS = {
    "LIMIT_SESSIONS_PER_IP": "sessions from your address",
    "LIMIT_SESSIONS_PER_NET": "sessions from your network",
}


class ConfigError(ValueError):
    pass


def rate(name: str, text: str) -> tuple[int, float]:
    """(count, period in seconds) from `N/PERIOD`."""
    count, slash, period = text.partition("/")
    unit = UNITS.get(period[-1:], 0)
    number = period[:-1] if unit else period
    unit = unit or 1
    if not (slash and count.isascii() and count.isdigit() and number.isascii() and number.isdigit()
            and 0 < int(count) < 10**9 and 0 < int(number) * unit <= 366 * 86400):
        raise ConfigError(f"${name} must be COUNT/PERIOD, as 100/1h: {text!r}")
    return int(count), float(int(number) * unit)


def say(period: float) -> str:
    for unit in "dhm":
        if period % UNITS[unit] == 0:
            return f"{int(period // UNITS[unit])}{unit}"
    return f"{int(period)}s"


class Limits(Plugin):
    store: Store | None = None

    def init(self, session) -> Reply | None:
        try:
            self.rates = {name: rate(name, session.getenv(name)) for name in RATES if session.getenv(name)}
            self.sessions = {name: _count(name, session.getenv(name)) for name in SESSIONS if session.getenv(name)}
            self.tarpit = _seconds("LIMIT_TARPIT", session.getenv("LIMIT_TARPIT") or "0")
        except ConfigError as e:
            session.log.note(str(e))
            return CONFIG_ERROR
        url = session.getenv("LIMITS_STORE")
        if not (self.rates or self.sessions):
            return None
        if not url:
            session.log.note("limits are set but $LIMITS_STORE is not")
            return CONFIG_ERROR
        self.store = Store(url)
        self.mail_from = ""
        ip = session.settings.remote_ip
        if "LIMIT_CONNECTIONS_PER_IP" in self.rates:
            refusal = self._hit(session, "LIMIT_CONNECTIONS_PER_IP", "conn:" + ip, f"address {ip}", 421)
            if refusal is not None:
                return refusal
        if self.sessions:
            return self._enter(session, ip)
        return None

    # -- concurrent sessions: a set per address and per network, a member per session, scored by its expiry

    def _enter(self, session, ip: str) -> Reply | None:
        kinds = [(name, k) for name, k in (("LIMIT_SESSIONS_PER_IP", ip), ("LIMIT_SESSIONS_PER_NET", network_key(ip)))
                 if name in self.sessions]
        self.slots = [key("sessions", k) for _, k in kinds]
        limits = [self.sessions[name] for name, _ in kinds]
        self.member = member()
        self.ttl = session.settings.timeout + 60
        full = self._run(session, ENTER, self.slots, [int(self.ttl * 1000), self.member, *limits])
        if not full:
            self.entered = time.monotonic()
            return None
        self.slots = []
        name = kinds[full - 1][0]
        who = f"address {ip}" if name == "LIMIT_SESSIONS_PER_IP" else f"network {network_key(ip)[4:]}"
        return self._refuse(session, 421, name, who, f"{SESSIONS[name]} at once ({limits[full - 1]})", 0.0)

    def _renew(self, session) -> None:
        """A long session keeps its place: renewed when a third of its lifetime has gone."""
        if getattr(self, "slots", None) and time.monotonic() - self.entered > self.ttl / 3:
            self.entered = time.monotonic()
            self._run(session, ENTER, self.slots, [int(self.ttl * 1000), self.member] + [0] * len(self.slots))

    def end(self, session) -> None:
        if getattr(self, "slots", None):
            self._run(session, RELEASE, self.slots, [self.member])
        if self.store is not None:
            self.store.close()

    # -- rates ---------------------------------------------------------------------------------

    def _who(self, session, kind: str) -> tuple[str, str, str] | None:
        """(limit name, key, who) of the messages or recipients of this session; None when none applies."""
        if session.user is not None:
            name = f"LIMIT_{kind}_PER_LOGIN"
            return name, f"{kind}:login:{login_key(session.user)}", f"login {session.user}"
        if session.relayclient is not None:
            name = f"LIMIT_{kind}_PER_SENDER"
            return name, f"{kind}:sender:{self.mail_from.lower()}", f"sender <{self.mail_from}>"
        return None

    def sender(self, session, address, params) -> Reply | None:
        if self.store is None:
            return None
        self._renew(session)
        self.mail_from = address.text
        found = self._who(session, "MESSAGES")
        if found is None or found[0] not in self.rates:
            return None
        name, k, who = found
        return self._hit(session, name, k, who, 451)

    def recipient(self, session, address, params) -> Reply | None:
        if self.store is None:
            return None
        self._renew(session)
        found = self._who(session, "RECIPIENTS")
        if found is None or found[0] not in self.rates:
            return None
        name, k, who = found
        return self._hit(session, name, k, who, 451)

    def _hit(self, session, name: str, k: str, who: str, code: int) -> Reply | None:
        limit, period = self.rates[name]
        try:
            retry = self.store.hit(key("rate", k), limit, period)
        except StoreError as e:
            self._unusable(session, e)
            return None
        if not retry:
            return None
        return self._refuse(session, code, name, who, f"{RATES[name]} ({limit} per {say(period)})", retry)

    # -- common ----------------------------------------------------------------------------------

    def _run(self, session, script, keys: list[str], args: list):
        try:
            return self.store.run(script, keys, args)
        except StoreError as e:
            self._unusable(session, e)
            return 0

    def _unusable(self, session, e: StoreError) -> None:
        if not getattr(self, "told", False):  # one line a session: later calls fail at once, unlogged
            self.told = True
            session.log.note(f"limits not applied: store unusable: {e}")

    def _refuse(self, session, code: int, name: str, who: str, what: str, retry: float) -> Reply:
        seconds = int(retry + 0.999)
        session.log.note(f"limit {name} reached: {who}, client {session.settings.remote_ip}"
                         + (f", retry in {seconds} s" if seconds else ""))
        if self.tarpit:
            time.sleep(self.tarpit)
        again = f"try again in {seconds} seconds" if seconds else "try again later"
        return Reply(code, f"4.7.1 Too many {what}; {again}.")


def _count(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 10**9):
        raise ConfigError(f"${name} must be a number above 0: {text!r}")
    return int(text)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text) if text.replace(".", "", 1).isdigit() and text.isascii() else -1.0
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_TARPIT:
        raise ConfigError(f"${name} must be seconds, at most {MAX_TARPIT:.0f}: {text!r}")
    return value
