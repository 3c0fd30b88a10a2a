"""MAILRULES: the reader (every line shape C accepts or refuses), semantics, K and &, lists, the index and cache.

What C 2.12 itself answers is compared in test_mailrules_c.py; the tables
here pin down the reading rule by rule, from plugin-mailrules.c.
"""

from __future__ import annotations

import posix
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfront import mailrules

CLASSIC = "k*@example.com:*:Welcome\nk*@example.net:*\nd*:*:Not from here\n"
SELECTORS = ":sender\nk*@example.com:*:Welcome\nk*@example.net:*\nd*:*:Not from here\n"


def decided(text: str | bytes, sender: str, recipient: str | None = None):
    """(line, response) of the rule that decides, or None."""
    rules = mailrules.build(text)
    kind = mailrules.RECIPIENT if recipient is not None else mailrules.SENDER
    matched = list(mailrules.decide(rules, kind, sender, recipient))
    return (matched[-1].line, matched[-1].response) if matched else None


def only(text: str | bytes) -> mailrules.Rule:
    [rule] = mailrules.build(text)
    return rule


# ---- the reader: shapes C accepts --------------------------------------------

# (rules file, sender, recipient or None, what decides: (line, response) or None)
ACCEPTED = [
    ("  d*:*:lead  ", "a@b.example", None, (1, (553, "lead"))),  # stripped at both ends
    ("\td*:*:tab\t\r", "a@b.example", None, (1, (553, "tab"))),
    ("\x0bd*:*:vt\x0c", "a@b.example", None, (1, (553, "vt"))),  # C's isspace: \v and \f too
    ("\xa0d*:*:nbsp", "a@b.example", None, None),  # not C white space: the line is ignored
    ("x foo\nd*:*:after", "a@b.example", None, (2, (553, "after"))),  # other first characters: ignored
    ("#d*:*:comment\nd*:*:after", "a@b.example", None, (2, (553, "after"))),
    (":s\nd*:x.example:sel", "a@b.example", None, (2, (553, "sel"))),  # :s... is :sender
    (":sender   \nd*:x.example:sel", "a@b.example", None, (2, (553, "sel"))),
    (":sxyz\nd*:x.example:sel", "a@b.example", None, (2, (553, "sel"))),
    (":r\nd*:*:sel", "a@b.example", None, None),  # :r... is :recipient
    (":rubbish\nd*:*:sel", "a@b.example", "c@d.example", (2, (553, "sel"))),
    ("d*:*:x:10:rc:A=1,B=2:C=3:y:z", "a@b.example", None, (1, (553, "x"))),  # 7+ fields: the rest is env
    ("d*:*:x::", "a@b.example", None, (1, (553, "x"))),
    ("d*:*:x:", "a@b.example", None, (1, (553, "x"))),
    ("d!!*:*:dbl", "a@b.example", None, (1, (553, "dbl"))),  # each ! toggles
    ("d!!!*:*:tri", "a@b.example", None, None),
    ("d\\!*:*:lit", "!x@b.example", None, (1, (553, "lit"))),  # an escaped ! is a character
    ("d*:!*:neg", "a@b.example", None, (1, (553, "neg"))),  # recipient exactly "*" (negated or not): sender rule
    ("d*:\\*:esc", "a@b.example", None, (1, (553, "esc"))),
    ("d*:**:two", "a@b.example", None, None),  # "**" is not "*": a recipient rule
    ("d*:**:two", "a@b.example", "c@d.example", (1, (553, "two"))),
    ("dfoo@b.example", "foo@b.example", None, None),  # no recipient field: a recipient rule, pattern ""
    ("dfoo@b.example", "foo@b.example", "x@y.example", None),
    ("d", "", "", (1, (553, "Rejected"))),  # a bare letter: empty patterns
    ("d*:*:ab\\ncd", "a@b.example", None, (1, (553, "ab\ncd"))),
    ("d*:*:ab\\:cd\\\\e\\q", "a@b.example", None, (1, (553, "ab:cd\\eq"))),
    ("d*:*:a\\101b", "a@b.example", None, (1, (553, "aAb"))),  # octal, 3 digits (C: a cut-off)
    ("d*:*:a\\1010", "a@b.example", None, (1, (553, "aA0"))),  # at most 3 digits
    ("d*:*:a\\12b", "a@b.example", None, (1, (553, "a\nb"))),  # 2 digits
    ("d*:*:a\\7b", "a@b.example", None, (1, (553, "a\x07b"))),  # 1 digit
    ("d*:*:a\\0b", "a@b.example", None, (1, (553, "a"))),  # a NUL ends the text, as in C
    ("d*:*:abc\\", "a@b.example", None, (1, (553, "abc"))),  # a lone backslash at the end: not refused
    ("d*\\", "a@b.example", None, None),  # ... in a pattern: a NUL, which no address has
    ("d*:*:x\x00yz:abc", "a@b.example", None, (1, (553, "x"))),  # a NUL ends the line
    ("\x00d*:*:x", "a@b.example", None, None),
    ("d*:*:\\0", "a@b.example", None, (1, (553, ""))),  # C: a non-empty text that prints as nothing
    ("d[[a]]:*:short", "a]", None, (1, (553, "short"))),  # 5 characters: a glob (set "[a", then "]")
    ("dA@B.EXAMPLE:*:case", "a@b.example", None, (1, (553, "case"))),
    ("k*:*:ok\r\nd*:*", "a@b.example", None, (1, (250, "ok"))),  # CRLF files
    ("K*:*", "a@b.example", None, (1, (250, None))),  # no text: the back end's words (mailfront 2.22)
    ("K*:*:", "a@b.example", None, (1, (250, None))),
    ("k*:*", "a@b.example", None, (1, (250, "OK"))),  # k keeps 2.12's words
    ("z*:*", "a@b.example", None, (1, (451, "Deferred"))),
    ("p*:*\nd*:*", "a@b.example", None, (1, None)),
    ("n*:*\nd*:*", "a@b.example", None, (2, (553, "Rejected"))),
]


