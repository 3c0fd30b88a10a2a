#!/usr/bin/env python3
"""md2man: the manual pages, from their Markdown sources (docs/NAME.N.md -> man/NAME.N).

    python3 tools/md2man.py           write man/NAME.N for every docs/*.[0-9].md
    python3 tools/md2man.py --check   exit 1, naming them, if a page in man/ is missing or out of date

The Markdown is the one source of truth; the roff in man/ is generated, committed (so
that `pip install` needs nothing but setuptools) and installed as data files into
share/man/manN. Build-time only, standard library only.

The subset understood is the one the pages use: `# NAME(N)` first, `## SECTION`,
`### Subsection`, paragraphs, lists (`* `, `- `, `1. `, continued by indented lines),
definitions (a term, then a line `: text`), fenced code blocks, tables (each row
becomes a tagged paragraph, as a definition does), `**bold**`,
`*italic*`, `` `code` `` (bold), `[text](url)` and backslash escapes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
SOURCES = TOP / "docs"
PAGES = TOP / "man"
MANUALS = {"1": "User Commands", "5": "File Formats", "7": "Miscellanea", "8": "System Manager's Manual"}

TITLE = re.compile(r"# ([A-Za-z0-9._-]+)\(([0-9])\)\s*$")
LIST_ITEM = re.compile(r"( {0,3})([*-]|[0-9]+\.) +(.*)")
TABLE_RULE = re.compile(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")
STRONG = re.compile(r"\*\*([^*\s](?:[^*]*[^*\s])?)\*\*")
EMPHASIS = re.compile(r"(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def version() -> str:
    text = (TOP / "src" / "smtpfront" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


# -- inline text --------------------------------------------------------------


def escape(text: str) -> str:
    """Text as roff reads it literally: the escape character doubled."""
    return text.replace("\\", "\\e")


def literal(text: str) -> str:
    """A command, option or path: `-` is the minus sign, so what is copied from the page runs."""
    return escape(text).replace("-", "\\-")


def code_text(code: str) -> str:
    """A code span's text as CommonMark reads it: line ends are spaces; one space is trimmed from
    each end only when it is at both, so `` `bytes in: ` `` keeps its space."""
    code = code.replace("\n", " ")
    return code[1:-1] if len(code) > 2 and code[0] == code[-1] == " " and code.strip() else code


def inline(text: str) -> str:
    """Markdown spans in one paragraph (which may hold newlines) -> roff text."""
    held: list[str] = []

    def hold(roff: str) -> str:
        held.append(roff)
        return f"\0{len(held) - 1}\0"

    text = CODE.sub(lambda m: hold(f"\\fB{literal(code_text(m.group(2)))}\\fR"), text)
    text = ESCAPED.sub(lambda m: hold(escape(m.group(1))), text)
    text = LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} <{m.group(2)}>", text)
    text = escape(text)
    text = STRONG.sub(lambda m: f"\\fB{m.group(1).replace('-', chr(92) + '-')}\\fR", text)
    text = EMPHASIS.sub(lambda m: f"\\fI{m.group(1)}\\fR", text)
    text = re.sub(r"\0(\d+)\0", lambda m: held[int(m.group(1))], text)
    return unicode(text)


def unicode(text: str) -> str:
    """Non-ASCII characters by their code point: the page reads the same whatever the locale."""
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def text_lines(roff: str) -> list[str]:
    """Lines of running text: none may start like a request, none may be empty."""
    out = []
    for line in roff.split("\n"):
        line = line.strip()
        if line:
            out.append("\\&" + line if line[0] in ".'" else line)
    return out


def code_line(code: str) -> str:
    """One line of a code block, shown as it is (no-fill mode keeps its spaces)."""
    roff = unicode(literal(code))
    return "\\&" + roff if roff[:1] in ".'" else roff


# -- blocks -------------------------------------------------------------------


def table_cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)]


def table(rows: list[str]) -> list[str]:
    """A table as tagged paragraphs: the first cell is the tag, the second the text, the others named."""
    header = table_cells(rows[0])
    out = []
    for row in rows[2:] if len(rows) > 1 and TABLE_RULE.match(rows[1]) else rows[1:]:
        cells = table_cells(row)
        out += [".TP", *text_lines(inline(cells[0]))]
        body = text_lines(inline(cells[1])) if len(cells) > 1 else []
        for name, cell in zip(header[2:], cells[2:], strict=False):
            if cell:
                body += [".br", *text_lines(inline(f"{name}: {cell}"))]
        out += body or ["\\&"]
    return out


def convert(markdown: str, release: str) -> str:
    """One page: Markdown -> man(7) roff."""
    lines = markdown.splitlines()
    title = TITLE.match(lines[0]) if lines else None
    if title is None:
        raise ValueError("the first line must be '# NAME(N)'")
    name, section = title.groups()
    out = [
        f".\\\" {name.lower()}({section}), generated by tools/md2man.py from docs/{name.lower()}.{section}.md:",
        ".\\\" edit that, then run make man",
        f'.TH {name.upper()} {section} "" "smtpfront {release}" "{MANUALS.get(section, "")}"',
        ".nh",  # no hyphenation: names, variables and paths must read as they are typed
        ".ad l",  # ragged right: long variable names would leave wide gaps in justified lines
    ]
    heading = ""
    i = 1
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
            out += [".PP", ".RS 4", ".nf"]
            out += [code_line(code) for code in lines[i + 1 : end]]
            out += [".fi", ".RE"]
            i = end + 1
        elif line.startswith("#"):
            level, _, heading = line.partition(" ")
            out.append(f"{'.SH' if level == '##' else '.SS'} {unicode(escape(heading.strip()))}")
            i += 1
        elif stripped.startswith("|"):
            end = i
            while end < len(lines) and lines[end].strip().startswith("|"):
                end += 1
            out += table(lines[i:end])
            i = end
        else:
            item = LIST_ITEM.match(line)
            block = [item.group(3) if item else stripped]
            i += 1
            while i < len(lines) and lines[i].strip() and not (
                LIST_ITEM.match(lines[i]) or lines[i].lstrip().startswith(("```", "|", "#"))
            ):
                block.append(lines[i].strip())
                i += 1
            text = "\n".join(block)
            term, colon, definition = text.partition("\n: ")
            if item is None and colon:
                out += [".TP", *text_lines(inline(term)), *text_lines(inline(definition))]
                continue
            if item is None:
                out.append(".PP")
            elif item.group(2) in "*-":
                out.append(".IP \\(bu 2")
            else:
                out.append(f".IP {item.group(2)} 4")
            roff = inline(text)
            if heading.strip().upper() == "NAME":  # "name, name \- summary": what whatis and apropos read
                roff = re.sub(r" (\\\[u2014\]|--?) ", r" \\- ", roff, count=1)
            out += text_lines(roff)
    return "\n".join(out) + "\n"


# -- the pages ------------------------------------------------------------------


def page_name(source: Path) -> str:
    """docs/NAME.N.md -> NAME.N"""
    return source.name[: -len(".md")]


def sources() -> list[Path]:
    return sorted(SOURCES.glob("*.[0-9].md"))


def generate() -> dict[str, str]:
    release = version()
    return {page_name(source): convert(source.read_text(), release) for source in sources()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pages = generate()
    if args == ["--check"]:
        stale = [name for name, roff in pages.items()
                 if not (PAGES / name).exists() or (PAGES / name).read_text() != roff]
        extra = sorted({p.name for p in PAGES.glob("*.[0-9]")} - set(pages))
        for name in stale:
            print(f"md2man: man/{name} is not what docs/{name}.md gives: run make man", file=sys.stderr)
        for name in extra:
            print(f"md2man: man/{name} has no source docs/{name}.md", file=sys.stderr)
        return 1 if stale or extra else 0
    if args:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    PAGES.mkdir(exist_ok=True)
    for name in sorted({p.name for p in PAGES.glob("*.[0-9]")} - set(pages)):
        (PAGES / name).unlink()
    for name, roff in pages.items():
        (PAGES / name).write_text(roff)
        print(f"man/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
