"""PATTERNS: reject messages whose lines match a glob (mailfront's plugin-patterns).

The first character of every line is a control character, never part of the
glob (as mailfront reads it): `#` comment, `=` sets the response for the
patterns that follow, `:` header lines only, `\\` only the first line after a
blank line (a MIME part's first line), anything else (sites write `/`, a
space, `*`...): every non-blank line.  Trailing white space is not part of a
line, as in C.  Patterns are case-sensitive globs over the first
PATTERNS_LINEMAX bytes of a line.
"""

from __future__ import annotations

from .globs import Glob

ANYWHERE, HEADER, AFTER_BLANK = "any", "header", "after-blank"
C_SPACE = " \t\n\v\f\r"  # C's isspace(): what mailfront strips from the end of a line


def parse(text: str, default_response: str) -> list[tuple[str, Glob, str]]:
    """(where, glob, response) for each pattern line."""
    response = default_response
    out = []
    for line in text.split("\n"):
        line = line.rstrip(C_SPACE)
        if not line or line.startswith("#"):
            continue
        if line[0] == "=":
            response = line[1:]
        else:
            where = {":": HEADER, "\\": AFTER_BLANK}.get(line[0], ANYWHERE)
            out.append((where, Glob(line[1:], fold=False), response))
    return out


class Scanner:
    """Feeds message blocks line by line through the patterns; remembers where it is."""

    def __init__(self, patterns: list[tuple[str, Glob, str]], linemax: int) -> None:
        self.linemax = linemax
        self.anywhere = [(g, r) for w, g, r in patterns if w == ANYWHERE]
        self.header = [(g, r) for w, g, r in patterns if w == HEADER] + self.anywhere
        self.after_blank = [(g, r) for w, g, r in patterns if w == AFTER_BLANK] + self.anywhere
        self.reset()

    def reset(self) -> None:
        self.in_header = True
        self.after_blank_line = False
        self.partial = b""  # the start of a line that goes on in the next block

    def scan(self, block: bytes) -> str | None:
        """The response of the first pattern that matches a complete line of `block`."""
        data = self.partial + block if self.partial else block
        lines = data.split(b"\n")
        self.partial = lines.pop()[: self.linemax]
        for line in lines:
            found = self._line(line[: self.linemax].rstrip(b"\r"))
            if found is not None:
                return found
        return None

    def finish(self) -> str | None:
        """A last line without a newline is scanned too."""
        if self.partial:
            line, self.partial = self.partial, b""
            return self._line(line)
        return None

    def _line(self, raw: bytes) -> str | None:
        if not raw:
            self.in_header = False
            self.after_blank_line = True
            return None
        if self.in_header:
            candidates = self.header
        elif self.after_blank_line:
            candidates = self.after_blank
        else:
            candidates = self.anywhere
        self.after_blank_line = False
        if candidates:
            line = raw.decode("utf-8", "surrogateescape")
            for glob, response in candidates:
                if glob.matches(line):
                    return response
        return None
