"""The same dialogues through the C mailfront (Debian's package) and through ours.

Each case compares reply codes, and the reply lines themselves unless the
case is listed as an intended difference (docs/differences.md says why).
`test_agreement_figure` prints the overall agreement for the closing note.
"""

from __future__ import annotations

import base64
import os
import re

import pytest

from conftest import C_QMAIL, PASSWORD, need, run_program

W = base64.b64encode(b"\0demo\0wrong").decode()
ENV = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n"
MSG = ENV + b"DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\n"

# name: (dialogue, extra environment, intended difference or None)
CASES = {
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


def _run(program: str, name: str, base_env: dict, cvm_socket: dict, tmp_path) -> list[str]:
    data, extra, _ = CASES[name]
    env = {**base_env, **{k: v for k, v in extra.items() if k not in ("CVM", "RULES")}}
    if "CVM" in extra:
        env["CVM_SASL_PLAIN"] = cvm_socket["module"]
    if "RULES" in extra:
        rules = tmp_path / f"rules-{os.path.basename(program)}"
        rules.write_text(extra["RULES"])
        env["MAILRULES"] = str(rules)
    lines = run_program(program, data, env).lines
    return [re.sub(r" qp \d+ ", " qp PID ", line) for line in lines]


def _codes(lines: list[str]) -> list[str]:
    return [line[:3] for line in lines if line[3:4] != "-"]


RESULTS: dict[str, bool] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_same_as_c_mailfront(name, base_env, cvm_socket, tmp_path):
    need(C_QMAIL)
    ours = _run("smtpfront-qmail", name, base_env, cvm_socket, tmp_path)
    theirs = _run(C_QMAIL, name, base_env, cvm_socket, tmp_path)
    difference = CASES[name][2]
    if difference is None:
        RESULTS[name] = ours == theirs
        assert ours == theirs
    else:
        RESULTS[name] = _codes(ours) == _codes(theirs)
        assert ours != theirs, f"listed as a difference ({difference}) but identical"


def test_agreement_figure(capsys):
    """Runs last in this module: prints the agreement for the closing note."""
    expected_same = [n for n, c in CASES.items() if c[2] is None]
    differences = [n for n, c in CASES.items() if c[2] is not None]
    identical = sum(RESULTS.get(n, False) for n in expected_same)
    same_codes = sum(RESULTS.get(n, False) for n in differences)
    with capsys.disabled():
        print(f"\ndifferential: {identical}/{len(expected_same)} cases identical to C mailfront 2.12; "
              f"{len(differences)} intended differences, {same_codes} of them with the same reply codes")
    assert len(RESULTS) == len(CASES)
