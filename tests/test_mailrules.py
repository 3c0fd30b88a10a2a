"""MAILRULES: parser, semantics, both syntaxes, fail-closed, the cache and the `mailrules` tool."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfront import mailrules
from smtpfront.globs import Glob

CLASSIC = "k*@example.com:*:Welcome\nk*@example.net:*\nd*:*:Not from here\n"
SELECTORS = ":sender\nk*@example.com:*:Welcome\nk*@example.net:*\nd*:*:Not from here\n"


def rules_of(text: str):
    return mailrules.build(text)


def verdict(text: str, sender: str, recipient: str | None = None):
    rules = rules_of(text)
    kind = mailrules.RECIPIENT if recipient is not None else mailrules.SENDER
    decided = list(mailrules.decide(rules, kind, sender, recipient))
    return decided[-1] if decided else None


@pytest.mark.parametrize("text", [CLASSIC, SELECTORS])
def test_classic_policy_both_syntaxes(text):
    assert verdict(text, "a@Example.COM").response == (250, "Welcome")
    assert verdict(text, "a@example.net").response == (250, "OK")
    assert verdict(text, "a@other.org").response == (553, "Not from here")


def test_each_letter_and_default_texts():
    assert verdict("d*:*", "a@b").response == (553, "Rejected")
    assert verdict("z*:*", "a@b").response == (451, "Deferred")
    assert verdict("k*:*", "a@b").response == (250, "OK")
    assert verdict("n*:*\nd*:*", "a@b").kind == "d"
    assert verdict("p*:*\nd*:*", "a@b").kind == "p"


def test_compatibility_classification_and_recipient_rules():
    text = "k*:*@x.example:to x\nd*@evil.example:*@y.example:no\nd*:*"
    rules = rules_of(text)
    assert [r.applies_to for r in rules] == ["recipient", "recipient", "sender"]
    assert verdict(text, "a@b", "u@x.example").response == (250, "to x")
    assert verdict(text, "a@evil.example", "u@y.example").response == (553, "no")
    assert verdict(text, "a@good.example", "u@y.example") is None


def test_selector_scopes_and_recipient_needs_both():
    text = ":sender\nd*@bad.example:[0-9]:no\n:recipient\nd*@q.example:*:only rcpt\n"
    assert verdict(text, "a@bad.example").response == (553, "no")  # recipient field ignored
    assert verdict(text, "a@q.example") is None
    assert verdict(text, "a@q.example", "b@w.example").response == (553, "only rcpt")
    assert verdict(text, "a@r.example", "b@w.example") is None


def test_escapes():
    [rule] = rules_of(r"k*:*:one\ntwo\: three\\\101\102")
    assert rule.response == (250, "one\r\ntwo: three\\AB")
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.parse("k*:*\nk*:*:bad\\12x", "f")
    assert e.value.line == 2


def test_fields_databytes_relayclient_env():
    [rule] = rules_of(r"k*:*@x.example:ok:1000:-suffix:RELAYCLIENT=,NOTE=a\,b")
    assert (rule.databytes, rule.relayclient, rule.env) == (1000, "-suffix", (("RELAYCLIENT", ""), ("NOTE", "a,b")))


def test_negation_and_empty_pattern():
    assert verdict("d!*@ours.example:*", "a@theirs.example").kind == "d"
    assert verdict("d!*@ours.example:*", "a@ours.example") is None
    assert verdict("d:*:empty only", "").response == (553, "empty only")
    assert verdict("d:*:empty only", "a@b") is None


def test_list_lookups(tmp_path):
    from test_cdb import make_cdb

    (tmp_path / "hosts").write_text("# domains\nlist.example\n@at.example\n")
    (tmp_path / "addrs").write_text("who@x.example\n@whole.example\n")
    make_cdb(tmp_path / "hosts.cdb", {b"cdb.example": b"", b"full@addr.example": b""})
    text = (f":recipient\nk*:[[@{tmp_path}/hosts]]:list\nk*:[[@{tmp_path}/hosts.cdb]]:cdb\n"
            f"k*:[[{tmp_path}/hosts.cdb]]:cdbfull\nk*:[[@{tmp_path}/missing.cdb]]:never\n"
            f":sender\nd[[{tmp_path}/addrs]]:*:listed\n")
    assert verdict(text, "s@a", "u@LIST.example").response == (250, "list")
    assert verdict(text, "s@a", "u@at.example").response == (250, "list")
    assert verdict(text, "s@a", "u@cdb.example").response == (250, "cdb")
    assert verdict(text, "s@a", "Full@Addr.example").response == (250, "cdbfull")
    assert verdict(text, "s@a", "u@none.example") is None
    assert verdict(text, "WHO@x.example").response == (553, "listed")
    assert verdict(text, "any@whole.example").response == (553, "listed")


def test_missing_text_list_is_an_error(tmp_path):
    path = tmp_path / "rules"
    path.write_text(f"k*:[[@{tmp_path}/nope]]\n")
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(path))
    assert e.value.line == 1


def test_cache_is_used_and_invalidated(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    first = mailrules.load(str(path))
    cache = Path(str(path) + ".cache")
    assert cache.exists()
    cache.write_bytes(cache.read_bytes())  # still valid
    assert [r.line for r in mailrules.load(str(path))] == [r.line for r in first]
    path.write_text("d*:*:changed\n")
    assert next(iter(mailrules.load(str(path)))).response == (553, "changed")


def test_cache_dir_when_beside_is_not_writable(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    mailrules.load(str(path), str(cache_dir))
    assert len(list(cache_dir.iterdir())) == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="kdznp*?[]!:\\n0123@ab.\n#", max_size=60))
def test_parser_raises_only_located_errors(text):
    try:
        mailrules.parse(text, "f")
    except mailrules.RulesError as e:
        assert 1 <= e.line <= text.count("\n") + 1


# ---- globs ----------------------------------------------------------------

def reference(pattern: str, subject: str) -> bool:
    """fnmatch, case-folded, with sets made range-free like mailfront's."""
    return fnmatch.fnmatchcase(subject.lower(), pattern.lower())


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab*?.@", max_size=8), st.text(alphabet="abAB.@", max_size=8))
def test_glob_matches_reference(pattern, subject):
    assert Glob(pattern).matches(subject) == reference(pattern, subject)


