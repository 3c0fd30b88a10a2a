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

`load` parses a file, caching the parse in a marshal file beside it (or
under $MAILRULES_CACHE) keyed on the file's identity, so that a process
started per connection pays for parsing only when the rules change.
"""

from __future__ import annotations

import marshal
import os

from .globs import Glob

ACCEPT, REJECT, DEFER, NOOP, PASS = "k", "d", "z", "n", "p"
DEFAULT_RESPONSES = {ACCEPT: (250, "OK"), REJECT: (553, "Rejected"), DEFER: (451, "Deferred")}
SENDER, RECIPIENT = "sender", "recipient"
_CACHE_VERSION = 1
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


def build(parsed: list[tuple], lists: ListCache | None = None) -> list[Rule]:
    lists = lists or ListCache()
    patterns: dict[str, Pattern] = {}

    def pattern(source: str) -> Pattern:
        p = patterns.get(source)
        if p is None:
            p = patterns[source] = Pattern(source, lists)
        return p

    rules = []
    for lineno, source, kind, applies_to, sender, recipient, response, databytes, relay, env in parsed:
        reply = None
        if kind in DEFAULT_RESPONSES:
            code, default = DEFAULT_RESPONSES[kind]
            reply = (code, response or default)
        rules.append(
            Rule(lineno, source, kind, applies_to, pattern(sender), pattern(recipient), reply, databytes, relay,
                 env)
        )
    return rules


def missing_lists(parsed: list[tuple]) -> list[tuple[int, str]]:
    """(line, path) of every text list a rule names that does not exist (cdb files may be missing)."""
    out = []
    for rule in parsed:
        for source in (rule[4], rule[5]):
            body = source.lstrip("!")
            if body.startswith("[["):
                path = body[2:-2].lstrip("@")
                if not path.endswith(".cdb") and not os.path.exists(path):
                    out.append((rule[0], path))
    return out


def _cache_path(path: str, cache_dir: str | None) -> str:
    if cache_dir:
        return os.path.join(cache_dir, os.path.abspath(path).replace("/", "%") + ".cache")
    return path + ".cache"


def load(path: str, cache_dir: str | None = None) -> list[Rule]:
    """Read, parse and check a rules file, through the cache when it is current."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            key = (_CACHE_VERSION, st.st_ino, st.st_size, st.st_mtime_ns)
            cache = _cache_path(path, cache_dir)
            parsed = _read_cache(cache, key)
            if parsed is None:
                parsed = parse(f.read().decode("utf-8", "surrogateescape"), path)
                _write_cache(cache, key, parsed)
    except OSError as e:
        raise RulesError(path, 0, f"cannot read: {e.strerror}") from None
    for lineno, list_path in missing_lists(parsed):
        raise RulesError(path, lineno, f"list file {list_path} does not exist")
    return build(parsed)


def _read_cache(cache: str, key: tuple):
    try:
        with open(cache, "rb") as f:
            stored_key, parsed = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return parsed if stored_key == key else None


def _write_cache(cache: str, key: tuple, parsed: list[tuple]) -> None:
    """Best effort: the rules work without a cache, e.g. in a read-only directory."""
    tmp = f"{cache}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            marshal.dump((key, parsed), f)
        os.replace(tmp, cache)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def decide(rules: list[Rule], applies_to: str, sender: str, recipient: str | None):
    """The matching rules in order, up to and including the first that is not `n`."""
    for rule in rules:
        if rule.applies_to != applies_to:
            continue
        if rule.matches(sender, recipient if applies_to == RECIPIENT else None):
            yield rule
            if rule.kind != NOOP:
                return
