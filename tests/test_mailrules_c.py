"""MAILRULES files through the C smtpfront-qmail (mailfront 2.12) and through ours: the same replies.

Each case runs one rules file and one dialogue through both programs and
compares every reply line and the exit status, unless the case is listed as
an intended difference (docs/differences.md says why).  The globs are also
compared with bglibs' own str_case_glob / str_glob (libbg, which mailfront
links), and random rules files with the C program.  `K` and `&` lines are
mailfront 2.15/2.20 letters that 2.12 ignores: they are tested against the
SPEC in test_mailrules.py.
"""

from __future__ import annotations

import ctypes
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import C_QMAIL, need, run_program
from smtpfront import globs

MAIL = b"MAIL FROM:<a@b.example>\r\n"
RCPTS = b"RCPT TO:<x@example.org>\r\nRCPT TO:<y@other.example>\r\n"
LIST = "# comment\n\n  Listed@B.example  \n@whole.example\nplain.example\n#hidden@b.example\n"

# name: (rules ({d} is a directory with LIST as "list"), dialogue, intended difference or None)
CASES = {
    "env entry without =": ("k*@b.example:*::::FOO,RELAYCLIENT=\n", MAIL + RCPTS, None),
    "other first characters": ("x d*:*:x\n;d*:*\n#d*:*\n*d:*\n\nd*@b.example:*:after\n", MAIL, None),
    ":s and :r": (":s\nd*@q.example:*:s\n:r\nd*:*@other.example:r\n", MAIL + RCPTS, None),
    ":sender with spaces": (":sender   \nd*@b.example:nobody:sel\n", MAIL, None),
    ":rubbish is :recipient": (":rubbish\nd*:*:r\n", MAIL + RCPTS, None),
    "bad selector": ("k*:*\n:x\n", MAIL, None),
    "bare colon": (":\n", MAIL, None),
    "upper-case selector": (":Sender\n", MAIL, None),
    "non-numeric databytes": ("k*:*:x:12a\n", MAIL, None),
    "databytes with a space": ("k*:*:x: 1\n", MAIL, None),
    "empty databytes": ("k*@b.example:*:ok::-x\n", MAIL + RCPTS, None),
    "missing text list": ("k*:*\nd[[{d}/nope]]:*\n", MAIL, None),
    "missing domain list": ("k*:[[@{d}/nope]]\n", MAIL, None),
    "missing cdb": ("d[[{d}/nope.cdb]]:*:hit\n", MAIL,
                    "C's cdb_find fails on the missing file and the rule matches; documented: silently ignored"),
    "empty cdb": ("d[[{d}/empty.cdb]]:*:hit\n", MAIL, "an unreadable cdb: C matches every address, we answer 451"),
    "directory as a list": ("d[[{d}]]:*:hit\n", MAIL, "C reads a directory as an empty list; we answer 451"),
    "!!": ("d!!*@b.example:*:double\n", MAIL, None),
    "!!!": ("d!!!*@b.example:*:triple\nd*:*:after\n", MAIL, None),
    "short [[a]]": ("d[[a]]:*:short\nk*:*:after\n", MAIL, None),
    "[[ab]] is a list": ("d[[ab]]:*:list\n", MAIL, None),
    "octal": ("d*:*:ok\\101\\102c\n", MAIL, "\\### escapes rendered in full"),
    "octal in a pattern": ("d\\141@b.example:*:octal\n", MAIL, "\\### escapes rendered in full"),
    "trailing backslash": ("d*:*:abc\\\n", MAIL, None),
    "7+ fields": ("k*@b.example:*:ok:0:-x:A=1:B:C:D\n", MAIL + RCPTS, None),
    "leading spaces": ("   d*@b.example:*:lead\n", MAIL, None),
    "tabs and CRLF": ("\td*@q.example:*:tab\t\r\n \tk*@b.example:*:crlf \r\n", MAIL, None),
    "escapes": ("d*:*:a\\:b\\\\c\\nd\\qe\n", MAIL, None),
    "no recipient field": ("da@b.example\n", MAIL + RCPTS, None),
    "negated star recipient": ("d*@b.example:!*:sender rule\n", MAIL, None),
    "NUL in a line": ("d*:*:x\0:abc\n", MAIL, None),
    "text list": ("d[[{d}/list]]:*:listed\n:recipient\nd*:[[@{d}/list]]:domain\n",
                  b"MAIL FROM:<listed@b.example>\r\nMAIL FROM:<q@whole.example>\r\nMAIL FROM:<hidden@b.example>\r\n"
                  b"MAIL FROM:<a@b.example>\r\nRCPT TO:<q@plain.example>\r\nRCPT TO:<q@whole.example>\r\n", None),
    "globs": (":sender\nd[!ab]@b.example:*:neg set\nd[A]@b.example:*:set case\nda[@b.example:*:open set\n"
              "d*[0-9]@b.example:*:no range\n",
              b"MAIL FROM:<c@b.example>\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<b@b.example>\r\n"
              b"MAIL FROM:<a5@b.example>\r\nMAIL FROM:<a-@b.example>\r\n", None),
    "star then ?": (":recipient\nd*:x@example.org*?:quirk\n", MAIL + RCPTS, None),
}


