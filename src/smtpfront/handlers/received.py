"""add-received: the Received: trace header, then $HEADER_ADD.

    Received: from <helo> (<remotehost> [<remoteip>])
      by <localhost> ([<localip>])
      with <SMTP|ESMTP|ESMTPA|ESMTPS|ESMTPSA> via <PROTO>; <date>

The protocol names follow RFC 3848: A when the client authenticated, S when
the session is encrypted.  With FIXUP_RECEIVED_HOST/IP set and different from
the local ones, a first header records the hop from that name to this one.
"""

from __future__ import annotations

import time

from . import Handler

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc2822_date(now: float) -> str:
    t = time.gmtime(now)
    return f"{t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} {t.tm_hour:02}:{t.tm_min:02}:{t.tm_sec:02} -0000"


def protocol_name(esmtp: bool, authenticated: bool, tls: bool) -> str:
    if not (esmtp or authenticated or tls):
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def header_safe(value: str) -> str:
    """`value` with each character that is not printable (CR, LF, NUL, any control, a byte that is not UTF-8)
    replaced by `?`: the client (HELO) and the environment (a PTR name, an ident answer) can't add header lines."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else "?" for c in value)


def received_header(
    helo: str,
    remote_host: str,
    remote_ip: str,
    remote_info: str,
    local_host: str,
    local_ip: str,
    protocol: str,
    via: str,
    date: str,
    tls: str | None = None,
) -> str:
    helo, remote_host, remote_ip, remote_info, local_host, local_ip, via = map(
        header_safe, (helo, remote_host, remote_ip, remote_info, local_host, local_ip, via)
    )
    if tls:
        tls = header_safe(tls)
    client = f"{remote_info}@{remote_host}" if remote_info and remote_host else remote_host
    parts = [client] if client else []
    if remote_ip:
        parts.append(f"[{remote_ip}]")
    frm = helo or remote_host or "unknown"
    if parts:
        frm += " (" + " ".join(parts) + ")"
    by = local_host or "unknown"
    if local_ip:
        by += f" ([{local_ip}])"
    with_ = f"{protocol} via {via}"
    if tls:
        with_ += f" ({tls})"
    return f"Received: from {frm}\n  by {by}\n  with {with_}; {date}\n"


class AddReceived(Handler):
    def __init__(self, settings, clock=time.time) -> None:
        self.settings = settings
        self.clock = clock

    def data_start(self, session) -> None:
        s = self.settings
        date = rfc2822_date(self.clock())
        protocol = protocol_name(session.esmtp, session.user is not None, session.tls is not None)
        if s.header_add:
            session.header_lines.append(s.header_add.rstrip("\n") + "\n")
        session.header_lines.append(
            received_header(
                session.helo,
                s.remote_host,
                s.remote_ip,
                s.remote_info,
                s.local_host,
                s.local_ip,
                protocol,
                s.proto,
                date,
                session.tls,
            )
        )
        # like mailfront, the hop from the fixup name comes below our own header
        fixup_host, fixup_ip = s.fixup_received_host, s.fixup_received_ip
        if fixup_host and fixup_ip and (fixup_host, fixup_ip) != (s.local_host, s.local_ip):
            session.header_lines.append(
                received_header("", s.local_host, s.local_ip, "", fixup_host, fixup_ip, protocol, s.proto, date)
            )
        return None
