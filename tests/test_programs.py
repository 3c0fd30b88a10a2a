"""The installed programs end to end, with a real stand-in qmail-queue child."""

from __future__ import annotations

import os
import re

from conftest import PASSWORD, run_program

DIALOGUE = (
    b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"
    b"Subject: test\r\n\r\n..stuffed\r\nbody\r\n.\r\nQUIT\r\n"
)


def test_done_when_session(smtp, queue):
    r = smtp(DIALOGUE)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    for ext in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 0"):
        assert f"250-{ext}" in r.lines or f"250 {ext}" in r.lines
    assert r.returncode == 0
    [(envelope, message)] = queue.messages()
    assert envelope == b"Fa@b.example\0Ty@example.org\0\0"
    assert message.startswith(b"Received: from client.example (client.example [198.51.100.7])\n")
    assert b"  by mx.example ([192.0.2.1])\n  with ESMTP via TCP; " in message
    assert message.endswith(b"Subject: test\n\n.stuffed\nbody\n")
    pid_reply = r.reply_to(5)
    assert pid_reply.startswith("250 2.6.0 Accepted message qp ")
    assert pid_reply.endswith(f" bytes {len(message)}")
    assert "bytes in: " in r.stderr and r.stderr.splitlines()[-1].startswith("mailfront[")


def test_relaying_refused_without_relayclient(smtp, queue):
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@elsewhere.example>\r\nRCPT TO:<y@EXAMPLE.net>\r\nQUIT\r\n")
    assert r.lines[2] == "550 5.1.0 Mail system is not configured to accept that recipient"
    assert r.codes[3] == 250  # rcpthosts is case-insensitive


def test_relayclient_appends_and_accepts(smtp, queue):
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@elsewhere.example>\r\nDATA\r\nhi\r\n.\r\n",
             RELAYCLIENT="-relay")
    assert r.codes == [220, 250, 250, 354, 250]
    assert queue.messages()[0][0] == b"Fa@b.example\0Ty@elsewhere.example-relay\0\0"


def test_badmailfrom_badrcptto(smtp):
    r = smtp(b"MAIL FROM:<bad@x.example>\r\nMAIL FROM:<who@SPAM.example>\r\nMAIL FROM:<ok@b.example>\r\n"
             b"RCPT TO:<bad@example.org>\r\n")
    assert r.lines[1:] == [
        "553 5.1.0 Sorry, your envelope sender is in my badmailfrom list.",
        "553 5.1.0 Sorry, your envelope sender is in my badmailfrom list.",
        "250 2.1.0 Sender accepted.",
        "553 5.1.1 Sorry, that address is in my badrcptto list.",
    ]


def test_missing_rcpthosts_accepts_no_recipient(smtp, qmail_home):
    (qmail_home / "control" / "rcpthosts").unlink()
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\n")
    assert r.codes[-1] == 550


def test_unreadable_control_file_fails_closed(smtp, qmail_home):
    bad = qmail_home / "control" / "badmailfrom"
    bad.unlink()
    bad.mkdir()  # exists, but reading it fails (EISDIR) even for root
    r = smtp(b"MAIL FROM:<a@b.example>\r\n")
    assert r.lines[1] == "451 4.3.0 Could not read a control file."
    assert "cannot check badmailfrom" in r.stderr


def test_morercpthosts_cdb(smtp, qmail_home, tmp_path):
    from test_cdb import make_cdb

    make_cdb(qmail_home / "control" / "morercpthosts.cdb", {b"more.example": b""})
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@More.Example>\r\nRCPT TO:<y@less.example>\r\n")
    assert r.codes[2:] == [250, 550]


def test_databytes_size_param_and_body(smtp, queue):
    r = smtp(b"EHLO x\r\nMAIL FROM:<a@b.example> SIZE=5000\r\nMAIL FROM:<a@b.example> SIZE=50\r\n"
             b"RCPT TO:<y@example.org>\r\nDATA\r\n" + b"x" * 200 + b"\r\n.\r\nNOOP\r\n", DATABYTES="100")
    assert "250-SIZE 100" in r.lines
    assert r.reply_to(2) == "552 5.2.3 The message would exceed the maximum message size."
    assert r.reply_to(6) == "552 5.2.3 Sorry, that message exceeds the maximum message length."
    assert r.codes[-1] == 250  # the session goes on after reading to the end
    assert queue.messages() == []


