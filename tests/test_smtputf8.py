"""SMTPUTF8 (RFC 6531): UTF-8 addresses with the MAIL parameter, refused without it, compared as C compares."""

from __future__ import annotations

import base64
import smtplib
import subprocess

import pytest

from conftest import credentials, wait_for_path

JOSE = "josé@example.org"
CHINESE = "用户@例子.广告"


def dialogue(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def test_utf8_addresses_need_the_parameter(smtp, queue):
    r = smtp(dialogue("EHLO c", f"MAIL FROM:<{JOSE}>", "MAIL FROM:<a@b.example>", f"RCPT TO:<{CHINESE}>",
                      f"MAIL FROM:<{JOSE}> SMTPUTF8", f"RCPT TO:<{CHINESE}>", "DATA", "Subject: ü", "", "hi", ".",
                      "QUIT"), RELAYCLIENT="")
    assert "250-SMTPUTF8" in r.lines or "250 SMTPUTF8" in r.lines
    assert [r.reply_to(i) for i in (2, 3, 4, 5, 6)] == [
        "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter.", "250 2.1.0 Sender accepted.",
        "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter.", "250 2.1.0 Sender accepted.",
        "250 2.1.5 Recipient accepted."]
    [(envelope, message)] = queue.messages()
    assert envelope == b"F" + JOSE.encode() + b"\0T" + CHINESE.encode() + b"\0\0"  # the bytes as they came
    assert b"\n  with UTF8SMTP via TCP; " in message


@pytest.mark.parametrize("address", [b"jos\xc3@x.example", b"a\xc0\xafb@x.example", b"a\xed\xa0\x80@x.example",
                                     b"a\xc2\x85b@x.example", b"\xff@x.example"])
def test_malformed_utf8_overlong_forms_and_c1_controls_are_refused(address, smtp):
    """A cut sequence, an overlong '/', an encoded surrogate, NEL (a C1 control), a byte UTF-8 never has."""
    r = smtp(b"MAIL FROM:<" + address + b"> SMTPUTF8\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\nRCPT TO:<" + address
             + b">\r\n")
    assert [r.reply_to(1), r.reply_to(3)] == ["553 5.6.7 Address is not well-formed UTF-8."] * 2


def test_lists_and_rules_fold_ascii_only(smtp, qmail_home, tmp_path):
    """badmailfrom, rcpthosts and MAILRULES compare UTF-8 addresses byte for byte after ASCII case folding,
    as mailfront's tolower does: É is not é."""
    (qmail_home / "control" / "badmailfrom").write_text("josé@bad.example\n", encoding="utf-8")
    (qmail_home / "control" / "rcpthosts").write_text("例子.广告\nexample.org\n", encoding="utf-8")
    rules = tmp_path / "rules"
    rules.write_text("d*:ÜBER@*:no über\n", encoding="utf-8")
    r = smtp(dialogue("MAIL FROM:<JOSÉ@BAD.EXAMPLE> SMTPUTF8", "MAIL FROM:<josé@BAD.example> SMTPUTF8",
                      "MAIL FROM:<x@y.example> SMTPUTF8", f"RCPT TO:<{CHINESE}>", "RCPT TO:<üBER@example.org>",
                      "RCPT TO:<ÜBER@example.org>", "RCPT TO:<über@example.org>"), MAILRULES=str(rules))
    assert [r.reply_to(i) for i in range(1, 8)] == [
        "250 2.1.0 Sender accepted.",  # JOSÉ folds to josÉ, which is not josé
        "553 5.1.0 Sorry, your envelope sender is in my badmailfrom list.",
        "250 2.1.0 Sender accepted.",
        "250 2.1.5 Recipient accepted.",  # 例子.广告 is in rcpthosts
        "250 2.1.5 Recipient accepted.",  # üBER folds to über: the rule's ÜBER@* (Über@*) does not match
        "553 no über",  # ÜBER folds to Über: it does
        "250 2.1.5 Recipient accepted."]


def test_smtplib_sends_smtputf8_under_tcpserver_with_auth(tcpserver, base_env, cvm_socket, queue):
    server = tcpserver({**base_env, "CVM_SASL_PLAIN": cvm_socket["module"]})
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example")
        assert client.has_extn("smtputf8") and client.has_extn("chunking")
        client.login("demo", credentials()[3])
        refused = client.sendmail(JOSE, [CHINESE], "Subject: tëst\r\n\r\nhällo\r\n".encode(),
                                  mail_options=["SMTPUTF8"])
        assert refused == {}
    [(envelope, message)] = queue.messages()
    assert envelope == b"F" + JOSE.encode() + b"\0T" + CHINESE.encode() + b"\0\0"
    assert b"\n  with UTF8SMTPA via TCP; " in message and message.endswith("hällo\n".encode())


def test_a_utf8_login_reaches_the_cvm_as_utf8(tmp_path, smtp):
    """RFC 4954 with SASLprep left to the CVM: the login's bytes go to cvm-pwfile as they came."""
    pwfile = tmp_path / "pw"
    pwfile.write_bytes("josé:pässword:1000:1000:José:/home/jose:/bin/sh\n".encode())
    sock = tmp_path / "cvm.sock"
    cvm = subprocess.Popen(["cvm-pwfile", f"cvm-local:{sock}"], env={"CVM_PWFILE_PATH": str(pwfile)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_path(sock, cvm)
        plain = base64.b64encode("\0josé\0pässword".encode()).decode()
        r = smtp(f"AUTH PLAIN {plain}\r\nQUIT\r\n".encode(), CVM_SASL_PLAIN=f"cvm-local:{sock}")
        assert r.codes == [220, 235, 221] and "SASL AUTH PLAIN username=josé" in r.stderr
    finally:
        cvm.kill()
        cvm.wait()


def test_the_c_program_refuses_utf8_addresses_as_it_reads_them(base_env):
    """Not an extension mailfront has: its EHLO does not offer SMTPUTF8 (docs/differences.md)."""
    from conftest import C_QMAIL, run_program

    r = run_program(C_QMAIL, b"EHLO c\r\nQUIT\r\n", base_env)
    assert not any("SMTPUTF8" in line for line in r.lines)
