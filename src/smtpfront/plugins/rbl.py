"""rbl: refuse the mail of a client that DNS block lists list (mailfront's plugin-rbl).

When the session starts, the client's address (`$TCPREMOTEIP`, or the one a
PROXY header named), reversed, is looked up as TXT under each zone of
$RBL_BLACKLISTS (names between commas), all at once, within $RBL_TIMEOUT
seconds, from the name servers of $DNSCACHEIP or /etc/resolv.conf.  A client
listed gets `451 Blocked: TEXT` at every MAIL, TEXT being the first TXT record
of the last list that lists it, as mailfront answers; with $RBL_QUEUEDIR, each
of its messages is taken into that queue directory (the queuedir back end's
settings, prefixed `RBL_`) and then refused with that reply.  A look-up that
fails refuses the session: `451 4.3.0 DNS error doing RBL lookup`.

Beyond mailfront 2.12: a client with an A record under a zone of
$RBL_WHITELISTS is not looked up in the blacklists (as later mailfronts);
IPv6 clients are looked up by their reversed nibbles (RFC 5782), where
mailfront logs `Cannot parse IP` and lets them by; empty names in the lists
are skipped and spaces around names ignored.
"""

from __future__ import annotations

from .. import dnslist, dnsname
from ..smtp import Reply, failed
from . import Plugin

DNS_ERROR = Reply(451, "4.3.0 DNS error doing RBL lookup")


def zones(value: str | None) -> list[str]:
    return [zone for zone in (part.strip() for part in (value or "").split(",")) if zone]


class _CaptureSettings:
    """The session as the capture queue sees it: QUEUEDIR and the rest of its settings read with `RBL_` first."""

    def __init__(self, session) -> None:
        self.session = session
        self.log = session.log

    def getenv(self, name: str) -> str | None:
        prefixed = "RBL_" + name  # RBL_QUEUEDIR, RBL_QUEUEDIR_DEST, RBL_QUEUEDIR_TMP, RBL_QUEUEDIR_NOSYNC
        return self.session.getenv(prefixed)


class Rbl(Plugin):
    blocked: Reply | None = None  # the reply for a listed client
    capture = None  # the queue directory that takes a listed client's messages ($RBL_QUEUEDIR)

    def init(self, session) -> Reply | None:
        debug = session.getenv("RBL_DEBUG") is not None
        blacklists = zones(session.getenv("RBL_BLACKLISTS"))
        if not blacklists:
            if debug:
                session.log("{rbl: No blacklists, skipping}")  # sic: mailfront's braces
            return None
        ip = session.settings.remote_ip
        if not ip:
            if debug:
                session.log("{rbl: $TCPREMOTEIP is unset, skipping RBL tests}")
            return None
        name = dnslist.reversed_name(ip)
        if name is None:
            session.log(f"rbl: Cannot parse IP '{ip}'")
            return None
        import time

        deadline = time.monotonic() + session.settings.rbl_timeout
        cache = session.settings.environ.get("DNSCACHEIP")
        servers = dnsname.resolvers({b"DNSCACHEIP": cache.encode("utf-8", "surrogateescape")} if cache else {})
        try:
            whitelists = zones(session.getenv("RBL_WHITELISTS"))
            if whitelists:
                found = dnslist.lookup([(f"{name}.{zone}", dnslist.A) for zone in whitelists], servers, deadline)
                for zone, records in zip(whitelists, found, strict=True):
                    if records:
                        if debug:
                            session.log(f"rbl: {zone}: whitelisted")
                        return None
            found = dnslist.lookup([(f"{name}.{zone}", dnslist.TXT) for zone in blacklists], servers, deadline)
        except dnsname.DNSError as e:
            session.log.note(f"rbl: no answer for {name} from {' '.join(servers)}: {e.strerror or e}")
            return DNS_ERROR
        for zone, records in zip(blacklists, found, strict=True):
            if records:
                texts = [dnslist.txt_text(data) for data in records]
                if debug:
                    session.log(f"rbl: {zone}:")
                    for text in texts:
                        session.log(text)
                self.blocked = Reply(451, f"Blocked: {texts[0]}")
        if self.blocked is not None and session.getenv("RBL_QUEUEDIR") is not None:
            from ..backends.queuedir import QueueDir

            self.capture = QueueDir()
            self.view = _CaptureSettings(session)
        return None

    def reset(self, session) -> None:
        if self.capture is not None:
            self.capture.reset(self.view)

    def sender(self, session, address, params) -> Reply | None:
        if self.capture is not None:
            return self.capture.sender(self.view, address, params)
        return self.blocked

    def recipient(self, session, address, params) -> None:
        if self.capture is not None:
            self.capture.recipient(self.view, address, params)

    def data_start(self, session) -> None:
        if self.capture is not None:
            self.capture.data_start(self.view)

    def data_block(self, session, block: bytes) -> None:
        if self.capture is not None:
            self.capture.data_block(self.view, block)

    def message_end(self, session) -> Reply | None:
        if self.capture is None:
            return None
        reply = self.capture.message_end(self.view)
        return reply if failed(reply) else self.blocked
