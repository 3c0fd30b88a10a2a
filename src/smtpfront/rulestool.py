"""`mailrules`: check a MAILRULES file, or trace which rule decides an address.

    mailrules check FILE
    mailrules test FILE --sender ADDR [--recipient ADDR ...] [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, mailrules
from .smtp import Reply

EPILOG = """\
check: prints each problem as FILE:LINE: message, in line order. An error is what
smtpfront-qmail (like C mailfront) refuses to start with: a selector line whose second
character is not s or r, a databytes field that is not a number, a [[list]] text file
that cannot be opened. A warning is a line C accepts but reads oddly or ignores. With
no error it ends with FILE: N rules (S sender, R recipient), OK.
  exit 0: no error (warnings allowed); 1: errors, or the file can't be read; 2: usage.

test: shows, for the sender and each recipient, the guards and rules that match up to
the one that decides, and its reply.
  exit 0: every address accepted or passed on; 2: an address is rejected or deferred;
  1: the file is refused (the server would answer 421).
"""


def check(path: str) -> int:
    """Print each problem as `FILE:LINE: message` in line order; 0 when there is no error."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror}")
        return 1
    problems: list[tuple[int, str, bool]] = []  # (line, message, is an error)
    rules = mailrules.parse(data, path, lambda line, message, reply: problems.append((line, message, bool(reply))))
    named = mailrules.text_lists(rules)
    problems += [(e.line, e.message, True) for e in mailrules.unopenable(path, named)]
    problems += [(line, message, False) for line, message in _list_oddities(rules, named)]
    problems += [(line, message, False) for line, message in _unreachable(rules)]
    problems.sort(key=lambda p: p[0])
    for line, message, error in problems:
        print(f"{path}:{line}: {'' if error else 'warning: '}{message}")
    if any(error for _, _, error in problems):
        return 1
    senders = sum(rule[mailrules.TAG] == "s" for rule in rules)
    print(f"{path}: {len(rules)} rules ({senders} sender, {len(rules) - senders} recipient), OK")
    return 0


def _list_oddities(rules: list[tuple], named: list[tuple[int, str]]):
    for line, list_path in named:
        if os.path.isdir(list_path):
            yield line, f"list file {list_path} is a directory: C reads it as empty, smtpfront answers 451"
    for rule in rules:
        for pattern in (rule[mailrules.SPAT], rule[mailrules.RPAT]):
            plan = pattern[1]
            if plan[0] == "l" and plan[3] and not os.path.exists(plan[1]):
                yield rule[mailrules.LINE], f"cdb file {plan[1]} does not exist: the pattern matches nothing"


def _unreachable(rules: list[tuple]):
    catch_all: dict[str, int] = {}
    everything = (False, ("*",))
    for rule in rules:
        tag = rule[mailrules.TAG]
        if tag in catch_all:
            yield rule[mailrules.LINE], f"unreachable, line {catch_all[tag]} matches everything"
        elif (rule[mailrules.KIND] != mailrules.NOOP and not rule[mailrules.GUARDS]
              and rule[mailrules.SPAT] == everything and (tag == "s" or rule[mailrules.RPAT] == everything)):
            catch_all[tag] = rule[mailrules.LINE]


def trace(path: str, sender: str, recipients: list[str], env: list[str]) -> int:
    try:
        rules = mailrules.load_uncached(path)
    except mailrules.RulesError as e:
        print(f"{e}  -> 421 {e.reply}")
        return 1
    for name, value in (e.partition("=")[::2] for e in env):
        print(f"environment {name}={value}")
    ok = _show("sender", sender, rules, mailrules.SENDER, sender, None)
    for rcpt in recipients:
        ok = _show("recipient", rcpt, rules, mailrules.RECIPIENT, sender, rcpt) and ok
    return 0 if ok else 2


def _show(what: str, address: str, rules, applies_to: str, sender: str, recipient: str | None) -> bool:
    decided = None
    head = f"{what} <{address}>"
    for rule in mailrules.decide(rules, applies_to, sender, recipient):
        for line, source in rule.guards:
            print(f"{head}: line {line}: {source}  -> guard matched")
        if rule.kind == mailrules.NOOP:
            print(f"{head}: line {rule.line}: {rule.source}  -> no-op, continue{_effects(rule)}")
        decided = rule
    if decided is None or decided.kind == mailrules.NOOP:
        print(f"{head}: no rule decides -> normal checks")
        return True
    if decided.kind == mailrules.PASS:
        print(f"{head}: line {decided.line}: {decided.source}  -> pass to the normal checks{_effects(decided)}")
        return True
    reply = Reply(*decided.response)
    words = " | ".join(reply.lines()) if reply.text is not None else f"{reply.code} (the back end's reply)"
    final = " (K: no further checks)" if decided.kind == mailrules.FINAL else ""
    print(f"{head}: line {decided.line}: {decided.source}  -> {words}{final}{_effects(decided)}")
    return reply.ok


def _effects(rule) -> str:
    effects = []
    if rule.databytes:
        effects.append(f"databytes {rule.databytes}")
    if rule.relayclient:
        effects.append(f"relayclient {rule.relayclient!r}")
    effects += [f"{n}={v}" for n, v in rule.env]
    return f" ({', '.join(effects)})" if effects else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mailrules", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version", version=f"mailrules {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="report what the server refuses (errors) and what C reads oddly "
                                           "(warnings)")
    p_check.add_argument("file")
    p_test = sub.add_parser("test", help="show which guards and rules decide a sender and recipients")
    p_test.add_argument("file")
    p_test.add_argument("--sender", required=True)
    p_test.add_argument("--recipient", action="append", default=[])
    p_test.add_argument("--env", action="append", default=[])
    args = parser.parse_args(argv)
    if args.command == "check":
        sys.exit(check(args.file))
    sys.exit(trace(args.file, args.sender, args.recipient, args.env))
