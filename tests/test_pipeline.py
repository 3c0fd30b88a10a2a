"""The hook semantics of mailfront.c's handle_*, with small plugins of the real plugin API."""

from __future__ import annotations

from smtpfront.config import Settings
from smtpfront.pipeline import NO_RECIPIENT, NO_SENDER, Pipeline
from smtpfront.plugins import ACCEPTED, FinalReply, Plugin
from smtpfront.session import Address, Session
from smtpfront.smtp import Reply


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def note(self, line: str) -> None:
        self.lines.append("smtpfront: " + line)


class Recorder(Plugin):
    """Answers each hook from `answers` (default: no opinion) and records the calls in `calls`."""

    def __init__(self, name: str, calls: list, **answers) -> None:
        self.name = name
        self.calls = calls
        self.answers = answers

    def _answer(self, hook: str, *args):
        self.calls.append((self.name, hook, *args))
        return self.answers.get(hook)

    def init(self, session):
        return self._answer("init")

    def helo(self, session, domain, capabilities):
        capabilities.append(self.name.upper())
        return self._answer("helo", domain)

    def reset(self, session):
        self._answer("reset")

    def sender(self, session, address, params):
        if "rewrite" in self.answers:
            address.text += self.answers["rewrite"]
        return self._answer("sender", address.text)

    def recipient(self, session, address, params):
        if "rewrite" in self.answers:
            address.text += self.answers["rewrite"]
        return self._answer("recipient", address.text)

    def data_start(self, session):
        return self._answer("data_start")

    def data_block(self, session, block):
        return self._answer("data_block", block)

    def message_end(self, session):
        return self._answer("message_end")


def pipeline(*plugins: Recorder, backend: Recorder | None = None, calls: list | None = None) -> Pipeline:
    calls = calls if calls is not None else []
    backend = backend or Recorder("backend", calls)
    return Pipeline(Session(Settings.from_environ({}), Log()), list(plugins), backend)


def hooks(calls: list, hook: str) -> list[str]:
    return [name for name, h, *_ in calls if h == hook]


def test_an_error_stops_the_chain():
    calls: list = []
    p = pipeline(Recorder("a", calls), Recorder("b", calls, sender=Reply(553, "no")), Recorder("c", calls),
                 calls=calls)
    assert p.sender(Address("x@y"), ()) == Reply(553, "no")
    assert hooks(calls, "sender") == ["a", "b"]  # neither c nor the back end is asked


def test_an_error_after_an_acceptance_still_refuses():
    calls: list = []
    p = pipeline(Recorder("a", calls, sender=ACCEPTED), Recorder("b", calls, sender=Reply(451, "later")),
                 calls=calls)
    assert p.sender(Address("x@y"), ()) == Reply(451, "later")


def test_the_first_acceptance_is_remembered_and_the_chain_goes_on():
    calls: list = []
    p = pipeline(Recorder("a", calls, recipient=Reply(250, "first")), Recorder("b", calls, recipient=Reply(250, "2")),
                 Recorder("c", calls), calls=calls)
    assert p.recipient(Address("x@y"), ()) == Reply(250, "first")
    assert hooks(calls, "recipient") == ["a", "b", "c", "backend"]


def test_a_final_reply_ends_the_chain():
    calls: list = []
    final = FinalReply(250, "K")
    p = pipeline(Recorder("a", calls, recipient=final), Recorder("b", calls, recipient=Reply(553, "no")),
                 calls=calls)
    assert p.recipient(Address("x@y"), ()) == final
    assert hooks(calls, "recipient") == ["a", "backend"]  # the back end still takes the address


def test_no_acceptance_refuses():
    calls: list = []
    p = pipeline(Recorder("a", calls), calls=calls)
    assert p.sender(Address("x@y"), ()) is NO_SENDER
    assert p.recipient(Address("x@y"), ()) is NO_RECIPIENT
    assert hooks(calls, "sender") == hooks(calls, "recipient") == ["a"]  # the back end never hears of them
    assert pipeline().sender(Address("x@y"), ()) is NO_SENDER  # no plugins relays for no one


def test_an_acceptance_without_words_takes_the_back_ends():
    calls: list = []
    backend = Recorder("backend", calls, sender=Reply(250, "Sender='x@y'."))
    assert pipeline(Recorder("a", calls, sender=ACCEPTED), backend=backend).sender(Address("x@y"), ()) == Reply(
        250, "Sender='x@y'.")
    # with words of its own, the plugin's answer stands
    p = pipeline(Recorder("a", calls, sender=Reply(250, "OK")), backend=backend)
    assert p.sender(Address("x@y"), ()) == Reply(250, "OK")
    # a back end without words: None, the protocol's usual words
    assert pipeline(Recorder("a", calls, sender=ACCEPTED)).sender(Address("x@y"), ()) is None