def test_glob_sets_have_no_ranges():
    g = Glob("a[0-9]")
    assert g.matches("a0") and g.matches("a-") and g.matches("a9") and not g.matches("a5")
    assert Glob("a[!xy]").matches("az") and not Glob("a[!xy]").matches("aX")
    assert Glob("[ab").matches("[ab")  # unterminated: literal


def test_glob_case():
    assert Glob("*@EXAMPLE.com").matches("x@example.COM")
    assert not Glob("TVq*", fold=False).matches("tvqx")


# ---- through the programs -------------------------------------------------

def test_rules_in_a_session(smtp, tmp_path, queue):
    rules = tmp_path / "rules"
    rules.write_text("k*@example.com:*:Welcome\\nfriend\nz*@tmp.example:*\n"
                     "k*:*@relay.example:::-r:RELAYCLIENT=\nn*:*@big.example::10\nd*:*\n")
    r = smtp(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<y@relay.example>\r\nRCPT TO:<y@other.example>\r\n"
             b"DATA\r\nhi\r\n.\r\nMAIL FROM:<a@tmp.example>\r\nMAIL FROM:<a@x.example>\r\n", MAILRULES=str(rules))
    assert r.lines[1:4] == ["250-Welcome", "250 friend", "250 OK"]
    assert r.reply_to(3) == "250 2.1.5 Recipient accepted."  # RELAYCLIENT set by the rule
    assert r.reply_to(6) == "451 Deferred"
    assert r.reply_to(7) == "553 Rejected"
    assert queue.messages()[0][0] == b"Fa@example.com\0Ty@relay.example-r\0Ty@other.example\0\0"


def test_rule_databytes(smtp, tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("k*:*@big.example::10\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@big.example>\r\nDATA\r\n" + b"x" * 50 + b"\r\n.\r\n",
             MAILRULES=str(rules), RELAYCLIENT="")
    assert r.lines[-1] == "552 5.2.3 Sorry, that message exceeds the maximum message length."


def test_missing_or_bad_rules_fail_closed(smtp, tmp_path):
    r = smtp(b"MAIL FROM:<a@b.example>\r\n", MAILRULES=str(tmp_path / "none"))
    assert r.lines == ["421 4.3.0 Could not open $MAILRULES file"] and r.returncode == 1
    bad = tmp_path / "bad"
    bad.write_text("k*:*\nq*:*\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\n", MAILRULES=str(bad))
    assert r.codes == [421] and f"{bad}:2:" in r.stderr


def test_echo_tries_a_rules_file(smtp, tmp_path):
    rules = tmp_path / "rules"
    rules.write_text(CLASSIC)
    r = smtp(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<a@x.org>\r\n",
             program="smtpfront-echo", MAILRULES=str(rules))
    assert r.lines[1] == "250 Welcome" and r.lines[2] == "250 Recipient='y@example.org'."
    assert r.lines[-1] == "553 Not from here"


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "mailrules"), *args], capture_output=True, text=True)


