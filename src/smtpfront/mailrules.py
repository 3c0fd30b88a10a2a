"""MAILRULES: sender and recipient rules (mailfront's mailrules.html).

    :sender | :recipient                       selector lines
    Ksender:recipient:response:databytes:relayclient:NAME=VALUE,...

K is k (accept), d (reject), z (defer), n (apply the settings and go on) or
p (stop here and leave the decision to the normal checks).  Fields may be
left off from the right.  Escapes: \\n (a line break in the reply), \\###
(octal), \\\\ and \\:.  Patterns are case-insensitive globs (see globs); `!`
negates; [[@file]] looks the address's domain up in a list or .cdb file,
[[file]] the whole address.  Rules before any selector are sender rules when
their recipient pattern is `*`, recipient rules otherwise.  Under
:recipient, both patterns must match; under :sender the recipient pattern is
ignored.  The first matching rule decides.

`load` parses a file, caching an index of it in a cdb file beside it (or
under $MAILRULES_CACHE) keyed on the file's identity, so that a process
started per connection pays for parsing only when the rules change.
"""

from __future__ import annotations

import marshal
import posix

from .globs import Glob

ACCEPT, REJECT, DEFER, NOOP, PASS = "k", "d", "z", "n", "p"
DEFAULT_RESPONSES = {ACCEPT: (250, "OK"), REJECT: (553, "Rejected"), DEFER: (451, "Deferred")}
SENDER, RECIPIENT = "sender", "recipient"
_CACHE_VERSION = 3
_COMMA = "\ue000"  # stands for an escaped comma until the fields are split


class RulesError(Exception):
    """A rules file can't be used; `line` is 0 when the file as a whole is the problem."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message


class Rule:
    """One rule line, parsed.  `applies_to` is SENDER or RECIPIENT."""

    __slots__ = (
        "line",
        "source",
        "kind",
        "applies_to",
        "sender",
        "recipient",
        "response",
        "databytes",
        "relayclient",
        "env",
    )

    def __init__(self, line, source, kind, applies_to, sender, recipient, response, databytes, relayclient, env):
        self.line = line
        self.source = source
        self.kind = kind
        self.applies_to = applies_to
        self.sender = sender  # a Pattern
        self.recipient = recipient
        self.response = response  # (code, text) or None
        self.databytes = databytes
        self.relayclient = relayclient
        self.env = env  # ((name, value), ...)

    def matches(self, sender: str, recipient: str | None) -> bool:
        if not self.sender.matches(sender):
            return False
        return recipient is None or self.recipient.matches(recipient)


class ListCache:
    """The list and cdb files named by [[...]] patterns, each opened once."""

    def __init__(self) -> None:
        self.lists: dict[str, object] = {}

    def lookup(self, path: str, key: str, domain_only: bool) -> bool:
        from .control import AddressList, ControlError, cdb_list, read_lines

        found = self.lists.get(path)
        if found is None:
            if path.endswith(".cdb"):
                found = cdb_list(path) or ()  # a missing cdb matches nothing
            else:
                lines = read_lines(path)
                if lines is None:
                    raise ControlError(f"{path}: file not found")
                found = AddressList(lines)
            self.lists[path] = found
        if not found:
            return False
        key = key.lower()
        domain = key.rpartition("@")[2]
        if isinstance(found, AddressList):
            if domain_only:
                return domain in found.entries or "@" + domain in found.entries
            return key in found
        return (domain if domain_only else key) in found


class Pattern:
    """A rule's pattern: a glob or a [[list]] lookup, possibly negated."""

    __slots__ = ("source", "negate", "list_path", "domain_only", "glob", "lists")

    def __init__(self, source: str, lists: ListCache) -> None:
        self.source = source
        self.negate = source.startswith("!")
        body = source[1:] if self.negate else source
        self.list_path = None
        self.domain_only = False
        self.glob = None
        self.lists = lists
        if body.startswith("[[") and body.endswith("]]"):
            name = body[2:-2]
            self.domain_only = name.startswith("@")
            self.list_path = name[1:] if self.domain_only else name
        else:
            self.glob = Glob(body)

    def matches(self, address: str) -> bool:
        if self.glob is not None:
            found = self.glob.matches(address)
        else:
            found = self.lists.lookup(self.list_path, address, self.domain_only)
        return found != self.negate


