"""tcprules' cdb read as tcpserver reads it: compared with the real `tcprulescheck` on files made by `tcprules`."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import compile_rules, need
from smtpfront.tcprules import instructions, lookup, rule_keys

RULES = """\
# every key form tcprules(1) lists
joe@10.1.2.3:allow,WHO="joe at ip"
joe@=host.example.com:allow,WHO="joe at host"
10.1.2.3:allow,WHO="ip",RELAYCLIENT=""
=host.example.com:allow,WHO="host"
10.1.2.:allow,WHO="three octets"
10.1.:deny
10.:allow,WHO="one octet",X=/quoted "with" quotes/
=.example.com:allow,WHO="domain"
=.com:allow,WHO="tld"
=:allow,WHO="has a name"
192.0.2.7-9:allow,WHO="range"
172.16.:deny,WHO="denied but set"
:allow,WHO="default"
"""

IPS = ["10.1.2.3", "10.1.2.4", "10.1.9.9", "10.9.9.9", "192.0.2.8", "192.0.2.10", "172.16.0.1", "203.0.113.5"]
HOSTS = [None, "host.example.com", "other.example.com", "x.org", "a.b.c.com", ""]
INFOS = [None, "joe", "ann", ""]


def tcprulescheck(cdb: str, ip: str, host: str | None, info: str | None) -> tuple[str | None, list[str], bool]:
    """(key, variables shown, denied) as the real tcprulescheck reports them."""
    env = {"PATH": os.environ["PATH"], "TCPREMOTEIP": ip}
    if host is not None:
        env["TCPREMOTEHOST"] = host
    if info is not None:
        env["TCPREMOTEINFO"] = info
    out = subprocess.run([need("tcprulescheck"), cdb], env=env, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    key = None if lines[0] == "default:" else lines[0].removeprefix("rule ").removesuffix(":")
    variables = [line.removeprefix("set environment variable ") for line in lines if line.startswith("set ")]
    return key, variables, lines[-1] == "deny connection"


def ours(cdb: str, ip: str, host: str | None, info: str | None) -> tuple[str | None, list[str], bool]:
    found = lookup(cdb, ip.encode(), None if host is None else host.encode(), None if info is None else info.encode())
    if found is None:
        return None, [], False
    deny, variables = instructions(found[1])
    return found[0].decode(), [(k + b"=" + v).decode() for k, v in variables], deny


@pytest.fixture(scope="module")
def rules_cdbs(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("tcprules")
    no_default = "".join(line + "\n" for line in RULES.splitlines() if not line.startswith((":", "=:")))
    return [compile_rules(d, RULES, "all"), compile_rules(d, no_default, "nodefault")]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(IPS), st.sampled_from(HOSTS), st.sampled_from(INFOS), st.integers(0, 1))
def test_same_rule_as_tcprulescheck(rules_cdbs, ip, host, info, which):
    cdb = rules_cdbs[which]
    expected = tcprulescheck(cdb, ip, host, info)
    got = ours(cdb, ip, host, info)
    if expected[2]:  # tcprulescheck stops listing at the deny; tcpserver still sets what follows
        assert (got[0], got[2]) == (expected[0], True)
    else:
        assert got == expected


def test_every_client_in_the_table(rules_cdbs):
    """The same comparison over the whole table, so each key form is certainly exercised."""
    seen = set()
    for cdb in rules_cdbs:
        for ip in IPS:
            for host in HOSTS:
                for info in INFOS:
                    expected = tcprulescheck(cdb, ip, host, info)
                    got = ours(cdb, ip, host, info)
                    assert got[0] == expected[0] and got[2] == expected[2], (ip, host, info)
                    if not expected[2]:
                        assert got == expected, (ip, host, info)
                    seen.add(expected[0])
    assert {"joe@10.1.2.3", "joe@=host.example.com", "10.1.2.3", "=host.example.com", "10.1.2.", "10.1.", "10.",
            "=.example.com", "=.com", "=", "192.0.2.8", "", None} <= seen


def test_key_order_as_documented():
    assert list(rule_keys(b"1.2.3.4", b"a.b.example", b"joe")) == [
        b"joe@1.2.3.4", b"joe@=a.b.example", b"1.2.3.4", b"=a.b.example", b"1.2.3.", b"1.2.", b"1.",
        b"=.b.example", b"=.example", b"=", b"",
    ]
    assert list(rule_keys(b"1.2.3.4")) == [b"1.2.3.4", b"1.2.3.", b"1.2.", b"1.", b""]


def test_deny_keeps_the_variables_that_come_with_it(rules_cdbs):
    assert ours(rules_cdbs[0], "172.16.0.1", None, None) == ("172.16.", ["WHO=denied but set"], True)


def test_instructions_as_tcpserver_reads_them():
    assert instructions(b"+A=1\0+B=\0+C\0Xjunk\0\0+D=x=y\0") == (False, [(b"A", b"1"), (b"B", b""), (b"D", b"x=y")])
    assert instructions(b"+A=1\0D\0") == (True, [(b"A", b"1")])
    assert instructions(b"+A=1\0+B=unterminated") == (False, [(b"A", b"1")])
    assert instructions(b"") == (False, [])


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        lookup(str(tmp_path / "none.cdb"), b"1.2.3.4")
    truncated = tmp_path / "short.cdb"
    truncated.write_bytes(b"\0" * 100)
    with pytest.raises(OSError):
        lookup(str(truncated), b"1.2.3.4")


def test_keys_for_an_ipv6_client_as_tcpserver_ipv6_tries_them():
    """The order observed with Debian's ucspi-tcp-ipv6 tcpserver for a client on 2001:db8:1:2::5 and on ::1."""
    assert list(rule_keys(b"2001:db8:1:2::5")) == [b"2001:db8:1:2::5", b"2001:db8:1:2::", b"2001:db8:1:2:",
                                                   b"2001:db8:1:", b"2001:db8:", b"2001:", b""]
    assert list(rule_keys(b"::1", None, b"joe")) == [b"joe@::1", b"::1", b"::", b":", b""]
