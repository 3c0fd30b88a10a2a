"""The documents stay true: every variable the programs read is in the table, every test they cite exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def variables_read() -> set[str]:
    """The variable names config.py reads (env.get("X"), "X" in env, _number(env, "X", ...)) and session.getenv("X")."""
    tree = ast.parse((TOP / "src" / "smtpfront" / "config.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+",
                                                                                           node.value):
            names.add(node.value)
    # and what plugins and back ends look up per message through the session (getenv / getenvu)
    for source in (TOP / "src" / "smtpfront").rglob("*.py"):
        names.update(re.findall(r"getenvu?\(\s*f?\"([A-Z][A-Z0-9_]+)", source.read_text()))
    return names - {"TCP"}  # the default $PROTO, not a variable


def test_every_variable_is_documented():
    table = (TOP / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(?:\$\{PROTO\})?([A-Z][A-Z0-9_]+)(?:<[a-z]+>)?`", table))
    missing = {name for name in variables_read() if name not in documented and not name.startswith("TCP")}
    assert not missing, f"not in docs/configuration.md: {sorted(missing)}"
    assert {"TLS_CERTFILE", "PROXY_PROTOCOL", "MAILRULES", "CVM_SASL_PLAIN"} <= variables_read()


def test_cited_tests_exist():
    cited = 0
    for doc in (TOP / "docs").glob("*.md"):
        text = doc.read_text()
        for m in re.finditer(r"`(tests/test_\w+\.py)::(test_\w+)`((?:,\s*`test_\w+`)*)", text):
            source = (TOP / m.group(1)).read_text()
            for name in [m.group(2), *re.findall(r"test_\w+", m.group(3))]:
                assert re.search(rf"^def {name}\(", source, re.M), f"{doc.name} cites {m.group(1)}::{name}: gone"
                cited += 1
    assert cited >= 35