@pytest.mark.parametrize(("text", "sender", "recipient", "expected"), ACCEPTED)
def test_reader_accepts_what_c_accepts(text, sender, recipient, expected):
    assert decided(text.encode("latin-1"), sender, recipient) == expected


@pytest.mark.parametrize(("line", "databytes", "relayclient", "env"), [
    ("k*:*:x:1000:-suffix:RELAYCLIENT=,NOTE=a\\,b", 1000, "-suffix", (("RELAYCLIENT", ""), ("NOTE", "a,b"))),
    ("k*:*:x::", 0, "", ()),
    ("k*:*:x:0", 0, "", ()),
    ("k*:*", 0, "", ()),
    ("k*:*:x:1:r:A=1:2:3", 1, "r", (("A", "1:2:3"),)),  # colons end up in the environment
    ("k*:*:x:1:r:FOO,BAR=1,,=v", 1, "r", (("BAR", "1"), ("", "v"))),  # FOO: no "=", kept nowhere
    ("k*:*:x:1:r:A=1,", 1, "r", (("A", "1"),)),
    ("k*:*:x:1:r\\:s", 1, "r:s", ()),
])
def test_reader_fields(line, databytes, relayclient, env):
    rule = only(line)
    assert (rule.databytes, rule.relayclient, rule.env) == (databytes, relayclient, env)


# ---- the reader: what C refuses, and nothing else ---------------------------

@pytest.mark.parametrize(("text", "line", "reply"), [
    (":x\n", 1, mailrules.SYNTAX_ERROR),
    (":\n", 1, mailrules.SYNTAX_ERROR),
    ("k*:*\n:S\n", 2, mailrules.SYNTAX_ERROR),  # case matters: only s and r
    ("d*:*:x:abc\n", 1, mailrules.SYNTAX_ERROR),
    ("d*:*:x: 10\n", 1, mailrules.SYNTAX_ERROR),
    ("d*:*:x:+1\n", 1, mailrules.SYNTAX_ERROR),
    ("d*:*:x:1x:\n", 1, mailrules.SYNTAX_ERROR),
    ("d*:*:x:1\\\n", 1, mailrules.SYNTAX_ERROR),  # databytes takes no escapes
    ("# fine\nk*:*\n\n   :q\n", 4, mailrules.SYNTAX_ERROR),
])
def test_reader_refuses_what_c_refuses(text, line, reply):
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.parse(text.encode(), "f")
    assert (e.value.line, e.value.reply) == (line, reply)
    assert str(e.value).startswith(f"f:{line}: ")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="kKdznp&x#:!*?[]\\ \t0123sr@ab.,=\0", max_size=14), max_size=8))
