"""Protocols: how the client talks (mailfront's protocol modules: smtp, qmqp, qmtp).

Each module has:

    NAME                    what the Received: header's "with" says (SMTP, QMQP, QMTP)
    CONFIG_ERROR, INTERNAL_ERROR
                            the replies to a bad setting and to a bug (programs.run)
    refuse(transport, reply)
                            answer a session that can't start (a configuration or
                            loading error) in the protocol's own form
    serve(pipeline, transport, log, clock) -> exit code
                            run the session over the transport, asking the
                            pipeline (plugins and back end) for every decision

A protocol does its own framing and its own fixed replies; everything about
policy is the pipeline's.
"""