def _run(program: str, name: str, base_env: dict, tmp_path) -> tuple[list[str], int]:
    rules_text, dialogue, _ = CASES[name]
    d = tmp_path / ("c" if program == C_QMAIL else "ours")
    d.mkdir()
    (d / "list").write_text(LIST)
    (d / "empty.cdb").write_bytes(b"")
    rules = d / "rules"
    rules.write_bytes(rules_text.format(d=d).encode())
    result = run_program(program, dialogue + b"QUIT\r\n", {**base_env, "MAILRULES": str(rules),
                                                           "MAILRULES_CACHE": str(d)})
    return result.lines, result.returncode


@pytest.mark.parametrize("name", list(CASES))
def test_same_as_c_mailfront(name, base_env, tmp_path):
    need(C_QMAIL)
    ours = _run("smtpfront-qmail", name, base_env, tmp_path)
    theirs = _run(C_QMAIL, name, base_env, tmp_path)
    if CASES[name][2] is None:
        assert ours == theirs
    else:
        assert ours != theirs, f"listed as a difference ({CASES[name][2]}) but identical"


# ---- random rules files ----------------------------------------------------------

FIELD = st.sampled_from(["*", "", "a@b.example", "*@b.example", "!*@b.example", "!!*", "*@*", "[ab]@*", "[!x]*",
                         "a[@*", "*?", "A@B.EXAMPLE", "*.example", "*@other*", "x\\:y", "\\!*", "*@example.org",
                         "[[a]]", "?@b.example"])
RULE = st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from("kdznp"),
                 st.lists(FIELD, min_size=0, max_size=2),
                 st.sampled_from(["", ":", ":text", ":a\\nb", ":x\\:y"]),
                 st.sampled_from(["", ":", ":10", ":0", ":x1"]),
                 st.sampled_from(["", ":", ":-r"]),
                 st.sampled_from(["", ":RELAYCLIENT=", ":FOO", ":A=1,B:c"]))
LINE = st.one_of(st.sampled_from([":sender", ":recipient", ":s", ":r", ":x", "# c", "xyz", "", " :sender"]),
                 RULE.map(lambda r: r[0] + r[1] + ":".join(r[2]) + "".join(r[3:]) if len(r[2]) == 2
                          else r[0] + r[1] + ":".join(r[2])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, max_size=8))
def test_random_rules_files_same_as_c(base_env, tmp_path_factory, lines):
    need(C_QMAIL)
    d = tmp_path_factory.mktemp("random")
    rules = d / "rules"
    rules.write_text("\n".join(lines) + "\n")
    dialogue = MAIL + RCPTS + b"RCPT TO:<a@b.example>\r\nMAIL FROM:<z@other.example>\r\nRCPT TO:<q@example.org>\r\n"
    env = {**base_env, "MAILRULES": str(rules), "MAILRULES_CACHE": str(d)}
    ours = run_program("smtpfront-qmail", dialogue, env)
    theirs = run_program(C_QMAIL, dialogue, env)
    assert (ours.lines, ours.returncode) == (theirs.lines, theirs.returncode), rules.read_text()


# ---- the globs against bglibs' own ------------------------------------------------

class _Str(ctypes.Structure):
    _fields_ = [("s", ctypes.c_char_p), ("len", ctypes.c_uint), ("size", ctypes.c_uint)]


@pytest.fixture(scope="module")
def libbg():
    for path in ("/usr/lib/libbg.so.2", "/usr/lib/x86_64-linux-gnu/libbg.so.2", "/lib/libbg.so.2"):
        if os.path.exists(path):
            return ctypes.CDLL(path)
    pytest.fail("libbg.so.2 (bglibs, installed with mailfront) is missing: run .ci/run")


def bglibs(function, subject: bytes, pattern: bytes) -> bool:
    s, p = _Str(subject, len(subject), 0), _Str(pattern, len(pattern), 0)
    return function(ctypes.byref(s), ctypes.byref(p)) != 0


# a backslash that ends a pattern inside an open set makes bglibs read past the end: left out
PATTERN = st.binary(max_size=8).map(lambda b: bytes(b"ab*?[]!^\\A@"[c % 11] for c in b)).filter(
    lambda p: not (p.endswith(b"\\") and b"[" in p))
SUBJECT = st.binary(max_size=7).map(lambda b: bytes(b"abAB[]!^\\@"[c % 10] for c in b))


@settings(max_examples=1500, deadline=None)
@given(PATTERN, SUBJECT)
def test_globs_match_as_bglibs_str_case_glob(libbg, pattern, subject):
    subject = subject.lower()  # mailrules lower-cases the address first
    assert globs.matches(globs.compile(pattern), subject) == bglibs(libbg.str_case_glob, subject, pattern)


@settings(max_examples=1500, deadline=None)
@given(PATTERN, SUBJECT)
def test_globs_match_as_bglibs_str_glob(libbg, pattern, subject):
    """PATTERNS (case-sensitive), on text as on bytes."""
    want = bglibs(libbg.str_glob, subject, pattern)
    assert globs.matches(globs.compile(pattern, fold=False), subject) == want
    assert globs.Glob(pattern.decode("latin-1"), fold=False).matches(subject.decode("latin-1")) == want
