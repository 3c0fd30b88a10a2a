"""Plugins: small pieces with the hooks of mailfront 2.x's plugin API (plugin-api.html).

A hook answers with a Reply or None.  None passes on to the next plugin; a
reply of 400 or more is an error that stops the chain; a lower one is an
acceptance that is remembered while the rest of the chain still runs (see
`pipeline`).  Hooks may rewrite the address they are given.  A sender or
recipient that no plugin accepted is refused, so that a configuration with
no plugins relays for no one.

The registry of names (`smtpfront.registry`) says which module holds each
plugin; a module is imported only when its plugin is loaded.
"""

from __future__ import annotations

from ..smtp import Reply

ACCEPTED = Reply(250, None)  # an acceptance without words of its own: the protocol's text is used
CONTROL_UNREADABLE = Reply(451, "4.3.0 Could not read a control file.")


class FinalReply(Reply):
    """An acceptance that ends the chain: the plugins after this one are not asked (MAILRULES `K`)."""

    __slots__ = ()


class Plugin:
    """No opinion on anything; a plugin overrides the hooks it needs.

    `commands` names the SMTP verbs the plugin adds: AUTH (cvm-authenticate),
    whose plugin also has `exists`, `start`, `step` and `abandon`, which the
    smtp protocol calls.
    """

    commands: tuple[str, ...] = ()
    # True: the plugin reads the whole message at message_end from `session.message`, a temporary file
    # the pipeline fills with what the back end gets (clamav, spamassassin)
    reads_message = False
    # True: the back end gets the message only after every message_end, from `session.message`, which the
    # plugin may have replaced (spamassassin: spamd's rewritten message)
    rewrites_message = False

    def init(self, session) -> Reply | None:
        """Once, before the session starts; an error refuses the whole session."""
        return None

    def helo(self, session, domain: str, capabilities: list[str]) -> Reply | None:
        """HELO or EHLO; a plugin may append EHLO keywords to `capabilities`."""
        return None

    def reset(self, session) -> None:
        """A new message starts (MAIL, RSET, HELO/EHLO, after an error, at the end)."""

    def sender(self, session, address, params: tuple[str, ...]) -> Reply | None:
        return None

    def recipient(self, session, address, params: tuple[str, ...]) -> Reply | None:
        return None

    def data_start(self, session) -> Reply | None:
        return None

    def data_block(self, session, block: bytes) -> Reply | None:
        """`block` is whole lines of the message (LF line ends, dot-unstuffed)."""
        return None

    def message_end(self, session) -> Reply | None:
        return None

    def end(self, session) -> None:
        """The session is over, however it ended (not a mailfront hook: a plugin that holds something outside
        the process, as limits' place among the concurrent sessions, lets go of it); must not raise."""


HOOKS = ("init", "helo", "reset", "sender", "recipient", "data_start", "data_block", "message_end", "end")


def hooks(plugins: list[Plugin], name: str) -> list:
    """The bound `name` hooks of the plugins that define one, in order."""
    base = getattr(Plugin, name)
    return [getattr(p, name) for p in plugins if getattr(type(p), name) is not base]