# ---- parsing --------------------------------------------------------------


def split_fields(line: str, lineno: int, path: str) -> list[str]:
    """Split on unescaped colons and resolve the escapes of each field."""
    fields, current = [], []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == ":":
            fields.append("".join(current))
            current = []
        elif c == "\\":
            if i + 1 >= n:
                raise RulesError(path, lineno, "backslash at end of line")
            nxt = line[i + 1]
            if nxt == "n":
                current.append("\r\n")
            elif nxt in "01234567":
                digits = line[i + 1 : i + 4]
                if len(digits) != 3 or any(d not in "01234567" for d in digits):
                    raise RulesError(path, lineno, "octal escape needs exactly 3 digits")
                current.append(chr(int(digits, 8)))
                i += 2
            elif nxt == ",":
                current.append(_COMMA)  # an escaped comma never splits assignments
            else:
                current.append(nxt)
            i += 1
        else:
            current.append(c)
        i += 1
    fields.append("".join(current))
    return fields


def _parse_env(field: str, lineno: int, path: str) -> tuple:
    if not field:
        return ()
    pairs = []
    for item in field.split(","):
        item = item.replace(_COMMA, ",")
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise RulesError(path, lineno, f"environment assignment without NAME=: {item!r}")
        pairs.append((name, value))
    return tuple(pairs)


def parse_line(raw_line: str, lineno: int, path: str, section: str | None) -> tuple:
    """A rule line as a plain tuple (what the cache stores)."""
    kind = raw_line[0]
    if kind not in "kdznp":
        raise RulesError(path, lineno, f"unknown rule type {kind!r} (expected k, d, z, n or p)")
    fields = split_fields(raw_line[1:], lineno, path)
    if len(fields) > 6:
        raise RulesError(path, lineno, f"too many fields ({len(fields)}, at most 6)")
    fields += [None] * (6 - len(fields))
    sender, recipient, response, databytes, relayclient, env = fields
    sender = "*" if sender is None else sender.replace(_COMMA, ",")
    recipient = "*" if recipient is None else recipient.replace(_COMMA, ",")
    for pattern in (sender, recipient):
        body = pattern[1:] if pattern.startswith("!") else pattern
        if body.startswith("[[") != body.endswith("]]") or body == "[[]]":
            raise RulesError(path, lineno, f"malformed list pattern {pattern!r}")
    if response:
        response = response.replace(_COMMA, ",")
    if databytes:
        if not databytes.isdigit():
            raise RulesError(path, lineno, f"databytes is not a number: {databytes!r}")
        databytes = int(databytes)
    else:
        databytes = 0
    if relayclient is not None:
        relayclient = relayclient.replace(_COMMA, ",")
    applies_to = section or (SENDER if recipient == "*" else RECIPIENT)
    return (lineno, raw_line, kind, applies_to, sender, recipient, response or None, databytes, relayclient,
            _parse_env(env or "", lineno, path))


def parse(text: str, path: str = "<rules>", errors: list | None = None) -> list[tuple]:
    """Parse a rules file's text.

    Raises RulesError naming the first bad line, or, given an `errors` list,
    collects every one there and goes on.
    """
    rules = []
    section = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        try:
            if line.startswith(":"):
                name = line[1:].strip().lower()
                if name not in (SENDER, RECIPIENT):
                    raise RulesError(path, lineno, f"unknown selector {line!r} (expected :sender or :recipient)")
                section = name
                continue
            rules.append(parse_line(line, lineno, path, section))
        except RulesError as e:
            if errors is None:
                raise
            errors.append(e)
    return rules


def index_key(pattern: str) -> str | None:
    """What a pattern can be looked up by: the address itself, or "@domain" for `*@domain`; None for the rest."""
    if pattern.startswith(("!", "[[")):
        return None
    key = pattern.lower()
    if key.startswith("*@"):
        key = key[1:]
        if "@" in key[1:]:
            return None
    if any(c in key for c in "*?["):
        return None
    return key