def test_parser_raises_only_located_errors(lines):
    """Whatever the file, a refusal is a bad selector or bad databytes, on the line that has it."""
    data = "\n".join(lines).encode("latin-1")
    try:
        mailrules.parse(data, "f")
    except mailrules.RulesError as e:
        bad = data.split(b"\n")[e.line - 1].strip().partition(b"\0")[0]
        if bad.startswith(b":"):
            assert bad[1:2] not in (b"s", b"r")
        else:
            assert bad[:1] in b"kKdznp" and b":" in bad


def test_reports_warnings_in_line_order_and_refusals_with_their_reply():
    heard = []
    mailrules.parse(b" d*:*\n:x\nd\nkfoo\nxyz\n&a:*:resp\nk*:[ab::::A,B=1\nd*:*:x\\\n&x:*\n", "f",
                    lambda line, message, reply: heard.append((line, reply is not None, message)))
    assert [(line, error) for line, error, _ in heard] == [
        (1, False), (2, True), (3, False), (4, False), (5, False), (6, False), (7, False), (7, False), (8, False),
        (9, False)]
    assert [m.split(":")[0] for _, _, m in heard][:3] == ["starts with white space", "unknown selector '", "a bare 'd'"]


# ---- semantics ----------------------------------------------------------------

@pytest.mark.parametrize("text", [CLASSIC, SELECTORS])
def test_classic_policy_both_syntaxes(text):
    assert decided(text, "a@Example.COM")[1] == (250, "Welcome")
    assert decided(text, "a@example.net")[1] == (250, "OK")
    assert decided(text, "a@other.org")[1] == (553, "Not from here")


def test_compatibility_classification_and_recipient_rules():
    text = "k*:*@x.example:to x\nd*@evil.example:*@y.example:no\nd*:*"
    assert [r.applies_to for r in mailrules.build(text)] == ["recipient", "recipient", "sender"]
    assert decided(text, "a@b", "u@x.example")[1] == (250, "to x")
    assert decided(text, "a@evil.example", "u@y.example")[1] == (553, "no")
    assert decided(text, "a@good.example", "u@y.example") is None


def test_selector_scopes_and_recipient_needs_both():
    text = ":sender\nd*@bad.example:[0-9]:no\n:recipient\nd*@q.example:*:only rcpt\n"
    assert decided(text, "a@bad.example")[1] == (553, "no")  # recipient field ignored
    assert decided(text, "a@q.example") is None
    assert decided(text, "a@q.example", "b@w.example")[1] == (553, "only rcpt")
    assert decided(text, "a@r.example", "b@w.example") is None


def test_negation_and_empty_pattern():
    assert decided("d!*@ours.example:*", "a@theirs.example")[0] == 1
    assert decided("d!*@ours.example:*", "a@ours.example") is None
    assert decided("d:*:empty only", "")[1] == (553, "empty only")
    assert decided("d:*:empty only", "a@b") is None


def test_addresses_are_folded_as_c_folds_them():
    """ASCII only: C's tolower leaves 8-bit bytes alone."""
    assert decided("dX\xc4@b.example:*:hit".encode("latin-1"), "x\xc4@B.example".encode("latin-1").decode(
        "utf-8", "surrogateescape")) is not None
    assert decided("d\xc3\xa4@b.example:*:hit".encode("latin-1"), "\xc4@b.example") is None  # Ä is not ä


# ---- K and & (mailfront 2.15, 2.20; SPEC 5.4) ----------------------------------

def test_final_accept_is_its_own_kind():
    rule = only("K*@b.example:*:done")
    assert (rule.kind, rule.response) == (mailrules.FINAL, (250, "done"))
    assert decided("K*@b.example:*\nd*:*", "a@b.example") == (1, (250, None))