def test_counters_maxrcpts_maxmsgs(smtp, queue):
    msg = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nRCPT TO:<z@example.org>\r\nDATA\r\nx\r\n.\r\n"
    r = smtp(msg + msg, MAXRCPTS="1", MAXMSGS="1")
    assert r.lines[1:] == [
        "250 2.1.0 Sender accepted.",
        "250 2.1.5 Recipient accepted.",
        "550 5.5.3 Too many recipients",
        "354 End your message with a period on a line by itself.",
        r.lines[5],
        "550 5.5.0 Too many messages",
        "503 5.5.1 You must send MAIL FROM: first",
        "503 5.5.1 You must send MAIL FROM: first",
        "503 5.5.1 You must send MAIL FROM: first",
        "500 5.5.1 Not implemented.",
        "500 5.5.1 Not implemented.",
    ]
    assert len(queue.messages()) == 1
    r = smtp(msg, MAXRCPTS="1", MAXRCPTS_REJECT="1")
    assert r.reply_to(4) == "550 5.5.3 Too many recipients"  # the DATA command


def test_maxhops(smtp, queue):
    def hops(n):
        return (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"
                + b"Received: x\r\n" * n + b"\r\nbody\r\nReceived: not a header\r\n.\r\n")
    assert smtp(hops(3), MAXHOPS="3").codes[-1] == 250
    r = smtp(hops(4), MAXHOPS="3")
    assert r.lines[-1] == "554 5.6.0 This message is looping, too many hops."
    assert len(queue.messages()) == 1


def test_check_fqdn(smtp):
    r = smtp(b"MAIL FROM:<a>\r\nMAIL FROM:<a@host>\r\nMAIL FROM:<>\r\nRCPT TO:<>\r\nRCPT TO:<y>\r\n")
    assert r.lines[1:] == [
        "554 5.1.2 Address is missing a domain name",
        "554 5.1.2 Address does not contain a fully qualified domain name",
        "250 2.1.0 Sender accepted.",
        "554 5.1.2 Recipient address may not be empty",
        "554 5.1.2 Address is missing a domain name",
    ]


def test_defaulthost_defaultdomain_sender_domains(smtp, queue):
    r = smtp(b"MAIL FROM:<a>\r\nRCPT TO:<y@example>\r\nDATA\r\nx\r\n.\r\n", DEFAULTHOST="b.example",
             DEFAULTDOMAIN="org")
    assert r.codes == [220, 250, 250, 354, 250]
    assert queue.messages()[0][0] == b"Fa@b.example\0Ty@example.org\0\0"
    r = smtp(b"MAIL FROM:<a@b.example>\r\nMAIL FROM:<a@ours.example>\r\nMAIL FROM:<a@sub.ours.example>\r\n",
             SENDER_DOMAINS="ours.example")
    assert r.codes[1:] == [554, 250, 554]


def test_greeting_and_header_add(smtp, queue):
    r = smtp(b"HELO h\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nx\r\n.\r\n",
             SMTPGREETING="mail.example Welcome", HEADER_ADD="X-Added: yes")
    assert r.lines[0] == "220 mail.example Welcome ESMTP"
    message = queue.messages()[0][1]
    assert message.startswith(b"X-Added: yes\nReceived: from h (client.example [198.51.100.7])\n")
    assert b"with SMTP via TCP" in message


def test_qmail_queue_exit_codes(smtp, queue):
    dialogue = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nx\r\n.\r\n"
    expected = {11: "554 5.1.3 Address too long.", 31: "554 5.3.0 Message refused.",
                25: "554 5.3.0 Message rejected by qmail-queue.",
                71: "451 4.3.0 Message refused by mail server.", 53: "451 4.3.0 Write error (queue full?).",
                91: "451 4.3.0 Envelope format error.", 100: "451 4.3.0 Temporary qmail-queue failure."}
    for code, reply in expected.items():
        assert smtp(dialogue, QQ_EXIT=str(code)).lines[-1] == reply
    assert smtp(dialogue, QQ_EXIT="71", QQERRMSG_71="Queue on holiday").lines[-1] == "451 Queue on holiday"
    assert queue.messages() == []


def test_qmail_queue_missing_or_killed(smtp, tmp_path, queue):
    dialogue = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"
    r = smtp(dialogue, QMAILQUEUE=str(tmp_path / "nowhere"))
    assert r.lines[3] == "451 4.3.0 Could not start qmail-queue."
    killer = tmp_path / "killer"
    killer.write_text("#!/bin/sh\nkill -9 $$\n")
    killer.chmod(0o755)
    r = smtp(dialogue, QMAILQUEUE=str(killer))
    assert r.lines[4] == "451 4.3.0 qmail-queue crashed."
    assert r.codes[-1] == 221


