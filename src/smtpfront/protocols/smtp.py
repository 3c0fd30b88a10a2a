"""The smtp protocol: the sans-I/O engine (smtpfront.smtp) driven over the transport.

`SMTP.handle` answers the engine's events by asking the pipeline, in the
order mailfront's protocol-smtp.c does: HELO/EHLO and MAIL start a new message
(reset), EHLO lists the plugins' keywords (SIZE, AUTH) and ours, AUTH goes to
the plugin that provides it (cvm-authenticate), STARTTLS is ours ($TLS_CERTFILE).
`serve` reads with the idle and session timeouts, feeds the engine and writes
its replies, pipelined replies in one write.
"""

from __future__ import annotations

import posix

from .. import smtp
from ..log import internal_error
from ..session import Address
from ..smtp import Reply, failed

NAME = "SMTP"
CONFIG_ERROR = Reply(421, "4.3.0 Configuration error; try again later.")
SENDER_ACCEPTED = Reply(250, "2.1.0 Sender accepted.")
RECIPIENT_ACCEPTED = Reply(250, "2.1.5 Recipient accepted.")
MESSAGE_ACCEPTED = Reply(250, "2.6.0 Message accepted.")
START_DATA = Reply(354, "End your message with a period on a line by itself.")
BARE_EOL = Reply(554, "5.6.0 Message contains a bare CR or LF; lines must end with CRLF.")
INTERNAL_ERROR = Reply(451, "4.3.0 Internal error.")
TLS_UNAVAILABLE = Reply(454, "4.7.0 TLS not available due to temporary reason.")
START_TLS = Reply(220, "2.0.0 Ready to start TLS")
TIMED_OUT = Reply(421, "4.4.2 Timeout; closing connection.")
SESSION_TIMED_OUT = Reply(421, "4.4.2 Session time limit exceeded; closing connection.")
EHLO_KEYWORDS = ["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"]
CLOSE_NOTIFY_WAIT = 2.0  # seconds for the client's close_notify after ours: a client that answers does in a round trip


def refuse(transport, reply: Reply) -> None:
    """The reply in place of the greeting, for a session that can't start."""
    transport.write(reply.encode())


class TLSConfigError(Exception):
    """$SMTPS is set but TLS can't be set up: the session can't start."""


def tls_offer(settings, log):
    """A callable giving the server's ssl context, or None when TLS can't be offered.

    The files are checked here, cheaply; the TLS library (`_ssl`, see tls.py) is
    imported only when a client asks for TLS (or at once for SMTPS).  Raises TLSConfigError.
    """
    if not settings.tls_certfile:
        if settings.smtps:
            raise TLSConfigError("$SMTPS is set but $TLS_CERTFILE is not")
        return None
    for path in filter(None, (settings.tls_certfile, settings.tls_keyfile)):
        try:
            posix.close(posix.open(path, posix.O_RDONLY))
        except OSError as e:
            if settings.smtps:
                raise TLSConfigError(f"SMTPS: cannot read {path}: {e.strerror}") from None
            log.note(f"STARTTLS not offered: cannot read {path}: {e.strerror}")
            return None

    def context():
        from ..tls import server_context

        return server_context(
            settings.tls_certfile, settings.tls_keyfile, settings.tls_ciphers, settings.tls_min_version
        )

    return context


