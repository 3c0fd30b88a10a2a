"""The one place that reads the environment.

`Settings.from_environ(process_environ())` turns the variables of the UCSPI server,
envdir and tcprules into one frozen object; every other module is handed what
it needs from it.  A malformed number is a configuration error: the program
answers 421 in place of the greeting rather than run with a limit it guessed.
"""

from __future__ import annotations


def process_environ() -> dict[str, str]:
    """The process environment, decoded as os.environ does (without importing os)."""
    import posix

    return {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape") for k, v in posix.environ.items()
    }


class ConfigError(ValueError):
    """A variable has a value the program cannot use."""


MAX_COUNT = 2**64 - 1  # C mailfront reads its numbers as unsigned long
MAX_SECONDS = 31_536_000  # a year: more is a typo, and the system's timers overflow somewhere past 9e9


def _count(env: dict[str, str], name: str, default: int = 0) -> int:
    """A whole number of ASCII digits, at most MAX_COUNT; unset or empty is `default`."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 20 and int(value) <= MAX_COUNT):
        raise ConfigError(f"${name} is not a whole number from 0 to {MAX_COUNT}: {value[:40]!r}")
    return int(value)


def _unmapped(env: dict[str, str], proto: str) -> str:
    """$PROTO, changed to TCP when the client is a v4-mapped `::ffff:a.b.c.d` (tcpserver -6, a dual-stack
    socket under another server): that IPv4 client, with IPv4 TCP* addresses, for Received, the rules, the
    throttle, the logs and the programs run (their environment is changed to match)."""
    from .ip6 import unmap

    remote = unmap(env[proto + "REMOTEIP"])
    if ":" in remote:
        return proto
    for name in ("LOCALHOST", "LOCALPORT", "REMOTEHOST", "REMOTEPORT", "REMOTEINFO"):
        if proto + name in env:
            env["TCP" + name] = env[proto + name]
        else:  # not a stale one left in the environment
            env.pop("TCP" + name, None)
    env.update(PROTO="TCP", TCPREMOTEIP=remote, TCPLOCALIP=unmap(env.get(proto + "LOCALIP", "")))
    return "TCP"


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    """Seconds as digits with an optional fraction (no sign, exponent, inf or nan), at most MAX_SECONDS.

    Unset, empty or 0 is `default`, as C mailfront takes TIMEOUT=0.
    """
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.replace(".", "", 1).isdigit() and float(value) <= MAX_SECONDS):
        raise ConfigError(f"${name} is not a number of seconds from 0 to {MAX_SECONDS}: {value[:40]!r}")
    return float(value) or default


def _auth_max_failures(env: dict[str, str]) -> int:
    """$AUTH_MAX_FAILURES and mailfront 2.2x's $MAXAUTHFAIL: the stricter when both are set (0: no limit).

    Unset, both are 3.
    """
    limits = [_count(env, name, -1) for name in ("AUTH_MAX_FAILURES", "MAXAUTHFAIL")]
    limits = [n for n in limits if n >= 0]
    if not limits:
        return 3
    return min((n for n in limits if n), default=0)


class Settings:
    """Everything the programs take from the environment, read once."""

    __slots__ = (
        "environ",
        "proto",
        "local_host",
        "local_ip",
        "remote_host",
        "remote_ip",
        "greeting",
        "relayclient",
        "timeout",
        "session_timeout",
        "auth_timeout",
        "auth_session_timeout",
        "max_notimpl",
        "mailrules",
        "mailrules_cache",
        "patterns",
        "patterns_linemax",
        "patterns_resp",
        "qmail_home",
        "qmail_queue_timeout",
        "cvm_plain",
        "cvm_login",
        "cvm_cram_md5",
        "cvm_timeout",
        "cvm_lookup",
        "cvm_lookup_secret",
        "plugins",
        "tmpdir",
        "auth_requires_tls",
        "auth_max_failures",
        "auth_fail_delay",
        "auth_throttle_dir",
        "auth_throttle_store",
        "sender_login_map",
        "fixup_received_host",
        "fixup_received_ip",
        "bare_eol",
        "tls_certfile",
        "tls_keyfile",
        "tls_ciphers",
        "tls_min_version",
        "smtps",
        "proxy_protocol",
        "rbl_timeout",
    )

    def __init__(self, **values: object) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Settings are read-only")

    def replace(self, **changes: object) -> Settings:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Settings(**values)

    def proxied(self, remote_ip: str, remote_port: str, local_ip: str, local_port: str) -> Settings:
        """The settings for the client a PROXY header names, in place of the balancer tcpserver saw.

        The balancer's host name and ident answer go (see `behind_balancer` for RELAYCLIENT).
        PROTO follows the client's address: TCP6 for IPv6, TCP for IPv4 -- a v4-mapped
        `::ffff:a.b.c.d` (HAProxy's `bind :::587 v4v6`) included, as that IPv4 address.
        """
        from .ip6 import unmap

        remote_ip, local_ip = unmap(remote_ip), unmap(local_ip)
        p, old = ("TCP6" if ":" in remote_ip else "TCP"), self.proto
        environ = {name: value for name, value in self.environ.items()
                   if name not in (old + "REMOTEHOST", old + "REMOTEINFO", p + "REMOTEHOST", p + "REMOTEINFO")}
        if old + "LOCALHOST" in self.environ:
            environ[p + "LOCALHOST"] = self.environ[old + "LOCALHOST"]
        environ.update({"PROTO": p, p + "REMOTEIP": remote_ip, p + "REMOTEPORT": remote_port, p + "LOCALIP": local_ip,
                        p + "LOCALPORT": local_port})
        return self.replace(environ=environ, proto=p, remote_ip=remote_ip, local_ip=local_ip, remote_host="")

    def behind_balancer(self) -> Settings:
        """The settings without an environment RELAYCLIENT: tcprules granted it to the balancer's address,
        which is never the client's, whatever the PROXY header says (UNKNOWN and LOCAL included)."""
        environ = {name: value for name, value in self.environ.items() if name != "RELAYCLIENT"}
        return self.replace(environ=environ, relayclient=None)

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> Settings:
        env = dict(environ)
        proto = env.get("PROTO") or "TCP"
        if proto == "TCP" and "TCPREMOTEIP" not in env and "REMOTE_ADDR" in env:
            # systemd (Accept=yes) names the client REMOTE_ADDR, as an IPv4-mapped
            # address on a dual-stack socket; rules and Received want tcpserver's names
            env["TCPREMOTEIP"] = env["REMOTE_ADDR"].removeprefix("::ffff:")
            env.setdefault("TCPREMOTEPORT", env.get("REMOTE_PORT", ""))
            if ":" in env["TCPREMOTEIP"]:  # an IPv6 client: PROTO=TCP6, as tcpserver-ipv6 sets it
                for name in ("REMOTEIP", "REMOTEPORT", "LOCALHOST"):
                    if "TCP" + name in env:
                        env.setdefault("TCP6" + name, env["TCP" + name])
                env["PROTO"] = proto = "TCP6"
        if ":" in env.get(proto + "REMOTEIP", ""):
            proto = _unmapped(env, proto)

        def ucspi(name: str) -> str:
            return env.get(proto + name, "")

        local_host = ucspi("LOCALHOST")
        greeting = env.get("SMTPGREETING")
        if greeting is None:
            greeting = f"{local_host or 'unknown'} mailfront"
        qmail_home = env.get("QMAILHOME") or "/var/qmail"
        cvm_plain = env.get("CVM_SASL_PLAIN") or None
        tls_min_version = (env.get("TLS_MIN_VERSION") or "1.2").removeprefix("TLSv")
        if tls_min_version not in ("1.2", "1.3"):
            raise ConfigError(f"$TLS_MIN_VERSION must be 1.2 or 1.3: {tls_min_version!r}")
        bare_eol = (env.get("DATA_BARE_EOL") or "reject").lower()
        if bare_eol not in ("reject", "normalize"):
            raise ConfigError(f"$DATA_BARE_EOL must be reject or normalize: {bare_eol!r}")
        timeout = _seconds(env, "TIMEOUT", 1200.0)
        session_timeout = _seconds(env, "SESSION_TIMEOUT", 86400.0)
        for name in ("DATABYTES", "MAXMSGS", "MAXRCPTS", "MAXHOPS"):  # the counters plugin reads them per session
            _count(env, name)
        return cls(
            environ=env,
            proto=proto,
            local_host=local_host,
            local_ip=ucspi("LOCALIP"),
            remote_host=ucspi("REMOTEHOST"),
            remote_ip=ucspi("REMOTEIP"),
            greeting=greeting,
            relayclient=env.get("RELAYCLIENT"),
            timeout=timeout,
            session_timeout=session_timeout,
            # mailfront 2.13: in place of TIMEOUT and SESSION_TIMEOUT once the client has authenticated
            auth_timeout=_seconds(env, "AUTH_TIMEOUT", timeout),
            auth_session_timeout=_seconds(env, "AUTH_SESSION_TIMEOUT", session_timeout),
            max_notimpl=_count(env, "MAXNOTIMPL"),
            mailrules=env.get("MAILRULES") or None,
            mailrules_cache=env.get("MAILRULES_CACHE") or None,
            patterns=env.get("PATTERNS") or None,
            patterns_linemax=_count(env, "PATTERNS_LINEMAX") or 256,
            patterns_resp=env.get("PATTERNS_RESP") or "This message contains prohibited content",
            qmail_home=qmail_home,
            qmail_queue_timeout=_seconds(env, "QMAILQUEUE_TIMEOUT", 3600.0),
            cvm_plain=cvm_plain,
            cvm_login=env.get("CVM_SASL_LOGIN") or cvm_plain,
            cvm_cram_md5=env.get("CVM_SASL_CRAM_MD5") or None,
            cvm_timeout=_seconds(env, "CVM_TIMEOUT", 10.0),
            cvm_lookup=env.get("CVM_LOOKUP"),
            cvm_lookup_secret=env.get("CVM_LOOKUP_SECRET", env.get("LOOKUP_SECRET")),
            plugins=env.get("PLUGINS"),
            tmpdir=env.get("TMPDIR") or "/tmp",
            auth_requires_tls="AUTH_REQUIRES_TLS" in env,
            auth_max_failures=_auth_max_failures(env),
            auth_fail_delay=_seconds(env, "AUTH_FAIL_DELAY", 0.0),
            auth_throttle_dir=env.get("AUTH_THROTTLE_DIR") or None,
            auth_throttle_store=env.get("AUTH_THROTTLE_STORE") or None,
            sender_login_map=env.get("SENDER_LOGIN_MAP") or None,
            fixup_received_host=env.get("FIXUP_RECEIVED_HOST", "").strip(),
            fixup_received_ip=env.get("FIXUP_RECEIVED_IP", "").strip(),
            bare_eol=bare_eol,
            tls_certfile=env.get("TLS_CERTFILE") or None,
            tls_keyfile=env.get("TLS_KEYFILE") or None,
            tls_ciphers=env.get("TLS_CIPHERS") or None,
            tls_min_version=tls_min_version,
            smtps="SMTPS" in env or "TLS_IMMEDIATE" in env,  # TLS_IMMEDIATE: mailfront 2.2x's name
            proxy_protocol="PROXY_PROTOCOL" in env,
            rbl_timeout=_seconds(env, "RBL_TIMEOUT", 60.0),
        )
