"""MAILRULES: sender and recipient rules, read exactly as C mailfront 2.12 reads them.

    :sender | :recipient                       selector lines
    Lsender:recipient:response:databytes:relayclient:NAME=VALUE,...

L is k (accept), K (accept and end all further checks; mailfront 2.15), d
(reject), z (defer), n (apply the settings and go on), p (stop here and leave
the decision to the normal checks) or & (a guard; mailfront 2.20).  How C
reads a file, and so how this module does:

* each line is stripped of white space at both ends; an empty line is
  skipped; a NUL ends the line;
* a line starting `:` selects by its second character only: `s` sender, `r`
  recipient, anything else refuses the file ("Syntax error");
* a line starting with anything but a rule letter is ignored (`#` comments,
  and every other line);
* fields split on unescaped colons and may be left off from the right; the
  environment is the rest of the line (colons and all) split on unescaped
  commas; an entry without `=` is kept nowhere (C stores it where nothing
  can look it up);
* escapes: `\\n` a line break, `\\ooo` octal (1 to 3 digits; C puts a NUL in
  its place, we the character), any other `\\c` is `c`; a lone backslash at
  the end stands for a NUL and ends the line;
* a pattern's leading `!`s each toggle negation; `[[file]]` (longer than 5
  characters) names a list, `[[@file]]` one of domains; a name ending
  `.cdb` is a cdb file; a text list that can't be opened refuses the file,
  a missing cdb matches nothing;
* databytes must be digits (empty is 0), or the file is refused;
* rules before any selector are sender rules when their recipient pattern
  is exactly `*`, recipient rules otherwise (a rule with no recipient field
  has an empty one).

Under :recipient both patterns must match; under :sender the recipient
pattern is ignored.  The first matching rule that is not `n` decides.  A run
of `&` lines guards the rule right after it: that rule is tried only when
every guard's patterns match as the rule's would; the guards' other fields
are ignored.

`load` keeps the parsed rules in a cdb file (beside the rules, under
$MAILRULES_CACHE, or in a private directory under /tmp when neither can be
written), keyed on the file's identity.  Each rule is stored once, under the
address it needs (a literal pattern) or under a piece of literal text its
glob requires (at most WINDOW characters); a session looks up every piece of
its addresses and unpacks only the rules found, plus the few that no text
can key (negated, lists, `*`).  Its cost does not grow with the file.
"""

from __future__ import annotations

import marshal
import posix

from . import globs

ACCEPT, FINAL, REJECT, DEFER, NOOP, PASS, GUARD = "k", "K", "d", "z", "n", "p", "&"
# a K line without a text takes the back end's words, as mailfront 2.22's does (None); k keeps 2.12's "OK"
DEFAULT_RESPONSES = {ACCEPT: (250, "OK"), FINAL: (250, None), REJECT: (553, "Rejected"), DEFER: (451, "Deferred")}
SENDER, RECIPIENT = "sender", "recipient"
RULE_LETTERS = b"kKdznp&"
# the three refusals of C's plugin-mailrules.c (421 before the greeting)
COULD_NOT_OPEN = "4.3.0 Could not open $MAILRULES file"
SYNTAX_ERROR = "4.3.0 Syntax error in $MAILRULES"
LIST_ERROR = "4.3.0 Error opening file referenced from $MAILRULES"
WINDOW = 8  # the longest piece of literal text a glob is indexed by
_CACHE_VERSION = 5
# a rule, as parse() returns it and the cache stores it: patterns are (negate, plan),
# a plan is a globs plan or ("l", path, domain_only, is_cdb); guards are (line, source, sender, recipient)
LINE, KIND, TAG, SPAT, RPAT, RESPONSE, DATABYTES, RELAYCLIENT, ENV, GUARDS, SOURCE = range(11)


class RulesError(Exception):
    """A rules file C would refuse; `reply` is C's 421 text, `line` 0 when the file as a whole is the problem."""

    def __init__(self, path: str, line: int, message: str, reply: str = SYNTAX_ERROR) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message
        self.reply = reply


