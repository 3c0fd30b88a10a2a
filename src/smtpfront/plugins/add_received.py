"""add-received: the Received: trace header, after $HEADER_ADD, written first into the message.

    Received: from <helo> (<remotehost> [<remoteip>])
      by <localhost> ([<localip>])
      with <protocol> via <PROTO>; <date>

As mailfront writes it: a missing HELO name (none given, or forgotten when
the client authenticated) becomes the remote host, else the remote IP, else
`unknown`; a missing local host becomes the local IP; addresses of $PROTO
TCP6 get the `IPv6:` prefix.  The protocol names follow RFC 3848: ESMTPA when
the client authenticated, ESMTPS / ESMTPSA when the session is encrypted (the
TLS version and cipher follow in a comment), and RFC 6531's UTF8SMTP, UTF8SMTPA,
UTF8SMTPS and UTF8SMTPSA for a message sent with SMTPUTF8.  With $FIXUP_RECEIVED_HOST and
$FIXUP_RECEIVED_IP set and different from the local ones, a first header
records the hop from this host to that name.  $AUTH_ADD_RECEIVED=0 leaves the
Received: headers out of messages from clients that authenticated or have
$RELAYCLIENT (mailfront 2.13).  The headers do not count towards DATABYTES.
"""

from __future__ import annotations

import time

from . import Plugin

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc2822_date(now: float) -> str:
    t = time.gmtime(now)
    return f"{t.tm_mday:02} {_MONTHS[t.tm_mon - 1]} {t.tm_year} {t.tm_hour:02}:{t.tm_min:02}:{t.tm_sec:02} -0000"


def protocol_name(protocol: str, authenticated: bool, tls: bool, utf8: bool = False) -> str:
    """RFC 3848's names (and RFC 6531's UTF8SMTP... for a message sent with SMTPUTF8)."""
    if protocol != "ESMTP" and not (authenticated or tls or utf8):
        return protocol
    return ("UTF8SMTP" if utf8 else "ESMTP") + ("S" if tls else "") + ("A" if authenticated else "")


def header_safe(value: str) -> str:
    """`value` with each character that is not printable (CR, LF, NUL, any control, a byte that is not UTF-8)
    replaced by `?`: the client (HELO) and the environment (a PTR name, an ident answer) can't add header lines."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else "?" for c in value)


def from_by(name: str | None, host: str | None, ip: str | None) -> str:
    """`name (host [ip])`, as mailfront's str_catfromby writes it."""
    text = name or host or ip or "unknown"
    inside = " ".join(filter(None, (host, f"[{ip}]" if ip else None)))
    return f"{text} ({inside})" if inside else text


class AddReceived(Plugin):
    utf8 = False  # the message's MAIL FROM had SMTPUTF8

    def __init__(self, clock=time.time) -> None:
        self.clock = clock

    def reset(self, session) -> None:
        self.utf8 = False

    def sender(self, session, address, params) -> None:
        self.utf8 = any(p.upper() == "SMTPUTF8" for p in params)

    def init(self, session) -> None:
        s = session.settings
        prefix = "IPv6:" if s.proto.upper() == "TCP6" else ""
        self.local_host = header_safe(s.local_host) or None
        self.local_ip = header_safe(prefix + s.local_ip) if s.local_ip else None
        self.remote_host = header_safe(s.remote_host) or None
        self.remote_ip = header_safe(prefix + s.remote_ip) if s.remote_ip else None
        self.fixup = (header_safe(s.fixup_received_host), header_safe(s.fixup_received_ip))
        self.via = header_safe(s.proto)
        return None

    def data_start(self, session) -> None:
        date = rfc2822_date(self.clock())
        skip = session.getenv("AUTH_ADD_RECEIVED") == "0" and (session.user is not None
                                                               or session.relayclient is not None)
        header = []
        fixup_host, fixup_ip = self.fixup
        if (not skip and self.local_host and self.local_ip and fixup_host and fixup_ip
                and (fixup_host.lower(), fixup_ip.lower()) != (self.local_host.lower(), self.local_ip.lower())):
            header.append(f"Received: from {from_by(self.local_host, self.local_host, self.local_ip)}\n"
                          f"  by {from_by(fixup_host, None, fixup_ip)}; {date}\n")
        add = session.getenv("HEADER_ADD")
        if add is not None:
            header.append(add + "\n")
        if not skip:
            protocol = protocol_name(session.protocol, session.user is not None, session.tls is not None, self.utf8)
            with_ = f"{protocol} via {self.via}" + (f" ({header_safe(session.tls)})" if session.tls else "")
            helo = header_safe(session.helo) if session.helo else None
            header.append(f"Received: from {from_by(helo, self.remote_host, self.remote_ip)}\n"
                          f"  by {from_by(self.local_host, None, self.local_ip)}\n"
                          f"  with {with_}; {date}\n")
        if header:
            session.backend_data_block("".join(header).encode("utf-8", "surrogateescape"))
        return None
