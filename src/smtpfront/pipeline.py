"""One session's plugins and back end, called as mailfront 2.x calls them (mailfront.c's handle_*).

For each event the plugins are asked in order.  An error (400 or more) stops
the chain and is the answer; the first acceptance is remembered and the
chain goes on (a `FinalReply` ends it); the back end is asked last.  A sender
or recipient that no plugin accepted is refused.  The back end is the last
to see an address (and sees it as the plugins left it), but the first to
hear of a message's start, so that plugins can write headers into it.

Protocols call these methods and turn the answers into their own replies:
None means "use the protocol's usual words".  No I/O here beyond what the
plugins and the back end do.
"""

from __future__ import annotations

from .plugins import HOOKS, FinalReply, Plugin, hooks
from .smtp import Reply, failed

NO_SENDER = Reply(550, "5.1.0 Mail system is not configured to accept that sender")
NO_RECIPIENT = Reply(550, "5.1.0 Mail system is not configured to accept that recipient")


class Pipeline:
    def __init__(self, session, plugins: list[Plugin], backend: Plugin) -> None:
        self.session = session
        self.plugins = plugins
        self.backend = backend
        session.backend = backend
        self._hooks = {name: hooks(plugins, name) for name in HOOKS}
        self.data_failure: Reply | None = None  # why the message being received will be refused

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
        self.backend.data_block(self.session, block)

    def size_limit(self) -> int:
        """The smallest message size limit any plugin has (0: none)."""
        return min((n for n in (p.size_limit(self.session) for p in self.plugins) if n), default=0)

    def fail_message(self, reply: Reply) -> None:
        """Refuse the message being received (an error outside the plugins): nothing reaches the back end."""
        if self.data_failure is None:
            self.reset()
            self.data_failure = reply

    def message_end(self) -> Reply | None:
        """The answer to a whole message; the back end commits it only when every check passed."""
        if self.data_failure is not None:
            return self.data_failure
        answer = self._call("message_end", reset=True)
        if failed(answer):
            return answer
        reply = self.backend.message_end(self.session)
        if failed(reply):
            self.reset()
        return reply

    def end(self) -> None:
        """The session is over: the plugins let go of what they hold outside the process."""
        for hook in self._hooks["end"]:
            hook(self.session)
