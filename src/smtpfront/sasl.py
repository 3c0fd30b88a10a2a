"""SMTP AUTH (RFC 4954): PLAIN, LOGIN and CRAM-MD5, each checked by a CVM.

`Authenticator.start` answers the AUTH command and `step` each line the
client sends after a 334.  The account handed to the CVM is the login up to
an `@`, the domain what follows it, or $TCPLOCALHOST for a login without one.
Failures are counted: after $AUTH_MAX_FAILURES the session ends with 421,
each failure may be delayed ($AUTH_FAIL_DELAY), and with $AUTH_THROTTLE_DIR
failures are remembered across connections (see throttle).
Never log a password or what encodes one.
"""

from __future__ import annotations

import binascii
import posix

from . import cvm
from .smtp import Reply

SUCCEEDED = Reply(235, "2.7.0 Authentication succeeded.")
BAD_CREDENTIALS = Reply(535, "5.7.8 Authentication credentials invalid.")
AUTHZID_REFUSED = Reply(535, "5.7.8 Authorization identity must match the login.")
TEMPORARY = Reply(454, "4.7.0 Temporary authentication failure.")
LOOKUP_VARIABLES = ("CVM_LOOKUP_SECRET", "LOOKUP_SECRET")
THROTTLED = Reply(454, "4.7.0 Too many failed logins; try again later.")
UNDECODABLE = Reply(501, "Could not decode the response.")
CANCELLED = Reply(501, "5.0.0 Authentication cancelled.")
UNKNOWN_MECHANISM = Reply(504, "Unrecognized authentication mechanism.")
NEEDS_TLS = Reply(530, "5.7.0 Must issue a STARTTLS command first.")
TOO_MANY_FAILURES = Reply(421, "4.7.0 Too many authentication failures; closing connection.")
ASK_USERNAME = Reply(334, "VXNlcm5hbWU6")  # "Username:"
ASK_PASSWORD = Reply(334, "UGFzc3dvcmQ6")  # "Password:"
ASK_PLAIN = Reply(334, "")
END_OF_INPUT = Reply(535, "End of file reached.")  # cvm's SASL library's words
MECHANISMS = ("LOGIN", "PLAIN", "CRAM-MD5")  # the names that may be logged: any other may be a credential


