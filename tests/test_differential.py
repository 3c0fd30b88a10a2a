"""The same dialogues through the C mailfront (Debian's package) and through ours.

Each case runs one command line (a front end, or `mailfront PROTOCOL BACKEND PLUGIN...`) with
one dialogue and environment through both programs and compares three things, normalised
for process ids and dates: the replies, the log lines (our own `smtpfront: ` lines left
out), and what was queued (the stand-in qmail-queue's envelope and message, or the
queuedir files).  An intended difference names the aspects it changes and why
(docs/differences.md); those aspects must differ and the others must agree.
`test_agreement_figure` prints the overall agreement for the closing note.
"""

from __future__ import annotations

import base64
import re
import subprocess

import pytest

from conftest import BIN, PASSWORD, need

W = base64.b64encode(b"\0demo\0wrong").decode()
ENV = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n"
MSG = ENV + b"DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\n"
C_SBIN = "/usr/sbin"

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



ASPECTS = ("replies", "log", "queued")


class Case:
    """A command line (argv[0] is a program both packages have), a dialogue, an environment.

    `differs` maps each aspect that differs on purpose to why.  Environment
    markers: CVM (a real cvm-pwfile for AUTH), RULES (a MAILRULES file with
    this text), QUEUEDIR (a queue directory of its own for each program).
    """

    def __init__(self, argv: list[str], dialogue: bytes, env: dict[str, str] | None = None,
                 differs: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.dialogue = dialogue
        self.env = env or {}
        self.differs = differs or {}


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


def _normalise_log(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^mailfront\[\d+\]: ", "", line)
        if line.startswith("smtpfront: "):
            continue  # our own lines
        lines.append(re.sub(r" qp \d+ ", " qp PID ", line))
    return lines


def _normalise_message(data: bytes) -> bytes:
    return re.sub(rb"; \d\d \w\w\w \d{4} \d\d:\d\d:\d\d -0000\n", b"; DATE\n", data)


def _queued(fakeq, queuedir) -> list[bytes]:
    out = []
    for f in sorted(fakeq.glob("msg.*")):
        out.append(_normalise_message(f.read_bytes()))
    if queuedir is not None:
        for f in sorted((queuedir / "new").iterdir()):
            out.append(_normalise_message(f.read_bytes()))
        assert list((queuedir / "tmp").iterdir()) == [], "a queue file left in tmp/"
    return out


def run_case(c_side: bool, case: Case, base_env: dict, cvm_socket: dict, tmp_path) -> dict[str, list]:
    side = "c" if c_side else "ours"
    program = case.argv[0]
    path = f"{C_SBIN}/{program}" if c_side else str(BIN / program)
    env = {**base_env, **{k: v for k, v in case.env.items() if k not in ("CVM", "RULES", "QUEUEDIR")}}
    if "CVM" in case.env:
        env["CVM_SASL_PLAIN"] = cvm_socket["module"]
    if "RULES" in case.env:
        rules = tmp_path / f"rules-{side}"
        rules.write_text(case.env["RULES"])
        env["MAILRULES"] = str(rules)
    fakeq = tmp_path / f"fakeq-{side}"
    fakeq.mkdir()
    env["FAKEQ_DIR"] = str(fakeq)
    queuedir = None
    if "QUEUEDIR" in case.env:
        queuedir = tmp_path / f"queuedir-{side}"
        for sub in ("tmp", "new"):
            (queuedir / sub).mkdir(parents=True)
        env["QUEUEDIR"] = str(queuedir)
        env["QUEUEDIR_NOSYNC"] = "1"
    proc = subprocess.run([path, *case.argv[1:]], input=case.dialogue, env=env, capture_output=True, timeout=30)
    stdout, added = without_our_ehlo_keywords(proc.stdout.decode("utf-8", "replace"))
    replies = [re.sub(r" qp \d+ ", " qp PID ", line) for line in re.split(r"\r?\n", stdout)]
    log = re.sub(r"(bytes out: )(\d+)", lambda m: f"{m[1]}{int(m[2]) - added}", proc.stderr.decode("utf-8", "replace"))
    return {"replies": replies, "log": _normalise_log(log), "queued": _queued(fakeq, queuedir),
            "exit": [proc.returncode]}


OUR_EHLO_KEYWORDS = ("CHUNKING", "SMTPUTF8")  # RFC 3030 and RFC 6531, which mailfront does not offer


def without_our_ehlo_keywords(stdout: str) -> tuple[str, int]:
    """The replies without the EHLO lines of the extensions mailfront lacks, and how many bytes they were.

    Offering them is an intended difference (docs/differences.md) that every EHLO shows; taking them out here
    lets each case compare everything else, the `bytes out` of the log included.
    """
    kept: list[str] = []
    for line in stdout.split("\r\n"):
        if line[:3] == "250" and line[4:] in OUR_EHLO_KEYWORDS:
            if line[3] == " ":  # it ended the EHLO reply: the line before it does now
                kept[-1] = kept[-1][:3] + " " + kept[-1][4:]
            continue
        kept.append(line)
    return "\r\n".join(kept), len(stdout) - len("\r\n".join(kept))


RESULTS: dict[str, bool] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_same_as_c_mailfront(name, base_env, cvm_socket, tmp_path):
    need(f"{C_SBIN}/mailfront")
    case = CASES[name]
    theirs = run_case(True, case, base_env, cvm_socket, tmp_path)
    ours = run_case(False, case, base_env, cvm_socket, tmp_path)
    same = {aspect: ours[aspect] == theirs[aspect] for aspect in ASPECTS}
    RESULTS[name] = all(same[a] for a in ASPECTS if a not in case.differs)
    for aspect in ASPECTS:
        if aspect in case.differs:
            assert not same[aspect], f"{aspect}: listed as a difference ({case.differs[aspect]}) but identical"
        else:
            assert ours[aspect] == theirs[aspect], aspect
    if not case.differs:
        assert ours["exit"] == theirs["exit"]


def test_agreement_figure(capsys):
    """Runs last in this module: prints the agreement for the closing note."""
    expected_same = [n for n, c in CASES.items() if not c.differs]
    differences = [n for n, c in CASES.items() if c.differs]
    identical = sum(RESULTS.get(n, False) for n in expected_same)
    rest_same = sum(RESULTS.get(n, False) for n in differences)
    with capsys.disabled():
        print(f"\ndifferential: {identical}/{len(expected_same)} cases identical to C mailfront 2.12 in replies, "
              f"log lines and queued bytes; {len(differences)} with intended differences, {rest_same} of them "
              f"identical in every other aspect")
    assert len(RESULTS) == len(CASES)
