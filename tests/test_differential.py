"""The same dialogues through the C mailfront (Debian's package) and through ours.

Each case runs one command line (a front end, or `mailfront PROTOCOL BACKEND PLUGIN...`) with
one dialogue and environment through both programs and compares, normalised for process ids,
dates and the scratch directory: the replies, the log lines (our own `smtpfront: ` lines left
out), what was queued (the stand-in qmail-queue's envelope and message, or the queuedir files)
and the exit code.  An intended difference (docs/differences.md) names the aspects it changes,
why, and the lines: `aspect=(why, {C's lines: our lines})`.  C must say the given lines, ours
must be C's with exactly those lines replaced, and every aspect not named must agree.
`test_agreement_figure` prints the overall agreement for the closing note.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, DEMO, LOGS, PASSWORD, need, wait_for_path
from scanner_daemons import GTUBE, VIRUS, clamd, spamd  # noqa: F401 - clamd, spamd: fixtures

W = base64.b64encode(b"\0demo\0wrong").decode()
ENV = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n"
MSG = ENV + b"DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\n"
C_SBIN = "/usr/sbin"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


GOOD_PLAIN = b64(f"\0{DEMO}\0{PASSWORD}")
GOOD_AUTH = b"AUTH PLAIN " + GOOD_PLAIN + b"\r\n"
BODY = b"DATA\r\nSubject: t\r\nX-Two: 2\r\n\r\nbody\r\n.\r\n"
ECHO_MSG = ENV + BODY
REFUSED = ENV + b"DATA\r\n"  # a transaction that will be refused: no message follows DATA

# smtpfront-qmail cases -- name: (dialogue, extra environment, intended difference or None)
QMAIL_CASES = {
    "basic": (b"EHLO x\r\n" + MSG + b"QUIT\r\n", {}, None),
    "helo": (b"HELO y\r\n" + MSG + b"QUIT\r\n", {}, None),
    "second greeting": (b"EHLO x\r\nHELO y\r\n" + MSG, {}, "the latest HELO/EHLO goes in Received"),
    "fixed replies": (b"NOOP\r\nRSET\r\nVRFY a\r\nHELP\r\nEXPN a\r\n\r\nFOO\r\nQUIT\r\n", {}, None),
    "order": (b"RCPT TO:<a@b.example>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n", {}, None),
    "lower case": (b"mail from:<a@b.example>\r\nrcpt to:<y@example.org>\r\nquit\r\n", {}, None),
    "bad address": (b"MAIL FROM:x\r\nMAIL\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\n", {}, None),
    "null sender": (b"MAIL FROM:<>\r\nRCPT TO:<y@example.org>\r\n", {}, None),
    "second MAIL": (b"MAIL FROM:<a@b.example>\r\nMAIL FROM:<c@d.example>\r\n", {}, None),
    "relay refused": (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\nRCPT TO:<y@EXAMPLE.ORG>\r\n",
                      {}, None),
    "relayclient": (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\n", {"RELAYCLIENT": ""}, None),
    "badmailfrom": (b"MAIL FROM:<bad@x.example>\r\nMAIL FROM:<u@spam.example>\r\n", {}, None),
    "badrcptto": (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bad@example.org>\r\n", {}, None),
    "check-fqdn": (b"MAIL FROM:<a>\r\nMAIL FROM:<a@host>\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<>\r\n"
                   b"RCPT TO:<y>\r\nRCPT TO:<y@nodot>\r\n", {}, None),
    "sender domains": (b"MAIL FROM:<a@b.example>\r\nMAIL FROM:<a@x.example>\r\nMAIL FROM:<a@s.x.example>\r\n",
                       {"SENDER_DOMAINS": "x.example"}, None),
    "size param": (b"EHLO x\r\nMAIL FROM:<a@b.example> SIZE=1000\r\nMAIL FROM:<a@b.example> SIZE=10\r\n",
                   {"DATABYTES": "500"}, None),
    "databytes": (ENV + b"DATA\r\n" + b"x" * 600 + b"\r\n.\r\nNOOP\r\n", {"DATABYTES": "500"}, None),
    "maxrcpts": (ENV + b"RCPT TO:<z@example.org>\r\nRCPT TO:<w@example.org>\r\n", {"MAXRCPTS": "2"}, None),
    "maxrcpts reject": (ENV + b"RCPT TO:<z@example.org>\r\nDATA\r\n", {"MAXRCPTS": "1", "MAXRCPTS_REJECT": "1"},
                        None),
    "maxmsgs": (MSG + b"MAIL FROM:<a@b.example>\r\n", {"MAXMSGS": "1"}, None),
    "maxhops pass": (ENV + b"DATA\r\n" + b"Received: x\r\n" * 3 + b"\r\nb\r\n.\r\n", {"MAXHOPS": "3"}, None),
    "maxhops fail": (ENV + b"DATA\r\n" + b"Received: x\r\n" * 4 + b"\r\nb\r\n.\r\n", {"MAXHOPS": "3"}, None),
    "maxnotimpl": (b"A\r\nB\r\nC\r\nNOOP\r\n", {"MAXNOTIMPL": "2"}, None),
    "greeting": (b"QUIT\r\n", {"SMTPGREETING": "hello there"}, None),
    "qq 11": (MSG, {"QQ_EXIT": "11"}, None),
    "qq 31": (MSG, {"QQ_EXIT": "31"}, None),
    "qq 12": (MSG, {"QQ_EXIT": "12"}, None),
    "qq 51": (MSG, {"QQ_EXIT": "51"}, None),
    "qq 53": (MSG, {"QQ_EXIT": "53"}, None),
    "qq 71": (MSG, {"QQ_EXIT": "71"}, None),
    "qq 81": (MSG, {"QQ_EXIT": "81"}, None),
    "qq 91": (MSG, {"QQ_EXIT": "91"}, None),
    "qq 99": (MSG, {"QQ_EXIT": "99"}, None),
    "qqerrmsg": (MSG, {"QQ_EXIT": "31", "QQERRMSG_31": "Go away"}, None),
    "missing mailrules": (b"QUIT\r\n", {"MAILRULES": "/nonexistent/rules"}, None),
    "auth not configured": (b"AUTH PLAIN\r\n", {}, None),
    "auth syntax": (b"AUTH\r\nAUTH FOO\r\nAUTH PLAIN !!!!\r\n", {"CVM": "1"}, None),
    "auth login prompts": (b"AUTH LOGIN\r\nZGVtbw==\r\n*\r\nAUTH PLAIN\r\n*\r\n", {"CVM": "1"},
                           "cancel: 501 with our own text"),
    "auth good": (b"EHLO x\r\nAUTH PLAIN " + base64.b64encode(f"\0demo\0{PASSWORD}".encode())
                  + b"\r\nAUTH PLAIN x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\n",
                  {"CVM": "1"}, None),
    "auth bad": (b"AUTH PLAIN " + W.encode() + b"\r\n", {"CVM": "1"}, "535 5.7.8 instead of 501"),
    "auth cvm down": (b"AUTH LOGIN ZGVtbw==\r\ncGFzcw==\r\n", {"CVM_SASL_PLAIN": "cvm-local:/nonexistent"},
                      "454 4.7.0 instead of 451"),
    "auth in transaction": (b"MAIL FROM:<a@b.example>\r\nAUTH PLAIN x\r\n", {"CVM": "1"},
                            "503: AUTH during a transaction is refused (RFC 4954)"),
    "smuggling": (ENV + b"DATA\r\nx\n.\nMAIL FROM:<e@b.example>\r\n.\r\nQUIT\r\n", {},
                  "strict end of data: one message, rejected"),
    "octal escape": (b"MAIL FROM:<a@x.example>\r\n", {"RULES": "k*@x.example:*:ok\\101\\102c\n"},
                     "\\### escapes rendered in full"),
    "rules compat": (b"MAIL FROM:<a@example.com>\r\nMAIL FROM:<a@tmp.example>\r\nMAIL FROM:<a@other.example>\r\n",
                     {"RULES": "k*@example.com:*:Welcome\\nfriend\nz*@tmp.example:*\nd*:*\n"}, None),
    "rules selectors": (b"MAIL FROM:<a@bad.example>\r\nMAIL FROM:<a@q.example>\r\nRCPT TO:<b@x.example>\r\n"
                        b"RCPT TO:<b@y.example>\r\nRCPT TO:<b@z.example>\r\nRCPT TO:<b@w.example>\r\n",
                        {"RULES": "k*:*@x.example:ok\nd*:*@y.example\n:sender\nd*@bad*:[0-9]:no\n:recipient\n"
                                  "k*:*@z.example::::RELAYCLIENT=\nd*@q.example:*:only rcpt\n"}, None),
    "rules glob set": (b"MAIL FROM:<a1@x.example>\r\nMAIL FROM:<a-@x.example>\r\nMAIL FROM:<a5@x.example>\r\n",
                       {"RULES": ":sender\nda[0-9]@x.example:*:set\n"}, None),
}



ASPECTS = ("replies", "log", "queued", "exit")


class Cdb(dict):
    """A file to make with tinycdb's `cdb -c` from these keys and values."""


class Case:
    """A command line (argv[0] is a program both packages have), a dialogue, an environment.

    `differs` maps each aspect that differs on purpose to (why, edits): see `expected`.  Environment
    markers: CVM=1 (a real cvm-pwfile for AUTH), RULES (a MAILRULES file with
    this text), QUEUEDIR=1 (a queue directory of its own for each program).
    `files` are written into a directory of each program's own, named @TMP@ in
    the environment; @CVM@, @LOOKUP@ and @LOOKUP_SECRET@ name real cvm-pwfile
    modules (authenticating; lookup mode; lookup mode with the secret `sekrit`),
    @PWFILE@ their password file.  A variable set to None is removed.
    """

    def __init__(self, argv: list[str], dialogue: bytes, env: dict[str, str | None] | None = None,
                 differs: dict[str, tuple[str, dict]] | None = None, files: dict | None = None) -> None:
        self.argv = argv
        self.dialogue = dialogue
        self.env = env or {}
        self.differs = differs or {}
        self.files = files or {}


CASES = {name: Case(["smtpfront-qmail"], data, extra, {"replies": why} if why else None)
         for name, (data, extra, why) in QMAIL_CASES.items()}
UNKNOWN_LOGGED = "an unrecognised command is logged by its length only, never its text"
CASES["second greeting"].differs = {"queued": "the latest HELO/EHLO goes in Received"}
CASES["bad address"].differs = {"replies": "`MAIL FROM:x` is read as `x` (mailfront 2.13+)", "log": "the replies"}
for name in ("fixed replies", "maxnotimpl", "auth not configured"):
    CASES[name].differs = {"log": UNKNOWN_LOGGED}
CASES["auth syntax"].differs = {"log": "an unknown AUTH mechanism is logged by its length (it may be a credential)"}
for name in ("auth login prompts", "auth bad", "auth cvm down", "auth in transaction", "octal escape"):
    CASES[name].differs["log"] = "the replies, which are logged"
CASES["smuggling"].differs.update(log="the replies, which are logged", queued="nothing is queued")


def add(name: str, command: str, dialogue: bytes, env: dict | None = None, files: dict | None = None,
        **differs: tuple[str, dict]) -> None:
    """A case: `command` is the command line, split at spaces; `differs`: aspect=(why, {C's lines: ours})."""
    assert name not in CASES, name
    CASES[name] = Case(command.split(), dialogue, env, differs, files)


def ns(data: bytes) -> bytes:
    """A netstring."""
    return b"%d:%s," % (len(data), data)


# -- the builtin plugins, each on its own and in combination (mailfront smtp echo ...) --------

ECHO = "mailfront smtp echo"
QMAIL = "mailfront smtp qmail"
add("accept", f"{ECHO} accept", b"EHLO x\r\n" + ECHO_MSG + b"QUIT\r\n")
add("no plugins", ECHO, b"EHLO x\r\n" + REFUSED + b"QUIT\r\n")
add("accept-sender", f"{ECHO} accept-sender", REFUSED)
add("accept-recipient", f"{ECHO} accept-recipient", REFUSED)
add("accept-sender:accept-recipient", f"{ECHO} accept-sender:accept-recipient", ECHO_MSG)
REJECTS = {
    "reject 553": {"SMTPREJECT": "-Go away."},
    "reject 451": {"SMTPREJECT": "Come back later."},
    "reject empty": {"SMTPREJECT": ""},
    "reject dash only": {"SMTPREJECT": "-"},
    "reject $REJECT": {"REJECT": "-No thanks."},
    "reject both": {"SMTPREJECT": "first", "REJECT": "-second"},
    "reject unset": {},
}
for name, extra in REJECTS.items():
    add(name, f"{ECHO} reject accept", ECHO_MSG if name == "reject unset" else REFUSED, extra)
add("reject after accept", f"{ECHO} accept reject", REFUSED, {"SMTPREJECT": "-after"})
add("relayclient empty", f"{ECHO} accept-sender relayclient", ECHO_MSG, {"RELAYCLIENT": ""})
add("relayclient unset", f"{ECHO} accept-sender relayclient", REFUSED)
add("relayclient suffix", "mailfront smtp queuedir accept-sender relayclient", ECHO_MSG,
    {"RELAYCLIENT": "+ext", "QUEUEDIR": "1"})