def decode(line: str) -> bytes | None:
    """Base64, or None when it isn't.

    RFC 4954's `=` (the empty response) is None too, as cvm's SASL library
    reads it: no mechanism here can use an empty response.
    """
    line = line.strip()
    if not line or len(line) % 4:
        return None
    try:
        return binascii.a2b_base64(line.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def success_facts(facts: dict[str, str], login: str) -> str:
    """What cvm's SASL library logs of a successful login: username=, sys_username=, domain=."""
    words = [f"username={facts.get('username', login)}"]
    if facts.get("sys_username"):
        words.append(f"sys_username={facts['sys_username']}")
    if facts.get("domain"):
        words.append(f"domain={facts['domain']}")
    return " ".join(words)


def encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class Authenticator:
    def __init__(self, settings, log, sleep=None) -> None:
        import time

        self.settings = settings
        self.log = log
        self.sleep = sleep or time.sleep
        self.modules = {}
        if settings.cvm_login:
            self.modules["LOGIN"] = settings.cvm_login
        if settings.cvm_plain:
            self.modules["PLAIN"] = settings.cvm_plain
        if settings.cvm_cram_md5:
            self.modules["CRAM-MD5"] = settings.cvm_cram_md5
        self.mechanisms = list(self.modules)
        # a command CVM's environment: with CVM_LOOKUP_SECRET (cvm-validate's) a CVM looks logins up and takes
        # any password (set empty) or wants a secret no client sends (set)
        self.env = {k: v for k, v in settings.environ.items() if k not in LOOKUP_VARIABLES}
        self.failures = 0
        self.throttle = None
        if settings.auth_throttle_dir:
            from .throttle import Throttle

            self.throttle = Throttle(settings.auth_throttle_dir)
        if settings.auth_throttle_store:  # the directory, if any, is where it falls back to
            from .store import SharedThrottle

            self.throttle = SharedThrottle(settings.auth_throttle_store, self.throttle, log)
        self._next = None  # what the next client line answers

    def offered(self, session) -> bool:
        return not (self.settings.auth_requires_tls and session.tls is None)

    def refusal(self, session) -> Reply:
        return NEEDS_TLS

    # -- the exchange ----------------------------------------------------

    def start(self, session, mechanism: str, initial: str | None) -> Reply:
        """The reply to `AUTH mechanism [initial]`, the mechanism as the client typed it."""
        mech = mechanism.upper()
        bad_initial = initial is not None and decode(initial) is None  # cvm's SASL library checks it first
        if mech not in MECHANISMS:
            # by its length only, like an unknown command: a client that leaves the name out sends its
            # credentials in its place
            unknown = f"SASL AUTH failed: unknown mechanism ({len(mechanism)} bytes)"
            self.log(unknown + (", bad response" if bad_initial else ""))
            return UNDECODABLE if bad_initial else UNKNOWN_MECHANISM
        self.mechanism = mechanism  # logged as typed, as cvm's SASL library does
        self._mech = mech
        self._continued = False  # answering the AUTH line itself, not a 334 challenge
        if bad_initial:
            return self._undecodable()
        if mech not in self.modules:
            self.log(f"SASL AUTH {self.mechanism} failed")
            return UNKNOWN_MECHANISM
        if mech == "PLAIN":
            return self._plain(session, initial) if initial is not None else self._ask(ASK_PLAIN, self._plain)
        if mech == "LOGIN":
            return self._login_user(session, initial) if initial is not None else self._ask(
                ASK_USERNAME, self._login_user
            )
        nonce = posix.urandom(8).hex()  # CRAM-MD5
        self.challenge = f"<{nonce}.{posix.getpid()}@{self.settings.local_host}>"
        return self._ask(Reply(334, encode(self.challenge.encode())), self._cram)

    def step(self, session, line: str) -> Reply:
        self._continued = True
        answer, self._next = self._next, None
        if not line or line[0] == "*":  # as cvm's SASL library: an empty line cancels too
            self.log(f"SASL AUTH {self.mechanism} failed: aborted")
            self.log(f"SASL AUTH {self.mechanism} failed")
            return CANCELLED
        return answer(session, line)

    def abandon(self) -> Reply | None:
        """The input ended: the reply to an exchange still waiting for the client's answer, if one is."""
        if self._next is None:
            return None
        self._next = None
        self.log(f"SASL AUTH {self.mechanism} failed")
        return END_OF_INPUT

    def _ask(self, reply: Reply, then) -> Reply:
        self._next = then
        return reply

    def _plain(self, session, line: str) -> Reply:
        data = decode(line)
        if data is None:
            return self._undecodable()
        parts = data.split(b"\0")
        if len(parts) != 3:
            self.log("SASL AUTH PLAIN failed")
            return UNDECODABLE
        authzid, login, password = parts
        if authzid and authzid != login:
            self.log("SASL AUTH PLAIN failed")
            self.log.note("AUTH PLAIN: the authorization identity differs from the login")
            return self._failed(session, login, AUTHZID_REFUSED)
        return self._check(session, login, [(cvm.PASSWORD, password)])

    def _login_user(self, session, line: str) -> Reply:
        login = decode(line)
        if login is None:
            return self._undecodable()
        self.login = login
        return self._ask(ASK_PASSWORD, self._login_password)

    def _login_password(self, session, line: str) -> Reply:
        password = decode(line)
        if password is None:
            return self._undecodable()
        return self._check(session, self.login, [(cvm.PASSWORD, password)])

    def _cram(self, session, line: str) -> Reply:
        data = decode(line)
        if data is None:
            return self._undecodable()
        login, _, digest = data.rpartition(b" ")
        if not login or not digest:
            self.log("SASL AUTH CRAM-MD5 failed")
            return UNDECODABLE
        return self._check(session, login, [(cvm.CHALLENGE, self.challenge.encode()), (cvm.RESPONSE, digest),
                                                (cvm.RESPONSE_TYPE, b"CRAM-MD5")])

    # -- the verdict -----------------------------------------------------

    def _undecodable(self) -> Reply:
        self.log(f"SASL AUTH {self.mechanism} failed: bad response")
        if self._continued:  # as cvm's sasl_auth2: a bad answer to a challenge ends the exchange as failed
            self.log(f"SASL AUTH {self.mechanism} failed")
        return UNDECODABLE

    def _check(self, session, login: bytes, secrets: list) -> Reply:
        name = login.decode("utf-8", "surrogateescape")
        if not login or b"\0" in login:
            return self._failed(session, login, BAD_CREDENTIALS)
        reservation = None
        if self.throttle is not None:
            reservation = self.throttle.attempt(self.settings.remote_ip, name, self.sleep)
            if reservation is None:
                self.log(f"SASL AUTH {self.mechanism} failed")
                self.log.note(f"AUTH {self.mechanism} refused: throttled")
                return THROTTLED
        account, at, domain = name.rpartition("@") if "@" in name else (name, "", self.settings.local_host)
        credentials = [(cvm.ACCOUNT, account.encode("utf-8", "surrogateescape"))]
        credentials.append((cvm.DOMAIN, domain.encode("utf-8", "surrogateescape")))
        module = self.modules[self._mech]
        result = cvm.authenticate(module, credentials + secrets, self.settings.cvm_timeout, self.env)
        if reservation is not None and result.status != cvm.REJECTED:
            self.throttle.release(reservation)  # not a failed guess: only a rejection keeps counting
        if result.status == cvm.OK:
            session.user = name
            self.log(f"SASL AUTH {self.mechanism} {success_facts(result.facts, name)}")
            return SUCCEEDED
        self.log(f"SASL AUTH {self.mechanism} failed")
        if result.status == cvm.TEMPORARY:
            if self.mechanism == "CRAM-MD5" and result.why == "status 7":  # "unsupported": cvm-pwfile, cvm-unix
                self.log.note(f"AUTH CRAM-MD5: CRAM-MD5 is not supported by {module}: unset CVM_SASL_CRAM_MD5")
            else:
                self.log.note(f"AUTH {self.mechanism}: CVM failure: {result.why}")
            return TEMPORARY
        return self._failed(session, login, BAD_CREDENTIALS)

    def _failed(self, session, login: bytes, reply: Reply) -> Reply:
        self.failures += 1
        if self.settings.auth_fail_delay:
            self.sleep(self.settings.auth_fail_delay)
        if self.settings.auth_max_failures and self.failures >= self.settings.auth_max_failures:
            self.log.note(f"AUTH: {self.failures} failures; closing connection")
            return TOO_MANY_FAILURES
        return reply