def test_the_back_end_refuses_even_an_accepted_address():
    calls: list = []
    backend = Recorder("backend", calls, recipient=Reply(451, "4.3.0 Error writing queue file"))
    p = pipeline(Recorder("a", calls, recipient=Reply(250, "OK")), backend=backend)
    assert p.recipient(Address("x@y"), ()) == Reply(451, "4.3.0 Error writing queue file")


def test_the_back_end_sees_the_address_as_the_plugins_left_it():
    calls: list = []
    p = pipeline(Recorder("a", calls, recipient=ACCEPTED, rewrite="+x"), Recorder("b", calls, rewrite="-y"),
                 calls=calls)
    p.recipient(Address("r@d"), ())
    assert [c for c in calls if c[1] == "recipient"] == [
        ("a", "recipient", "r@d+x"), ("b", "recipient", "r@d+x-y"), ("backend", "recipient", "r@d+x-y")]


def test_init_and_helo():
    calls: list = []
    p = pipeline(Recorder("a", calls), Recorder("b", calls, init=Reply(421, "no")), Recorder("c", calls),
                 calls=calls)
    assert p.init() == Reply(421, "no")
    assert hooks(calls, "init") == ["a", "b"]
    calls.clear()
    p = pipeline(Recorder("a", calls), Recorder("b", calls), calls=calls)
    assert p.init() is None and hooks(calls, "init") == ["a", "b", "backend"]
    capabilities: list[str] = []
    assert p.helo("client", capabilities) is None
    assert capabilities == ["A", "B", "BACKEND"]  # EHLO keywords in list order


def test_reset_asks_the_back_end_first():
    calls: list = []
    pipeline(Recorder("a", calls), Recorder("b", calls), calls=calls).reset()
    assert hooks(calls, "reset") == ["backend", "a", "b"]


def test_data_start_asks_the_back_end_first():
    calls: list = []
    p = pipeline(Recorder("a", calls), calls=calls)
    assert p.data_start() is None
    assert hooks(calls, "data_start") == ["backend", "a"]


def test_data_start_failure_of_a_plugin_resets():
    calls: list = []
    p = pipeline(Recorder("a", calls, data_start=Reply(550, "5.5.0 Too many messages")), Recorder("b", calls),
                 calls=calls)
    assert p.data_start() == Reply(550, "5.5.0 Too many messages")
    assert hooks(calls, "data_start") == ["backend", "a"] and hooks(calls, "reset") == ["backend", "a", "b"]


def test_data_start_failure_of_the_back_end_refuses_the_message():
    calls: list = []
    backend = Recorder("backend", calls, data_start=Reply(451, "4.3.0 Could not start qmail-queue."))
    p = pipeline(Recorder("a", calls), backend=backend)
    assert p.data_start() == Reply(451, "4.3.0 Could not start qmail-queue.")
    assert hooks(calls, "data_start") == ["backend"]  # the plugins are not asked
    p.data_block(b"x\n")
    assert hooks(calls, "data_block") == []
    assert p.message_end() == Reply(451, "4.3.0 Could not start qmail-queue.")
    assert hooks(calls, "message_end") == []


def test_a_data_failure_stops_the_blocks_and_answers_the_message():
    calls: list = []
    too_long = Reply(552, "5.2.3 Sorry, that message exceeds the maximum message length.")

    class Limit(Recorder):
        def data_block(self, session, block):
            self.calls.append((self.name, "data_block", block))
            return too_long if block == b"big\n" else None

    p = pipeline(Limit("a", calls), Recorder("b", calls), calls=calls)
    p.data_start()
    for block in (b"one\n", b"big\n", b"three\n"):
        p.data_block(block)
    assert [c for c in calls if c[1] == "data_block"] == [
        ("a", "data_block", b"one\n"), ("b", "data_block", b"one\n"), ("backend", "data_block", b"one\n"),
        ("a", "data_block", b"big\n")]  # nothing after the failure reaches anyone
    assert "backend" in hooks(calls, "reset")  # the back end dropped what it had
    assert p.message_end() == too_long
    assert hooks(calls, "message_end") == []  # never committed


def test_message_end_plugin_error_resets_before_the_back_end_commits():
    calls: list = []
    p = pipeline(Recorder("a", calls, message_end=Reply(554, "5.6.0 looping")), calls=calls)
    p.data_start()
    assert p.message_end() == Reply(554, "5.6.0 looping")
    assert hooks(calls, "message_end") == ["a"] and hooks(calls, "reset") == ["backend", "a"]