add("relayclient after auth", f"{ECHO} cvm-authenticate accept-sender relayclient",
    GOOD_AUTH + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\n", {"CVM": "1"})
add("require-auth", f"{ECHO} require-auth accept", REFUSED)
add("require-auth after accept", f"{ECHO} accept require-auth", REFUSED)
add("require-auth relayclient", f"{ECHO} require-auth accept", ECHO_MSG, {"RELAYCLIENT": ""})
add("require-auth after auth", f"{ECHO} cvm-authenticate require-auth accept",
    b"MAIL FROM:<a@b.example>\r\n" + GOOD_AUTH + ECHO_MSG, {"CVM": "1"})
add("force-file qmail", f"{QMAIL} add-received force-file accept", b"EHLO x\r\n" + ECHO_MSG)
add("force-file echo", f"{ECHO} force-file accept", ECHO_MSG,
    log="mailfront logs the message's first lines twice with force-file (once from the data, once from the file)")
add("force-file queuedir", "mailfront smtp queuedir add-received force-file accept", b"EHLO x\r\n" + ECHO_MSG,
    {"QUEUEDIR": "1"}, queued="mailfront loses the Received: header (written only into the unused file)")

# -- add-received -----------------------------------------------------------------------------

RECEIVED = f"{QMAIL} add-received accept"
ESMTPA = {"queued": "`with ESMTPA` (RFC 3848)", "replies": "the message's size in the 250", "log": "the 250"}
add("received ehlo", RECEIVED, b"EHLO x\r\n" + ECHO_MSG)
add("received helo", RECEIVED, b"HELO y\r\n" + ECHO_MSG)
add("received no helo", RECEIVED, ECHO_MSG)
add("received header_add", RECEIVED, ECHO_MSG, {"HEADER_ADD": "X-Added: yes"})
add("received fixup", RECEIVED, ECHO_MSG, {"FIXUP_RECEIVED_HOST": " relay.example ", "FIXUP_RECEIVED_IP": "192.0.2.9"})
add("received fixup same", RECEIVED, ECHO_MSG, {"FIXUP_RECEIVED_HOST": "MX.Example", "FIXUP_RECEIVED_IP": "192.0.2.1"})
add("received fixup host only", RECEIVED, ECHO_MSG, {"FIXUP_RECEIVED_HOST": "relay.example"})
add("received fixup and header_add", RECEIVED, ECHO_MSG,
    {"FIXUP_RECEIVED_HOST": "relay.example", "FIXUP_RECEIVED_IP": "192.0.2.9", "HEADER_ADD": "X-A: 1\nX-B: 2"})
add("received tcp6", RECEIVED, b"EHLO x\r\n" + ECHO_MSG,
    {"PROTO": "TCP6", "TCP6LOCALHOST": "mx6.example", "TCP6LOCALIP": "2001:db8::1", "TCP6REMOTEIP": "2001:db8::7"})
add("received tcp6 lower case", RECEIVED, ECHO_MSG, {"PROTO": "tcp6", "tcp6LOCALIP": "2001:db8::1",
                                                       "tcp6REMOTEIP": "2001:db8::7"})
add("received v4-mapped", RECEIVED, b"EHLO x\r\n" + ECHO_MSG,
    {"PROTO": "TCP6", "TCP6LOCALHOST": "mx6.example", "TCP6LOCALIP": "::ffff:192.0.2.1",
     "TCP6REMOTEIP": "::ffff:198.51.100.7"},
    queued=("a v4-mapped client is the IPv4 client it names: `[198.51.100.7]`, `via TCP` (issue 19 item 6)",
            {"Received: from x ([IPv6:::ffff:198.51.100.7])\n  by mx6.example ([IPv6:::ffff:192.0.2.1])\n"
             "  with ESMTP via TCP6; DATE":
                "Received: from x ([198.51.100.7])\n  by mx6.example ([192.0.2.1])\n  with ESMTP via TCP; DATE"}),
    replies=("the message's size in the 250", {"250 2.6.0 Accepted message qp PID bytes 165":
                                                "250 2.6.0 Accepted message qp PID bytes 140"}),
    log=("the 250", {"2.6.0 Accepted message qp PID bytes 165": "2.6.0 Accepted message qp PID bytes 140"}))
add("received no local host", RECEIVED, b"EHLO x\r\n" + ECHO_MSG, {"TCPLOCALHOST": None})
add("received empty local host", RECEIVED, b"EHLO x\r\n" + ECHO_MSG, {"TCPLOCALHOST": ""})
add("received no remote host", RECEIVED, b"EHLO x\r\n" + ECHO_MSG, {"TCPREMOTEHOST": None})
add("received nothing known", RECEIVED, ECHO_MSG, {"TCPREMOTEHOST": None, "TCPREMOTEIP": None, "TCPLOCALIP": None,
                                                     "TCPLOCALHOST": None})
add("received no proto", RECEIVED, ECHO_MSG, {"PROTO": None})
add("received after auth", f"{QMAIL} cvm-authenticate add-received accept", b"EHLO x\r\n" + GOOD_AUTH + ECHO_MSG,
    {"CVM": "1"}, **ESMTPA)
add("received helo after auth", f"{QMAIL} cvm-authenticate add-received accept",
    b"HELO x\r\n" + GOOD_AUTH + b"HELO y\r\n" + ECHO_MSG, {"CVM": "1"}, **ESMTPA)
add("received auth_add_received", RECEIVED, ECHO_MSG, {"AUTH_ADD_RECEIVED": "0", "RELAYCLIENT": ""},
    queued="$AUTH_ADD_RECEIVED=0 (mailfront 2.13) leaves the header out for relay clients",
    replies="the message's size in the 250", log="the 250")
add("received echo log", f"{ECHO} add-received accept", b"EHLO x\r\n" + ECHO_MSG)
add("received echo log fixup", f"{ECHO} add-received accept", ECHO_MSG,
    {"FIXUP_RECEIVED_HOST": "relay.example", "FIXUP_RECEIVED_IP": "192.0.2.9"})

# -- check-fqdn -------------------------------------------------------------------------------

FQDN = f"{ECHO} check-fqdn accept"
FQDN_SENDERS = b"".join(b"MAIL FROM:<%s>\r\n" % a for a in (b"a", b"a@host", b"@x.example", b"a@", b"a@b.example",
                                                           b"a@B.Example.", b""))
FQDN_RCPTS = b"MAIL FROM:<a@b.example>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % a for a in (
    b"", b"y", b"y@nodot", b"@x.example", b"y@x.example"))
add("fqdn senders", FQDN, FQDN_SENDERS)
add("fqdn recipients", FQDN, FQDN_RCPTS)
add("fqdn defaulthost", FQDN, FQDN_SENDERS + FQDN_RCPTS, {"DEFAULTHOST": "dh.example"})
add("fqdn defaultdomain", FQDN, FQDN_SENDERS + FQDN_RCPTS, {"DEFAULTDOMAIN": "dd.example"})
add("fqdn both defaults", FQDN, FQDN_SENDERS + FQDN_RCPTS, {"DEFAULTHOST": "host", "DEFAULTDOMAIN": "example"})
add("fqdn empty defaults", FQDN, FQDN_SENDERS + FQDN_RCPTS, {"DEFAULTHOST": "", "DEFAULTDOMAIN": ""})
SENDER_LIST = b"".join(b"MAIL FROM:<%s>\r\n" % a for a in (
    b"a@x.example", b"a@X.EXAMPLE", b"a@y.example", b"a@s.x.example", b"a@x.example.com", b"a@x.exampl",
    b"a@example", b"", b"a@z.example"))
add("sender domains list", FQDN, SENDER_LIST, {"SENDER_DOMAINS": "::x.example::Y.Example:z.example"})
add("sender domains empty", FQDN, SENDER_LIST, {"SENDER_DOMAINS": ""})
add("sender domains colons", FQDN, SENDER_LIST, {"SENDER_DOMAINS": ":::"})
add("sender domains defaulthost", FQDN, b"MAIL FROM:<a>\r\nMAIL FROM:<a@host>\r\n",
    {"SENDER_DOMAINS": "dh.example:host.dd.example", "DEFAULTHOST": "dh.example", "DEFAULTDOMAIN": "dd.example"})
