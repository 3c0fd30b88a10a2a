"""The qmtp protocol: packages until the client closes, each answered with one netstring.

As mailfront's: the message must start with a LF (QMTP's line-end byte),
and one answer covers all the recipients of a package.
"""

from __future__ import annotations

from .qmqp import CONFIG_ERROR, INTERNAL_ERROR, refuse
from .qmqp import serve as serve_qmqp

NAME = "QMTP"
__all__ = ["NAME", "CONFIG_ERROR", "INTERNAL_ERROR", "refuse", "serve"]


def serve(pipeline, transport, log, clock) -> int:
    return serve_qmqp(pipeline, transport, log, clock, qmtp=True)
