"""`mailrules`: check a MAILRULES file, or trace which rule decides an address.

    mailrules check FILE
    mailrules test FILE --sender ADDR [--recipient ADDR ...] [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys

from . import mailrules
from .smtp import Reply


def check(path: str) -> int:
    """Print `FILE:LINE: message` for each problem; 0 when there is none."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror}")
        return 1
    errors: list[mailrules.RulesError] = []
    parsed = mailrules.parse(text, path, errors)
    for e in errors:
        print(e)
    problems = len(errors)
    for lineno, list_path in mailrules.missing_lists(mailrules.text_lists(parsed)):
        print(f"{path}:{lineno}: list file {list_path} does not exist")
        problems += 1
    catch_all: dict[str, int] = {}
    for rule in parsed:
        lineno, kind, applies_to, sender, recipient = rule[0], rule[2], rule[3], rule[4], rule[5]
        if applies_to in catch_all:
            print(f"{path}:{lineno}: warning: unreachable, line {catch_all[applies_to]} matches everything")
        elif kind != mailrules.NOOP and sender == "*" and (recipient == "*" or applies_to == mailrules.SENDER):
            catch_all[applies_to] = lineno
    return 1 if problems else 0


def trace(path: str, sender: str, recipients: list[str], env: list[str]) -> int:
    try:
        rules = mailrules.load(path)
    except mailrules.RulesError as e:
        print(e)
        return 1
    for name, value in (e.partition("=")[::2] for e in env):
        print(f"environment {name}={value}")
    ok = _show("sender", sender, rules, mailrules.SENDER, sender, None)
    for rcpt in recipients:
        _show("recipient", rcpt, rules, mailrules.RECIPIENT, sender, rcpt)
    return 0 if ok else 2


def _show(what: str, address: str, rules, applies_to: str, sender: str, recipient: str | None) -> bool:
    decided = None
    for rule in mailrules.decide(rules, applies_to, sender, recipient):
        effects = []
        if rule.databytes:
            effects.append(f"databytes {rule.databytes}")
        if rule.relayclient:
            effects.append(f"relayclient {rule.relayclient!r}")
        effects += [f"{n}={v}" for n, v in rule.env]
        note = f" ({', '.join(effects)})" if effects else ""
        if rule.kind == mailrules.NOOP:
            print(f"{what} <{address}>: line {rule.line}: {rule.source}  -> no-op, continue{note}")
        decided = rule
    if decided is None or decided.kind == mailrules.NOOP:
        print(f"{what} <{address}>: no rule decides -> normal checks")
        return True
    if decided.kind == mailrules.PASS:
        print(f"{what} <{address}>: line {decided.line}: {decided.source}  -> pass to the normal checks")
        return True
    reply = Reply(*decided.response)
    shown = " | ".join(reply.lines())
    print(f"{what} <{address}>: line {decided.line}: {decided.source}  -> {shown}")
    return reply.ok


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mailrules", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="report syntax errors, missing lists, unreachable rules")
    p_check.add_argument("file")
    p_test = sub.add_parser("test", help="show which rule decides a sender and recipients")
    p_test.add_argument("file")
    p_test.add_argument("--sender", required=True)
    p_test.add_argument("--recipient", action="append", default=[])
    p_test.add_argument("--env", action="append", default=[])
    args = parser.parse_args(argv)
    if args.command == "check":
        sys.exit(check(args.file))
    sys.exit(trace(args.file, args.sender, args.recipient, args.env))