add("fqdn relayclient order", f"{ECHO} check-fqdn relayclient accept-sender",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y>\r\n", {"RELAYCLIENT": "", "DEFAULTHOST": "dh.example"})

# -- counters ---------------------------------------------------------------------------------

COUNTERS = f"{ECHO} counters accept"
add("counters ehlo size", COUNTERS, b"EHLO x\r\n", {"DATABYTES": "1000"})
add("counters ehlo no size", COUNTERS, b"EHLO x\r\n")
add("counters size param", COUNTERS, b"".join(b"MAIL FROM:<a@b.example> %s\r\n" % p for p in (
    b"SIZE=1001", b"SIZE=1000", b"size=2000", b"SIZE=0", b"BODY=8BITMIME SIZE=5000", b"SIZE")),
    {"DATABYTES": "1000"})
add("counters size param no limit", COUNTERS, b"MAIL FROM:<a@b.example> SIZE=99999999\r\n")
add("counters size not a number", COUNTERS, b"MAIL FROM:<a@b.example> SIZE=abc\r\nMAIL FROM:<a@b.example> SIZE=9x\r\n",
    {"DATABYTES": "1000"}, replies="501 5.5.4 for a SIZE= value that is not a number (RFC 1870)", log="the replies")
FILL = b"x" * 40 + b"\r\n"
add("counters databytes exact", COUNTERS, ENV + b"DATA\r\n" + FILL * 10 + b".\r\n", {"DATABYTES": "420"})
add("counters databytes over", COUNTERS, ENV + b"DATA\r\n" + FILL * 10 + b"y\r\n.\r\nNOOP\r\n", {"DATABYTES": "420"})
add("counters databytes then small", COUNTERS, ENV + b"DATA\r\n" + FILL * 20 + b".\r\n" + ECHO_MSG,
    {"DATABYTES": "420"})
RCPTS = b"".join(b"RCPT TO:<r%d@example.org>\r\n" % i for i in range(3))
add("counters maxrcpts", COUNTERS, b"MAIL FROM:<a@b.example>\r\n" + RCPTS + b"DATA\r\nx\r\n.\r\n"
    + b"MAIL FROM:<a@b.example>\r\n" + RCPTS, {"MAXRCPTS": "2"})
add("counters maxrcpts rset", COUNTERS, b"MAIL FROM:<a@b.example>\r\n" + RCPTS + b"RSET\r\nMAIL FROM:<a@b.example>\r\n"
    + RCPTS, {"MAXRCPTS": "2"})
add("counters maxrcpts reject", COUNTERS, b"MAIL FROM:<a@b.example>\r\n" + RCPTS + b"DATA\r\n",
    {"MAXRCPTS": "1", "MAXRCPTS_REJECT": ""})
add("counters maxmsgs", COUNTERS, ECHO_MSG * 2 + REFUSED, {"MAXMSGS": "2"})
add("counters maxmsgs failed message", COUNTERS, ENV + b"DATA\r\n" + FILL * 20 + b".\r\n" + ECHO_MSG + REFUSED,
    {"MAXMSGS": "1", "DATABYTES": "100"})


def hops(*headers: bytes) -> bytes:
    return ENV + b"DATA\r\n" + b"".join(h + b": x\r\n" for h in headers) + b"\r\nReceived: in body\r\n.\r\n"


add("maxhops received", COUNTERS, hops(b"Received", b"RECEIVED", b"received"), {"MAXHOPS": "2"})
add("maxhops delivered-to", COUNTERS, hops(b"Delivered-To", b"delivered-to"), {"MAXHOPS": "2"})
add("maxhops delivered-to over", COUNTERS, hops(b"Delivered-To", b"DELIVERED-TO", b"delivered-to"), {"MAXHOPS": "2"})
add("maxhops mixed case", COUNTERS, hops(b"ReCeIvEd", b"rEcEiVeD", b"Received"), {"MAXHOPS": "2"})
add("maxhops not hops", COUNTERS, hops(b"Received-SPF", b"X-Received", b" Received", b"Receive", b"Delivered-From")
    + b"MAIL FROM:<a@b.example>\r\n", {"MAXHOPS": "1"})
add("maxhops mix", COUNTERS, hops(b"Received", b"Delivered-To", b"Received", b"Delivered-To"), {"MAXHOPS": "2"},
    replies="Received: and Delivered-To: are counted together, as qmail-smtpd counts hops", log="the replies")
add("maxhops default", COUNTERS, hops(*[b"Received"] * 100) + hops(*[b"Received"] * 101))
add("maxhops in body", COUNTERS, ENV + b"DATA\r\nSubject: x\r\n\r\n" + b"Received: x\r\n" * 5 + b".\r\n",
    {"MAXHOPS": "1"})
add("counters databytes from rules", f"{ECHO} counters mailrules accept",
    b"EHLO x\r\n" + ENV + b"DATA\r\n" + FILL * 5 + b".\r\n", {"RULES": "k*:*::100\n"})
add("counters databytes rules env", f"{ECHO} counters mailrules accept",
    ENV + b"DATA\r\n" + FILL * 5 + b".\r\n", {"RULES": "n*:*::::DATABYTES=100\n"})
add("counters databytes env lower than rule", f"{ECHO} counters mailrules accept",
    b"MAIL FROM:<a@b.example> SIZE=150\r\n" + b"MAIL FROM:<a@b.example> SIZE=90\r\n",
    {"RULES": "k*:*::200\n", "DATABYTES": "100"})
add("counters ehlo size with mailrules", "smtpfront-qmail", b"EHLO x\r\n", {"RULES": "k*:*\n", "DATABYTES": "1000"},
    replies="the limit in force is advertised; with MAILRULES set mailfront says SIZE 0 (its reset forgets the "
            "limit counters has just set)", log="the byte count")
# -- cvm-authenticate -------------------------------------------------------------------------

AUTH = f"{ECHO} cvm-authenticate relayclient accept-sender"
RELAY = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\n"
CANCELLED = "cancel: 501 with our own text"
CVM = {"CVM": "1"}
add("sasl ehlo", AUTH, b"EHLO x\r\n", CVM)
add("sasl plain initial", AUTH, b"EHLO x\r\n" + GOOD_AUTH + RELAY, CVM)
add("sasl plain challenge", AUTH, b"AUTH PLAIN\r\n" + GOOD_PLAIN + b"\r\n" + RELAY, CVM)
add("sasl plain lower case", AUTH, b"auth plain " + GOOD_PLAIN + b"\r\n" + RELAY, CVM)
add("sasl plain authzid same", AUTH, b"AUTH PLAIN " + b64(f"{DEMO}\0{DEMO}\0{PASSWORD}") + b"\r\n" + RELAY, CVM)
add("sasl plain authzid other", AUTH, b"AUTH PLAIN " + b64(f"root\0{DEMO}\0{PASSWORD}") + b"\r\n" + RELAY, CVM,
    replies="an authorization identity other than the login is refused (535 5.7.8)", log="the replies")
add("sasl plain one nul", AUTH, b"AUTH PLAIN " + b64(f"{DEMO}\0{PASSWORD}") + b"\r\n", CVM)
add("sasl plain empty", AUTH, b"AUTH PLAIN =\r\nAUTH PLAIN\r\n=\r\n", CVM)
add("sasl login", AUTH, b"AUTH LOGIN\r\n" + b64(DEMO) + b"\r\n" + b64(PASSWORD) + b"\r\n" + RELAY, CVM)
add("sasl login initial", AUTH, b"AUTH LOGIN " + b64(DEMO) + b"\r\n" + b64(PASSWORD) + b"\r\n" + RELAY, CVM)
add("sasl login with domain", AUTH, b"AUTH LOGIN " + b64(f"{DEMO}@mx.example") + b"\r\n" + b64(PASSWORD) + b"\r\n",
    CVM)
add("sasl login empty username", AUTH, b"AUTH LOGIN\r\n=\r\n", CVM)
add("sasl login bad base64", AUTH, b"AUTH LOGIN\r\n!!!!\r\nAUTH LOGIN " + b64(DEMO) + b"\r\n@@@@\r\n", CVM)
add("sasl login cancel", AUTH, b"AUTH LOGIN " + b64(DEMO) + b"\r\n*\r\n" + RELAY, CVM,
    replies=CANCELLED, log="the replies")
add("sasl empty line cancels", AUTH, b"AUTH LOGIN\r\n\r\n" + RELAY, CVM, replies=CANCELLED, log="the replies")
add("sasl unknown user", AUTH, b"AUTH LOGIN " + b64("nobody") + b"\r\n" + b64(PASSWORD) + b"\r\n", CVM,
    replies="535 5.7.8 instead of 501", log="the replies")
add("sasl unknown mechanism", AUTH, b"AUTH CRAM-MD5\r\nAUTH FOO bar\r\nAUTH FOO\r\nAUTH plain x\r\n", CVM,
    log="an unknown mechanism is logged by its length only (it may be a credential)")
add("sasl twice", AUTH, GOOD_AUTH + GOOD_AUTH + b"AUTH LOGIN\r\n", CVM)
add("sasl bare auth", AUTH, b"AUTH\r\nAUTH \r\n", CVM)
add("sasl not configured", AUTH, b"EHLO x\r\nAUTH LOGIN\r\n" + RELAY, log=UNKNOWN_LOGGED)
add("sasl requires tls", AUTH, b"EHLO x\r\nAUTH PLAIN " + GOOD_PLAIN + b"\r\n" + RELAY,
    {"CVM": "1", "AUTH_REQUIRES_TLS": "1"}, replies="530 5.7.0 Must issue a STARTTLS command first (RFC 3207)",
    log="mailfront logs the AUTH line, base64 password included, as an unknown command")
add("sasl three failures", AUTH, b"AUTH PLAIN " + W.encode() + b"\r\n" * 1 + (b"AUTH PLAIN " + W.encode() + b"\r\n") * 2
    + RELAY, CVM, replies="after $AUTH_MAX_FAILURES (3) failed logins the session ends (421 4.7.0)",
    log="the replies", exit="421 closes the session")
add("sasl eof in exchange", AUTH, b"AUTH LOGIN\r\n" + b64(DEMO) + b"\r\n", CVM)
add("sasl login facts", AUTH, b"AUTH LOGIN\r\n" + b64(DEMO.upper()) + b"\r\n" + b64(PASSWORD) + b"\r\n", CVM)
add("sasl login only", AUTH, b"EHLO x\r\nAUTH PLAIN " + GOOD_PLAIN + b"\r\n", {"CVM_SASL_LOGIN": "@CVM@"})
MECH_BUG = "mailfront drops PLAIN when CRAM-MD5 is configured too (or everything but LOGIN when only CVM_SASL_LOGIN is)"
add("sasl plain and cram-md5", AUTH, b"EHLO x\r\n" + GOOD_AUTH, {"CVM": "1", "CVM_SASL_CRAM_MD5": "@CVM@"},
    replies=MECH_BUG, log="the replies")
add("sasl login and cram-md5", AUTH, b"EHLO x\r\n", {"CVM_SASL_LOGIN": "@CVM@", "CVM_SASL_CRAM_MD5": "@CVM@"},
    replies=MECH_BUG, log="the byte count")
add("sasl cvm command", AUTH, b"EHLO x\r\n" + GOOD_AUTH + b"AUTH LOGIN\r\n", {
    "CVM_SASL_PLAIN": "/usr/bin/cvm-pwfile", "CVM_PWFILE_PATH": "@PWFILE@"})
add("sasl cvm command prefix", AUTH, b"EHLO x\r\n" + GOOD_AUTH, {
    "CVM_SASL_PLAIN": "cvm-command:/usr/bin/cvm-pwfile", "CVM_PWFILE_PATH": "@PWFILE@"})

# -- cvm-validate -----------------------------------------------------------------------------

VALIDATE = f"{ECHO} cvm-validate accept"
LOOKUPS = b"MAIL FROM:<a@b.example>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % a for a in (
    b"demo@x.example", b"DEMO@y.example", b"nobody@x.example", b"demo", b"nobody"))