GUARDED = (":recipient\n"
           "&*@partner.example:*\n"
           "&*:*@in.example\n"
           "k*:*@in.example:both guards\n"
           "d*:*@in.example:no partner\n")


@pytest.mark.parametrize(("sender", "recipient", "expected"), [
    ("a@partner.example", "b@in.example", (4, (250, "both guards"))),  # every guard matched, and the rule
    ("a@other.example", "b@in.example", (5, (553, "no partner"))),  # a guard failed: rule 4 not tried
    ("a@partner.example", "b@out.example", None),
])
def test_a_run_of_guards_must_all_match(sender, recipient, expected):
    assert decided(GUARDED, sender, recipient) == expected


def test_a_guard_is_forgotten_when_its_rule_does_not_match():
    text = ":sender\n&*@b.example\nd*@x.example:*:guarded\nd*@b.example:*:next\n"
    assert decided(text, "a@b.example") == (4, (553, "next"))  # guard matched, rule 3 did not: 4 unguarded
    assert decided(text, "a@x.example") is None


def test_a_guard_belongs_to_the_list_of_the_rule_it_guards(tmp_path):
    listed = tmp_path / "partners"
    listed.write_text("partner.example\n")
    text = f"&[[@{listed}]]:*\nk*@*:*:sender rule\nd*:*@in.example:recipient rule\n"
    # the guard sits before a sender rule (recipient pattern "*"), so it is a sender guard: a list with a glob
    assert decided(text, "a@partner.example") == (2, (250, "sender rule"))
    assert decided(text, "a@other.example") is None
    assert decided(text, "a@other.example", "b@in.example") == (3, (553, "recipient rule"))  # unguarded


def test_guard_fields_other_than_the_patterns_are_ignored():
    assert decided("&*:*:say:bad:r:X=1\nd*:*", "a@b.example") == (2, (553, "Rejected"))


def test_a_guard_before_a_selector_or_at_the_end_guards_nothing():
    assert decided("&nobody@b.example:*\n:sender\nd*:*", "a@b.example") == (3, (553, "Rejected"))
    assert [r.line for r in mailrules.build("k*:*\n&x:*")] == [1]


# ---- lists ----------------------------------------------------------------------

def test_list_lookups(tmp_path):
    from test_cdb import make_cdb

    (tmp_path / "hosts").write_text("# domains\n  List.example  \n\n@at.example\n#x.example\n")
    (tmp_path / "addrs").write_text("who@x.example\n@whole.example\n")
    make_cdb(tmp_path / "hosts.cdb", {b"cdb.example": b"", b"full@addr.example": b"", b"@at.example": b""})
    text = (f":recipient\nk*:[[@{tmp_path}/hosts]]:list\nk*:[[@{tmp_path}/hosts.cdb]]:cdb\n"
            f"k*:[[{tmp_path}/hosts.cdb]]:cdbfull\nk*:[[@{tmp_path}/missing.cdb]]:never\n"
            f"k*:![[{tmp_path}/missing.cdb]]:negated missing\n"
            f":sender\nd[[{tmp_path}/addrs]]:*:listed\n")
    assert decided(text, "s@a", "u@LIST.example")[1] == (250, "list")
    assert decided(text, "s@a", "u@at.example")[1] == (250, "cdbfull")  # [[@list]] looks up the bare domain only
    assert decided(text, "s@a", "u@x.example")[1] == (250, "negated missing")  # "#x.example" is a comment
    assert decided(text, "s@a", "u@cdb.example")[1] == (250, "cdb")
    assert decided(text, "s@a", "Full@Addr.example")[1] == (250, "cdbfull")
    assert decided(text, "WHO@x.example")[1] == (553, "listed")
    assert decided(text, "any@whole.example")[1] == (553, "listed")  # [[list]]: the address or its @domain
    assert decided(text, "other@x.example") is None


def test_list_names(tmp_path, monkeypatch):
    (tmp_path / "ab").write_text("q@b.example\n")
    (tmp_path / ".cdb").write_text("q@b.example\n")  # 4 characters: not a cdb name, a text list
    monkeypatch.chdir(tmp_path)
    assert decided("d[[ab]]:*:six", "q@b.example") == (1, (553, "six"))
    assert decided("d[[.cdb]]:*:text", "q@b.example") == (1, (553, "text"))
    assert decided("d[[a]]:*:five", "q@b.example") is None