def test_tool_check(tmp_path):
    good = tmp_path / "good"
    good.write_text(SELECTORS)
    assert tool("check", str(good)).returncode == 0
    bad = tmp_path / "bad"
    bad.write_text("k*@a:*\nd*:*\nk*@late:*\nx oops\n")
    out = tool("check", str(bad))
    assert out.returncode == 1
    assert f"{bad}:4: unknown rule type" in out.stdout
    assert f"{bad}:3: warning: unreachable, line 2" in out.stdout


def test_tool_test_names_the_deciding_line(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("# comment\n" + CLASSIC + ":recipient\nd*:*@no.example:not there\n")
    out = tool("test", str(rules), "--sender", "a@example.com", "--recipient", "b@no.example")
    assert "sender <a@example.com>: line 2: k*@example.com:*:Welcome  -> 250 Welcome" in out.stdout
    assert "recipient <b@no.example>: line 6:" in out.stdout and "553 not there" in out.stdout
    out = tool("test", str(rules), "--sender", "a@other.org")
    assert "line 4" in out.stdout and out.returncode == 2


PATTERNS = ["*", "*@a.example", "*@B.example", "x@a.example", "X@A.EXAMPLE", "*a*", "!*@a.example", "@a.example",
            "*@*", "x*", "*@c@a.example", "noat", "[x]@a.example", "*.example"]
ADDRESSES = ["x@a.example", "y@b.example", "X@A.example", "@a.example", "noat", "x@c@a.example", "", "z@c.example"]


def linear(rules, applies_to, sender, recipient):
    """The definition the index must agree with: every rule in file order."""
    out = []
    for rule in rules:
        if rule.applies_to == applies_to and rule.matches(sender, recipient):
            out.append(rule.line)
            if rule.kind != mailrules.NOOP:
                break
    return out


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from([":sender", ":recipient"]),
                       st.tuples(st.sampled_from("kdnp"), st.sampled_from(PATTERNS), st.sampled_from(PATTERNS))),
             max_size=25),
    st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES),
)
def test_index_agrees_with_a_linear_scan(lines, sender, recipient):
    text = rules_text(lines)
    rules = mailrules.build(text)
    for applies_to, rcpt in ((mailrules.SENDER, None), (mailrules.RECIPIENT, recipient)):
        indexed = [rule.line for rule in mailrules.decide(rules, applies_to, sender, rcpt)]
        assert indexed == linear(rules, applies_to, sender, rcpt), text


def test_index_keys():
    assert mailrules.index_key("*@Example.ORG") == "@example.org"
    assert mailrules.index_key("User@Example.org") == "user@example.org"
    for unindexable in ("*", "!*@a.example", "[[@list]]", "*@a.*", "x?@a", "*@b@c", "*x@a.example"):
        assert mailrules.index_key(unindexable) is None


RULE_LINES = st.lists(
    st.one_of(st.sampled_from([":sender", ":recipient", "# comment", ""]),
              st.tuples(st.sampled_from("kdnp"), st.sampled_from(PATTERNS), st.sampled_from(PATTERNS))),
    max_size=25,
)


def rules_text(lines) -> str:
    return "".join(line + "\n" if isinstance(line, str) else f"{line[0]}{line[1]}:{line[2]}\n" for line in lines)


@settings(max_examples=100, deadline=None)
@given(RULE_LINES, st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES))
def test_cached_index_agrees_with_the_text(tmp_path_factory, lines, sender, recipient):
    path = tmp_path_factory.mktemp("r") / "rules"
    path.write_text(rules_text(lines))
    mailrules.load(str(path))  # writes the cache
    cached = mailrules.load(str(path))
    assert isinstance(cached.index, mailrules.CacheIndex)
    fresh = mailrules.build(path.read_text())
    for applies_to, rcpt in ((mailrules.SENDER, None), (mailrules.RECIPIENT, recipient)):
        assert ([r.line for r in mailrules.decide(cached, applies_to, sender, rcpt)]
                == [r.line for r in mailrules.decide(fresh, applies_to, sender, rcpt)]
                == linear(fresh, applies_to, sender, rcpt))
    assert [r.source for r in cached] == [r.source for r in fresh]


def test_damaged_cache_is_rebuilt(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    mailrules.load(str(path))
    cache = Path(str(path) + ".cache")
    cache.write_bytes(cache.read_bytes()[:100])
    rules = mailrules.load(str(path))  # the truncated cache is not trusted
    assert [r.response for r in rules][-1] == (553, "Not from here")
    assert isinstance(mailrules.load(str(path)).index, mailrules.CacheIndex)  # and it was written again