add("validate unset", VALIDATE, LOOKUPS)
add("validate lookup", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@LOOKUP@"})
add("validate secret", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@LOOKUP_SECRET@", "CVM_LOOKUP_SECRET": "sekrit"})
add("validate lookup_secret", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@LOOKUP_SECRET@", "LOOKUP_SECRET": "sekrit"})
add("validate both secrets", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@LOOKUP_SECRET@", "CVM_LOOKUP_SECRET": "sekrit",
                                                 "LOOKUP_SECRET": "wrong"})
add("validate wrong secret", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@LOOKUP_SECRET@", "CVM_LOOKUP_SECRET": "wrong"})
add("validate no secret sent", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@LOOKUP_SECRET@"})
add("validate authenticating cvm", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "@CVM@"})
add("validate cvm down", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "cvm-local:/nonexistent/socket"})
add("validate command", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "/usr/bin/cvm-pwfile", "CVM_PWFILE_PATH": "@PWFILE@"})
add("validate command secret", VALIDATE, LOOKUPS, {"CVM_LOOKUP": "cvm-command:/usr/bin/cvm-pwfile",
                                                   "CVM_PWFILE_PATH": "@PWFILE@", "CVM_LOOKUP_SECRET": "sekrit"})
add("validate command and auth", f"{ECHO} cvm-authenticate cvm-validate accept",
    b"AUTH PLAIN " + W.encode() + b"\r\n",
    {"CVM_LOOKUP": "/usr/bin/cvm-pwfile", "CVM_SASL_PLAIN": "/usr/bin/cvm-pwfile", "CVM_PWFILE_PATH": "@PWFILE@"},
    replies="mailfront puts CVM_LOOKUP_SECRET= in its own environment, so a command CVM for AUTH "
            "accepts any password: refused here (535)", log="the replies")
add("validate then relay", f"{ECHO} cvm-validate relayclient accept-sender",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<demo@x.example>\r\nRCPT TO:<nobody@x.example>\r\n",
    {"CVM_LOOKUP": "@LOOKUP@", "RELAYCLIENT": ""})

# -- mailrules --------------------------------------------------------------------------------

RULES = f"{ECHO} mailrules"
add("rules letters", RULES, b"".join(b"MAIL FROM:<%s@x.example>\r\n" % a for a in (b"k", b"k2", b"d", b"d2", b"z",
                                                                                   b"z2", b"n", b"p", b"other")),
    {"RULES": "kk@x.example:*:Welcome\nkk2@x.example:*\ndd@x.example:*:Go away\ndd2@x.example:*\n"
              "zz@x.example:*:Later\nzz2@x.example:*\nnn@x.example:*\npp@x.example:*\nn*:*\nkn@x.example:*:after n\n"})
add("rules pass on", f"{RULES} accept", b"MAIL FROM:<p@x.example>\r\nRCPT TO:<y@x.example>\r\n",
    {"RULES": "p*:*\n"})
add("rules k then later plugins", f"{RULES} qmail-validate", b"MAIL FROM:<bad@x.example>\r\n"
    b"RCPT TO:<bad@example.org>\r\nRCPT TO:<y@other.example>\r\n", {"RULES": "k*:*\n:recipient\nk*:*\n"})
add("rules env relayclient", f"{RULES} accept-sender relayclient",
    b"MAIL FROM:<a@x.example>\r\nRCPT TO:<y@other.example>\r\nMAIL FROM:<a@y.example>\r\nRCPT TO:<y@other.example>\r\n",
    {"RULES": "n*@x.example:*::::RELAYCLIENT=-x\n"})
add("rules relayclient field", "mailfront smtp queuedir mailrules accept",
    b"MAIL FROM:<a@x.example>\r\nRCPT TO:<y@x.example>\r\nRCPT TO:<z@y.example>\r\n" + BODY,
    {"RULES": ":recipient\nk*:*@x.example:::+rc\nn*:*@y.example:::-n\n", "QUEUEDIR": "1"})
add("rules databytes", f"{ECHO} counters mailrules accept",
    b"MAIL FROM:<a@x.example> SIZE=200\r\nMAIL FROM:<a@y.example> SIZE=200\r\n"
    b"RCPT TO:<big@y.example>\r\n" + BODY, {"RULES": "k*@x.example:*::100\n:recipient\nk*:big@*::10\n"})
add("rules negate", RULES, b"MAIL FROM:<a@x.example>\r\nMAIL FROM:<a@y.example>\r\nMAIL FROM:<>\r\n",
    {"RULES": "d!*@x.example:*:not x\nk!!*@x.example:*:double\n"})
add("rules multi-line", RULES, b"MAIL FROM:<a@x.example>\r\n", {"RULES": "d*:*:one\\ntwo\\nthree\n"})
add("rules escapes", RULES, b"MAIL FROM:<a:b@x.example>\r\nMAIL FROM:<a@y.example>\r\n",
    {"RULES": "da\\:b@x.example:*:co\\:lon\\\\\nd*:*:x\\y\n"})
add("rules recipient scope", RULES, b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"
    b"MAIL FROM:<a@z.example>\r\nRCPT TO:<b@y.example>\r\n",
    {"RULES": ":recipient\nk*@x.example:b@y.example:ok b\nd*@z.example:*:z no\nd*:*:other\n:sender\nk*:*\n"})
add("rules K without text", f"{RULES} accept", b"MAIL FROM:<a@k.example>\r\nRCPT TO:<b@k.example>\r\n",
    {"RULES": ":sender\nK*@k.example:*\n:recipient\nK*:*@k.example:\n"})  # 2.12 ignores K: accept's words
add("rules k final", "smtpfront-qmail", b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\n",
    {"RULES": ":recipient\nk*:*@other.example\n"})
LISTS = {"domains": "X.example\n# comment\n\ny.example\n", "addresses": "a@z.example\n@w.example\n",
         "domains.cdb": Cdb({"x.example": "", "cdb.example": ""}),
         "addresses.cdb": Cdb({"a@q.example": "", "@r.example": ""})}
LIST_SENDERS = b"".join(b"MAIL FROM:<%s>\r\n" % a for a in (b"a@x.example", b"A@Y.EXAMPLE", b"a@z.example",
                                                           b"b@z.example", b"b@w.example", b"a@cdb.example",
                                                           b"a@q.example", b"b@r.example", b"a@other.example"))
add("rules text lists", RULES, LIST_SENDERS, {"RULES": "k[[@@TMP@/domains]]:*:domain\nk[[@TMP@/addresses]]:*:address\n"
                                                       "d*:*\n"}, files=LISTS)
add("rules cdb lists", RULES, LIST_SENDERS, {"RULES": "k[[@@TMP@/domains.cdb]]:*:domain\n"
                                                      "k[[@TMP@/addresses.cdb]]:*:address\nd*:*\n"},
    files={**LISTS, "addresses.cdb": Cdb({"a@q.example": ""})})
add("rules env without =", f"{RULES} accept", b"MAIL FROM:<a@x.example>\r\nRCPT TO:<y@x.example>\r\n",
    {"RULES": "k*:fwd@example.org::::-ext\nk*:*::::-ext:NOEQUALS,A=1\n"})
add("rules bad databytes", RULES, b"MAIL FROM:<a@x.example>\r\n", {"RULES": "k*:*::12x\n"})
add("rules bad selector", RULES, b"MAIL FROM:<a@x.example>\r\n", {"RULES": ":xyz\n"})
add("rules short selectors", RULES, b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n",
    {"RULES": ":s\nk*:*:s ok\n:rcpt\nd*:*:r no\n"})
add("rules other first characters", RULES, b"MAIL FROM:<a@x.example>\r\n",
    {"RULES": "# comment\nx*:*:never\nK*@y.example:*\n  k*@x.example:*:stripped  \n\t\n"})
add("rules missing fields", RULES, b"MAIL FROM:<a@x.example>\r\nMAIL FROM:<a@y.example>\r\n",
    {"RULES": "k*@x.example\nd*\n"})
add("rules cdb address lists", RULES, LIST_SENDERS, {"RULES": "k[[@@TMP@/domains.cdb]]:*:domain\n"
                                                      "k[[@TMP@/addresses.cdb]]:*:address\nd*:*\n"}, files=LISTS)
add("rules missing text list", RULES, b"MAIL FROM:<a@x.example>\r\n", {"RULES": "k[[@@TMP@/nonexistent]]:*\n"})
add("rules missing cdb list", RULES, b"MAIL FROM:<a@x.example>\r\n",
    {"RULES": "k[[@@TMP@/nonexistent.cdb]]:*:matched\nd*:*:not matched\n"},
    replies="a missing .cdb matches nothing (mailfront: everything)", log="the replies")
add("rules glob", RULES, b"".join(b"MAIL FROM:<%s>\r\n" % a for a in (b"abc@x.example", b"a.c@x.example",
                                                                     b"ab@x.example", b"a]@x.example")),
    {"RULES": "ka?c@x.example:*:q\nka[]b]@x.example:*:set\nka[!b]*:*:neg\nd*:*\n"})
add("rules too many fields", f"{ECHO} counters mailrules accept", ENV + b"DATA\r\n" + FILL * 5 + b".\r\n",
    {"RULES": "n*:*:::::DATABYTES=100\n"})
add("rules recipient lists", RULES, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<a@v.example>\r\n",
    {"RULES": ":recipient\nk*:[[@@TMP@/domains]]:listed\nd*:*:unlisted\n"}, files=LISTS)
add("rules empty sender", RULES, b"MAIL FROM:<>\r\nRCPT TO:<a@x.example>\r\n",
    {"RULES": "k:*:empty\n:recipient\nk:*:empty rcpt\n"})
add("rules and qmail", "smtpfront-qmail",
    b"MAIL FROM:<a@tmp.example>\r\nMAIL FROM:<bad@x.example>\r\nRCPT TO:<y@example.org>\r\n"
    b"RCPT TO:<y@ok.example>\r\nRCPT TO:<y@no.example>\r\n",
    {"RULES": "z*@tmp.example:*:try later\n:recipient\nk*:*@ok.example\nd*:*@no.example:no such\n"})
# -- patterns ---------------------------------------------------------------------------------

PATTERNS = f"{ECHO} patterns accept"
PAT_FILE = {"patterns": ":Subject: *spam*\n=Custom words\n:X-Bad: *\n\\*attachment*\n# comment\n\n"}
PAT = {"PATTERNS": "@TMP@/patterns"}


def data(*lines: bytes) -> bytes:
    return ENV + b"DATA\r\n" + b"".join(line + b"\r\n" for line in lines) + b".\r\n"


add("patterns header", PATTERNS, data(b"Subject: buy spam now", b"", b"body"), PAT, files=PAT_FILE)
add("patterns response", PATTERNS, data(b"Subject: t", b"X-Bad: yes", b"", b"body"), PAT, files=PAT_FILE)
add("patterns after blank", PATTERNS, data(b"Subject: t", b"", b"text", b"", b"the attachment"), PAT, files=PAT_FILE)
add("patterns not after blank", PATTERNS, data(b"Subject: t", b"", b"text", b"the attachment"), PAT, files=PAT_FILE)
add("patterns header only in header", PATTERNS, data(b"Subject: t", b"", b"Subject: spam") + ECHO_MSG, PAT,
    files=PAT_FILE)
add("patterns linemax", PATTERNS, data(b"Subject: " + b"a" * 20 + b"spam"), {**PAT, "PATTERNS_LINEMAX": "20"},
    files=PAT_FILE)
add("patterns plain line", PATTERNS, data(b"Subject: t", b"", b"buy viagra now") + data(b"Subject: t", b"", b"viagra"),
    PAT, files={"patterns": "*viagra*\n"})
# The first character of a line is a control character; any but # = : \ makes the rest a glob for any line.
NOT_GLOBS = [data(b"Subject: t", b"", line)
             for line in (b"/Subject: viagra", b" Subject: viagra", b"my Subject: viagra")]
for control in "/ *":
    add(f"patterns control {control!r}", PATTERNS, data(b"Subject: buy viagra", b"", b"body")
        + data(b"Subject: t", b"", b"Subject: viagra", b"more") + data(b"Subject: t", b"", b"text", b"Subject: viagra")
        + b"".join(NOT_GLOBS) + data(b"Subject: t", b"", b"text"), PAT,
        files={"patterns": f"=Control {control!r}\n{control}Subject: *viagra*\n"})
add("patterns trailing white space", PATTERNS, data(b"Subject: t", b"", b"exact") + data(b"Subject: t", b"", b"exact  ")
    + data(b"Subject: t", b"", b"two") + data(b"Subject: t", b"", b" two"), PAT,
    files={"patterns": "=Stripped \t\r\n/exact \t\v\r\n  two\r\n"})
add("patterns sample", PATTERNS, data(b"Subject: get FREE MONEY now", b"", b"hi")
    + data(b"Subject: tool", b"", b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAA")
    + data(b"Subject: hi", b"", b"text", b"see https://phish.example/login")
    + data(b"Subject: free money is a myth", b"", b"TVqQ in the middle"),
    {"PATTERNS": str(EXAMPLES / "patterns.sample")})
add("patterns unreadable", PATTERNS, ECHO_MSG, {"PATTERNS": "@TMP@/nonexistent"},
    replies="an unreadable PATTERNS file refuses service (421 4.3.0); mailfront warns and checks nothing",
    log="the replies", exit="the session is refused")
add("patterns from rules", f"{ECHO} mailrules patterns accept", data(b"Subject: spam"),
    {"RULES": "n*:*::::PATTERNS=@TMP@/patterns\n"}, files=PAT_FILE)

# -- qmail-validate ---------------------------------------------------------------------------

VALIDATE_Q = f"{ECHO} qmail-validate"
CONTROL = {"qmail/control/rcpthosts": "example.org\n.sub.example\n# .comment.example\n\n  spaced.example  \n",
           "qmail/control/badmailfrom": "bad@x.example\n@Spam.Example\n",
           "qmail/control/badrcptto": "bad@example.org\n@nope.example\n",
           "qmail/control/morercpthosts.cdb": Cdb({"more.example": "", ".deep.example": ""})}
QHOME = {"QMAILHOME": "@TMP@/qmail"}
add("qmail senders", VALIDATE_Q, b"".join(b"MAIL FROM:<%s>\r\n" % a for a in (
    b"bad@x.example", b"BAD@X.EXAMPLE", b"u@spam.example", b"u@sub.spam.example", b"@spam.example", b"",
    b"ok@x.example")), QHOME, files=CONTROL)
add("qmail recipients", VALIDATE_Q, b"MAIL FROM:<a@b.example>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % a for a in (
    b"bad@example.org", b"BAD@EXAMPLE.ORG", b"a@nope.example", b"a@example.org", b"a@x.sub.example", b"a@sub.example",
    b"a@a.b.sub.example", b"a@spaced.example", b"a@comment.example", b"a@more.example", b"a@x.more.example",
    b"a@x.deep.example", b"a@deep.example", b"a@other.example", b"nodomain", b"@example.org")), QHOME, files=CONTROL)
add("qmail no control files", VALIDATE_Q, b"MAIL FROM:<bad@x.example>\r\nRCPT TO:<a@example.org>\r\n", QHOME,
    files={"qmail/control/.keep": ""})
add("qmail missing home", VALIDATE_Q, b"MAIL FROM:<a@b.example>\r\n", {"QMAILHOME": "@TMP@/nonexistent"})
add("qmail home is a file", VALIDATE_Q, b"MAIL FROM:<a@b.example>\r\n", {"QMAILHOME": "@TMP@/file"},
    files={"file": "x"})
add("qmail relayclient order", f"{ECHO} qmail-validate relayclient", b"MAIL FROM:<a@b.example>\r\n"
    b"RCPT TO:<bad@example.org>\r\nRCPT TO:<a@other.example>\r\n", {**QHOME, "RELAYCLIENT": ""}, files=CONTROL)

# -- building the plugin list ----------------------------------------------------------------

EHLO = b"EHLO x\r\n"
add("list plus", f"{ECHO} counters +cvm-authenticate accept", EHLO, CVM)
add("list twice moves", f"{ECHO} counters cvm-authenticate counters accept", EHLO, CVM)
add("list plus moves", f"{ECHO} cvm-authenticate counters +cvm-authenticate", EHLO, CVM)
add("list minus", f"{ECHO} accept -accept", REFUSED)
add("list minus unknown", f"{ECHO} -nonexistent:-reject accept", ECHO_MSG)
add("list minus star", f"{ECHO} accept counters -* accept-sender", EHLO + REFUSED)
add("list colons", f"{ECHO} counters:cvm-authenticate:accept", EHLO + ECHO_MSG, CVM)
add("list empty items", f"{ECHO} ::accept:: :", ECHO_MSG)
add("list lone minus", f"{ECHO} - accept", ECHO_MSG)
add("list $PLUGINS after arguments", f"{ECHO} accept", REFUSED, {"PLUGINS": "-accept:accept-sender"})
add("list $PLUGINS order", f"{ECHO} counters", EHLO + ECHO_MSG, {"PLUGINS": "cvm-authenticate:+accept", **CVM})
add("list $PLUGINS +counters", "smtpfront-qmail", EHLO, {"PLUGINS": "+counters", **CVM})
add("list $PLUGINS -*", "smtpfront-qmail", REFUSED, {"PLUGINS": "-*"})
LOAD_REASON = "the reason after `Error loading ...:` is ours (mailfront prints dlopen's message)"
add("list unknown plugin", f"{ECHO} accept nonexistent", ECHO_MSG, replies=LOAD_REASON, log=LOAD_REASON)
add("list unknown plugin in $PLUGINS", f"{ECHO} accept", ECHO_MSG, {"PLUGINS": "nonexistent"},
    replies=LOAD_REASON, log=LOAD_REASON)
add("list lone plus", f"{ECHO} + accept", ECHO_MSG, replies=LOAD_REASON, log=LOAD_REASON)
add("list unknown backend", "mailfront smtp nonexistent accept", ECHO_MSG, replies=LOAD_REASON, log=LOAD_REASON)
add("list unknown protocol", "mailfront nonexistent echo accept", ECHO_MSG, log=LOAD_REASON)
add("list no backend", "mailfront smtp", ECHO_MSG)
add("list no names", "mailfront", ECHO_MSG)
for plugin in ("lua",):
    add(f"list {plugin}", f"{ECHO} accept {plugin}", b"EHLO x\r\n" + ECHO_MSG,
        replies=f"{plugin} is refused at start: not supported", log="the replies", exit="the session is refused")

# -- back ends --------------------------------------------------------------------------------

add("echo params", f"{ECHO} accept", b"MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=10\r\n"
    b"RCPT TO:<y@example.org> NOTIFY=NEVER ORCPT=rfc822;y@example.org\r\n"
    b"MAIL FROM:<a@b.example>  A=1   B=2 \r\nRCPT TO:<c@d.example>   \r\nRCPT TO:x@d.example X=1\r\n")
add("echo params tab", f"{ECHO} accept", b"MAIL FROM:<a@b.example>\tX=1\r\n",
    log="control characters in log lines are escaped (\\x09)")
add("echo log lines", f"{ECHO} accept", ENV + b"DATA\r\nonly one line\r\n.\r\n" + ECHO_MSG
    + ENV + b"DATA\r\n\r\nsecond\r\n.\r\n")
add("echo long first line", f"{ECHO} accept", ENV + b"DATA\r\n" + b"long" * 2000 + b"\r\nline 2\r\n.\r\n",
    replies="mailfront crashes (SIGBUS) when the first 4096 bytes hold no line end", log="the replies",
    exit="mailfront crashes")
add("echo log stale bytes", f"{ECHO} accept", ECHO_MSG + ENV + b"DATA\r\nonly one line\r\n.\r\n",
    log="mailfront reads past the end of a one-line block (here the previous message's bytes)")