@pytest.mark.parametrize("pattern", ["[[@{d}/nope]]", "[[{d}/nope]]", "![[{d}/nope]]"])
def test_missing_text_list_is_an_error(tmp_path, pattern):
    path = tmp_path / "rules"
    path.write_text("k*:*\n# x\nk*:" + pattern.format(d=tmp_path) + "\n")
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(path))
    assert (e.value.line, e.value.reply) == (3, mailrules.LIST_ERROR)


def test_the_first_bad_line_decides_the_refusal(tmp_path):
    """C stops at the first bad line: a list named before a syntax error is the refusal, and after one it is not."""
    path = tmp_path / "rules"
    path.write_text(f"k*:[[{tmp_path}/nope]]\n:x\n")
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(path))
    assert (e.value.line, e.value.reply) == (1, mailrules.LIST_ERROR)
    path.write_text(f":x\nk*:[[{tmp_path}/nope]]\n")
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(path))
    assert (e.value.line, e.value.reply) == (1, mailrules.SYNTAX_ERROR)


def test_a_missing_rules_file_is_could_not_open(tmp_path):
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(tmp_path / "none"))
    assert (e.value.line, e.value.reply) == (0, mailrules.COULD_NOT_OPEN)
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(tmp_path))  # a directory: C reads no rules from it; we refuse
    assert e.value.reply == mailrules.COULD_NOT_OPEN


# ---- the cache ------------------------------------------------------------------