def build_index(parsed: list[tuple]) -> dict[str, tuple[list[int], dict[str, list[int]]]]:
    """For each kind of rule, the line numbers that must always be tried and those found by index_key.

    A sender rule is keyed by its sender pattern, a recipient rule by its recipient pattern.
    """
    index: dict[str, tuple[list[int], dict[str, list[int]]]] = {SENDER: ([], {}), RECIPIENT: ([], {})}
    for rule in parsed:
        lineno, applies_to = rule[0], rule[3]
        generic, keyed = index[applies_to]
        key = index_key(rule[4] if applies_to == SENDER else rule[5])
        if key is None:
            generic.append(lineno)
        else:
            keyed.setdefault(key, []).append(lineno)
    return index


class RuleSet:
    """A rules file, indexed: only the rules that could match an address are parsed and tried.

    A per-connection process may carry 10,000 rules and look at three of them,
    so a rule line becomes a `Rule` only when it is first a candidate.  The
    index is either built in memory or read record by record from the cache.
    """

    def __init__(self, path: str, index) -> None:
        self.path = path
        self.index = index  # a MemoryIndex or a CacheIndex
        self.lists = ListCache()
        self._rules: dict[int, Rule] = {}
        self._patterns: dict[str, Pattern] = {}

    def rule(self, lineno: int) -> Rule:
        rule = self._rules.get(lineno)
        if rule is None:
            section = None
            for at, name in self.index.selectors:
                if at > lineno:
                    break
                section = name
            parsed = parse_line(self.index.line(lineno).rstrip("\r"), lineno, self.path, section)
            rule = self._rules[lineno] = self._make(parsed)
        return rule

    def _make(self, parsed: tuple) -> Rule:
        lineno, source, kind, applies_to, sender, recipient, response, databytes, relay, env = parsed
        reply = None
        if kind in DEFAULT_RESPONSES:
            code, default = DEFAULT_RESPONSES[kind]
            reply = (code, response or default)
        return Rule(lineno, source, kind, applies_to, self._pattern(sender), self._pattern(recipient), reply,
                    databytes, relay, env)

    def _pattern(self, source: str) -> Pattern:
        pattern = self._patterns.get(source)
        if pattern is None:
            pattern = self._patterns[source] = Pattern(source, self.lists)
        return pattern

    def candidates(self, applies_to: str, address: str):
        """The rules of that kind that could match `address`, in file order."""
        address = address.lower()
        domain = address[address.rindex("@") :] if "@" in address else address
        hits = sorted({*self.index.keyed(applies_to, address), *self.index.keyed(applies_to, domain)})
        i = 0
        for lineno in self.index.generic(applies_to):
            while i < len(hits) and hits[i] < lineno:
                yield self.rule(hits[i])
                i += 1
            yield self.rule(lineno)
        for lineno in hits[i:]:
            yield self.rule(lineno)

    def __iter__(self):
        """Every rule, in file order."""
        return (self.rule(lineno) for lineno in self.index.all())


class MemoryIndex:
    """The index of a rules text parsed by this process."""

    def __init__(self, text: str, parsed: list[tuple]) -> None:
        self.lines = text.splitlines()
        self.selectors = [(lineno, line[1:].strip().lower()) for lineno, line in enumerate(self.lines, 1)
                          if line.startswith(":")]
        self.lists = text_lists(parsed)
        self._index = build_index(parsed)
        self._all = [rule[0] for rule in parsed]

    def line(self, lineno: int) -> str:
        return self.lines[lineno - 1]

    def generic(self, applies_to: str) -> list[int]:
        return self._index[applies_to][0]

    def keyed(self, applies_to: str, key: str) -> list[int]:
        return self._index[applies_to][1].get(key, [])

    def all(self) -> list[int]:
        return self._all

    def records(self, key: tuple):
        """The cache file's (key, value) records: the same index, one record per lookup."""
        yield b"meta", marshal.dumps((key, self.selectors, self.lists))
        yield b"all", marshal.dumps(self._all)
        for applies_to, (generic, keyed) in self._index.items():
            tag = applies_to[0].encode()
            yield b"g" + tag, marshal.dumps(generic)
            for name, linenos in keyed.items():
                yield b"k" + tag + name.encode("utf-8", "surrogateescape"), marshal.dumps(linenos)
        for lineno in self._all:
            yield b"l%d" % lineno, self.line(lineno).encode("utf-8", "surrogateescape")