add("queuedir", "mailfront smtp queuedir accept", b"EHLO x\r\n" + ECHO_MSG + ECHO_MSG + b"QUIT\r\n", {"QUEUEDIR": "1"})
add("queuedir rset", "mailfront smtp queuedir accept", ENV + b"RSET\r\n" + ENV + b"DATA\r\nx\r\n",
    {"QUEUEDIR": "1"})
add("queuedir missing", "mailfront smtp queuedir accept", REFUSED)
add("queuedir tmp missing", "mailfront smtp queuedir accept", REFUSED, {"QUEUEDIR": "@TMP@/q"},
    files={"q/new/.keep": ""})
add("queuedir subdirectories", "mailfront smtp queuedir accept", ECHO_MSG,
    {"QUEUEDIR": "@TMP@/q", "QUEUEDIR_TMP": "t", "QUEUEDIR_DEST": "d", "QUEUEDIR_NOSYNC": ""},
    files={"q/t/.keep": "", "q/d/.keep": ""})
add("queuedir refused message", "mailfront smtp queuedir counters accept", ENV + b"DATA\r\n" + FILL * 20 + b".\r\n",
    {"QUEUEDIR": "1", "DATABYTES": "100"})
# -- qmqp and qmtp ----------------------------------------------------------------------------

QMSG = b"Subject: t\nX-Two: 2\n\nbody\n"


def qmqp(message: bytes = QMSG, sender: bytes = b"a@b.example", *recipients: bytes) -> bytes:
    return ns(ns(message) + ns(sender) + b"".join(ns(r) for r in recipients or (b"y@example.org",)))


def qmtp(message: bytes = QMSG, sender: bytes = b"a@b.example", *recipients: bytes) -> bytes:
    return ns(b"\n" + message) + ns(sender) + ns(b"".join(ns(r) for r in recipients or (b"y@example.org",)))


GOOD_QMQP = qmqp()
GOOD_QMTP = qmtp()
add("qmqp echo accept", "mailfront qmqp echo accept", GOOD_QMQP)
add("qmqp echo two recipients", "mailfront qmqp echo accept", qmqp(QMSG, b"a@b.example", b"y@example.org",
                                                                    b"z@example.org"))
add("qmqpfront-echo", "qmqpfront-echo", GOOD_QMQP)
add("qmqpfront-echo accept", "qmqpfront-echo accept", GOOD_QMQP)
add("qmqpfront-qmail", "qmqpfront-qmail", GOOD_QMQP)
add("qmqpfront-qmail relay refused", "qmqpfront-qmail", qmqp(QMSG, b"a@b.example", b"y@other.example",
                                                              b"y@example.org"))
add("qmqpfront-qmail relayclient", "qmqpfront-qmail", qmqp(QMSG, b"a@b.example", b"y@other.example"),
    {"RELAYCLIENT": "+r"})
add("qmqpfront-qmail badmailfrom", "qmqpfront-qmail", qmqp(QMSG, b"bad@x.example"))
add("qmqpfront-qmail empty sender", "qmqpfront-qmail", qmqp(QMSG, b""))
add("qmqpfront-qmail databytes", "qmqpfront-qmail", qmqp(b"x" * 200 + b"\n"), {"DATABYTES": "100"})
add("qmqpfront-qmail maxhops", "qmqpfront-qmail", qmqp(b"Received: x\nReceived: y\n\nb\n"), {"MAXHOPS": "1"})
add("qmqpfront-qmail qq 71", "qmqpfront-qmail", GOOD_QMQP, {"QQ_EXIT": "71"})
add("qmqpfront-qmail qq 31", "qmqpfront-qmail", GOOD_QMQP, {"QQ_EXIT": "31"})
add("qmqp queuedir", "mailfront qmqp queuedir accept", GOOD_QMQP + b"ignored", {"QUEUEDIR": "1"})
add("qmqp queuedir missing", "mailfront qmqp queuedir accept", GOOD_QMQP)
add("qmqp trailing bytes", "mailfront qmqp echo accept", GOOD_QMQP + b"garbage")
add("qmqp multi-line reply", "mailfront qmqp echo mailrules", GOOD_QMQP, {"RULES": "d*:*:one\\ntwo\n"})
add("qmqp long message", "mailfront qmqp qmail accept", qmqp(b"line\n" * 5000))
QMQP_BAD = {
    "empty": b"",
    "wrapper not a number": b"x:" + GOOD_QMQP,
    "eof in wrapper length": b"12",
    "eof after wrapper": GOOD_QMQP[:4],
    "body not a number": b"30:x:" + GOOD_QMQP[4:],
    "zero length": ns(ns(b"") + ns(b"a@b.example") + ns(b"y@example.org")),
    "eof in body": GOOD_QMQP[:12],
    "eof before body comma": GOOD_QMQP[:GOOD_QMQP.index(b"body\n") + 5],
    "bad body terminator": GOOD_QMQP.replace(b"body\n,", b"body\n;"),
    "eof in sender": GOOD_QMQP[:GOOD_QMQP.index(b"a@b") + 2],
    "bad sender": GOOD_QMQP.replace(b"11:a@b.example,", b"1x:a@b.example,"),
    "sender without comma": GOOD_QMQP.replace(b"11:a@b.example,", b"11:a@b.example;"),
    "eof in recipients": GOOD_QMQP[:-1],
    "eof in recipient": GOOD_QMQP[:-5],
    "bad recipient": GOOD_QMQP.replace(b"13:y@example.org,", b"13:y@example.org;"),
    "recipient not a number": GOOD_QMQP.replace(b"13:y@example.org,", b"x3:y@example.org,"),
    "no recipients": ns(ns(QMSG) + ns(b"a@b.example")),
}
for name, package in QMQP_BAD.items():
    add(f"qmqp {name}", "mailfront qmqp echo accept", package)
C_CRASHES = "mailfront crashes (SIGBUS, SIGSEGV) when the input ends inside the message; we answer 451 and exit 111"
CASES["qmqp eof in body"].differs = dict.fromkeys(("replies", "log", "exit"), C_CRASHES)
add("qmqp zero length qmail", "qmqpfront-qmail", QMQP_BAD["zero length"])

add("qmtp echo accept", "mailfront qmtp echo accept", GOOD_QMTP)
add("qmtp several packages", "mailfront qmtp echo accept", GOOD_QMTP + qmtp(b"second\nthird\n", b"c@d.example",
                                                                             b"r1@x.example", b"r2@x.example"))
add("qmtpfront-echo", "qmtpfront-echo", GOOD_QMTP + GOOD_QMTP)
add("qmtpfront-qmail", "qmtpfront-qmail", GOOD_QMTP + qmtp(b"second\n", b"", b"z@example.org"))
add("qmtpfront-qmail refused then good", "qmtpfront-qmail",
    qmtp(QMSG, b"bad@x.example") + qmtp(QMSG, b"a@b.example", b"y@other.example", b"y@example.org") + GOOD_QMTP)
add("qmtpfront-qmail databytes", "qmtpfront-qmail", qmtp(b"x" * 200 + b"\n") + GOOD_QMTP, {"DATABYTES": "100"})
add("qmtpfront-qmail maxmsgs", "qmtpfront-qmail", GOOD_QMTP * 3, {"MAXMSGS": "2"})
add("qmtp queuedir", "mailfront qmtp queuedir accept", GOOD_QMTP + GOOD_QMTP, {"QUEUEDIR": "1"})
add("qmtp no recipients", "mailfront qmtp echo accept", ns(b"\n" + QMSG) + ns(b"a@b.example") + ns(b""))
QMTP_BAD = {
    "empty": b"",
    "body not a number": b"x:" + GOOD_QMTP,
    "eof in length": b"2",
    "zero length": b"0:," + ns(b"a@b.example") + ns(ns(b"y@example.org")),
    "no LF": ns(b"X" + QMSG) + ns(b"a@b.example") + ns(ns(b"y@example.org")),
    "CRLF": ns(b"\r\n" + QMSG) + ns(b"a@b.example") + ns(ns(b"y@example.org")),
    "eof before LF": GOOD_QMTP[:GOOD_QMTP.index(b":") + 1],
    "eof in body": GOOD_QMTP[:10],
    "eof before comma": GOOD_QMTP[:GOOD_QMTP.index(b"body\n") + 5],
    "bad terminator": GOOD_QMTP.replace(b"body\n,", b"body\n."),
    "eof in sender": GOOD_QMTP[:GOOD_QMTP.index(b"a@b") + 1],
    "bad sender": GOOD_QMTP.replace(b"11:a@b.example,", b"11:a@b.example."),
    "eof in recipients": GOOD_QMTP[:-3],
    "bad recipient list": GOOD_QMTP.replace(b"17:13:", b"1z:13:"),
    "recipient length not a number": ns(b"\n" + QMSG) + ns(b"a@b.example") + ns(b"1x:y,"),
    "recipient length too long": ns(b"\n" + QMSG) + ns(b"a@b.example") + ns(b"99:y@example.org,"),
    "recipient missing comma": ns(b"\n" + QMSG) + ns(b"a@b.example") + ns(b"3:abc;"),
    "second package cut": GOOD_QMTP + GOOD_QMTP[:20],
    "bad second package": GOOD_QMTP + b"junk",
}
for name, package in QMTP_BAD.items():
    add(f"qmtp {name}", "mailfront qmtp echo accept", package)
CASES["qmtp eof in body"].differs = dict.fromkeys(("replies", "log", "exit"), C_CRASHES)
CASES["qmtp second package cut"].differs = {"log": "mailfront's echo reads past the end of a block that holds "
                                                   "part of a second line (here the first package's bytes)"}
NUL_BEFORE_MESSAGE = ("the NUL between the recipients and the message; mailfront leaves it out when the message came "
                      "first (QMQP, QMTP), so a reader can't tell where the recipients end")
for name in ("qmqp queuedir", "qmtp queuedir"):
    CASES[name].differs = {"queued": NUL_BEFORE_MESSAGE}
add("qmtp bad recipient after refusal", "mailfront qmtp echo accept-recipient",
    ns(b"\n" + QMSG) + ns(b"a@b.example") + ns(b"1x:y,"))

# -- the front ends as admins run them --------------------------------------------------------

add("smtpfront-echo arguments", "smtpfront-echo accept", b"EHLO x\r\n" + ECHO_MSG + b"QUIT\r\n")
add("smtpfront-echo arguments rules", "smtpfront-echo mailrules", b"MAIL FROM:<a@b.example>\r\n",
    {"RULES": "k*:*:rule says ok\n"})
add("smtpfront-echo no arguments", "smtpfront-echo", b"EHLO x\r\n" + ECHO_MSG + b"QUIT\r\n",
    replies="without arguments smtpfront-echo runs smtpfront-qmail's plugin list (so a rules file can be tried)",
    log="the replies")
add("require-auth front end", "smtpfront-qmail", b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n" + GOOD_AUTH
    + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@other.example>\r\nRCPT TO:<y@example.org>\r\n" + BODY,
    {"PLUGINS": "-relayclient:+require-auth", **CVM}, **ESMTPA)
add("require-auth front end relayclient", "smtpfront-qmail", ECHO_MSG,
    {"PLUGINS": "-relayclient:+require-auth", "RELAYCLIENT": ""})
add("mailfront smtp echo accept", "mailfront smtp echo accept", b"HELO x\r\n" + ECHO_MSG + b"QUIT\r\n")
add("address forms", f"{ECHO} accept", b"MAIL FROM:x@b.example\r\nMAIL FROM x@b.example\r\nMAIL FROM<x@b.example>\r\n"
    b"MAIL FROM\r\nMAIL FROM:\r\nMAIL FROM<\r\nMAIL FROM:<x@b.example\r\nRCPT TO:y@example.org SIZE=1\r\n",
    replies="`MAIL FROM:me` and `MAIL FROM me` are read as `me` (mailfront 2.13)", log="the replies")
add("smtpfront-qmail eof in data", "smtpfront-qmail", ENV + b"DATA\r\nSubject: t\r\n")
add("smtpfront-qmail log lines", "smtpfront-qmail", b"EHLO x\r\n" + ENV + b"RCPT TO:<y@other.example>\r\n"
    b"MAIL FROM:<bad@x.example>\r\nRCPT TO:<y@example.org>\r\n" + MSG + b"QUIT\r\n")


# clamav and spamassassin against the same real clamd and spamd (tests/scanner_daemons.py)
CLAMAV = {"CLAMAV_HOST": "127.0.0.1", "CLAMAV_PORT": "@CLAMD_PORT@"}
SPAMD = {"SPAMD_HOST": "127.0.0.1", "SPAMD_PORT": "@SPAMD_PORT@"}
SCANNED = "mailfront smtp qmail accept add-received"
# headers enough for spamd's shipped rules to score it under 5 (its report of spam holds dates and boundaries)
HAM = data(b"From: <a@b.example>", b"To: <y@example.org>", b"Date: Thu, 3 Dec 2026 12:00:00 +0000",
           b"Message-ID: <1@b.example>", b"Subject: hello", b"", b"Just a plain hello.")
