"""The policy side of a session: answers the engine's events.

`Server.handle(event)` runs the handlers' hooks in order, feeds the back end
and returns the reply for the engine.  It holds no I/O of its own beyond what
handlers and back ends do; the driver (`cli`) moves the bytes.
"""

from __future__ import annotations

from . import smtp
from .backends import BackendError
from .session import Address, Session
from .smtp import Reply

SENDER_ACCEPTED = Reply(250, "2.1.0 Sender accepted.")
RECIPIENT_REFUSED = Reply(550, "5.1.0 Mail system is not configured to accept that recipient")
START_DATA = Reply(354, "End your message with a period on a line by itself.")
SIZE_EXCEEDED = Reply(552, "5.2.3 The message would exceed the maximum message size.")
BARE_EOL = Reply(554, "5.6.0 Message contains a bare CR or LF; lines must end with CRLF.")
INTERNAL_ERROR = Reply(451, "4.3.0 Internal error.")
NO_TLS = smtp.NOT_IMPLEMENTED
TLS_UNAVAILABLE = Reply(454, "4.7.0 TLS not available due to temporary reason.")
START_TLS = Reply(220, "2.0.0 Ready to start TLS")
AUTH_NOT_OFFERED = smtp.NOT_IMPLEMENTED


class Server:
    def __init__(self, session: Session, handlers: list, backend, log, auth=None, tls=None) -> None:
        self.session = session
        self.handlers = handlers
        self.backend = backend
        self.log = log
        self.auth = auth  # a sasl.Authenticator, or None when no CVM is configured
        self.tls = tls  # a callable giving an ssl context when STARTTLS may be offered
        self.tls_context = None  # built on first use, so `ssl` is imported only then
        self.in_backend = False  # a message is open in the back end
        self.failure: Reply | None = None  # why the message being received will be refused
        self._dispatch = {
            smtp.Hello: self.hello,
            smtp.Mail: self.mail,
            smtp.Rcpt: self.rcpt,
            smtp.Data: self.data,
            smtp.Body: self.body,
            smtp.BodyEnd: self.body_end,
            smtp.Auth: self.auth_start,
            smtp.AuthResponse: self.auth_response,
            smtp.StartTLS: self.starttls,
            smtp.Reset: self.reset,
            smtp.Quit: self.closed,
            smtp.Closed: self.closed,
        }

    def greeting(self) -> Reply:
        return Reply(220, f"{self.session.settings.greeting} ESMTP")

    def handle(self, event: smtp.Event) -> Reply | None:
        """The reply to an event (None for events that take none); never raises."""
        try:
            return self._dispatch[type(event)](event)
        except Exception as e:  # noqa: BLE001 - no traceback may reach the client
            self._internal_error(e)
            if isinstance(event, smtp.Body):
                self.failure = INTERNAL_ERROR
                return None
            return INTERNAL_ERROR if event.needs_reply else None

    def _internal_error(self, e: Exception) -> None:
        import traceback

        where = traceback.extract_tb(e.__traceback__)[-1]
        self.log(f"internal error: {type(e).__name__}: {e} at {where.filename}:{where.lineno}")
        self.reset()

    # -- transaction -----------------------------------------------------

    def reset(self, event: smtp.Event | None = None) -> None:
        if self.in_backend:
            self.in_backend = False
            self.backend.abort()
        self.failure = None
        self.session.new_transaction()
        for h in self.handlers:
            h.reset(self.session)

    def hello(self, event: smtp.Hello) -> Reply:
        s = self.session
        self.reset()
        s.helo, s.esmtp = event.domain, event.esmtp
        host = s.settings.local_host
        if not event.esmtp:
            return Reply(250, host)
        lines = [host]
        if self.auth is not None and self.auth.offered(s):
            lines.append("AUTH " + " ".join(self.auth.mechanisms))
        lines += [f"SIZE {s.settings.databytes}", "8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING"]
        if self.tls is not None and s.tls is None:
            lines.append("STARTTLS")
        return Reply(250, "\n".join(lines))

    def mail(self, event: smtp.Mail) -> Reply:
        s = self.session
        self.reset()
        size = event.params.get("SIZE")
        if size and s.databytes and int(size) > s.databytes:
            return SIZE_EXCEEDED
        address = Address(event.address)
        for h in self.handlers:
            reply = h.sender(s, address)
            if reply is not None:
                if reply.ok:
                    break
                return reply
        else:
            reply = SENDER_ACCEPTED
        s.sender = address.text
        return reply

    def rcpt(self, event: smtp.Rcpt) -> Reply:
        s = self.session
        address = Address(event.address)
        for h in self.handlers:
            reply = h.recipient(s, address)
            if reply is not None:
                if reply.ok:
                    s.recipients.append(address.text)
                return reply
        return RECIPIENT_REFUSED

    def data(self, event: smtp.Data) -> Reply:
        s = self.session
        for h in self.handlers:
            reply = h.data_start(s)
            if reply is not None and not reply.ok:
                return reply
        try:
            self.backend.begin(s.sender, s.recipients, s.env)
        except BackendError as e:
            return e.reply
        self.in_backend = True
        self.backend.write("".join(s.header_lines).encode("utf-8", "surrogateescape"))
        return START_DATA

    def body(self, event: smtp.Body) -> None:
        if self.failure is not None:
            return None
        s = self.session
        block = event.block
        s.size += len(block)
        for h in self.handlers:
            reply = h.data_block(s, block)
            if reply is not None and not reply.ok:
                self.failure = reply
                self.in_backend = False
                self.backend.abort()
                return None
        self.backend.write(block)
        return None

    def body_end(self, event: smtp.BodyEnd) -> Reply:
        s = self.session
        reply = self.failure
        if reply is None and event.bare_eol and s.settings.bare_eol == "reject":
            reply = BARE_EOL
        if reply is None:
            for h in self.handlers:
                answer = h.message_end(s)
                if answer is not None and not answer.ok:
                    reply = answer
                    break
        if reply is None:
            self.in_backend = False
            reply = self.backend.finish()
            if reply.ok:
                s.messages += 1
                self.log(reply.text)
                # committed: a failure from here on would make the client send the message again
                try:
                    self.reset()
                except Exception as e:  # noqa: BLE001 - logged; the next command starts from a reset again
                    self.log(f"internal error after the message was queued (the reply stands): {type(e).__name__}: {e}")
                return reply
        self.reset()
        return reply

    def closed(self, event: smtp.Event) -> None:
        if isinstance(event, smtp.Closed) and event.in_data:
            self.log("Connection dropped")
        self.reset()
        return None

    # -- AUTH and STARTTLS -----------------------------------------------

    def auth_start(self, event: smtp.Auth) -> Reply:
        if self.auth is None or not self.auth.offered(self.session):
            return self.auth.refusal(self.session) if self.auth is not None else AUTH_NOT_OFFERED
        return self.auth.start(self.session, event.mechanism, event.initial)

    def auth_response(self, event: smtp.AuthResponse) -> Reply:
        return self.auth.step(self.session, event.line)

    def starttls(self, event: smtp.StartTLS) -> Reply:
        if self.tls is None:
            return NO_TLS
        return START_TLS if self.tls_ready() else TLS_UNAVAILABLE

    def tls_ready(self) -> bool:
        """Build the TLS context; False (and a log line) when the certificate can't be used."""
        if self.tls_context is None:
            try:
                self.tls_context = self.tls()
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                self.log(f"TLS not available: {e}")
                return False
        return True

    def tls_started(self, description: str) -> None:
        """The handshake succeeded: back to the just-connected state (RFC 3207 4.2)."""
        self.reset()
        s = self.session
        s.helo, s.esmtp, s.user, s.tls = "", False, None, description
        self.log(f"TLS started: {description}")