class SMTP:
    """The answers to one session's engine events."""

    def __init__(self, pipeline, engine, log, tls=None) -> None:
        self.pipeline = pipeline
        self.session = pipeline.session
        self.settings = pipeline.session.settings
        self.engine = engine
        self.log = log
        self.auth = next((p for p in pipeline.plugins if "AUTH" in p.commands and p.exists()), None)
        self.transport = None  # the client's bytes: plain, or TLS once STARTTLS succeeded
        self.tls = tls  # a callable giving an ssl context when STARTTLS may be offered
        self.chunking = False  # a BDAT message has started
        self.chunk_failure: Reply | None = None  # why this BDAT message is refused
        self.tls_context = None  # built on first use, so `ssl` is imported only then
        self._dispatch = {
            smtp.Hello: self.hello,
            smtp.Mail: self.mail,
            smtp.Rcpt: self.rcpt,
            smtp.Data: self.data,
            smtp.Body: self.body,
            smtp.BodyEnd: self.body_end,
            smtp.Bdat: self.bdat,
            smtp.ChunkEnd: self.chunk_end,
            smtp.Auth: self.auth_start,
            smtp.AuthResponse: self.auth_response,
            smtp.StartTLS: self.starttls,
            smtp.Reset: self.reset,
            smtp.Quit: self.closed,
            smtp.Closed: self.closed,
        }

    def greeting(self) -> Reply:
        return Reply(220, f"{self.settings.greeting} ESMTP")

    def handle(self, event: smtp.Event) -> Reply | None:
        """The reply to an event (None for events that take none); never raises."""
        try:
            return self._dispatch[type(event)](event)
        except Exception as e:  # noqa: BLE001 - no traceback may reach the client
            internal_error(self.log, e)
            self._reset_quietly()
            if isinstance(event, smtp.Body):
                self.pipeline.fail_message(INTERNAL_ERROR)
                return None
            return INTERNAL_ERROR if event.needs_reply else None

    def _reset_quietly(self) -> None:
        """Reset, logging rather than raising: what was answered stays answered."""
        try:
            self.pipeline.reset()
        except Exception as e:  # noqa: BLE001
            self.log.note(f"internal error while resetting: {type(e).__name__}: {e}")

    # -- the message -------------------------------------------------------

    def reset(self, event: smtp.Event | None = None) -> None:
        self.pipeline.reset()
        self.chunking, self.chunk_failure = False, None

    def hello(self, event: smtp.Hello) -> Reply:
        s = self.session
        self.reset()
        keywords: list[str] = []
        reply = self.pipeline.helo(event.domain, keywords)
        if failed(reply):
            return reply
        s.helo = event.domain
        host = self.settings.local_host or "unknown"
        if not event.esmtp:
            return reply if reply is not None and reply.text is not None else Reply(250, host)
        s.protocol = "ESMTP"
        keywords += EHLO_KEYWORDS
        if self.tls is not None and s.tls is None:
            keywords.append("STARTTLS")
        return Reply(250, "\n".join([host, *keywords]))

    def mail(self, event: smtp.Mail) -> Reply:
        self.reset()
        return self.pipeline.sender(Address(event.address), event.params) or SENDER_ACCEPTED

    def rcpt(self, event: smtp.Rcpt) -> Reply:
        return self.pipeline.recipient(Address(event.address), event.params) or RECIPIENT_ACCEPTED

    def data(self, event: smtp.Data) -> Reply:
        reply = self.pipeline.data_start()
        if failed(reply):
            return reply
        return START_DATA

    def body(self, event: smtp.Body) -> None:
        self.pipeline.data_block(event.block)

    def body_end(self, event: smtp.BodyEnd) -> Reply:
        if event.bare_eol and self.settings.bare_eol == "reject":
            self.pipeline.fail_message(BARE_EOL)
        reply = self.pipeline.message_end() or MESSAGE_ACCEPTED
        self._reset_quietly()  # the message is answered: nothing after it may change that answer
        return reply

    def bdat(self, event: smtp.Bdat) -> None:
        """A chunk is coming: the message starts with the first.  Its size is checked as DATA's is, in stored
        octets (LF line ends) as the blocks arrive, so that one message is refused by both or by neither."""
        if self.chunking:
            return
        self.chunking = True
        reply = self.pipeline.data_start()
        if failed(reply):
            self.chunk_failure = reply
            self.pipeline.fail_message(reply)  # its octets are still read, and dropped

    def chunk_end(self, event: smtp.ChunkEnd) -> Reply:
        if not event.last:
            return self.chunk_failure or Reply(250, f"2.0.0 {event.size} octets received.")
        reply = self.body_end(smtp.BodyEnd(event.bare_eol))
        self.chunking, self.chunk_failure = False, None
        return reply

    def closed(self, event: smtp.Event) -> None:
        if isinstance(event, smtp.Closed) and event.in_data:
            self.log("Connection dropped")
        if isinstance(event, smtp.Closed) and event.exit_code == 0 and self.auth is not None:
            reply = self.auth.abandon(self.session)  # the input ended inside an AUTH exchange
            if reply is not None:
                self.engine.send(reply)
        self.pipeline.reset()

    # -- AUTH and STARTTLS -------------------------------------------------

    def auth_start(self, event: smtp.Auth) -> Reply:
        if self.auth is None:
            return smtp.NOT_IMPLEMENTED
        return self.auth.start(self.session, event.mechanism, event.initial, self.engine.has_sender)

    def auth_response(self, event: smtp.AuthResponse) -> Reply:
        return self.auth.step(self.session, event.line)

    def starttls(self, event: smtp.StartTLS) -> Reply:
        if self.tls is None:
            return smtp.NOT_IMPLEMENTED
        return START_TLS if self.tls_ready() else TLS_UNAVAILABLE

    def tls_ready(self) -> bool:
        """Build the TLS context; False (and a log line) when the certificate can't be used."""
        if self.tls_context is None:
            try:
                self.tls_context = self.tls()
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                self.log.note(f"TLS not available: {e}")
                return False
        return True

    def tls_started(self, description: str) -> None:
        """The handshake succeeded: back to the just-connected state (RFC 3207 4.2)."""
        self.reset()
        s = self.session
        s.helo, s.protocol, s.user, s.tls = None, NAME, None, description
        self.log.note(f"TLS started: {description}")


