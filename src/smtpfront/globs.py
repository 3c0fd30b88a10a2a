"""Glob patterns as mailfront reads them: `*`, `?`, `[seq]`, `[!seq]`.

A set has no ranges: `[0-9]` is the three characters `0`, `-` and `9`, as in
mailfront.  An unterminated `[` is an ordinary character.  The common shapes
(`*`, a literal, `*literal`, `literal*`, `*literal*`) are matched with string
methods; the rest is translated to a regular expression on first use, so
that loading many patterns costs little.
"""

from __future__ import annotations

_SPECIAL = frozenset("*?[")


class Glob:
    __slots__ = ("source", "fold", "_match")

    def __init__(self, source: str, fold: bool = True) -> None:
        self.source = source
        self.fold = fold  # compare without regard to case
        self._match = None

    def __repr__(self) -> str:
        return f"Glob({self.source!r})"

    def matches(self, subject: str) -> bool:
        if self._match is None:
            self._match = self._compile()
        return self._match(subject.lower() if self.fold else subject)

    def _compile(self):
        source = self.source.lower() if self.fold else self.source
        if not _SPECIAL.intersection(source):
            return source.__eq__
        inner = source.strip("*")
        if not _SPECIAL.intersection(inner):
            if not inner:
                return lambda s: True
            head, tail = source.startswith("*"), source.endswith("*")
            if head and tail:
                return lambda s: inner in s
            if head and source.count("*") == 1:
                return lambda s: s.endswith(inner)
            if tail and source.count("*") == 1:
                return lambda s: s.startswith(inner)
        import re

        flags = re.DOTALL | (re.IGNORECASE if self.fold else 0)
        fullmatch = re.compile(translate(source), flags).fullmatch
        return lambda s: fullmatch(s) is not None


def translate(pattern: str) -> str:
    """The regular expression equivalent to a glob."""
    import re

    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + (pattern[i : i + 1] == "!") + 1)
            if end < 0:
                out.append(re.escape(c))
                continue
            body = pattern[i:end]
            negate = body.startswith("!")
            chars = "".join(re.escape(ch) for ch in (body[1:] if negate else body))
            out.append(f"[{'^' if negate else ''}{chars}]")
            i = end + 1
        else:
            out.append(re.escape(c))
    return "".join(out)