def test_cache_is_used_and_invalidated(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    mailrules.load(str(path))
    cache = Path(str(path) + ".cache")
    assert cache.exists()
    assert isinstance(mailrules.load(str(path)).index, mailrules.CacheIndex)
    path.write_text("d*:*:changed\n")
    rules = mailrules.load(str(path))
    assert [r.response for r in mailrules.decide(rules, "sender", "a@b", None)] == [(553, "changed")]


def test_cache_dir(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    mailrules.load(str(path), str(cache_dir))
    assert [p.name for p in cache_dir.iterdir()] == [f"{path}.cache".replace("/", "%")]


def test_cache_falls_back_to_a_private_directory_and_says_so_once(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    heard: list[str] = []
    unwritable = str(tmp_path / "no" / "such" / "dir")  # can't be written, even by root
    rules = mailrules.load(str(path), unwritable, heard.append, str(tmp_path))
    private = tmp_path / f"smtpfront-rules-{posix.geteuid()}"
    assert posix.stat(private).st_mode & 0o777 == 0o700
    assert len(list(private.iterdir())) == 1
    assert len(heard) == 1 and "cannot write" in heard[0] and f"cached in {private}" in heard[0]
    assert isinstance(mailrules.load(str(path), unwritable, heard.append, str(tmp_path)).index, mailrules.CacheIndex)
    assert len(heard) == 1  # used, not rebuilt: nothing more to say
    assert [r.line for r in mailrules.decide(rules, "sender", "a@example.net", None)] == [2]


@pytest.mark.parametrize("spoil", ["world writable", "a link"])
def test_a_private_directory_others_can_touch_is_not_used(tmp_path, spoil):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    private = tmp_path / f"smtpfront-rules-{posix.geteuid()}"
    if spoil == "a link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        private.symlink_to(tmp_path / "elsewhere")
    else:
        private.mkdir()
        private.chmod(0o777)
    heard: list[str] = []
    for _ in range(2):
        rules = mailrules.load(str(path), str(tmp_path / "missing"), heard.append, str(tmp_path))
        assert isinstance(rules.index, mailrules.MemoryIndex)
    assert len(heard) == 2 and all("not cached" in line for line in heard)
    assert list(private.iterdir()) == []


def test_damaged_cache_is_rebuilt(tmp_path):
    path = tmp_path / "rules"
    path.write_text(CLASSIC)
    mailrules.load(str(path))
    cache = Path(str(path) + ".cache")
    cache.write_bytes(cache.read_bytes()[:100])
    rules = mailrules.load(str(path))  # the truncated cache is not trusted
    assert [r.line for r in mailrules.decide(rules, "sender", "a@x", None)] == [3]
    assert isinstance(mailrules.load(str(path)).index, mailrules.CacheIndex)  # and it was written again


def test_a_refused_file_is_refused_through_the_cache_too(tmp_path):
    listed = tmp_path / "list"
    listed.write_text("a@b.example\n")
    path = tmp_path / "rules"
    path.write_text(f"d[[{listed}]]:*\n")
    mailrules.load(str(path))
    listed.unlink()
    with pytest.raises(mailrules.RulesError) as e:
        mailrules.load(str(path))  # C opens the lists at every connection
    assert e.value.reply == mailrules.LIST_ERROR


def test_the_cache_holds_parsed_rules_filed_by_their_text():
    """A rule is stored once, under its address or a piece of its literal text: no line is parsed again."""
    rules = mailrules.build("k*@host1.exa*:*\nd*@example.com:*\nkuser@example.org:*\nd!*@x:*\nk[[/l]]:*\nk*:*\n"
                            ":recipient\nk*:*@in.example\nk*@from.example:*\nk*:*\n")
    index = rules.index
    assert sorted(index.buckets) == [b"prr@in.exam", b"prs@from.ex", b"pss@example", b"pss@host1.e",
                                    b"xssuser@example.org"]
    assert [r[0] for r in index.generic("s")] == [4, 5, 6] and [r[0] for r in index.generic("r")] == [10]
    records = dict(mailrules.records(index.rules, ("key",)))
    assert set(records) == {b"meta", b"gs", b"gr", *index.buckets}


def test_index_windows_spread_rules_that_share_text():
    rules = mailrules.build("".join(f"k*@host{i}.example.com:*\n" for i in range(50)))
    assert max(len(b) for b in rules.index.buckets.values()) == 1


# ---- the index agrees with trying every rule in order ---------------------------

PATTERNS = ["*", "*@a.example", "*@B.example", "x@a.example", "X@A.EXAMPLE", "*a*", "!*@a.example", "@a.example",
            "*@*", "x*", "*@c@a.example", "noat", "[x]@a.example", "*.example", "?@*", "*ample*x*", "[!x]*", "a[b",
            "*?", "x@a.exam*", "*xample"]
ADDRESSES = ["x@a.example", "y@b.example", "X@A.example", "@a.example", "noat", "x@c@a.example", "", "z@c.example",
             "xxxample@example"]
LINES = st.lists(
    st.one_of(st.sampled_from([":sender", ":recipient", "# comment", ""]),
              st.tuples(st.sampled_from("kKdnp&"), st.sampled_from(PATTERNS), st.sampled_from(PATTERNS))),
    max_size=25,
)


def rules_text(lines) -> str:
    return "".join(line + "\n" if isinstance(line, str) else f"{line[0]}{line[1]}:{line[2]}\n" for line in lines)


def linear(rules, applies_to, sender, recipient):
    """The definition the index must agree with: every rule in file order."""
    out = []
    s = mailrules._view(sender)
    r = mailrules._view(recipient) if applies_to == mailrules.RECIPIENT else None
    for rule in rules:
        if rule.applies_to == applies_to and rules.matches(rule.spec, s, r):
            out.append(rule.line)
            if rule.kind != mailrules.NOOP:
                break
    return out


@settings(max_examples=400, deadline=None)
@given(LINES, st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES))
def test_index_agrees_with_a_linear_scan(lines, sender, recipient):
    text = rules_text(lines)
    rules = mailrules.build(text)
    for applies_to, rcpt in ((mailrules.SENDER, None), (mailrules.RECIPIENT, recipient)):
        indexed = [rule.line for rule in mailrules.decide(rules, applies_to, sender, rcpt)]
        assert indexed == linear(rules, applies_to, sender, rcpt), text


@settings(max_examples=100, deadline=None)
@given(LINES, st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES))
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


# ---- through the programs -----------------------------------------------------

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


def test_final_accept_and_guards_in_a_session(smtp, tmp_path, queue):
    rules = tmp_path / "rules"
    rules.write_text(":sender\nK*@vip.example:*:welcome\n:recipient\n&*@partner.example:*\nk*:*@in.example:partner\n"
                     "d*:*@in.example:partners only\n")
    r = smtp(b"MAIL FROM:<a@vip.example>\r\nRCPT TO:<b@in.example>\r\nMAIL FROM:<a@partner.example>\r\n"
             b"RCPT TO:<b@in.example>\r\n", MAILRULES=str(rules))
    assert [r.reply_to(i) for i in (1, 2, 3, 4)] == ["250 welcome", "553 partners only", "250 2.1.0 Sender accepted.",
                                                      "250 partner"]


def test_final_accept_without_text_answers_with_the_back_ends_words(smtp, tmp_path):
    """SPEC 5.4: a `K` line with no text gives the back end's reply, as mailfront 2.22; `k` keeps 2.12's `250 OK`."""
    rules = tmp_path / "rules"
    rules.write_text(":sender\nK*@k.example:*\nk*@small.example:*\n:recipient\nK*:*@k.example:\nk*:*@small.example\n")
    dialogue = (b"MAIL FROM:<a@k.example>\r\nMAIL FROM:<a@small.example>\r\nRCPT TO:<b@k.example>\r\n"
                b"RCPT TO:<b@small.example>\r\n")
    qmail = smtp(dialogue, MAILRULES=str(rules))
    assert qmail.lines[1:] == ["250 2.1.0 Sender accepted.", "250 OK", "250 2.1.5 Recipient accepted.", "250 OK"]
    echo = smtp(dialogue, program="smtpfront-echo", MAILRULES=str(rules))
    assert echo.lines[1:] == ["250 Sender='a@k.example'.", "250 OK", "250 Recipient='b@k.example'.", "250 OK"]


def test_k_lets_the_plugins_after_it_run_and_capital_k_ends_the_chain(smtp, tmp_path):
    """`k` accepts, but qmail-validate after it still refuses a badrcptto address (mailfront 2.x runs the whole
    chain); `K` accepts and nothing after it is asked.  Both accept an address outside rcpthosts."""
    rules = tmp_path / "rules"
    for letter, bad in (("k", "553 5.1.1 Sorry, that address is in my badrcptto list."), ("K", "250 ok")):
        rules.write_text(f"{letter}*:*@example.org:ok\n{letter}*:*@other.example:ok\n")
        r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bad@example.org>\r\nRCPT TO:<x@other.example>\r\n",
                 MAILRULES=str(rules))
        assert [r.reply_to(2), r.reply_to(3)] == [bad, "250 ok"], letter


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
    bad.write_text("k*:*\n:q\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\n", MAILRULES=str(bad))
    assert r.lines == ["421 4.3.0 Syntax error in $MAILRULES"] and r.returncode == 1 and f"{bad}:2:" in r.stderr
    bad.write_text(f"k*:*\nk*:[[{tmp_path}/nope]]\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\n", MAILRULES=str(bad))
    assert r.lines == ["421 4.3.0 Error opening file referenced from $MAILRULES"] and f"{bad}:2:" in r.stderr


