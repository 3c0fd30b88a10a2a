"""The manual pages: generated from docs/NAME.N.md, one for every program, clean for groff and man, installed by pip."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import BIN, need

TOP = Path(__file__).resolve().parent.parent
SOURCES = sorted((TOP / "docs").glob("*.[0-9].md"))
PAGES = [TOP / "man" / source.name[: -len(".md")] for source in SOURCES]

spec = importlib.util.spec_from_file_location("md2man", TOP / "tools" / "md2man.py")
md2man = importlib.util.module_from_spec(spec)
spec.loader.exec_module(md2man)


def page_ids(pages: list[Path]) -> list[str]:
    return [page.name for page in pages]


# -- the pages as committed -------------------------------------------------------


def test_committed_pages_are_what_their_sources_give():
    """man/ is generated: edit docs/NAME.N.md and run make man; a stale or orphan page fails here."""
    assert SOURCES, "no docs/*.N.md"
    r = subprocess.run([sys.executable, str(TOP / "tools" / "md2man.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (TOP / "man").glob("*.[0-9]")) == sorted(p.name for p in PAGES)


def test_every_program_has_a_page():
    """Each console script is named in the NAME section of some page, as whatis/apropos read it (lexgrog)."""
    scripts = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]["scripts"]
    named = set()
    for page in PAGES:
        r = subprocess.run([need("lexgrog"), str(page)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        named |= set(re.findall(r': "(\S+) - ', r.stdout))
    missing = sorted(set(scripts) - named)
    assert not missing, f"no manual page names {missing}: write docs/NAME.N.md and run make man"


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_page_renders_without_warnings(page):
    groff = subprocess.run([need("groff"), "-ww", "-z", "-man", str(page)], capture_output=True, text=True)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    r = subprocess.run([need("man"), "--warnings", "-l", str(page)], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    name, section = page.name.rsplit(".", 1)
    assert r.stdout.startswith(f"{name.upper()}({section})")
    headings = re.findall(r"^## (.+)$", (TOP / "docs" / f"{page.name}.md").read_text(), re.M)
    assert [h for h in headings if f"\n{h.upper()}\n" not in r.stdout] == []
    assert max(len(line) for line in r.stdout.splitlines()) <= 80


# -- installed where man looks ----------------------------------------------------


def installed_pages(prefix: Path) -> dict[str, str]:
    return {f"{p.parent.name}/{p.name}": p.read_text() for p in (prefix / "share" / "man").glob("man*/*")}


def expected_pages() -> dict[str, str]:
    return {f"man{p.name.rsplit('.', 1)[1]}/{p.name}": p.read_text() for p in PAGES}


def test_pip_install_puts_the_pages_in_share_man(tmp_path):
    """A real pip install (build isolation, setuptools from the index) into a fresh venv."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "src", "man"):
        copy = shutil.copytree if (TOP / name).is_dir() else shutil.copy
        copy(TOP / name, project / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = subprocess.run([str(BIN / "pip"), "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
                        str(project)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_pages(venv) == expected_pages()
    # man-db derives its search path from PATH: the venv's bin/ on PATH finds its pages
    found = subprocess.run([need("man"), "-w", "smtpfront-conf"], capture_output=True, text=True,
                           env={**os.environ, "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "MANPATH": ""})
    assert found.stdout.strip() == str(venv / "share" / "man" / "man8" / "smtpfront-conf.8"), found.stderr


def test_make_venv_installed_the_pages():
    """The editable install `make venv` makes (setuptools skips data files there; the Makefile copies them)."""
    assert installed_pages(BIN.parent) == expected_pages()


# -- the converter ------------------------------------------------------------------


def convert(body: str, title: str = "# DEMO(8)\n") -> list[str]:
    return md2man.convert(title + body, "9.9")[: -len("\n")].split("\n")[5:]  # after comments, .TH, .nh, .ad


def test_title_and_name_line():
    out = md2man.convert("# FOO-BAR(1)\n\n## NAME\n\nfoo-bar, foo — do a thing\n", "1.2").split("\n")
    assert '.TH FOO-BAR 1 "" "smtpfront 1.2" "User Commands"' in out
    assert out[-4:] == [".SH NAME", ".PP", "foo-bar, foo \\- do a thing", ""]
    with pytest.raises(ValueError):
        md2man.convert("FOO(1)\n", "1")


def test_text_that_roff_would_take_for_requests_or_escapes():
    out = convert("a line\n.starts with a dot\n'and a quote\nC:\\path \\*not emphasis\\*\n")
    assert out == [".PP", "a line", "\\&.starts with a dot", "\\&'and a quote", "C:\\epath *not emphasis*"]


def test_inline_spans():
    [_, line] = convert("**smtpfront-conf** *dir* `--tls-key` [site](https://x.example) `` a`b `` é—\n")
    assert line == ("\\fBsmtpfront\\-conf\\fR \\fIdir\\fR \\fB\\-\\-tls\\-key\\fR site <https://x.example> "
                    "\\fBa`b\\fR \\[u00E9]\\[u2014]")
    # a code span keeps a one-sided space; spans may cross a line end; * between spaces is text
    assert convert("`bytes in: `*n* and `a\nb` 2 * 3 * 4\n") == [
        ".PP", "\\fBbytes in: \\fR\\fIn\\fR and \\fBa b\\fR 2 * 3 * 4"]


def test_blocks():
    body = """## OPTIONS

* one
  continued
- two
1. first

**-V**
: print the version

```
.dot -x \\n
  indented
```

| name | meaning | default |
|---|---|---|
| `A` | a \\| b | 1 |
| `B` | b | |
"""
    assert convert(body) == [
        ".SH OPTIONS",
        ".IP \\(bu 2", "one", "continued", ".IP \\(bu 2", "two", ".IP 1. 4", "first",
        ".TP", "\\fB\\-V\\fR", "print the version",
        ".PP", ".RS 4", ".nf", "\\&.dot \\-x \\en", "  indented", ".fi", ".RE",
        ".TP", "\\fBA\\fR", "a | b", ".br", "default: 1",
        ".TP", "\\fBB\\fR", "b",
    ]
