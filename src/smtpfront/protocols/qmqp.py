"""The qmqp protocol: one package a connection, answered with one netstring (see smtpfront.qmqp).

The answer is `K` (accepted), `Z` (try again) or `D` (refused) and the text,
as mailfront's qmtp-respond.c writes it.  The message is taken as it comes
(LF line ends), before the sender and recipients, which are logged as
`sender <...>` and `recipient <...>`.
"""

from __future__ import annotations

from .. import qmqp
from ..session import Address
from ..smtp import BAD_ADDRESS, MAX_RECIPIENTS, Reply, failed, has_control

NAME = "QMQP"
CONFIG_ERROR = Reply(451, "4.3.0 Configuration error; try again later.")
INTERNAL_ERROR = Reply(451, "4.3.0 Internal error.")
MESSAGE_ACCEPTED = Reply(250, "2.6.0 Message accepted.")
# permanent: a package can't be split, so the same one sent again would be refused again
TOO_MANY_RECIPIENTS = Reply(552, f"5.5.3 Too many recipients (at most {MAX_RECIPIENTS}).")


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
    recipients = 0  # in the package being read
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
            reply, recipients = pipeline.data_start(), 0
        elif isinstance(event, qmqp.Body):
            if not failed(reply):
                pipeline.data_block(event.block)
        elif isinstance(event, qmqp.Sender):
            is_recipient = isinstance(event, qmqp.Recipient)
            recipients += is_recipient
            if recipients > MAX_RECIPIENTS:  # the rest is read and dropped: memory and log stay flat
                if not failed(reply):
                    pipeline.reset()
                    reply = TOO_MANY_RECIPIENTS
            else:
                log(f"{'recipient' if is_recipient else 'sender'} <{event.address}>")
                reply = address(pipeline, log, reply, event.address, is_recipient)
            if qmtp and failed(reply):
                engine.skip_recipients()  # as mailfront: a refused QMTP package's recipients are not read
        elif isinstance(event, qmqp.End):
            if recipients > MAX_RECIPIENTS:
                log.note(f"{recipients} recipients in one package: the {recipients - MAX_RECIPIENTS} "
                         f"over {MAX_RECIPIENTS} not logged")
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


def address(pipeline, log, reply: Reply | None, text: str, is_recipient: bool) -> Reply | None:
    """The package's answer after one more address: the first refusal stands (mailfront asks no plugin after
    it); an address with a control character is refused here, as SMTP's parser refuses it (a NUL would add
    records to qmail-queue's envelope: a relay for anyone)."""
    if failed(reply):
        return reply
    if has_control(text):
        log.note(f"{'recipient' if is_recipient else 'sender'} with a control character refused")
        pipeline.reset()
        return BAD_ADDRESS
    hook = pipeline.recipient if is_recipient else pipeline.sender
    return hook(Address(text), ())


def answer(transport, reply: Reply, log) -> None:
    if reply.code >= 400:
        for line in reply.log_lines():
            log(line)
    transport.write(encode(reply))
