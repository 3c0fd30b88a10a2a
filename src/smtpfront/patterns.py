"""PATTERNS: reject messages whose lines match a glob (mailfront's plugin-patterns).

Each line of the file starts with a character that says where its pattern
applies: `#` comment, `=` sets the response for the patterns that follow,
`:` header lines only, `\\` only the first line after a blank line (a MIME
part's first line), anything else: every non-blank line (the pattern is the
whole line then).  Patterns are case-sensitive globs over the first
PATTERNS_LINEMAX bytes of a line.
"""

from __future__ import annotations

from .globs import Glob

ANYWHERE, HEADER, AFTER_BLANK = "any", "header", "after-blank"


def parse(text: str, default_response: str) -> list[tuple[str, Glob, str]]:
    """(where, glob, response) for each pattern line."""
    response = default_response
    out = []
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line or line.startswith("#"):
            continue
        first = line[0]
        if first == "=":
            response = line[1:]
        elif first == ":":
            out.append((HEADER, Glob(line[1:], fold=False), response))
        elif first == "\\":
            out.append((AFTER_BLANK, Glob(line[1:], fold=False), response))
        else:
            out.append((ANYWHERE, Glob(line, fold=False), response))
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
