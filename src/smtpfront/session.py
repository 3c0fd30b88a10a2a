"""What one connection has established so far, as the handlers see it."""

from __future__ import annotations

from .config import Settings


class Address:
    """An envelope address on its way through the handlers, which may rewrite it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    @property
    def domain(self) -> str:
        return self.text.rpartition("@")[2].lower() if "@" in self.text else ""


class Session:
    """The connection (client, login, TLS) and the current transaction."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env: dict[str, str] = {}  # variables set during the session (by MAILRULES)
        self.helo = ""
        self.esmtp = False
        self.user: str | None = None  # the authenticated login
        self.tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
        self.messages = 0  # messages accepted in this session
        self.new_transaction()

    def new_transaction(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.rcpt_attempts = 0
        self.databytes = self.settings.databytes  # MAILRULES may lower it per message
        self.size = 0  # message bytes received so far
        self.header_lines: list[str] = []  # trace headers to prepend

    def getenv(self, name: str) -> str | None:
        """A variable as the session sees it: set by a rule, else from the environment."""
        if name in self.env:
            return self.env[name]
        return self.settings.environ.get(name)

    @property
    def relayclient(self) -> str | None:
        return self.getenv("RELAYCLIENT")