def test_an_unwritable_cache_directory_still_caches(smtp, tmp_path):
    rules = tmp_path / "rules"
    rules.write_text(CLASSIC)
    env = {"MAILRULES": str(rules), "MAILRULES_CACHE": str(tmp_path / "missing")}
    cache = Path(f"/tmp/smtpfront-rules-{posix.geteuid()}/{str(rules).replace('/', '%')}.cache")
    try:
        first = smtp(b"MAIL FROM:<a@example.net>\r\n", **env)
        second = smtp(b"MAIL FROM:<a@example.net>\r\n", **env)
        assert cache.exists()
    finally:
        cache.unlink(missing_ok=True)  # /tmp is not the test's own directory
    assert first.reply_to(1) == second.reply_to(1) == "250 OK"
    assert "MAILRULES: cannot write" in first.stderr and "cached in /tmp/smtpfront-rules-" in first.stderr
    assert "MAILRULES" not in second.stderr


def test_echo_tries_a_rules_file(smtp, tmp_path):
    rules = tmp_path / "rules"
    rules.write_text(CLASSIC)
    r = smtp(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<a@x.org>\r\n",
             program="smtpfront-echo", MAILRULES=str(rules))
    assert r.lines[1] == "250 Welcome" and r.lines[2] == "250 Recipient='y@example.org'."
    assert r.lines[-1] == "553 Not from here"