def start_tls(handler: SMTP, log) -> bool:
    """The TLS handshake on the handler's transport; False when it failed (logged).

    On success the transport is the TLS one, and the engine and the handler
    start over, as on a new connection.
    """
    from ..tls import TLSError, TLSTransport

    tls = TLSTransport(handler.transport, handler.tls_context)
    try:
        tls.handshake(handler.settings.timeout)
    except TLSError as e:
        log.note(str(e))
        return False
    handler.transport = tls
    handler.engine.start_tls()
    handler.tls_started(tls.description())
    return True


def serve(pipeline, transport, log, clock) -> int:
    """Run one session to its end; returns the exit code."""
    settings = pipeline.session.settings
    try:
        tls = tls_offer(settings, log)
    except TLSConfigError as e:
        log.note(str(e))
        log(f"{CONFIG_ERROR.code} {CONFIG_ERROR.text}")
        refuse(transport, CONFIG_ERROR)
        return 1
    engine = smtp.Engine(max_notimpl=settings.max_notimpl, normalize_bare_eol=settings.bare_eol == "normalize")
    handler = SMTP(pipeline, engine, log, tls)
    handler.transport = transport
    if settings.smtps:  # implicit TLS (RFC 8314): the handshake comes before the greeting
        if not (handler.tls_ready() and start_tls(handler, log)):
            return 1
    engine.send(handler.greeting())
    try:
        code = _events(handler, log, clock)
    except BaseException:
        handler.transport.write(engine.data_to_send())  # replies already decided go out before anything else
        raise
    if handler.transport is not transport:  # after the last reply (221, 421...), TLS ends with close_notify
        handler.transport.close(CLOSE_NOTIFY_WAIT)
    return code


def _events(handler: SMTP, log, clock) -> int:
    engine, settings = handler.engine, handler.settings
    started = clock()
    exit_code = 0
    while True:
        event = engine.next_event()
        if engine.log or engine.notes:
            for line in engine.notes:
                log.note(line)
            for line in engine.log:
                log(line)
            engine.log.clear()
            engine.notes.clear()
        if event is None:
            if not handler.transport.write(engine.data_to_send()):
                handler.closed(smtp.Closed(in_data=engine.mode == smtp.DATA, exit_code=1))
                return 1
            if engine.mode == smtp.CLOSED:
                return exit_code
            if handler.session.user is None:
                idle, session_end = settings.timeout, started + settings.session_timeout
            else:  # mailfront 2.13's AUTH_TIMEOUT and AUTH_SESSION_TIMEOUT (the usual ones when unset)
                idle, session_end = settings.auth_timeout, started + settings.auth_session_timeout
            wait = min(idle, session_end - clock())
            try:
                data = handler.transport.read(wait) if wait > 0 else None
            except ConnectionError as e:  # a broken TLS record: the client is gone for us
                log.note(str(e))
                data = b""
            if data is None:
                log("Timed out")
                engine.send(SESSION_TIMED_OUT if clock() >= session_end else TIMED_OUT)
                handler.closed(smtp.Closed(in_data=False, exit_code=1))
                engine.close(1)
                exit_code = 1
                continue
            engine.receive_data(data)
            continue
        reply = handler.handle(event)
        if event.needs_reply:
            engine.respond(reply)
        if isinstance(event, smtp.Closed):
            exit_code = event.exit_code
        elif isinstance(event, smtp.StartTLS) and reply.code == 220:
            if not handler.transport.write(engine.data_to_send()) or not start_tls(handler, log):
                return 1
