"""What one connection has established so far, as the plugins see it."""

from __future__ import annotations

from .config import Settings
from .smtp import fold


class Address:
    """An envelope address on its way through the plugins, which may rewrite it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    @property
    def domain(self) -> str:
        return fold(self.text.rpartition("@")[2]) if "@" in self.text else ""


def number(value: str | None) -> int:
    """A decimal number as mailfront reads one with strtoul: 0 unless the whole value is digits."""
    return int(value) if value and value.isascii() and value.isdigit() else 0


class Session:
    """The connection (client, login, TLS), the settings, and the variables set during the session.

    `env` holds what MAILRULES assigned (cleared at every reset, as mailfront
    does); `getenv` reads it before the process environment.
    """

    def __init__(self, settings: Settings, log, protocol: str = "SMTP") -> None:
        self.settings = settings
        self.log = log
        self.protocol = protocol  # SMTP, ESMTP (after an EHLO), QMQP or QMTP: the Received header's "with"
        self.env: dict[str, str] = {}
        self.helo: str | None = None  # the HELO/EHLO name, forgotten once the client authenticates
        self.user: str | None = None  # the authenticated login
        self.tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
        self.databytes = 0  # a message size limit set by MAILRULES (0: none)
        self.backend = None  # where plugins write into the message: the back end, or the pipeline's kept copy
        self.message = None  # the message being received, kept in a temporary file when a plugin reads it whole

    def getenv(self, name: str) -> str | None:
        """A variable as the session sees it: set by a rule, else from the environment."""
        if name in self.env:
            return self.env[name]
        return self.settings.environ.get(name)

    def getenvu(self, name: str) -> int:
        """The smallest non-zero number among the environment's and the rules' values of `name` (0: none)."""
        values = [number(self.settings.environ.get(name)), number(self.env.get(name))]
        return min((v for v in values if v), default=0)

    def backend_data_block(self, block: bytes) -> None:
        """Write into the message directly, past the plugins' checks (mailfront's backend_data_block)."""
        self.backend.data_block(self, block)

    def temporary_file(self):
        """A new nameless file under $TMPDIR (default /tmp), open for reading and writing; raises OSError, also when
        $TMPDIR is unusable (tempfile would quietly pick another directory, and costs 10 ms to import)."""
        import posix

        directory = self.settings.environ.get("TMPDIR") or "/tmp"
        try:
            fd = posix.open(directory, posix.O_TMPFILE | posix.O_RDWR | posix.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno not in (21, 95):  # EISDIR, EOPNOTSUPP: no O_TMPFILE in this kernel or file system
                raise
            path = f"{directory}/smtpfront.{posix.getpid()}.{posix.urandom(6).hex()}"
            fd = posix.open(path, posix.O_CREAT | posix.O_EXCL | posix.O_RDWR | posix.O_CLOEXEC, 0o600)
            posix.unlink(path)
        return open(fd, "w+b")

    @property
    def relayclient(self) -> str | None:
        return self.getenv("RELAYCLIENT")
