"""Back ends: where an accepted message goes.

A back end sees one message at a time: `begin` with the envelope, `write`
with blocks of the message (LF line ends, the trace headers first), then
either `finish`, which commits the message and returns the reply for the
client, or `abort`, which guarantees that nothing is committed.
"""

from __future__ import annotations

from ..smtp import Reply


class BackendError(Exception):
    """The message can't be taken; `reply` says why to the client."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class Backend:
    def begin(self, sender: str, recipients: list[str], env: dict[str, str]) -> None:
        raise NotImplementedError

    def write(self, block: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> Reply:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def envelope(sender: str, recipients: list[str]) -> bytes:
    """qmail-queue's envelope: F<sender>\\0, T<recipient>\\0 each, a final \\0."""
    parts = ["F", sender, "\0"]
    for rcpt in recipients:
        parts += ["T", rcpt, "\0"]
    parts.append("\0")
    return "".join(parts).encode("utf-8", "surrogateescape")