# ---- a cache someone else could have written ----------------------------------------

def plant(rules: Path, cache: Path, text: str) -> None:
    """A cache as a local attacker writes one: made for the rules file as it is (its key), holding other rules."""
    from smtpfront.cdb import write_cdb

    st = posix.stat(rules)
    key = (mailrules._CACHE_VERSION, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    write_cdb(str(cache), mailrules.records(mailrules.parse(text), key))


UNSAFE = ["sticky directory (as /tmp)", "directory others may write", "file others may write"]
if posix.geteuid() == 0:  # only root can give a file away
    UNSAFE.append("another user's file")


@pytest.mark.parametrize("how", UNSAFE)
def test_a_cache_others_could_have_written_is_not_used(tmp_path, how):
    rules = tmp_path / "rules"
    rules.write_text("d*:*:the real rules\n")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    cache = cache_dir / f"{rules}.cache".replace("/", "%")
    plant(rules, cache, "k*:*:planted\n")
    cache.chmod(0o644)
    if how == "sticky directory (as /tmp)":
        cache_dir.chmod(0o1777)
    elif how == "directory others may write":
        cache_dir.chmod(0o777)
    elif how == "file others may write":
        cache.chmod(0o666)
    else:
        posix.chown(cache, 65534, 65534)
    heard: list[str] = []
    for _ in range(2):
        loaded = mailrules.load(str(rules), str(cache_dir), heard.append, str(tmp_path))
        assert [r.response for r in mailrules.decide(loaded, "sender", "a@b", None)] == [(553, "the real rules")]
    if "directory" in how:
        assert heard == [f"MAILRULES: {cache_dir} is writable by group or others: its cache is not used; "
                         f"cached in {tmp_path}/smtpfront-rules-{posix.geteuid()}"]
    else:  # a directory of ours: the file is replaced by one of ours, and used from then on
        assert len(heard) == 1 and heard[0].startswith(f"MAILRULES: {cache} not used: ")
        assert posix.stat(cache).st_uid == posix.geteuid() and posix.stat(cache).st_mode & 0o777 == 0o644
        assert isinstance(loaded.index, mailrules.CacheIndex)


def test_a_planted_cache_never_runs_its_authors_program(smtp, tmp_path, queue):
    """The attack: a cache whose rules set QMAILQUEUE, in a directory anyone may write."""
    marker = tmp_path / "ran"
    script = tmp_path / "theirs"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    rules = tmp_path / "rules"
    rules.write_text("k*:*:Welcome\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    plant(rules, shared / f"{rules}.cache".replace("/", "%"), f"k*:*:Welcome::::QMAILQUEUE={script}\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n",
             MAILRULES=str(rules), MAILRULES_CACHE=str(shared), TMPDIR=str(tmp_path))
    assert r.codes[:4] == [220, 250, 250, 354] and r.lines[4].startswith("250 2.6.0 ")
    assert not marker.exists()
    assert len(queue.messages()) == 1
    assert f"MAILRULES: {shared} is writable by group or others: its cache is not used" in r.stderr


def test_a_rebuild_never_writes_through_a_link(tmp_path):
    """A link planted where the temporary file used to be made (its name was the rules' path and the pid)."""
    rules = tmp_path / "rules"
    rules.write_text("k*:*\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cache = shared / f"{rules}.cache".replace("/", "%")
    Path(f"{cache}.{posix.getpid()}.tmp").symlink_to(victim)
    mailrules.load(str(rules), str(shared), None, str(tmp_path))
    assert victim.read_text() == "precious\n"


def test_a_cache_is_written_for_its_owner_only(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("k*:*\n")
    old = posix.umask(0)
    try:
        mailrules.load(str(rules))
    finally:
        posix.umask(old)
    assert posix.stat(f"{rules}.cache").st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules", "rules.cache"]  # no temporary file left