add("clamav clean", f"{SCANNED} clamav", b"EHLO x\r\n" + ECHO_MSG + ECHO_MSG, CLAMAV)
add("clamav virus", f"{SCANNED} clamav", b"EHLO x\r\n" + data(b"Subject: t", b"", VIRUS) + ECHO_MSG, CLAMAV)
add("clamav clamd names", f"{SCANNED} clamav", data(b"Subject: t", b"", VIRUS),
    {"CLAMD_HOST": "127.0.0.1", "CLAMD_PORT": "@CLAMD_PORT@", "CLAMD_TIMEOUT": "20000"})
add("clamav down", f"{SCANNED} clamav", ECHO_MSG, {**CLAMAV, "CLAMAV_PORT": "1"})
add("clamav no host", f"{SCANNED} clamav", ECHO_MSG)
add("clamav maxsize", f"{SCANNED} clamav", data(b"Subject: t", b"", VIRUS), {**CLAMAV, "CLAMAV_MAXSIZE": "10"})
add("clamav echo", f"{ECHO} accept clamav", data(b"Subject: t", b"", b"clean") + data(b"", VIRUS), CLAMAV,
    log=("mailfront logs the message's first lines twice with clamav (once from the data, once from the file)",
         {"RCPT TO:<y@example.org>\nSubject: t": "RCPT TO:<y@example.org>"}))
add("clamav queuedir", "mailfront smtp queuedir accept add-received clamav", b"EHLO x\r\n" + ECHO_MSG,
    {**CLAMAV, "QUEUEDIR": "1"},
    queued=("mailfront loses the Received: header (written only into the file)",
            {"a@b.example\0y@example.org\0\0Subject: t":
                "a@b.example\0y@example.org\0\0Received: from x (client.example [198.51.100.7])\n"
                "  by mx.example ([192.0.2.1])\n  with ESMTP via TCP; DATE\nSubject: t"}))
add("spamassassin ham", f"{SCANNED} spamassassin", b"EHLO x\r\n" + HAM + HAM, SPAMD)
add("spamassassin user", f"{SCANNED} spamassassin", HAM, {**SPAMD, "SPAMD_USER": "nobody"})
add("spamassassin reject", f"{SCANNED} spamassassin", data(b"Subject: t", b"", GTUBE) + ECHO_MSG,
    {**SPAMD, "SPAMD_REJECT": ""})
add("spamassassin reject text", f"{SCANNED} spamassassin", data(b"Subject: t", b"", GTUBE),
    {**SPAMD, "SPAMD_REJECT": "Go away"})
add("spamassassin down", f"{SCANNED} spamassassin", ECHO_MSG, {**SPAMD, "SPAMD_PORT": "1"})
add("spamassassin maxsize", f"{SCANNED} spamassassin", ECHO_MSG, {**SPAMD, "SPAMD_MAXSIZE": "10"})
add("spamassassin echo", f"{ECHO} accept spamassassin", HAM, SPAMD,
    log=("mailfront logs the first lines of the client's message, then those of spamd's; smtpfront only spamd's",
         {"From: <a@b.example>To: <y@example.org>": None}))
# what spamd adds to HAM, and the Received: header below it (spamd names its host in the first line)
SPAMD_HEADERS = (f"X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on {os.uname().nodename.split('.')[0]}\n"
                 "X-Spam-Level: *\nX-Spam-Status: No, score=1.3 required=5.0 tests=MSGID_SHORT,RCVD_ILLEGAL_IP\n"
                 "\tautolearn=no autolearn_force=no version=4.0.1\n"
                 "Received: from client.example (client.example [198.51.100.7])\n"
                 "  by mx.example ([192.0.2.1])\n  with SMTP via TCP; DATE\n")
add("spamassassin queuedir", "mailfront smtp queuedir accept add-received spamassassin", HAM,
    {**SPAMD, "QUEUEDIR": "1"},
    queued=("mailfront's queuedir keeps the client's message, not spamd's",
            {"a@b.example\0y@example.org\0\0From: <a@b.example>":
                "a@b.example\0y@example.org\0\0" + SPAMD_HEADERS + "From: <a@b.example>"}))
C_SEGV = "mailfront 2.12 crashes (SIGSEGV) with $SPAMD_PATH"
add("spamassassin path", f"{SCANNED} spamassassin", HAM, {"SPAMD_PATH": "@SPAMD_SOCKET@"},
    replies=(C_SEGV, {"354 End your message with a period on a line by itself.":
                      "354 End your message with a period on a line by itself.\n"
                      "250 2.6.0 Accepted message qp PID bytes 480"}),
    log=(C_SEGV, {"RCPT TO:<y@example.org>":
                  "RCPT TO:<y@example.org>\n2.6.0 Accepted message qp PID bytes 480\nbytes in: 205 bytes out: 193"}),
    queued=(C_SEGV, {"": "--- file 1\nFa@b.example\0Ty@example.org\0\0\n--\n" + SPAMD_HEADERS
                     + "From: <a@b.example>\nTo: <y@example.org>\n"
                     "Date: Thu, 3 Dec 2026 12:00:00 +0000\nMessage-ID: <1@b.example>\nSubject: hello\n\n"
                     "Just a plain hello.\n"}),
    exit=(C_SEGV, {"killed by a signal": "0"}))


