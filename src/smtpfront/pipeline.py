"""One session's plugins and back end, called as mailfront 2.x calls them (mailfront.c's handle_*).

For each event the plugins are asked in order.  An error (400 or more) stops
the chain and is the answer; the first acceptance is remembered and the
chain goes on (a `FinalReply` ends it); the back end is asked last.  A sender
or recipient that no plugin accepted is refused.  The back end is the last
to see an address (and sees it as the plugins left it), but the first to
hear of a message's start, so that plugins can write headers into it.

A plugin that reads the whole message (clamav, spamassassin) has it kept in
`session.message`, a temporary file under $TMPDIR holding what the back end
gets; one that rewrites it (spamassassin) has the back end get it only after
every message_end hook, from that file.  Without such a plugin the back end
gets each block as it comes, as before.

Protocols call these methods and turn the answers into their own replies:
None means "use the protocol's usual words".  No I/O here beyond what the
plugins and the back end do.
"""

from __future__ import annotations

from .plugins import HOOKS, FinalReply, Plugin, hooks
from .smtp import Reply, failed

NO_SENDER = Reply(550, "5.1.0 Mail system is not configured to accept that sender")
NO_RECIPIENT = Reply(550, "5.1.0 Mail system is not configured to accept that recipient")
MESSAGE_FILE_FAILED = Reply(451, "4.3.0 Could not keep the message in a temporary file")


class Pipeline:
    def __init__(self, session, plugins: list[Plugin], backend: Plugin) -> None:
        self.session = session
        self.plugins = plugins
        self.backend = backend
        self._hooks = {name: hooks(plugins, name) for name in HOOKS}
        self.data_failure: Reply | None = None  # why the message being received will be refused
        self.hold = any(p.rewrites_message for p in plugins)
        # where the message's blocks go: the back end, or through the kept file
        self._sink = _Kept(self) if self.hold or any(p.reads_message for p in plugins) else backend
        session.backend = self._sink

    def _call(self, name: str, *args, reset: bool = False) -> Reply | None:
        first = None
        for hook in self._hooks[name]:
            reply = hook(self.session, *args)
            if reply is not None:
                if reply.code >= 400:
                    if reset:
                        self.reset()
                    return reply
                if first is None:
                    first = reply
                if type(reply) is FinalReply:
                    break
        return first

    def init(self) -> Reply | None:
        """An error here refuses the session before it starts."""
        reply = self._call("init")
        if failed(reply):
            return reply
        return self.backend.init(self.session)

    def helo(self, domain: str, capabilities: list[str]) -> Reply | None:
        reply = self._call("helo", domain, capabilities)
        if failed(reply):
            return reply
        return self.backend.helo(self.session, domain, capabilities)

    def reset(self) -> None:
        self.backend.reset(self.session)
        for hook in self._hooks["reset"]:
            hook(self.session)
        if self.session.message is not None:
            self.session.message.close()
            self.session.message = None

    def sender(self, address, params: tuple[str, ...]) -> Reply | None:
        reply = self._call("sender", address, params)
        if reply is None:
            return NO_SENDER
        return self._backend_address(self.backend.sender, reply, address, params)

    def recipient(self, address, params: tuple[str, ...]) -> Reply | None:
        reply = self._call("recipient", address, params)
        if reply is None:
            return NO_RECIPIENT
        return self._backend_address(self.backend.recipient, reply, address, params)

    def _backend_address(self, hook, reply: Reply, address, params) -> Reply | None:
        if reply.code >= 400:
            return reply
        answer = hook(self.session, address, params)
        if failed(answer) or reply.text is None:
            return answer  # an acceptance without words takes the back end's (or the protocol's)
        return reply

    def data_start(self) -> Reply | None:
        self.data_failure = None
        reply = self.backend.data_start(self.session)
        if not failed(reply):
            if self._sink is not self.backend and not self._open_message():
                return MESSAGE_FILE_FAILED
            answer = self._call("data_start", reset=True)
            if failed(answer):
                return answer
        else:
            self.reset()
            self.data_failure = reply
        return reply

    def data_block(self, block: bytes) -> None:
        if self.data_failure is not None:
            return
        for hook in self._hooks["data_block"]:
            reply = hook(self.session, block)
            if failed(reply):
                self.reset()
                self.data_failure = reply
                return
        self._sink.data_block(self.session, block)

    def _open_message(self) -> bool:
        try:
            self.session.message = self.session.temporary_file()
        except OSError as e:
            self.session.log.note(f"cannot create a temporary file for the message: {e.strerror}")
            self.reset()
            return False
        return True

    def _message_file_failed(self, e: OSError) -> None:
        self.session.log.note(f"cannot keep the message in its temporary file: {e.strerror}")
        self.fail_message(MESSAGE_FILE_FAILED)

    def fail_message(self, reply: Reply) -> None:
        """Refuse the message being received (an error outside the plugins): nothing reaches the back end."""
        if self.data_failure is None:
            self.reset()
            self.data_failure = reply

    def message_end(self) -> Reply | None:
        """The answer to a whole message; the back end commits it only when every check passed."""
        if self.data_failure is None and self.session.message is not None:
            try:
                self.session.message.flush()
            except OSError as e:
                self._message_file_failed(e)
        if self.data_failure is not None:
            return self.data_failure
        answer = self._call("message_end", reset=True)
        if failed(answer):
            return answer
        if self.hold and not self._feed_backend():
            return self.data_failure
        reply = self.backend.message_end(self.session)
        if failed(reply):
            self.reset()
        return reply

    def end(self) -> None:
        """The session is over: the plugins let go of what they hold outside the process."""
        for hook in self._hooks["end"]:
            hook(self.session)

    def _feed_backend(self) -> bool:
        """The held message, as the plugins left it, to the back end (in pieces of 64 KiB, not whole lines)."""
        message = self.session.message
        try:
            message.seek(0)
            while block := message.read(1 << 16):
                self.backend.data_block(self.session, block)
        except OSError as e:
            self._message_file_failed(e)
            return False
        return True


class _Kept:
    """The back end's side of a message the pipeline keeps: each block is written to the file, and passed on
    to the back end too unless the message is held until the plugins are done with it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.backend = None if pipeline.hold else pipeline.backend

    def data_block(self, session, block: bytes) -> None:
        if session.message is None:  # the message is already refused
            return
        try:
            session.message.write(block)
        except OSError as e:
            self.pipeline._message_file_failed(e)
            return
        if self.backend is not None:
            self.backend.data_block(session, block)