def test_message_end_the_back_end_answers_last():
    calls: list = []
    backend = Recorder("backend", calls, message_end=Reply(250, "2.6.0 Accepted message qp 1 bytes 2"))
    p = pipeline(Recorder("a", calls, message_end=Reply(250, "ignored")), backend=backend)
    p.data_start()
    assert p.message_end() == Reply(250, "2.6.0 Accepted message qp 1 bytes 2")
    assert hooks(calls, "message_end") == ["a", "backend"] and hooks(calls, "reset") == []
    # a back end that fails to commit is reset
    backend.answers["message_end"] = Reply(451, "4.3.0 qmail-queue crashed.")
    p.data_start()
    assert p.message_end() == Reply(451, "4.3.0 qmail-queue crashed.")
    assert hooks(calls, "reset") == ["backend", "a"]


def test_fail_message_keeps_the_first_failure():
    calls: list = []
    p = pipeline(Recorder("a", calls), calls=calls)
    p.data_start()
    p.fail_message(Reply(554, "5.6.0 bare LF"))
    p.fail_message(Reply(451, "4.3.0 Internal error."))
    p.data_block(b"x\n")
    assert hooks(calls, "data_block") == []
    assert p.message_end() == Reply(554, "5.6.0 bare LF")
    p.data_start()  # a new message starts clean
    assert p.message_end() is None


def test_only_the_hooks_a_plugin_defines_are_called():
    class SenderOnly(Plugin):
        def sender(self, session, address, params):
            return ACCEPTED

    p = pipeline(SenderOnly())
    assert p._hooks["recipient"] == [] and len(p._hooks["sender"]) == 1


class Reader(Recorder):
    """Reads the kept message at message_end (as clamav does); with `rewrite`, replaces it (as spamassassin)."""

    reads_message = True

    def __init__(self, name: str, calls: list, rewrite: bytes | None = None, **answers) -> None:
        super().__init__(name, calls, **answers)
        self.rewrite = rewrite
        self.rewrites_message = rewrite is not None

    def data_start(self, session):
        session.backend_data_block(b"Received: here\n")  # as add-received writes past the plugins
        return self._answer("data_start")

    def message_end(self, session):
        session.message.seek(0)
        self.calls.append((self.name, "read", session.message.read()))
        if self.rewrite is not None:
            import tempfile

            session.message = tempfile.TemporaryFile()
            session.message.write(self.rewrite)
        return self._answer("message_end")


def test_a_plugin_that_reads_the_message_leaves_the_back_end_one_pass():
    calls: list = []
    p = pipeline(Reader("clamav", calls), calls=calls)
    p.data_start()
    p.data_block(b"one\n")
    # the back end got each block as it came, before the message ended
    assert [c[2] for c in calls if c[:2] == ("backend", "data_block")] == [b"Received: here\n", b"one\n"]
    assert p.message_end() is None
    assert ("clamav", "read", b"Received: here\none\n") in calls
    assert hooks(calls, "message_end") == ["clamav", "backend"]


def test_a_plugin_that_rewrites_the_message_hands_the_back_end_its_version():
    calls: list = []
    p = pipeline(Reader("spamassassin", calls, rewrite=b"X-Spam-Status: No\none\n"), calls=calls)
    p.data_start()
    p.data_block(b"one\n")
    assert hooks(calls, "data_block") == ["spamassassin"]  # the back end got nothing yet
    assert p.message_end() is None
    assert ("spamassassin", "read", b"Received: here\none\n") in calls
    assert [c[2] for c in calls if c[:2] == ("backend", "data_block")] == [b"X-Spam-Status: No\none\n"]
    assert p.session.message is not None
    p.reset()
    assert p.session.message is None  # the temporary file is closed (and gone: it never had a name)


def test_a_refused_rewritten_message_never_reaches_the_back_end():
    calls: list = []
    p = pipeline(Reader("spamassassin", calls, rewrite=b"spam\n", message_end=Reply(554, "spam")), calls=calls)
    p.data_start()
    p.data_block(b"one\n")
    assert p.message_end() == Reply(554, "spam")
    assert hooks(calls, "data_block") == ["spamassassin"] and "backend" in hooks(calls, "reset")


def test_no_temporary_file_for_the_message_refuses_it(tmp_path):
    calls: list = []
    session = Session(Settings.from_environ({"TMPDIR": str(tmp_path / "missing")}), Log())
    p = Pipeline(session, [Reader("clamav", calls)], Recorder("backend", calls))
    assert p.data_start() == Reply(451, "4.3.0 Could not keep the message in a temporary file")
    assert "backend" in hooks(calls, "reset")
    assert any("cannot create a temporary file" in line for line in p.session.log.lines)