# -- running a case ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cvm_lookup(tmp_path_factory, cvm_socket):
    """cvm-pwfile in lookup mode on two sockets: without a secret, and with the secret `sekrit`."""
    d = tmp_path_factory.mktemp("cvm-lookup")
    procs, modules = [], {}
    for name, secret in (("@LOOKUP@", ""), ("@LOOKUP_SECRET@", "sekrit")):
        sock = d / f"{len(procs)}.sock"
        env = {**os.environ, "CVM_PWFILE_PATH": cvm_socket["pwfile"], "CVM_LOOKUP_SECRET": secret}
        procs.append(subprocess.Popen([need("cvm-pwfile"), f"cvm-local:{sock}"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_path(sock, procs[-1])
        modules[name] = f"cvm-local:{sock}"
    yield modules
    for proc in procs:
        proc.kill()
        proc.wait()


def _normalise(text: str, where: str) -> str:
    text = text.replace(where, "@TMP@")
    text = re.sub(r"\d+:(K[^,]* qp )\d+ ", r"N:\1PID ", text)  # a QMQP/QMTP answer: its length holds the pid's
    text = re.sub(r" qp \d+ ", " qp PID ", text)
    return re.sub(r"; \d\d \w\w\w \d{4} \d\d:\d\d:\d\d -0000", "; DATE", text)


def _normalise_log(text: str, where: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^mailfront\[\d+\]: ", "", line)
        if line.startswith("smtpfront: "):
            continue  # our own lines
        lines.append(_normalise(line, where))
    return lines


def _bytes_out(line: str, less: int) -> str:
    found = re.fullmatch(r"bytes in: (\d+) bytes out: (\d+)", line)
    return f"bytes in: {found[1]} bytes out: {int(found[2]) - less}" if found else line


def _queued(fakeq, side_dir, before: set) -> list[bytes]:
    """The stand-in qmail-queue's messages in order, then every file that appeared in the case's directory."""
    out = []
    for f in sorted(fakeq.glob("msg.*"), key=lambda f: int(f.name.rpartition(".")[2])):
        out.append(f.read_bytes())
    for f in sorted(p for p in side_dir.rglob("*") if p.is_file() and p not in before and p.suffix != ".cache"):
        assert f.parent.name != "tmp", f"a queue file left in tmp/: {f}"
        out.append(f.read_bytes())
    where = str(side_dir).encode()
    return [_normalise(data.decode("utf-8", "surrogateescape"), where.decode()).encode("utf-8", "surrogateescape")
            for data in out]


def _write_files(case: Case, side_dir) -> None:
    for rel, content in case.files.items():
        path = side_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Cdb):
            records = "".join(f"+{len(k)},{len(v)}:{k}->{v}\n" for k, v in content.items()) + "\n"
            subprocess.run([need("cdb"), "-c", str(path)], input=records.encode(), check=True)
        else:
            path.write_text(content)


def _environment(case: Case, base_env: dict, places: dict, side_dir) -> dict[str, str]:
    env = dict(base_env)
    markers = {name for name in ("CVM", "QUEUEDIR") if case.env.get(name) == "1"} | {"RULES"} & set(case.env)
    for name, value in case.env.items():
        if name in markers:
            continue
        if value is None:
            env.pop(name, None)
            continue
        for place, replacement in places.items():
            value = value.replace(place, replacement)
        env[name] = value
    if "CVM" in markers:
        env["CVM_SASL_PLAIN"] = places["@CVM@"]
    if "RULES" in case.env:
        rules = side_dir / "rules"
        rules.write_text(case.env["RULES"].replace("@TMP@", str(side_dir)))
        env["MAILRULES"] = str(rules)
    if "QUEUEDIR" in markers:
        queuedir = side_dir / "queuedir"
        for sub in ("tmp", "new"):
            (queuedir / sub).mkdir(parents=True)
        env["QUEUEDIR"] = str(queuedir)
        env["QUEUEDIR_NOSYNC"] = "1"
    return env


def run_both(case: Case, base_env: dict, places: dict, tmp_path) -> tuple[dict, dict]:
    """Run the case through the C program and ours (at the same time); their normalised results."""
    runs = {}
    for side in ("c", "ours"):
        side_dir = tmp_path / side
        side_dir.mkdir()
        _write_files(case, side_dir)
        fakeq = tmp_path / f"fakeq-{side}"
        fakeq.mkdir()
        env = _environment(case, base_env, {**places, "@TMP@": str(side_dir)}, side_dir)
        before = set(side_dir.rglob("*"))
        env["FAKEQ_DIR"] = str(fakeq)
        program = case.argv[0]
        path = f"{C_SBIN}/{program}" if side == "c" else str(BIN / program)
        proc = subprocess.Popen([path, *case.argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        runs[side] = (proc, side_dir, fakeq, before)
    results = []
    for side, (proc, side_dir, fakeq, before) in runs.items():
        stdout, stderr = proc.communicate(case.dialogue, timeout=30)
        added = 0
        if side == "ours":
            stdout, added = without_our_ehlo_keywords(stdout)
        where = str(side_dir)
        if side == "ours":  # mailfront logs a password in some cases (see "sasl requires tls")
            LOGS.append((" ".join(case.argv), stderr.decode("utf-8", "replace")))
        replies = [_normalise(line, where) for line in re.split(r"\r?\n", stdout.decode("utf-8", "replace"))]
        log = _normalise_log(stderr.decode("utf-8", "replace"), where)
        # each qmail-queue pid in a reply was written as `PID`: count it so in `bytes out`
        pids = re.findall(rb" qp (\d+) ", stdout)
        log = [_bytes_out(line, sum(len(p) - 3 for p in pids) + added) for line in log]
        results.append({"replies": replies, "log": log,
                        "queued": _queued(fakeq, side_dir, before), "exit": [proc.returncode]})
    return results[0], results[1]


OUR_EHLO_KEYWORDS = (b"CHUNKING", b"SMTPUTF8")  # RFC 3030 and RFC 6531, which mailfront does not offer


def without_our_ehlo_keywords(stdout: bytes) -> tuple[bytes, int]:
    """The replies without the EHLO lines of the extensions mailfront lacks, and how many bytes they were.

    Offering them is an intended difference (docs/differences.md) that every EHLO shows; taking them out here
    lets each case compare everything else, the `bytes out` of the log included.
    """
    kept: list[bytes] = []
    for line in stdout.split(b"\r\n"):
        if line[:3] == b"250" and line[4:] in OUR_EHLO_KEYWORDS:
            if line[3:4] == b" ":  # it ended the EHLO reply: the line before it does now
                kept[-1] = kept[-1][:3] + b" " + kept[-1][4:]
            continue
        kept.append(line)
    return b"\r\n".join(kept), len(stdout) - len(b"\r\n".join(kept))


# -- what ours says in place of C's lines, for each intended difference (see `expected`) -----
# (a case may also give them itself: aspect=(why, {C's lines: ours}))

PINS: dict[str, dict[str, dict[str, str | None]]] = {
    "second greeting": {
        "queued": {
            "Received: from x (client.example [198.51.100.7])": "Received: from y (client.example [198.51.100.7])",
        },
    },
    "fixed replies": {
        "log": {
            "EXPN a": None,
            " ": None,
            "FOO ": None,
        },
    },
    "bad address": {
        "replies": {
            "220 mx.example mailfront ESMTP\n"
            "501 5.5.2 Syntax error in address parameter.":
                "220 mx.example mailfront ESMTP\n"
                "554 5.1.2 Address is missing a domain name",
        },
        "log": {
            "MAIL FROM:x\n"
            "501 5.5.2 Syntax error in address parameter.":
                "MAIL FROM:x\n"
                "554 5.1.2 Address is missing a domain name",
            "bytes in: 58 bytes out: 152": "bytes in: 58 bytes out: 150",
        },
    },
    "maxnotimpl": {
        "log": {
            "A ": None,
            "B ": None,
            "C ": None,
        },
    },
    "auth not configured": {
        "log": {
            "AUTH PLAIN": None,
        },
    },
    "auth syntax": {
        "log": {
            "SASL AUTH FOO failed": "SASL AUTH failed: unknown mechanism (3 bytes)",
        },
    },
    "auth login prompts": {
        "replies": {
            "334 UGFzc3dvcmQ6\n"
            "501 Authentication failed.":
                "334 UGFzc3dvcmQ6\n"
                "501 5.0.0 Authentication cancelled.",
            "334 \n"
            "501 Authentication failed.":
                "334 \n"
                "501 5.0.0 Authentication cancelled.",
        },
        "log": {
            "SASL AUTH LOGIN failed\n"
            "501 Authentication failed.":
                "SASL AUTH LOGIN failed\n"
                "501 5.0.0 Authentication cancelled.",
            "501 Authentication failed.\n"
            "bytes in: 40 bytes out: 130":
                "501 5.0.0 Authentication cancelled.\n"
                "bytes in: 40 bytes out: 148",
        },
    },
    "auth bad": {
        "replies": {
            "501 Authentication failed.": "535 5.7.8 Authentication credentials invalid.",
        },
        "log": {
            "501 Authentication failed.\n"
            "bytes in: 29 bytes out: 60":
                "535 5.7.8 Authentication credentials invalid.\n"
                "bytes in: 29 bytes out: 79",
        },
    },
    "auth cvm down": {
        "replies": {
            "451 Internal error.": "454 4.7.0 Temporary authentication failure.",
        },
        "log": {
            "451 Internal error.\n"
            "bytes in: 31 bytes out: 71":
                "454 4.7.0 Temporary authentication failure.\n"
                "bytes in: 31 bytes out: 95",
        },
    },
    "auth in transaction": {
        "replies": {
            "501 Could not decode the response.": "503 5.5.1 AUTH is not permitted during a mail transaction.",
        },
        "log": {
            "SASL AUTH PLAIN failed: bad response\n"
            "501 Could not decode the response.\n"
            "bytes in: 39 bytes out: 96":
                "503 5.5.1 AUTH is not permitted during a mail transaction.\n"
                "bytes in: 39 bytes out: 120",
        },
    },
    "smuggling": {
        "replies": {
            "250 2.6.0 Accepted message qp PID bytes 142\n"
            "250 2.1.0 Sender accepted.\n"
            "500 5.5.1 Not implemented.":
                "554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF.",
        },
        "log": {
            "2.6.0 Accepted message qp PID bytes 142\n"
            "MAIL FROM:<e@b.example>\n"
            ". \n"
            "500 5.5.1 Not implemented.\n"
            "bytes in: 94 bytes out: 270":
                "554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF.\n"
                "bytes in: 94 bytes out: 240",
        },
        "queued": {
            "--- file 1\n"
            "Fa@b.example\x00Ty@example.org\x00\x00\n"
            "--\n"
            "Received: from client.example (client.example [198.51.100.7])\n"
            "  by mx.example ([192.0.2.1])\n"
            "  with SMTP via TCP; DATE\n"
            "x\n"
            "":
                None,
        },
    },
    "octal escape": {
        "replies": {
            "250 ok": "250 okABc",
        },
        "log": {
            "bytes in: 25 bytes out: 40": "bytes in: 25 bytes out: 43",
        },
    },
    "force-file echo": {
        "log": {
            "Subject: tX-Two: 2\n"
            "Subject: tX-Two: 2":
                "Subject: tX-Two: 2",
        },
    },
    "force-file queuedir": {
        "queued": {
            "a@b.example\x00y@example.org\x00\x00Subject: t":
                "a@b.example\x00y@example.org\x00\x00Received: from x (client.example [198.51.100.7])\n"
                "  by mx.example ([192.0.2.1])\n"
                "  with ESMTP via TCP; DATE\n"
                "Subject: t",
        },
    },
    "received after auth": {
        "replies": {
            "250 2.6.0 Accepted message qp PID bytes 167": "250 2.6.0 Accepted message qp PID bytes 168",
        },
        "log": {
            "2.6.0 Accepted message qp PID bytes 167": "2.6.0 Accepted message qp PID bytes 168",
        },
        "queued": {
            "  with ESMTP via TCP; DATE": "  with ESMTPA via TCP; DATE",
        },
    },
    "received helo after auth": {
        "replies": {
            "250 2.6.0 Accepted message qp PID bytes 153": "250 2.6.0 Accepted message qp PID bytes 155",
        },
        "log": {
            "2.6.0 Accepted message qp PID bytes 153": "2.6.0 Accepted message qp PID bytes 155",
        },
        "queued": {
            "  with SMTP via TCP; DATE": "  with ESMTPA via TCP; DATE",
        },
    },
    "received auth_add_received": {
        "replies": {
            "250 2.6.0 Accepted message qp PID bytes 166": "250 2.6.0 Accepted message qp PID bytes 26",
        },
        "log": {
            "2.6.0 Accepted message qp PID bytes 166\n"
            "bytes in: 89 bytes out: 193":
                "2.6.0 Accepted message qp PID bytes 26\n"
                "bytes in: 89 bytes out: 192",
        },
        "queued": {
            "Received: from client.example (client.example [198.51.100.7])\n"
            "  by mx.example ([192.0.2.1])\n"
            "  with SMTP via TCP; DATE":
                None,
        },
    },
    "counters size not a number": {
        "replies": {
            "250 Sender='a@b.example'. [SIZE=abc]\n"
            "250 Sender='a@b.example'. [SIZE=9x]":
                "501 5.5.4 Invalid SIZE parameter.\n"
                "501 5.5.4 Invalid SIZE parameter.",
        },
        "log": {
            "MAIL FROM:<a@b.example> SIZE=abc":
                "MAIL FROM:<a@b.example> SIZE=abc\n"
                "501 5.5.4 Invalid SIZE parameter.",
            "bytes in: 67 bytes out: 107":
                "501 5.5.4 Invalid SIZE parameter.\n"
                "bytes in: 67 bytes out: 102",
        },
    },
    "maxhops mix": {
        "replies": {
            "250 Received 75 bytes.": "554 5.6.0 This message is looping, too many hops.",
        },
        "log": {
            "Received: xDelivered-To: x\n"
            "bytes in: 140 bytes out: 172":
                "554 5.6.0 This message is looping, too many hops.\n"
                "bytes in: 140 bytes out: 199",
        },
    },
    "counters ehlo size with mailrules": {
        "replies": {
            "250-SIZE 0": "250-SIZE 1000",
        },
        "log": {
            "bytes in: 8 bytes out: 115": "bytes in: 8 bytes out: 118",
        },
    },
    "sasl plain authzid other": {
        "replies": {
            "235 2.7.0 Authentication succeeded.": "535 5.7.8 Authorization identity must match the login.",
            "250 Recipient='y@other.example'.": "550 5.1.0 Mail system is not configured to accept that recipient",
        },
        "log": {
            "SASL AUTH PLAIN username=demo":
                "SASL AUTH PLAIN failed\n"
                "535 5.7.8 Authorization identity must match the login.",
            "bytes in: 101 bytes out: 130":
                "550 5.1.0 Mail system is not configured to accept that recipient\n"
                "bytes in: 101 bytes out: 181",
        },
    },
    "sasl login cancel": {
        "replies": {
            "501 Authentication failed.": "501 5.0.0 Authentication cancelled.",
        },
        "log": {
            "501 Authentication failed.": "501 5.0.0 Authentication cancelled.",
            "bytes in: 76 bytes out: 171": "bytes in: 76 bytes out: 180",
        },
    },
    "sasl empty line cancels": {
        "replies": {
            "501 Authentication failed.": "501 5.0.0 Authentication cancelled.",
        },
        "log": {
            "501 Authentication failed.": "501 5.0.0 Authentication cancelled.",
            "bytes in: 66 bytes out: 171": "bytes in: 66 bytes out: 180",
        },
    },
    "sasl unknown user": {
        "replies": {
            "501 Authentication failed.": "535 5.7.8 Authentication credentials invalid.",
        },
        "log": {
            "501 Authentication failed.\n"
            "bytes in: 43 bytes out: 78":
                "535 5.7.8 Authentication credentials invalid.\n"
                "bytes in: 43 bytes out: 97",
        },
    },
    "sasl unknown mechanism": {
        "log": {
            "SASL AUTH FOO failed: bad response": "SASL AUTH failed: unknown mechanism (3 bytes), bad response",
            "SASL AUTH FOO failed": "SASL AUTH failed: unknown mechanism (3 bytes)",
        },
    },
    "sasl not configured": {
        "log": {
            "AUTH LOGIN": None,
        },
    },
    "sasl requires tls": {
        "replies": {
            "500 5.5.1 Not implemented.": "530 5.7.0 Must issue a STARTTLS command first.",
        },
        "log": {
            "AUTH PLAIN AGRlbW8AczNjcmV0LVBhc3N3MHJk\n"
            "500 5.5.1 Not implemented.":
                "530 5.7.0 Must issue a STARTTLS command first.",
            "bytes in: 101 bytes out: 224": "bytes in: 101 bytes out: 244",
        },
    },
    "sasl three failures": {
        "replies": {
            "501 Authentication failed.": "535 5.7.8 Authentication credentials invalid.",
            "501 Authentication failed.\n"
            "250 Sender='a@b.example'.\n"
            "550 5.1.0 Mail system is not configured to accept that recipient":
                "421 4.7.0 Too many authentication failures; closing connection.",
        },
        "log": {
            "501 Authentication failed.\n"
            "SASL AUTH PLAIN failed":
                "535 5.7.8 Authentication credentials invalid.\n"
                "SASL AUTH PLAIN failed",
            "501 Authentication failed.\n"
            "MAIL FROM:<a@b.example>\n"
            "RCPT TO:<y@other.example>\n"
            "550 5.1.0 Mail system is not configured to accept that recipient\n"
            "bytes in: 139 bytes out: 209":
                "421 4.7.0 Too many authentication failures; closing connection.\n"
                "bytes in: 139 bytes out: 191",
        },
        "exit": {
            "0": "1",
        },
    },
    "sasl plain and cram-md5": {
        "replies": {
            "250-AUTH LOGIN CRAM-MD5": "250-AUTH LOGIN PLAIN CRAM-MD5",
            "504 Unrecognized authentication mechanism.": "235 2.7.0 Authentication succeeded.",
        },
        "log": {
            "SASL AUTH PLAIN failed\n"
            "504 Unrecognized authentication mechanism.\n"
            "bytes in: 49 bytes out: 172":
                "SASL AUTH PLAIN username=demo\n"
                "bytes in: 49 bytes out: 171",
        },
    },
    "sasl login and cram-md5": {
        "replies": {
            "250-AUTH LOGIN": "250-AUTH LOGIN CRAM-MD5",
        },
        "log": {
            "bytes in: 8 bytes out: 119": "bytes in: 8 bytes out: 128",
        },
    },
    "validate command and auth": {
        "replies": {
            "235 2.7.0 Authentication succeeded.": "535 5.7.8 Authentication credentials invalid.",
        },
        "log": {
            "SASL AUTH PLAIN username=demo\n"
            "bytes in: 29 bytes out: 69":
                "SASL AUTH PLAIN failed\n"
                "535 5.7.8 Authentication credentials invalid.\n"
                "bytes in: 29 bytes out: 79",
        },
    },
    "rules missing cdb list": {
        "replies": {
            "250 matched": "553 not matched",
        },
        "log": {
            "bytes in: 25 bytes out: 45":
                "553 not matched\n"
                "bytes in: 25 bytes out: 49",
        },
    },
    "patterns unreadable": {
        "replies": {
            "220 mx.example mailfront ESMTP\n"
            "250 Sender='a@b.example'.\n"
            "250 Recipient='y@example.org'.\n"
            "354 End your message with a period on a line by itself.\n"
            "250 Received 26 bytes.":
                "421 4.3.0 Could not open $PATTERNS file",
        },
        "log": {
            "MAIL FROM:<a@b.example>\n"
            "RCPT TO:<y@example.org>\n"
            "Warning: Could not read patterns file '@TMP@/nonexistent': No such file or directory\n"
            "Subject: tX-Two: 2\n"
            "bytes in: 89 bytes out: 172":
                "421 4.3.0 Could not open $PATTERNS file\n"
                "bytes in: 0 bytes out: 41",
        },
        "exit": {
            "0": "1",
        },
    },
    "list unknown plugin": {
        "replies": {
            "451 4.3.0 Error loading plugin nonexistent: /usr/lib/mailfront/plugin-nonexistent.so: cannot open"
            " shared object file: No such file or directory":
                "451 4.3.0 Error loading plugin nonexistent: no such plugin",
        },
        "log": {
            "451 4.3.0 Error loading plugin nonexistent: /usr/lib/mailfront/plugin-nonexistent.so: cannot open"
            " shared object file: No such file or directory":
                "451 4.3.0 Error loading plugin nonexistent: no such plugin",
        },
    },
    "list unknown plugin in $PLUGINS": {
        "replies": {
            "451 4.3.0 Error loading plugin nonexistent: /usr/lib/mailfront/plugin-nonexistent.so: cannot open"
            " shared object file: No such file or directory":
                "451 4.3.0 Error loading plugin nonexistent: no such plugin",
        },
        "log": {
            "451 4.3.0 Error loading plugin nonexistent: /usr/lib/mailfront/plugin-nonexistent.so: cannot open"
            " shared object file: No such file or directory":
                "451 4.3.0 Error loading plugin nonexistent: no such plugin",
        },
    },
    "list lone plus": {
        "replies": {
            "451 4.3.0 Error loading plugin : /usr/lib/mailfront/plugin-.so: cannot open shared object file:"
            " No such file or directory":
                "451 4.3.0 Error loading plugin : no such plugin",
        },
        "log": {
            "451 4.3.0 Error loading plugin : /usr/lib/mailfront/plugin-.so: cannot open shared object file:"
            " No such file or directory":
                "451 4.3.0 Error loading plugin : no such plugin",
        },
    },
    "list unknown backend": {
        "replies": {
            "451 4.3.0 Error loading backend nonexistent: /usr/lib/mailfront/backend-nonexistent.so: cannot"
            " open shared object file: No such file or directory":
                "451 4.3.0 Error loading backend nonexistent: no such backend",
        },
        "log": {
            "451 4.3.0 Error loading backend nonexistent: /usr/lib/mailfront/backend-nonexistent.so: cannot"
            " open shared object file: No such file or directory":
                "451 4.3.0 Error loading backend nonexistent: no such backend",
        },
    },
    "list unknown protocol": {
        "log": {
            "Fatal: 4.3.0 Error loading protocol nonexistent: /usr/lib/mailfront/protocol-nonexistent.so:"
            " cannot open shared object file: No such file or directory":
                "Fatal: 4.3.0 Error loading protocol nonexistent: no such protocol",
        },
    },
    "list lua": {
        "replies": {
            "220 mx.example mailfront ESMTP\n"
            "250-mx.example\n"
            "250-8BITMIME\n"
            "250-ENHANCEDSTATUSCODES\n"
            "250 PIPELINING\n"
            "250 Sender='a@b.example'.\n"
            "250 Recipient='y@example.org'.\n"
            "354 End your message with a period on a line by itself.\n"
            "250 Received 26 bytes.":
                "451 4.3.0 Error loading plugin lua: not supported by smtpfront: move its policy to $MAILRULES or"
                " $PATTERNS, or into a Python plugin (docs/differences.md)",
        },
        "log": {
            "MAIL FROM:<a@b.example>\n"
            "RCPT TO:<y@example.org>\n"
            "Subject: tX-Two: 2\n"
            "bytes in: 97 bytes out: 243":
                "451 4.3.0 Error loading plugin lua: not supported by smtpfront: move its policy to $MAILRULES or"
                " $PATTERNS, or into a Python plugin (docs/differences.md)",
        },
        "exit": {
            "0": "1",
        },
    },
    "echo params tab": {
        "log": {
            "MAIL FROM:<a@b.example>\tX=1": "MAIL FROM:<a@b.example>\\x09X=1",
        },
    },
    "echo long first line": {
        "replies": {
            "354 End your message with a period on a line by itself.":
                "354 End your message with a period on a line by itself.\n"
                "250 Received 8008 bytes.",
        },
        "log": {
            "RCPT TO:<y@example.org>":
                "RCPT TO:<y@example.org>\n"
                "" + "long" * 1024 + "\n"
                "bytes in: 8069 bytes out: 174",
        },
        "exit": {
            "killed by a signal": "0",
        },
    },
    "echo log stale bytes": {
        "log": {
            "only one linewo: 2": "only one line",
        },
    },
    "qmqp queuedir": {
        "queued": {
            "a@b.example\x00y@example.org\x00Subject: t": "a@b.example\x00y@example.org\x00\x00Subject: t",
        },
    },
    "qmqp eof in body": {
        "replies": {
            "": "23:ZEOF while reading body,",
        },
        "log": {
            "":
                "451 EOF while reading body\n"
                "bytes in: 12 bytes out: 27",
        },
        "exit": {
            "killed by a signal": "111",
        },
    },
    "qmtp queuedir": {
        "queued": {
            "--- file 1\n"
            "a@b.example\x00y@example.org\x00Subject: t":
                "--- file 1\n"
                "a@b.example\x00y@example.org\x00\x00Subject: t",
            "--- file 2\n"
            "a@b.example\x00y@example.org\x00Subject: t":
                "--- file 2\n"
                "a@b.example\x00y@example.org\x00\x00Subject: t",
        },
    },
    "qmtp eof in body": {
        "replies": {
            "": "23:ZEOF while reading body,",
        },
        "log": {
            "":
                "451 EOF while reading body\n"
                "bytes in: 10 bytes out: 27",
        },
        "exit": {
            "killed by a signal": "111",
        },
    },
    "qmtp second package cut": {
        "log": {
            "recipient <y@example.org>\n"
            "Subject: tX-Two: 2":
                "recipient <y@example.org>\n"
                "Subject: t",
        },
    },
    "smtpfront-echo no arguments": {
        "replies": {
            "250-mx.example":
                "250-mx.example\n"
                "250-SIZE 0",
            "550 5.1.0 Mail system is not configured to accept that sender\n"
            "503 5.5.1 You must send MAIL FROM: first\n"
            "503 5.5.1 You must send MAIL FROM: first\n"
            "500 5.5.1 Not implemented.\n"
            "500 5.5.1 Not implemented.\n"
            "500 5.5.1 Not implemented.\n"
            "500 5.5.1 Not implemented.\n"
            "500 5.5.1 Not implemented.":
                "250 Sender='a@b.example'.\n"
                "250 Recipient='y@example.org'.\n"
                "354 End your message with a period on a line by itself.\n"
                "250 Received 154 bytes.",
        },
        "log": {
            "550 5.1.0 Mail system is not configured to accept that sender": None,
            "503 5.5.1 You must send MAIL FROM: first\n"
            "503 5.5.1 You must send MAIL FROM: first\n"
            "Subject: t\n"
            "500 5.5.1 Not implemented.\n"
            "X-Two: 2\n"
            "500 5.5.1 Not implemented.\n"
            " \n"
            "500 5.5.1 Not implemented.\n"
            "body \n"
            "500 5.5.1 Not implemented.\n"
            ". \n"
            "500 5.5.1 Not implemented.\n"
            "bytes in: 103 bytes out: 411":
                "Received: from x (client.example [198.51.100.7])  by mx.example ([192.0.2.1])\n"
                "bytes in: 103 bytes out: 277",
        },
    },
    "require-auth front end": {
        "replies": {
            "250 2.6.0 Accepted message qp PID bytes 167": "250 2.6.0 Accepted message qp PID bytes 168",
        },
        "log": {
            "2.6.0 Accepted message qp PID bytes 167": "2.6.0 Accepted message qp PID bytes 168",
        },
        "queued": {
            "  with ESMTP via TCP; DATE": "  with ESMTPA via TCP; DATE",
        },
    },
    "address forms": {
        "replies": {
            "220 mx.example mailfront ESMTP\n"
            "501 5.5.2 Syntax error in address parameter.\n"
            "501 5.5.2 Syntax error in address parameter.":
                "220 mx.example mailfront ESMTP\n"
                "250 Sender='x@b.example'.\n"
                "250 Sender='x@b.example'.",
        },
        "log": {
            "MAIL FROM:x@b.example\n"
            "501 5.5.2 Syntax error in address parameter.":
                "MAIL FROM:x@b.example",
            "MAIL FROM x@b.example\n"
            "501 5.5.2 Syntax error in address parameter.":
                "MAIL FROM x@b.example",
            "bytes in: 159 bytes out: 377": "bytes in: 159 bytes out: 339",
        },
    },
}

for name, aspects in PINS.items():
    for aspect, edits in aspects.items():
        CASES[name].differs[aspect] = (CASES[name].differs[aspect], edits)


def scanner_places(case: Case, request) -> dict[str, str]:
    """The real clamd's and spamd's port and socket, for the cases that name them (each starts when first needed)."""
    places = {}
    for daemon in ("clamd", "spamd"):
        marker = f"@{daemon.upper()}_"
        if any(marker in (value or "") for value in case.env.values()):
            found = request.getfixturevalue(daemon)
            places.update({f"{marker}PORT@": str(found.port), f"{marker}SOCKET@": found.socket})
    return places


RESULTS: dict[str, bool] = {}


def as_lines(aspect: str, value: list) -> list[str]:
    """An aspect's result as lines: each queued file under a `--- file N` line; the exit code as one line (C's
    crashes come as SIGBUS or SIGSEGV from one run to the next: either is `killed by a signal`)."""
    if aspect == "queued":
        return [line for n, data in enumerate(value, 1)
                for line in (f"--- file {n}", *data.decode("utf-8", "surrogateescape").split("\n"))]
    if aspect == "exit":
        return ["killed by a signal" if code < 0 else str(code) for code in value]
    return value


def expected(theirs: list[str], edits: dict[str, str | None]) -> list[str]:
    """C's lines with each run of lines `old` (a key, lines joined by newlines) replaced by `edits[old]` (None: no
    lines) wherever it occurs in them (when C gave no lines at all, the one key is "").  The edits apply to C's
    lines side by side, the longest first where two could; every `old` must occur: a pin names what C says."""
    if not theirs:
        assert set(edits) == {""}, "C said nothing"
        return [] if edits[""] is None else edits[""].split("\n")
    runs = sorted(((old.split("\n"), [] if new is None else new.split("\n")) for old, new in edits.items()),
                  key=lambda edit: -len(edit[0]))
    out, i, found = [], 0, set()
    while i < len(theirs):
        for n, (old, new) in enumerate(runs):
            if theirs[i:i + len(old)] == old:
                out += new
                i += len(old)
                found.add(n)
                break
        else:
            out.append(theirs[i])
            i += 1
    missing = ["\n".join(old) for n, (old, _) in enumerate(runs) if n not in found]
    assert not missing, f"C no longer says {missing}"
    return out


def suggested(theirs: list[str], ours: list[str]) -> dict[str, str | None]:
    """Edits that turn C's lines into ours (for the message of a difference that isn't pinned yet)."""
    import difflib

    edits: dict[str, str | None] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, theirs, ours, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if not theirs:
            return {"": "\n".join(ours)}
        if i1 == i2:  # an insertion: anchored on the line before it (or after it, at the start)
            before = i1 > 0
            i1, i2 = (i1 - 1, i2) if before else (i1, i2 + 1)
            j1, j2 = (j1 - 1, j2) if before else (j1, j2 + 1)
        while i1 > 0 and sum(theirs[k:k + i2 - i1] == theirs[i1:i2] for k in range(len(theirs))) > 1:
            i1, j1 = i1 - 1, j1 - 1  # the lines also occur unchanged elsewhere: say which ones by the line before
        edits["\n".join(theirs[i1:i2])] = "\n".join(ours[j1:j2]) if j2 > j1 else None
    return edits


@pytest.mark.parametrize("name", list(CASES))
def test_same_as_c_mailfront(name, base_env, cvm_socket, cvm_lookup, tmp_path, request):
    need(f"{C_SBIN}/mailfront")
    case = CASES[name]
    places = {"@CVM@": cvm_socket["module"], "@PWFILE@": cvm_socket["pwfile"], **cvm_lookup}
    places.update(scanner_places(case, request))
    theirs, ours = run_both(case, base_env, places, tmp_path)
    RESULTS[name] = all(ours[a] == theirs[a] for a in ASPECTS if a not in case.differs)
    for aspect in ASPECTS:
        if aspect not in case.differs:
            assert ours[aspect] == theirs[aspect], aspect
            continue
        c_lines, our_lines = as_lines(aspect, theirs[aspect]), as_lines(aspect, ours[aspect])
        pinned = case.differs[aspect]
        if isinstance(pinned, str):
            pytest.fail(f"{aspect}: a difference must pin its lines: {aspect}=({pinned!r}, "
                        f"{suggested(c_lines, our_lines)!r}), once they are checked against docs/differences.md")
        why, edits = pinned
        assert edits, f"{aspect}: listed as a difference ({why}) with no lines"
        assert our_lines == expected(c_lines, edits), f"{aspect}: {why}"


def test_pins_replace_exactly_the_lines_named():
    assert expected(["a", "b", "c", "b"], {"b": "B1\nB2"}) == ["a", "B1", "B2", "c", "B1", "B2"]
    assert expected(["a", "b", "c"], {"b\nc": None, "a": "A"}) == ["A"]
    assert expected(["x", "x", "y"], {"x": "1", "x\ny": "2"}) == ["1", "2"]  # the longest first
    assert expected([], {"": "said"}) == ["said"]
    with pytest.raises(AssertionError, match="C no longer says"):
        expected(["a", "b"], {"a": "A", "z": "Z"})
    for theirs, ours in ((["a", "b"], ["b"]), (["a", "b"], ["x", "a", "b"]), (["a", "b"], ["a", "b", "c"]),
                         (["x", "y", "x", "y"], ["x", "y", "x", "Y"]), ([], ["n"]), (["a"], [])):
        assert expected(theirs, suggested(theirs, ours)) == ours, (theirs, ours)


def test_agreement_figure(capsys):
    """Runs last in this module: prints the agreement for the closing note."""
    expected_same = [n for n, c in CASES.items() if not c.differs]
    differences = [n for n, c in CASES.items() if c.differs]
    identical = sum(RESULTS.get(n, False) for n in expected_same)
    rest_same = sum(RESULTS.get(n, False) for n in differences)
    with capsys.disabled():
        print(f"\ndifferential: {identical}/{len(expected_same)} cases identical to C mailfront 2.12 in replies, "
              f"log lines, queued bytes and exit code; {len(differences)} with intended differences (their lines "
              f"pinned), {rest_same} of them identical in every other aspect")
    assert len(RESULTS) == len(CASES)