def test_qmail_queue_hang_is_bounded(smtp, queue):
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nx\r\n.\r\n",
             QQ_HANG="1", QMAILQUEUE_TIMEOUT="1")
    assert r.lines[-1] == "451 4.3.0 qmail-queue timed out."
    assert queue.messages() == []


def test_client_vanishing_mid_data_queues_nothing(smtp, queue):
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nhalf a message\r\n")
    assert r.returncode == 1
    assert "Connection dropped" in r.stderr
    assert queue.messages() == []


def test_eof_without_quit_exits_zero(smtp):
    assert smtp(b"NOOP\r\n").returncode == 0


def test_bare_lf_smuggling_rejected(smtp, queue):
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nx\n.\nMAIL FROM:<e@b.example>\r\n"
             b".\r\nQUIT\r\n")
    assert r.lines[-2] == "554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF."
    assert queue.messages() == []
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nx\n.\nRSET\r\n.\r\n",
             DATA_BARE_EOL="normalize")
    assert r.codes[-1] == 250
    assert len(queue.messages()) == 1


def test_hand_typed_lf_session(smtp, queue):
    r = smtp(b"HELO me\nMAIL FROM:<a@b.example>\nRCPT TO:<y@example.org>\nDATA\nhello\n.\nQUIT\n")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert queue.messages()[0][1].endswith(b"\nhello\n")


def test_maxnotimpl_exits_1(smtp):
    r = smtp(b"A\r\nB\r\nC\r\nNOOP\r\n", MAXNOTIMPL="2")
    assert r.codes == [220, 500, 500, 503] and r.returncode == 1


def test_bad_number_in_config_fails_closed(smtp):
    r = smtp(b"QUIT\r\n", DATABYTES="lots")
    assert r.lines == ["421 4.3.0 Configuration error; try again later."]
    assert r.returncode == 1 and "DATABYTES" in r.stderr


def test_idle_timeout(base_env):
    import subprocess
    import sys
    from pathlib import Path

    prog = str(Path(sys.executable).parent / "smtpfront-qmail")
    p = subprocess.Popen([prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**base_env, "TIMEOUT": "0.3"})
    out = p.stdout.read()  # stdin stays open: the client is idle, not gone
    p.wait(timeout=10)
    p.stdin.close()
    assert out.decode().endswith("421 4.4.2 Timeout; closing connection.\r\n")
    assert p.returncode == 1


def test_session_timeout(base_env):
    import subprocess
    import sys
    import time
    from pathlib import Path

    prog = str(Path(sys.executable).parent / "smtpfront-qmail")
    p = subprocess.Popen([prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**base_env, "SESSION_TIMEOUT": "0.6", "TIMEOUT": "5"})
    for _ in range(4):
        time.sleep(0.25)
        try:
            p.stdin.write(b"NOOP\r\n")
            p.stdin.flush()
        except BrokenPipeError:
            break
    out = p.stdout.read().decode()
    p.wait(timeout=10)
    assert out.endswith("421 4.4.2 Session time limit exceeded; closing connection.\r\n")


def test_queuedir_backend(smtp, tmp_path):
    q = tmp_path / "q"
    for sub in ("tmp", "new"):
        (q / sub).mkdir(parents=True)
    r = smtp(DIALOGUE, program="smtpfront-queuedir", QUEUEDIR=str(q))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert r.reply_to(5) == "250 2.6.0 Message accepted."  # as mailfront's queuedir back end says it
    [f] = list((q / "new").iterdir())
    seconds, micro, pid = f.name.split(".")
    assert len(micro) == 6 and seconds.isdigit() and pid.isdigit()
    data = f.read_bytes()
    assert data.startswith(b"a@b.example\0y@example.org\0\0Received: ")
    assert data.endswith(b"\n.stuffed\nbody\n")
    assert list((q / "tmp").iterdir()) == []
    # logged in the qmail back end's words (its `qp PID` is the file here), as ours: mailfront logs nothing
    size = len(data) - len(b"a@b.example\0y@example.org\0\0")
    assert re.search(rf"^mailfront\[\d+\]: smtpfront: 2\.6\.0 Accepted message file {f.name} bytes {size}$", r.stderr,
                     re.M), r.stderr


