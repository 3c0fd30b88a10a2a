"""The qmqp protocol: one package a connection, answered with one netstring (see smtpfront.qmqp).

The answer is `K` (accepted), `Z` (try again) or `D` (refused) and the text,
as mailfront's qmtp-respond.c writes it.  The message is taken as it comes
(LF line ends), before the sender and recipients, which are logged as
`sender <...>` and `recipient <...>`.
"""

from __future__ import annotations

from .. import qmqp
from ..session import Address
from ..smtp import Reply, failed

NAME = "QMQP"
CONFIG_ERROR = Reply(451, "4.3.0 Configuration error; try again later.")
INTERNAL_ERROR = Reply(451, "4.3.0 Internal error.")
MESSAGE_ACCEPTED = Reply(250, "2.6.0 Message accepted.")


def encode(reply: Reply) -> bytes:
    """A reply as one netstring: K, Z or D, then the text (a multi-line text joined with LF)."""
    kind = b"D" if reply.code >= 500 else b"Z" if reply.code >= 400 or reply.code < 200 else b"K"
    text = (reply.text or "").replace("\r\n", "\n").encode("utf-8", "surrogateescape")
    return b"%d:%s%s," % (len(text) + 1, kind, text)


def refuse(transport, reply: Reply) -> None:
    transport.write(encode(reply))


def serve(pipeline, transport, log, clock, qmtp: bool = False) -> int:
    """Answer packages until the client is done (QMQP: after one); returns the exit code."""
    settings = pipeline.session.settings
    engine = qmqp.Packages(qmtp)
    session_end = clock() + settings.session_timeout
    reply: Reply | None = None  # the answer so far to the package being read
    while True:
        event = engine.next_event()
        if event is None:
            if engine.done:
                return 0
            wait = min(settings.timeout, session_end - clock())
            data = transport.read(wait) if wait > 0 else None
            if data is None:
                log.note("timed out")
                pipeline.reset()
                return 1
            engine.receive_data(data)
        elif isinstance(event, qmqp.Start):
            pipeline.reset()
            reply = pipeline.data_start()
        elif isinstance(event, qmqp.Body):
            if not failed(reply):
                pipeline.data_block(event.block)
        elif isinstance(event, qmqp.Sender):
            log(f"{'recipient' if isinstance(event, qmqp.Recipient) else 'sender'} <{event.address}>")
            if not failed(reply):
                hook = pipeline.recipient if isinstance(event, qmqp.Recipient) else pipeline.sender
                reply = hook(Address(event.address), ())
            if qmtp and failed(reply):
                engine.skip_recipients()  # as mailfront: a refused QMTP package's recipients are not read
        elif isinstance(event, qmqp.End):
            if not failed(reply):
                reply = pipeline.message_end()
            answer(transport, reply or MESSAGE_ACCEPTED, log)
            pipeline.reset()
            reply = None
        elif isinstance(event, qmqp.Failed):
            pipeline.reset()
            answer(transport, Reply(451, event.why), log)
            return 111
        else:  # Finished
            pipeline.reset()
            return 0


def answer(transport, reply: Reply, log) -> None:
    if reply.code >= 400:
        for line in reply.log_lines():
            log(line)
    transport.write(encode(reply))