class CacheIndex:
    """The index read from the cache (a cdb file): a lookup reads a few records, not the whole file."""

    def __init__(self, cdb, selectors: list[tuple[int, str]], lists: list[tuple[int, str]]) -> None:
        self.cdb = cdb
        self.selectors = selectors
        self.lists = lists

    def _get(self, key: bytes):
        data = self.cdb.get(key)
        if data is None:
            raise OSError(f"{self.cdb.path}: record {key!r} is missing")
        return data

    def line(self, lineno: int) -> str:
        return self._get(b"l%d" % lineno).decode("utf-8", "surrogateescape")

    def generic(self, applies_to: str) -> list[int]:
        return marshal.loads(self._get(b"g" + applies_to[0].encode()))

    def keyed(self, applies_to: str, key: str) -> list[int]:
        data = self.cdb.get(b"k" + applies_to[0].encode() + key.encode("utf-8", "surrogateescape"))
        return [] if data is None else marshal.loads(data)

    def all(self) -> list[int]:
        return marshal.loads(self._get(b"all"))


def build(text: str, path: str = "<rules>") -> RuleSet:
    """Parse a rules file's text (raising RulesError) into an indexed RuleSet."""
    return RuleSet(path, MemoryIndex(text, parse(text, path)))


def text_lists(parsed: list[tuple]) -> list[tuple[int, str]]:
    """(line, path) of every text list a rule names (a missing cdb file matches nothing; a text list must exist)."""
    out = []
    for rule in parsed:
        for source in (rule[4], rule[5]):
            body = source.lstrip("!")
            if body.startswith("[["):
                path = body[2:-2].lstrip("@")
                if not path.endswith(".cdb"):
                    out.append((rule[0], path))
    return out


def missing_lists(named: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(lineno, path) for lineno, path in named if not _exists(path)]


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def _cache_path(path: str, cache_dir: str | None) -> str:
    if cache_dir:
        absolute = path if path.startswith("/") else f"{posix.getcwd()}/{path}"
        return f"{cache_dir}/{absolute.replace('/', '%')}.cache"
    return path + ".cache"


def load(path: str, cache_dir: str | None = None) -> RuleSet:
    """Read, parse and check a rules file, through the cache when it is current."""
    try:
        with open(path, "rb") as f:
            st = posix.fstat(f.fileno())
            key = (_CACHE_VERSION, st.st_ino, st.st_size, st.st_mtime_ns)
            cache = _cache_path(path, cache_dir)
            index = _open_cache(cache, key)
            if index is None:
                text = f.read().decode("utf-8", "surrogateescape")
                index = MemoryIndex(text, parse(text, path))
                _write_cache(cache, key, index)
    except OSError as e:
        raise RulesError(path, 0, f"cannot read: {e.strerror}") from None
    for lineno, list_path in missing_lists(index.lists):
        raise RulesError(path, lineno, f"list file {list_path} does not exist")
    return RuleSet(path, index)


def _open_cache(cache: str, key: tuple) -> CacheIndex | None:
    from .cdb import CDB

    try:
        cdb = CDB(cache)
    except OSError:
        return None
    try:
        stored_key, selectors, lists = marshal.loads(cdb.get(b"meta"))
    except (OSError, EOFError, ValueError, TypeError):
        stored_key = None
    if stored_key != key:
        cdb.close()
        return None
    return CacheIndex(cdb, selectors, lists)


def _write_cache(cache: str, key: tuple, index: MemoryIndex) -> None:
    """Best effort: the rules work without a cache, e.g. in a read-only directory."""
    from .cdb import write_cdb

    tmp = f"{cache}.{posix.getpid()}.tmp"
    try:
        write_cdb(tmp, index.records(key))
        posix.replace(tmp, cache)
    except OSError:
        try:
            posix.unlink(tmp)
        except OSError:
            pass


def decide(rules: RuleSet, applies_to: str, sender: str, recipient: str | None):
    """The matching rules in order, up to and including the first that is not `n`."""
    keyed_by = sender if applies_to == SENDER else recipient or ""
    for rule in rules.candidates(applies_to, keyed_by):
        if rule.matches(sender, recipient if applies_to == RECIPIENT else None):
            yield rule
            if rule.kind != NOOP:
                return