def test_queuedir_unwritable(smtp, tmp_path):
    q = tmp_path / "q"
    (q / "new").mkdir(parents=True)  # no tmp/: the queue file can't be made, and MAIL says so
    r = smtp(DIALOGUE, program="smtpfront-queuedir", QUEUEDIR=str(q))
    assert r.reply_to(2) == "451 4.3.0 Error creating queue file"
    assert list((q / "new").iterdir()) == []


def test_queuedir_requires_queuedir(smtp):
    r = smtp(DIALOGUE, program="smtpfront-queuedir")
    assert r.reply_to(2) == "451 4.3.0 Missing backend configuration parameter"


def test_echo_answers_with_the_envelope_and_logs_the_message_start(smtp):
    r = smtp(DIALOGUE, program="smtpfront-echo")
    assert r.lines[8:] == ["250 Sender='a@b.example'.", "250 Recipient='y@example.org'.",
                           "354 End your message with a period on a line by itself.",
                           r.lines[11], "221 2.0.0 Good bye."]
    received = r.lines[11]
    assert received.startswith("250 Received ") and received.endswith(" bytes.")
    assert "mailfront[" in r.stderr and "]: Received: from client.example (client.example [198.51.100.7])  by " \
        in r.stderr


def test_no_traceback_and_no_password_in_logs(smtp, cvm_socket):
    import base64

    plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode()).decode()
    r = smtp(f"AUTH PLAIN {plain}\r\nQUIT\r\n".encode(), CVM_SASL_PLAIN=cvm_socket["module"])
    assert r.codes == [220, 235, 221]
    assert PASSWORD not in r.stderr and plain not in r.stderr
    assert "Traceback" not in r.stderr


def test_program_runs_from_any_directory(base_env, tmp_path):
    r = run_program("smtpfront-qmail", b"QUIT\r\n", {**base_env, "PWD": str(tmp_path)})
    assert r.codes == [220, 221]
    assert os.path.isdir(tmp_path)


def test_launchers_start_without_site_and_ignore_python_variables(smtp, tmp_path, base_env):
    """The -I -S launchers (make venv installs them) behave as pip's scripts and can't be hijacked."""
    import subprocess

    from conftest import BIN

    launchers = tmp_path / "bin"
    launchers.mkdir()
    subprocess.run([str(BIN / "smtpfront-launchers"), str(launchers)], check=True, capture_output=True)
    first = (launchers / "smtpfront-qmail").read_text().splitlines()[0]
    assert first.startswith("#!") and first.endswith(" -IS")
    poison = tmp_path / "poison" / "smtpfront"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise SystemExit('hijacked')\n")
    env = {**base_env, "PYTHONPATH": str(poison.parent), "PYTHONSTARTUP": str(poison / "__init__.py")}
    fast = run_program(str(launchers / "smtpfront-qmail"), DIALOGUE, env)
    with_site = subprocess.run([str(BIN / "python"), "-c", "from smtpfront.programs import smtpfront_qmail as m; m()"],
                               input=DIALOGUE, env=base_env, capture_output=True).stdout.decode().split("\r\n")
    assert [line.split(" qp ")[0] for line in fast.lines] == [line.split(" qp ")[0] for line in with_site[:-1]]
    assert fast.codes == [220, 250, 250, 250, 354, 250, 221]


def test_launchers_into_a_directory_that_cannot_be_written(tmp_path):
    import subprocess

    from conftest import BIN

    done = subprocess.run([str(BIN / "smtpfront-launchers"), str(tmp_path / "missing")], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == f"smtpfront-launchers: cannot write into {tmp_path / 'missing'}: No such file or directory\n"


def test_launchers_put_the_standard_library_first(tmp_path, base_env):
    """A module beside the package named like a standard one (select, ssl) is never loaded."""
    import sys
    from pathlib import Path

    import smtpfront
    from smtpfront.launchers import write_launchers

    site = tmp_path / "site"
    site.mkdir()
    (site / "smtpfront").symlink_to(Path(smtpfront.__file__).parent)
    (site / "select.py").write_text("raise SystemExit('shadowed')\n")
    [launcher] = [p for p in write_launchers(tmp_path, sys.executable, str(site)) if p.name == "smtpfront-qmail"]
    r = run_program(str(launcher), DIALOGUE, base_env)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221] and "shadowed" not in r.stderr
