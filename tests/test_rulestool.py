"""`mailrules check` and `mailrules test`, run as the installed program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import smtpfront
from smtpfront import mailrules

SELECTORS = ":sender\nk*@example.com:*:Welcome\nk*@example.net:*\nd*:*:Not from here\n:recipient\nk*:*@in.example\n"


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "mailrules"), *args], capture_output=True, text=True)


def test_check_a_good_file_says_ok_on_one_line(tmp_path):
    good = tmp_path / "good"
    good.write_text(SELECTORS)
    out = tool("check", str(good))
    assert (out.returncode, out.stdout) == (0, f"{good}: 4 rules (3 sender, 1 recipient), OK\n")


def test_check_warns_in_line_order_without_failing(tmp_path):
    (tmp_path / "dir").mkdir()
    rules = tmp_path / "rules"
    rules.write_text(f" k*@a.example:*\nk\nxyz\nk*:[ab\nk*:*:x::-r:FOO\n&*@g.example:*:text\nk*:*@in.example\n"
                     f"d*:[[{tmp_path}/dir]]\nd*:[[{tmp_path}/no.cdb]]\nkfoo@b.example\n:s\nd*:*\nk*@late:*\n&a:*\n")
    out = tool("check", str(rules))
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[-1] == f"{rules}: 10 rules (4 sender, 6 recipient), OK"
    found = [(int(line.split(":")[1]), line.split(": ", 2)[2]) for line in lines[:-1]]
    assert [n for n, _ in found] == sorted(n for n, _ in found)  # line order
    assert all(line.split(": ")[1] == "warning" for line in lines[:-1])
    said = dict(found[::-1])  # the first warning of each line
    assert said[1].startswith("starts with white space")
    assert said[2].startswith("a bare 'k'")
    assert said[3].startswith("ignored: a line must start with a rule letter")
    assert said[4].startswith("unclosed [ in '[ab'")
    assert said[5].startswith("environment entry without '=': 'FOO'")
    assert said[6].startswith("a guard's response, databytes, relayclient and environment are ignored")
    assert said[8].startswith(f"list file {tmp_path}/dir is a directory")
    assert said[9].startswith(f"cdb file {tmp_path}/no.cdb does not exist")
    assert said[10].startswith("no recipient field")
    assert said[12].startswith("unreachable, line 5 matches everything") and 13 in said
    assert said[14].startswith("guard not followed by a rule")


def test_check_errors_are_what_the_server_refuses(tmp_path, smtp):
    rules = tmp_path / "rules"
    rules.write_text(f"k*:*\n:q\nd*:*:x:1O\nk*:[[{tmp_path}/nope]]\nk*:[[@{tmp_path}/nope.cdb]]\n")
    out = tool("check", str(rules))
    assert out.returncode == 1 and "OK" not in out.stdout
    assert out.stdout.splitlines() == [
        f"{rules}:2: unknown selector ':q': C takes only :s... and :r...",
        f"{rules}:3: databytes is not a number: '1O'",
        f"{rules}:4: list file {tmp_path}/nope: No such file or directory",
        f"{rules}:5: warning: cdb file {tmp_path}/nope.cdb does not exist: the pattern matches nothing",
    ]
    for bad, line in ((":q\n", 1), ("d*:*:x:1O\n", 1), (f"k*:*\nk*:[[{tmp_path}/nope]]\n", 2)):
        rules.write_text(bad)
        assert tool("check", str(rules)).returncode == 1
        served = smtp(b"QUIT\r\n", MAILRULES=str(rules))
        assert served.codes == [421] and f"{rules}:{line}:" in served.stderr


def test_check_exit_codes_and_usage(tmp_path):
    assert tool("check", str(tmp_path / "missing")).returncode == 1
    assert tool("check").returncode == 2
    assert tool("frobnicate", "x").returncode == 2
    out = tool("--help")
    assert out.returncode == 0
    assert "exit 0: no error (warnings allowed); 1: errors, or the file can't be read; 2: usage." in out.stdout
    assert "exit 0: every address accepted or passed on; 2: an address is rejected or deferred;" in out.stdout


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    out = tool(flag)
    assert (out.returncode, out.stdout) == (0, f"mailrules {smtpfront.__version__}\n")


def test_test_names_the_deciding_line(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("# comment\nk*@example.com:*:Welcome\nk*@example.net:*\nd*:*:Not from here\n"
                     ":recipient\nd*:*@no.example:not there\n")
    out = tool("test", str(rules), "--sender", "a@example.com", "--recipient", "b@no.example")
    assert "sender <a@example.com>: line 2: k*@example.com:*:Welcome  -> 250 Welcome" in out.stdout
    assert "recipient <b@no.example>: line 6: d*:*@no.example:not there  -> 553 not there" in out.stdout
    assert out.returncode == 2
    out = tool("test", str(rules), "--sender", "a@example.net", "--recipient", "b@yes.example")
    assert "recipient <b@yes.example>: no rule decides -> normal checks" in out.stdout and out.returncode == 0


def test_test_shows_final_accepts_guards_and_no_ops(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text(":sender\nn*:*::100:-x:NOTE=1\n&*@vip.example:*\n&v*:*\nK*:*:welcome\nd*@vip.example:*:no\n"
                     ":recipient\np*:*@pass.example\n")
    out = tool("test", str(rules), "--sender", "vip@vip.example", "--recipient", "a@pass.example")
    assert out.stdout.splitlines() == [
        "sender <vip@vip.example>: line 2: n*:*::100:-x:NOTE=1  -> no-op, continue "
        "(databytes 100, relayclient '-x', NOTE=1)",
        "sender <vip@vip.example>: line 3: &*@vip.example:*  -> guard matched",
        "sender <vip@vip.example>: line 4: &v*:*  -> guard matched",
        "sender <vip@vip.example>: line 5: K*:*:welcome  -> 250 welcome (K: no further checks)",
        "recipient <a@pass.example>: line 8: p*:*@pass.example  -> pass to the normal checks",
    ]
    assert out.returncode == 0
    out = tool("test", str(rules), "--sender", "x@vip.example")
    assert "line 6: d*@vip.example:*:no  -> 553 no" in out.stdout and "guard" not in out.stdout
    assert out.returncode == 2
    rules.write_text("K*:*\n")
    out = tool("test", str(rules), "--sender", "a@b.example")
    assert out.stdout == "sender <a@b.example>: line 1: K*:*  -> 250 (the back end's reply) (K: no further checks)\n"


def test_test_of_a_refused_file(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("k*:*\n:x\n")
    out = tool("test", str(rules), "--sender", "a@b.example")
    assert out.returncode == 1
    said = f"{rules}:2: unknown selector ':x': C takes only :s... and :r...  -> 421 {mailrules.SYNTAX_ERROR}\n"
    assert out.stdout == said
    assert not list(tmp_path.glob("*.cache"))  # the tool writes no cache
