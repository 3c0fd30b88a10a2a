"""spamassassin: have spamd rewrite the message, and refuse spam when told to (mailfront's plugin-spamassassin).

When the message is complete it is sent to spamd (PROCESS), over the Unix
socket $SPAMD_PATH, else over TCP to $SPAMD_HOST port $SPAMD_PORT (783),
each of its addresses in turn from a random start; $SPAMD_USER names the
user whose settings spamd applies.  The back end gets spamd's rewritten
message, with its `X-Spam-*` headers, whatever the back end.  With
$SPAMD_REJECT set, spam is refused: `554` and its text, or `554 5.3.0 Spam
detected, message refused` when it is empty.  When no spamd answers, nothing
is queued and the answer is 451.  A message over $SPAMD_MAXSIZE bytes goes
on unscanned (a warning).  The timeouts are `smtpfront.scanners`' with the
prefix SPAMD.  The message waits in temporary files under $TMPDIR, never in
memory.
"""

from __future__ import annotations

from ..session import number
from ..smtp import Reply
from . import Plugin

NO_HOSTNAME = Reply(451, "4.3.0 Could not resolve SpamAssassin hostname")
NO_SCAN = Reply(451, "4.3.0 Could not SpamAssassin scan message")
SPAM = "5.3.0 Spam detected, message refused"
DEFAULT_PORT = 783


class SpamAssassin(Plugin):
    reads_message = True
    rewrites_message = True

    def message_end(self, session) -> Reply | None:
        from .. import scanners, spamd

        getenv = session.getenv
        size = session.message.tell()
        maxsize = number(getenv("SPAMD_MAXSIZE"))
        if maxsize and size > maxsize:
            session.log("Warning: SpamAssassin scanning skipped: message larger than maximum")
            return None
        try:
            port = scanners.port(getenv("SPAMD_PORT"), DEFAULT_PORT)
            targets = scanners.targets(getenv("SPAMD_PATH"), getenv("SPAMD_HOST"), port)
        except scanners.Unresolved as e:
            session.log.note(f"spamassassin: cannot resolve {e}")
            return NO_HOSTNAME
        except ValueError as e:
            session.log.note(f"spamassassin: $SPAMD_PORT: {e}")
            return NO_SCAN
        if not targets:
            session.log.note("spamassassin: no spamd: set $SPAMD_HOST or $SPAMD_PATH")
            return NO_SCAN
        try:
            rewritten = session.temporary_file()
        except OSError as e:
            session.log.note(f"spamassassin: cannot create a temporary file: {e.strerror}")
            return NO_SCAN
        answer, failures = spamd.process(targets, session.message, size, getenv("SPAMD_USER"),
                                         scanners.timeouts(getenv, "SPAMD"), rewritten)
        for failure in failures:
            session.log.note(f"spamassassin: {failure}")
        if answer is None:
            rewritten.close()
            return NO_SCAN
        session.message.close()
        session.message = rewritten  # what the back end gets
        reject = getenv("SPAMD_REJECT")
        if answer.spam and reject is not None:
            return Reply(554, reject or SPAM)
        return None