class Rule:
    """A rule that matched, for the caller to apply.  `applies_to` is SENDER or RECIPIENT."""

    __slots__ = ("line", "kind", "applies_to", "response", "databytes", "relayclient", "env", "guards", "source",
                 "spec")

    def __init__(self, spec: tuple) -> None:
        self.spec = spec
        self.line, self.kind, self.source = spec[LINE], spec[KIND], spec[SOURCE]
        self.applies_to = SENDER if spec[TAG] == "s" else RECIPIENT
        self.response = spec[RESPONSE]  # (code, text) or None
        self.databytes = spec[DATABYTES]
        self.relayclient = spec[RELAYCLIENT]
        self.env = spec[ENV]  # ((name, value), ...)
        self.guards = tuple((g[0], g[1]) for g in spec[GUARDS])  # (line, source) of each

    def __repr__(self) -> str:
        return f"Rule({self.line}: {self.source!r})"


# ---- reading a file -----------------------------------------------------------


def _cut(text: bytes, sep: bytes, parts: int = -1) -> list[bytes]:
    """`text` split on unescaped `sep` into at most `parts` pieces (the last one takes the rest)."""
    if b"\\" not in text:
        return text.split(sep, parts - 1 if parts > 0 else -1)
    out, start, i, n, code = [], 0, 0, len(text), sep[0]
    while i < n and len(out) != parts - 1:
        c = text[i]
        if c == 0x5C:
            i += 2
            continue
        if c == code:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _unescape(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c == 0x5C:
            if i >= n:  # C reads on past the end of the line here
                out.append(0)
                break
            c = raw[i]
            i += 1
            if c == 0x6E:
                c = 0x0A
            elif 0x30 <= c <= 0x37:
                c -= 0x30
                for _ in range(2):
                    if i < n and 0x30 <= raw[i] <= 0x37:
                        c = c * 8 + raw[i] - 0x30
                        i += 1
                c &= 0xFF
        out.append(c)
    return bytes(out)


def _text(value: bytes) -> str:
    """A field C uses as a C string: up to the first NUL."""
    return value.partition(b"\0")[0].decode("utf-8", "surrogateescape")


def _pattern(raw: bytes, plans: dict) -> tuple:
    """(negate, plan) of a pattern field."""
    body = raw.lstrip(b"!")
    negate = (len(raw) - len(body)) % 2 == 1
    text = _unescape(body)
    plan = plans.get(text)
    if plan is None:
        if len(text) > 5 and text.startswith(b"[[") and text.endswith(b"]]"):
            domain = text[2] == 0x40
            name = text[3:-2] if domain else text[2:-2]
            plan = ("l", name.decode("utf-8", "surrogateescape"), domain, len(name) > 4 and name.endswith(b".cdb"))
        else:
            plan = globs.compile(text)
        plans[text] = plan
    return negate, plan


def parse(data: bytes | str, path: str = "<rules>", report=None) -> list[tuple]:
    """The rules of a file's contents, in file order, guards folded into the rule each guards.

    `report(line, message, reply)` hears of each refusal (`reply` is its 421
    text) and oddity C lets pass (`reply` None); without it the first refusal
    raises RulesError.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return list(_rules(data, path, report))


def _rules(data: bytes, path: str, report):
    """parse(), one rule at a time (a cache of 100,000 rules is written without holding them all)."""

    def problem(lineno: int, message: str, reply: str | None = None) -> None:
        if report is not None:
            report(lineno, message, reply)
        elif reply is not None:
            raise RulesError(path, lineno, message, reply)

    section = None
    guards: list[tuple] = []
    no_recipient: list[int] = []  # guards without a recipient field, waiting for the rule they guard
    plans: dict = {}
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if raw[:1].isspace():
            problem(lineno, "starts with white space: C reads the line as if it did not")
        if b"\0" in line:
            problem(lineno, "a NUL byte: C ignores the rest of the line")
            line = line[: line.index(b"\0")]
            if not line:
                continue
        first = line[:1]
        if first == b":":
            if guards:
                problem(guards[-1][0], "guard not followed by a rule: ignored")
                guards, no_recipient = [], []
            selector = line[1:2]
            if selector not in (b"s", b"r"):
                problem(lineno, f"unknown selector {_text(line)!r}: C takes only :s... and :r...", SYNTAX_ERROR)
                continue
            section = SENDER if selector == b"s" else RECIPIENT
            continue
        if first not in RULE_LETTERS:
            if first != b"#":
                problem(lineno, "ignored: a line must start with a rule letter (k K d z n p &), `:` or `#`")
            continue
        kind = first.decode()
        source = _text(line)
        pieces = _cut(line[1:], b":", 6)
        if (len(line) - len(line.rstrip(b"\\"))) % 2:
            problem(lineno, "a lone backslash at the end: C reads past the end of the line")
        spat = _pattern(pieces[0], plans)
        rpat = _pattern(pieces[1] if len(pieces) > 1 else b"", plans)
        if report is not None:
            for raw_pattern, (_, plan) in zip(pieces[:2], (spat, rpat), strict=False):
                if plan[0] != "l" and globs.is_open(_unescape(raw_pattern.lstrip(b"!"))):
                    problem(lineno, f"unclosed [ in {_text(raw_pattern)!r}: C matches whatever follows it")
        if len(line) == 1:
            problem(lineno, f"a bare {kind!r}: with no fields it matches only the empty sender and recipient")
        if kind == GUARD:
            if any(pieces[2:]):
                problem(lineno, "a guard's response, databytes, relayclient and environment are ignored")
            guards.append((lineno, source, spat, rpat))
            if len(pieces) == 1:
                no_recipient.append(lineno)
            continue
        databytes = pieces[3] if len(pieces) > 3 else b""
        if databytes and not databytes.isdigit():
            problem(lineno, f"databytes is not a number: {_text(databytes)!r}", SYNTAX_ERROR)
            continue
        env = []
        for entry in _cut(pieces[5], b",") if len(pieces) > 5 else ():
            name, eq, value = _text(_unescape(entry)).partition("=")
            if eq:
                env.append((name, value))
            elif entry:
                problem(lineno, f"environment entry without '=': {name!r} (C keeps it where nothing reads it)")
        response = None
        if kind in DEFAULT_RESPONSES:
            text = _unescape(pieces[2]) if len(pieces) > 2 else b""
            code, default = DEFAULT_RESPONSES[kind]
            response = (code, _text(text) if text else default)
        if section is not None:
            tag = section[0]
        else:
            tag = "s" if rpat[1] == ("*",) and _unescape(pieces[1].lstrip(b"!")) == b"*" else "r"
        if tag == "r":
            for at in no_recipient + ([lineno] if len(pieces) == 1 and len(line) > 1 else []):
                problem(at, "no recipient field: the line is a recipient rule (or guards one) whose empty "
                            "recipient pattern matches no recipient")
        no_recipient = []
        yield (lineno, kind, tag, spat, rpat, response, int(databytes or 0),
               _text(_unescape(pieces[4])) if len(pieces) > 4 else "", tuple(env), tuple(guards), source)
        guards = []
        if len(plans) > 1000:  # most patterns are used once; keep memory flat on big files
            plans.clear()
    if guards:
        problem(guards[-1][0], "guard not followed by a rule: ignored")


def text_lists(rules: list[tuple]) -> list[tuple[int, str]]:
    """(line, path) of every text list the rules and their guards name, in line order."""
    out = []
    for rule in rules:
        if rule[GUARDS] or rule[SPAT][1][0] == "l" or rule[RPAT][1][0] == "l":  # most rules have none
            for guard in rule[GUARDS]:
                out += [(guard[0], p[1][1]) for p in guard[2:4] if p[1][0] == "l" and not p[1][3]]
            out += [(rule[LINE], p[1][1]) for p in (rule[SPAT], rule[RPAT]) if p[1][0] == "l" and not p[1][3]]
    return out


def unopenable(path: str, named: list[tuple[int, str]]) -> list[RulesError]:
    """The text lists that can't be opened (C refuses the file for each; it reads them at start)."""
    out = []
    for lineno, list_path in named:
        try:
            posix.close(posix.open(list_path, posix.O_RDONLY | posix.O_CLOEXEC))
        except OSError as e:
            out.append(RulesError(path, lineno, f"list file {list_path}: {e.strerror}", LIST_ERROR))
    return out


# ---- matching -----------------------------------------------------------------


def _first(rule: tuple) -> int:
    return rule[LINE]


def _view(address: str) -> tuple[bytes, bytes]:
    """An address as C compares it: bytes, ASCII lower-cased, and its "@domain" (empty without an @)."""
    addr = address.encode("utf-8", "surrogateescape").lower()
    at = addr.rfind(b"@")
    return addr, (addr[at:] if at >= 0 else b"")


class Lists:
    """The files [[...]] patterns name, each read once a process, when first needed."""

    def __init__(self) -> None:
        self.files: dict[str, object] = {}

    def lookup(self, plan: tuple, view: tuple[bytes, bytes]) -> bool:
        from .control import ControlError

        _, path, domain_only, is_cdb = plan
        addr, atdomain = view
        found = self.files.get(path)
        if found is None:
            found = self.files[path] = self._open(path, is_cdb)
        if is_cdb:
            if found is False:  # missing: silently nothing (C's cdb_find fails and so matches; see differences)
                return False
            try:
                if domain_only:
                    return bool(atdomain) and found.get(atdomain[1:]) is not None
                return found.get(addr) is not None or found.get(atdomain) is not None
            except OSError as e:
                raise ControlError(f"{path}: {e}") from None
        if domain_only:
            return bool(atdomain) and atdomain[1:] in found
        return addr in found or atdomain in found

    @staticmethod
    def _open(path: str, is_cdb: bool):
        from .control import ControlError, open_cdb

        if is_cdb:
            return open_cdb(path) or False
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ControlError(f"{path}: {e.strerror}") from None
        # bglibs' dict_load_list: stripped lines, lower-cased; blank lines and # comments skipped
        return frozenset(e.lower() for e in (line.strip() for line in data.split(b"\n")) if e and e[0] != 0x23)


class RuleSet:
    """A rules file, indexed: a session unpacks and tries only the rules that could match its addresses."""

    def __init__(self, path: str, index) -> None:
        self.path = path
        self.index = index  # a MemoryIndex or a CacheIndex
        self.lists = Lists()

    def candidates(self, applies_to: str, sender: bytes, recipient: bytes | None) -> list[tuple]:
        """The rules of that kind that could match, in file order."""
        tag = applies_to[0]
        index = self.index
        found = list(index.generic(tag))
        if tag == "s":
            found += index.probe("ss", sender)
        else:
            found += index.probe("rr", recipient)
            found += index.probe("rs", sender)
        found.sort(key=_first)
        return found

    def matches(self, rule: tuple, sender: tuple, recipient: tuple | None) -> bool:
        """Whether a rule applies to (views of) the addresses; `recipient` None for sender rules."""
        for guard in rule[GUARDS]:
            if not (self._match(guard[2], sender) and (recipient is None or self._match(guard[3], recipient))):
                return False
        return self._match(rule[SPAT], sender) and (recipient is None or self._match(rule[RPAT], recipient))

    def _match(self, pattern: tuple, view: tuple[bytes, bytes]) -> bool:
        negate, plan = pattern
        if plan[0] == "l":
            return self.lists.lookup(plan, view) != negate
        return globs.matches(plan, view[0]) != negate

    def __iter__(self):
        """Every rule parsed in this process (a MemoryIndex), in file order."""
        return (Rule(rule) for rule in self.index.rules)

    def decide(self, applies_to: str, sender: str, recipient: str | None):
        """The matching rules in order, up to and including the first that is not `n`."""
        s = _view(sender)
        r = _view(recipient or "") if applies_to == RECIPIENT else None
        for rule in self.candidates(applies_to, s[0], r[0] if r else None):
            if self.matches(rule, s, r):
                yield Rule(rule)
                if rule[KIND] != NOOP:
                    return


def decide(rules: RuleSet, applies_to: str, sender: str, recipient: str | None):
    return rules.decide(applies_to, sender, recipient)


# ---- the index ----------------------------------------------------------------


def index_key(rule: tuple, counts: dict[bytes, int]) -> bytes | None:
    """Where the index files a rule: b"x" + list + which address + the address its pattern is equal to, or
    b"p" + list + which + the piece of its literal text that the fewest rules are filed under so far.

    A recipient rule is filed by its recipient pattern when it can be, else by its sender pattern.
    None: the rule must always be tried.
    """
    tag = rule[TAG]
    for which, pattern in ((("r", rule[RPAT]), ("s", rule[SPAT])) if tag == "r" else (("s", rule[SPAT]),)):
        negate, plan = pattern
        if negate or plan[0] == "l":
            continue
        where = (tag + which).encode()
        if plan[0] == "=":
            return b"x" + where + plan[1]
        best, fewest = None, 0
        for run in globs.literals(plan):
            for i in range(max(1, len(run) - WINDOW + 1)):
                piece = b"p" + where + run[i : i + WINDOW]
                filed = counts.get(piece, 0)
                if not filed:
                    return piece
                if best is None or filed < fewest:
                    best, fewest = piece, filed
        if best is not None:
            return best
    return None


class Filing:
    """Files rules one at a time, and keeps what a lookup must know: where (list and address) there are exact
    keys, and the lengths of the pieces."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.shape: dict[str, tuple[bool, tuple]] = {}  # "ss", "rr", "rs" -> (exact keys?, piece lengths)

    def file(self, rule: tuple) -> bytes | None:
        key = index_key(rule, self.counts)
        if key is not None:
            self.counts[key] = self.counts.get(key, 0) + 1
            where = key[1:3].decode()
            exact, lengths = self.shape.get(where, (False, ()))
            if key[:1] == b"x":
                self.shape[where] = (True, lengths)
            elif len(key) - 3 not in lengths:
                self.shape[where] = (exact, tuple(sorted((*lengths, len(key) - 3))))
        return key


def _probe(find, where: str, addr: bytes | None, exact: bool, lengths: tuple) -> list[tuple]:
    """The rules filed under `addr` itself or any piece of it, for `find(key, cdb hash of key)`."""
    from .cdb import cdb_hash

    found: list[tuple] = []
    if addr is None:
        return found
    tw = where.encode()
    if exact:
        key = b"x" + tw + addr
        found += find(key, cdb_hash(key)) or ()
    if lengths:
        prefix = b"p" + tw
        start = cdb_hash(prefix)  # the hash runs over the key byte by byte: each piece extends the last
        wanted, longest, n = set(lengths), lengths[-1], len(addr)
        seen = set()
        for i in range(n):
            h = start
            for j in range(i, min(n, i + longest)):
                h = ((h << 5) + h ^ addr[j]) & 0xFFFFFFFF
                if j + 1 - i in wanted:
                    piece = addr[i : j + 1]
                    if piece not in seen:
                        seen.add(piece)
                        found += find(prefix + piece, h) or ()
    return found


class MemoryIndex:
    """The index of rules parsed by this process."""

    def __init__(self, rules) -> None:
        self.rules: list[tuple] = []
        self._generic: dict[str, list[tuple]] = {"s": [], "r": []}
        self.buckets: dict[bytes, list[tuple]] = {}
        filing = Filing()
        for rule in rules:
            self.rules.append(rule)
            key = filing.file(rule)
            if key is None:
                self._generic[rule[TAG]].append(rule)
            else:
                self.buckets.setdefault(key, []).append(rule)
        self.shape = filing.shape
        self.lists = text_lists(self.rules)

    def generic(self, tag: str) -> list[tuple]:
        return self._generic[tag]

    def probe(self, where: str, addr: bytes | None) -> list[tuple]:
        return _probe(lambda key, h: self.buckets.get(key), where, addr, *self.shape.get(where, (False, ())))


def records(rules, key: tuple):
    """The cache file's (key, value) records for the rules as they come: a record a rule, under its index key,
    then the rules always tried, one record a list, and last what a lookup must know (b"meta")."""
    filing = Filing()
    generic: dict[str, list[tuple]] = {"s": [], "r": []}
    lists: list[tuple[int, str]] = []
    for rule in rules:
        lists += text_lists([rule])
        name = filing.file(rule)
        if name is None:
            generic[rule[TAG]].append(rule)
        else:
            yield name, marshal.dumps(rule)
    for tag, always in generic.items():
        yield b"g" + tag.encode(), marshal.dumps(always)
    yield b"meta", marshal.dumps((key, filing.shape, lists))


class CacheIndex:
    """The index read from the cache (a cdb file): a session reads a few records, not the file."""

    def __init__(self, cdb, shape: dict, lists: list) -> None:
        self.cdb = cdb
        self.shape = shape
        self.lists = lists
        self._generic: dict[str, list[tuple]] = {}

    def generic(self, tag: str) -> list[tuple]:
        rules = self._generic.get(tag)
        if rules is None:
            data = self.cdb.get(b"g" + tag.encode())
            if data is None:
                raise OSError(f"{self.cdb.path}: record g{tag} is missing")
            rules = self._generic[tag] = marshal.loads(data)
        return rules

    def _find(self, key: bytes, h: int) -> list[tuple]:
        return [marshal.loads(data) for data in self.cdb.find_all(key, h)]

    def probe(self, where: str, addr: bytes | None) -> list[tuple]:
        return _probe(self._find, where, addr, *self.shape.get(where, (False, ())))


def build(text: str | bytes, path: str = "<rules>") -> RuleSet:
    """Parse a rules file's contents (raising RulesError) into an indexed RuleSet; lists are not checked."""
    return RuleSet(path, MemoryIndex(parse(text, path)))


# ---- loading, through the cache -----------------------------------------------


def load(path: str, cache_dir: str | None = None, log=None, tmpdir: str | None = None) -> RuleSet:
    """Read a rules file as C does at each connection (raising RulesError for what C refuses), through the cache.

    The cache is beside the file or in `cache_dir`; when that can't be written
    (or others could write there: see `_unsafe`), in a private directory of this
    user under `tmpdir` (default /tmp), and `log` (a callable taking a line)
    hears why, once per change of the file.
    """
    fd = _open(path)
    try:
        st = posix.fstat(fd)
        key = (_CACHE_VERSION, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        primary = _cache_path(path, cache_dir)
        private = f"{tmpdir or '/tmp'}/smtpfront-rules-{posix.geteuid()}"
        unsafe = _unsafe_directory(primary)
        index = None if unsafe else _open_cache(primary, key, log)
        if index is None and _private(private, create=False) is None:
            index = _open_cache(_cache_path(path, private), key)
        if index is None:
            data = _read_all(fd, path)
            written = _save(data, key, path, None if unsafe else primary, private, log, unsafe)
            index = _open_cache(written, key) if written else None
            if index is None:
                index = MemoryIndex(_as_c(data, path))
    finally:
        posix.close(fd)
    return _checked(path, index)


def load_uncached(path: str) -> RuleSet:
    """load() without the cache, for tools: the same refusals, and nothing is written."""
    fd = _open(path)
    try:
        return _checked(path, MemoryIndex(_as_c(_read_all(fd, path), path)))
    finally:
        posix.close(fd)


def _open(path: str) -> int:
    try:
        return posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError as e:
        raise RulesError(path, 0, f"cannot open: {e.strerror}", COULD_NOT_OPEN) from None


def _as_c(data: bytes, path: str):
    """The rules, raising the refusal C meets first: it stops at the first bad line, opening lists as it goes."""
    named: list[tuple[int, str]] = []
    try:
        for rule in _rules(data, path, None):
            named += text_lists([rule])
            yield rule
    except RulesError as e:
        raise ([*unopenable(path, named), e])[0] from None


def _checked(path: str, index) -> RuleSet:
    """The rules, once every text list they name opens (C opens them at each connection)."""
    for error in unopenable(path, index.lists):
        raise error
    return RuleSet(path, index)


def _read_all(fd: int, path: str) -> bytes:
    chunks = []
    try:
        while chunk := posix.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as e:  # C reads a directory as an empty file; we refuse (see differences)
        raise RulesError(path, 0, f"cannot read: {e.strerror}", COULD_NOT_OPEN) from None
    return b"".join(chunks)


def _cache_path(path: str, cache_dir: str | None) -> str:
    if cache_dir:
        absolute = path if path.startswith("/") else f"{posix.getcwd()}/{path}"
        return f"{cache_dir}/{absolute.replace('/', '%')}.cache"
    return path + ".cache"


def _private(directory: str, create: bool) -> str | None:
    """None when `directory` is a directory of ours that no one else may write (made 0700 when asked), else why not."""
    if create:
        try:
            posix.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            return f"cannot make {directory}: {e.strerror}"
    try:
        st = posix.lstat(directory)
    except OSError as e:
        return f"{directory}: {e.strerror}"
    if st.st_mode & 0o170000 != 0o040000:
        return f"{directory} is not a directory"
    if st.st_uid != posix.geteuid():
        return f"{directory} belongs to uid {st.st_uid}, not to us"
    if st.st_mode & 0o022:
        return f"{directory} is writable by group or others"
    return None


def _unsafe(st, name: str) -> str | None:
    """Why a cache file or its directory can't be trusted: someone other than this user or root owns it, or
    group or others may write it (a sticky bit does not help: whoever owns a planted file may change it).
    A cache's rules may set QMAILQUEUE, so a planted one runs its author's program as the server's user."""
    if st.st_uid not in (0, posix.geteuid()):
        return f"{name} belongs to uid {st.st_uid}"
    if st.st_mode & 0o022:
        return f"{name} is writable by group or others"
    return None


def _unsafe_directory(cache: str) -> str | None:
    head, slash, _ = cache.rpartition("/")
    directory = head or slash or "."
    try:
        return _unsafe(posix.stat(directory), directory)
    except OSError:
        return None  # nothing there to read a cache from; writing will fail and say why


def _open_cache(cache: str, key: tuple, log=None) -> CacheIndex | None:
    """The cache's index when it is one of ours and made for `key`; else None, and `log` hears why a cache
    that is not ours was not used (it is replaced)."""
    from .cdb import CDB

    try:
        cdb = CDB(cache)
    except OSError:
        return None
    st = posix.fstat(cdb.fd)
    unsafe = "not a regular file" if st.st_mode & 0o170000 != 0o100000 else _unsafe(st, cache)
    if unsafe:
        cdb.close()
        if log is not None:
            log(f"MAILRULES: {cache} not used: {unsafe}")
        return None
    try:
        stored_key, shape, lists = marshal.loads(cdb.get(b"meta"))
    except (OSError, EOFError, ValueError, TypeError):
        stored_key = None
    if stored_key != key:
        cdb.close()
        return None
    return CacheIndex(cdb, shape, lists)


def _save(data: bytes, key: tuple, path: str, primary: str | None, private: str, log, unsafe: str | None
          ) -> str | None:
    """Parse the rules into a cache file and say where (None: nowhere could be written; the rules work without).

    `primary` is None when its directory is `unsafe` (why): the cache goes to the private directory.
    """
    if primary is None:
        why = f"{unsafe}: its cache is not used"
    else:
        try:
            _write_cache(primary, records(_as_c(data, path), key))
            return primary
        except OSError as e:
            why = f"cannot write {primary}: {e.strerror}"
    written = None
    problem = _private(private, create=True)
    if problem is None:
        written = _cache_path(path, private)
        try:
            _write_cache(written, records(_as_c(data, path), key))
        except OSError as e:
            problem, written = f"cannot write in {private}: {e.strerror}", None
    if log is not None:
        log(f"MAILRULES: {why}; " + (f"not cached: {problem}" if problem else f"cached in {private}"))
    return written


def _write_cache(cache: str, records) -> None:
    """Write the records to a temporary file renamed into place; nothing is left behind when anything fails
    (a refusal found half-way included)."""
    from .cdb import write_cdb

    tmp = f"{cache}.{posix.urandom(8).hex()}.tmp"
    try:
        # a new file or nothing: never through a link or into a file someone made ready at that name
        write_cdb(tmp, records, lambda name, flags: posix.open(name, flags | posix.O_EXCL | posix.O_NOFOLLOW, 0o644))
        posix.replace(tmp, cache)
    except BaseException:
        try:
            posix.unlink(tmp)
        except OSError:
            pass
        raise
