"""Back ends: where an accepted message goes (mailfront's backend modules).

A back end has the same hooks as a plugin (see smtpfront.plugins) and is
asked after them: it sees the sender and each recipient as the plugins left
them, then `data_start`, the blocks of the message (LF line ends, the trace
headers first) and `message_end`, which commits the message and answers for
it.  `reset` must guarantee that nothing of an unfinished message is
committed.  A reply of None lets the protocol use its usual words.
"""

from __future__ import annotations


def envelope(sender: str, recipients: list[str]) -> bytes:
    """qmail-queue's envelope: F<sender>\\0, T<recipient>\\0 each, a final \\0."""
    parts = ["F", sender, "\0"]
    for rcpt in recipients:
        parts += ["T", rcpt, "\0"]
    parts.append("\0")
    return "".join(parts).encode("utf-8", "surrogateescape")
