"""clamav: refuse a message clamd finds a virus in (mailfront's plugin-clamav).

The whole message, as the back end gets it (the trace headers too), is sent
to clamd with INSTREAM when it is complete, over TCP to $CLAMAV_HOST (or
$CLAMD_HOST) port $CLAMAV_PORT (or $CLAMD_PORT, 3310), each of its
addresses in turn from a random start, or to the Unix socket $CLAMD_SOCKET
(which mailfront lacks).  A virus refuses the message with `554 5.7.0 Virus
scan failed: NAME FOUND`; when no scanner answers, nothing is queued and the
answer is 451.  A message over $CLAMAV_MAXSIZE bytes is not scanned (a
warning).  The timeouts are `smtpfront.scanners`' with the prefix CLAMAV.
"""

from __future__ import annotations

from ..session import number
from ..smtp import Reply
from . import Plugin

NO_HOSTNAME = Reply(451, "4.3.0 Could not resolve virus scanner hostname")
NO_SCAN = Reply(451, "4.3.0 Could not virus scan message")
DEFAULT_PORT = 3310
MAX_CHUNK_TOTAL = 0xFFFFFFFF  # mailfront sends the message as one chunk, whose length has 32 bits


class ClamAV(Plugin):
    reads_message = True

    def message_end(self, session) -> Reply | None:
        from .. import clamd, scanners

        getenv = session.getenv
        host = getenv("CLAMAV_HOST") or getenv("CLAMD_HOST")
        path = getenv("CLAMD_SOCKET")
        size = session.message.tell()
        if size > MAX_CHUNK_TOTAL:
            session.log("Warning: ClamAV scanning skipped: message larger than chunk size")
            return None
        maxsize = number(getenv("CLAMAV_MAXSIZE"))
        if maxsize and size > maxsize:
            session.log("Warning: ClamAV scanning skipped: message larger than maximum")
            return None
        try:
            port = scanners.port(getenv("CLAMAV_PORT") or getenv("CLAMD_PORT"), DEFAULT_PORT)
            targets = scanners.targets(path, host, port)
        except scanners.Unresolved as e:
            session.log.note(f"clamav: cannot resolve {e}")
            return NO_HOSTNAME
        except ValueError as e:
            session.log.note(f"clamav: $CLAMAV_PORT: {e}")
            return NO_SCAN
        if not targets:
            session.log.note("clamav: no scanner: set $CLAMAV_HOST or $CLAMD_SOCKET")
            return NO_SCAN
        verdict, failures = clamd.scan(targets, session.message, size, scanners.timeouts(getenv, "CLAMAV", "CLAMD"))
        for failure in failures:
            session.log.note(f"clamav: {failure}")
        if verdict.status == clamd.INFECTED:
            return Reply(554, f"5.7.0 Virus scan failed: {verdict.text}")
        if verdict.status == clamd.FAILED:
            return NO_SCAN
        return None
