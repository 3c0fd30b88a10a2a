"""Glob patterns as bglibs' str_glob / str_case_glob read them (mailfront's MAILRULES and PATTERNS).

`*` any run, `?` one character, `[seq]` / `[!seq]` / `[^seq]` one character
in (not in) seq.  A set has no ranges: `[0-9]` is the three characters `0`,
`-` and `9`; inside a set `\\c` stands for `c`; a `]` right after the `[`
(or `[!`) closes an empty set.  Two of bglibs' readings that a shell's glob
does not share are kept, because a file the C program serves must match
the same addresses here:

* once the pattern's last literal or set has matched, a `*` makes the rest
  match: `a*?` matches `a`;
* a set left open (`[abc` to the end) matches whatever follows, if a
  character is left where it starts: `x[` matches `xy`, not `x`.

`compile` rewrites both into an ordinary glob and picks the cheapest way to
match it, as a small tuple that marshal can store: ("=", text),
("*",) for anything, ("s", head, middles, tail) for stars between literals
(matched with string methods), ("g", tokens) for the rest.  Patterns and
subjects are both `str` or both `bytes` (MAILRULES matches bytes, as C does).
"""

from __future__ import annotations

from .smtp import fold as fold_text

STAR, ANY = -1, -2  # tokens; a literal token is one character (str) or byte value (int)


def tokens(pattern):
    """The pattern as tokens, bglibs' two readings already rewritten; `unclosed` tells of an open set."""
    empty = pattern[:0]
    star, question, bracket, close, bang, caret, backslash = (
        (b"*", b"?", b"[", b"]", b"!", b"^", b"\\") if isinstance(pattern, bytes) else "*?[]!^\\"
    )
    out: list = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == star:
            if not out or out[-1] != STAR:
                out.append(STAR)
        elif c == question:
            out.append(ANY)
        elif c == bracket:
            negate = pattern[i : i + 1] in (bang, caret)
            j = i + negate
            chars = empty
            while j < n:
                ch = pattern[j : j + 1]
                j += 1
                if ch == close:
                    break
                if ch == backslash:
                    ch = pattern[j : j + 1]
                    j += 1
                    if not ch:  # C reads past the end here; take it as open
                        j = n + 1
                        break
                chars += ch
            else:
                j = n + 1
            if j > n:  # open to the end: the prefix must match, with a character left
                return out + [ANY, STAR], True
            out.append((chars, negate))
            i = j
        else:
            out.append(c[0])
    trailing = len(out)
    while trailing and out[trailing - 1] in (STAR, ANY):
        trailing -= 1
    if STAR in out[trailing:]:  # after the last literal, the first star ends the match
        first = out.index(STAR, trailing)
        out = out[:first] + [STAR]
    return out, False


def compile(pattern, fold: bool = True) -> tuple:  # noqa: A001 - the module's verb, as re.compile
    """The match plan for a pattern; with `fold`, subjects must be given lower-cased (`matches` does not fold)."""
    if fold:
        pattern = pattern.lower() if isinstance(pattern, bytes) else fold_text(pattern)
    star, question, bracket = (b"*", b"?", b"[") if isinstance(pattern, bytes) else "*?["
    if question not in pattern and bracket not in pattern:  # the common shapes, without a token a character
        return _between_stars(pattern.split(star))
    toks, _ = tokens(pattern)
    if any(t == ANY or type(t) is tuple for t in toks):
        return ("g", tuple(toks))
    join = (lambda ts: bytes(ts)) if isinstance(pattern, bytes) else "".join
    runs, run = [], []
    for t in toks:
        if t == STAR:
            runs.append(join(run))
            run = []
        else:
            run.append(t)
    runs.append(join(run))
    return _between_stars(runs)


def _between_stars(runs: list) -> tuple:
    """The plan for literal runs with a star between each two: one run is "=", only stars "*", else "s"."""
    if len(runs) == 1:
        return ("=", runs[0])
    if not any(runs):
        return ("*",)
    return ("s", runs[0], tuple(r for r in runs[1:-1] if r), runs[-1])


def matches(plan: tuple, s) -> bool:
    shape = plan[0]
    if shape == "s":
        head, middles, tail = plan[1], plan[2], plan[3]
        if len(s) < len(head) + len(tail) or not s.startswith(head) or not s.endswith(tail):
            return False
        at, end = len(head), len(s) - len(tail)
        for middle in middles:
            at = s.find(middle, at, end)
            if at < 0:
                return False
            at += len(middle)
        return True
    if shape == "=":
        return s == plan[1]
    if shape == "*":
        return True
    return _general(plan[1], s)


def _general(toks: tuple, s) -> bool:
    """A glob with `?` or sets: on a mismatch, go back to the last star and let it take one more character."""
    si = ti = 0
    star_ti, star_si = -1, 0
    n, m = len(s), len(toks)
    while si < n:
        if ti < m:
            t = toks[ti]
            if t == STAR:
                star_ti, star_si = ti, si
                ti += 1
                continue
            c = s[si]
            if t == ANY or t == c or (type(t) is tuple and (c in t[0]) != t[1]):
                si += 1
                ti += 1
                continue
        if star_ti < 0:
            return False
        star_si += 1
        si, ti = star_si, star_ti + 1
    while ti < m and toks[ti] == STAR:
        ti += 1
    return ti == m


def literals(plan: tuple) -> list:
    """Runs of literal text every subject matching the plan contains (none for `*` or `?`-only plans)."""
    shape = plan[0]
    if shape == "=":
        return [plan[1]] if plan[1] else []
    if shape == "s":
        return [r for r in (plan[1], *plan[2], plan[3]) if r]
    if shape == "*":
        return []
    runs, run = [], []
    for t in plan[1]:
        if t in (STAR, ANY) or type(t) is tuple:
            runs.append(run)
            run = []
        else:
            run.append(t)
    runs.append(run)
    return [bytes(r) if type(r[0]) is int else "".join(r) for r in runs if r]


def is_open(pattern) -> bool:
    """Whether a `[` is left open (bglibs then matches whatever follows it)."""
    return tokens(pattern)[1]


class Glob:
    """One glob, compiled on first use (PATTERNS compiles many and tries few)."""

    __slots__ = ("source", "fold", "_plan")

    def __init__(self, source: str, fold: bool = True) -> None:
        self.source = source
        self.fold = fold  # compare without regard to case
        self._plan = None

    def __repr__(self) -> str:
        return f"Glob({self.source!r})"

    def matches(self, subject: str) -> bool:
        if self._plan is None:
            self._plan = compile(self.source, self.fold)
        return matches(self._plan, fold_text(subject) if self.fold else subject)
