"""The plugin list as mailfront 2.x builds it (modules.c), and loading by name."""

from __future__ import annotations

import pytest

from smtpfront import registry
from smtpfront.plugins import Plugin
from smtpfront.registry import LoadError, plugin_names


@pytest.mark.parametrize("lists, names", [
    ([], []),
    (["accept"], ["accept"]),
    (["counters", "mailrules"], ["counters", "mailrules"]),
    (["counters:mailrules"], ["counters", "mailrules"]),  # a colon list in one argument
    (["::counters::mailrules:"], ["counters", "mailrules"]),  # empty items are nothing
    (["counters", "+mailrules"], ["mailrules", "counters"]),  # + puts it first
    (["counters", "mailrules", "counters"], ["mailrules", "counters"]),  # named again: it moves to the end
    (["counters", "mailrules", "+mailrules"], ["mailrules", "counters"]),  # ... or to the front
    (["counters", "+counters"], ["counters"]),  # never twice
    (["counters", "mailrules", "-counters"], ["mailrules"]),
    (["counters", "-mailrules"], ["counters"]),  # removing what is not there is nothing
    (["counters", "-nonexistent"], ["counters"]),  # not even an unknown name
    (["counters", "mailrules", "-*", "accept"], ["accept"]),  # -* empties the list so far
    (["-*"], []),
    (["-", "accept"], ["accept"]),  # a lone - removes nothing
    (["accept", "-accept", "accept"], ["accept"]),
    (["counters", "patterns", "-counters:+accept:counters"], ["accept", "patterns", "counters"]),
])
def test_list_operations(lists, names):
    assert plugin_names(lists) == names


def test_plugins_variable_comes_after_the_arguments():
    # programs.run passes the arguments' lists, then $PLUGINS: the same operations, later
    args = ["cvm-authenticate", "check-fqdn", "counters", "relayclient"]
    assert plugin_names([*args, "-relayclient:+require-auth"]) == [
        "require-auth", "cvm-authenticate", "check-fqdn", "counters"]
    assert plugin_names([*args, "+counters"])[:2] == ["counters", "cvm-authenticate"]


def test_every_documented_plugin_loads_in_order():
    names = sorted(registry.PLUGINS)
    loaded = registry.plugins(names)
    assert [type(p).__name__ for p in loaded] == [registry.PLUGINS[n][1] for n in names]
    assert all(isinstance(p, Plugin) for p in loaded)
    first, second = registry.plugins(["accept", "accept"])
    assert first is not second  # each load is its own object


@pytest.mark.parametrize("name", ["nonexistent", "Accept", "accept ", ""])
def test_unknown_plugin(name):
    with pytest.raises(LoadError) as e:
        plugin_names(["counters", f"+{name}" if name else "+"])
    assert e.value.reply.code == 451
    assert e.value.reply.text == f"4.3.0 Error loading plugin {name}: no such plugin"


def test_lua_refused_with_what_to_do_instead():
    with pytest.raises(LoadError) as e:
        plugin_names(["accept", "lua"])
    assert e.value.reply.text == ("4.3.0 Error loading plugin lua: not supported by smtpfront: move its policy to"
                                  " $MAILRULES or $PATTERNS, or into a Python plugin (docs/differences.md)")


def test_the_scanning_plugins_load():
    assert plugin_names(["accept:clamav", "spamassassin"]) == ["accept", "clamav", "spamassassin"]
    [clamav, spamassassin] = registry.plugins(["clamav", "spamassassin"])
    assert clamav.reads_message and not clamav.rewrites_message and spamassassin.rewrites_message


def test_starttls_ucspi_points_to_our_tls():
    with pytest.raises(LoadError) as e:
        plugin_names(["starttls-ucspi"])
    assert e.value.reply.text == ("4.3.0 Error loading plugin starttls-ucspi: not needed by smtpfront: drop it from"
                                  " the list and set $TLS_CERTFILE (and $TLS_KEYFILE) for STARTTLS")


def test_an_unknown_name_stops_the_list_even_after_good_ones():
    with pytest.raises(LoadError, match="plugin x"):
        plugin_names(["accept", "counters:x:mailrules"])


def test_protocols_and_backends():
    for name in registry.PROTOCOLS:
        module = registry.protocol(name)
        assert module.NAME == name.upper() and callable(module.serve) and callable(module.refuse)
    for name, (_, cls) in registry.BACKENDS.items():
        assert type(registry.backend(name)).__name__ == cls
    with pytest.raises(LoadError) as e:
        registry.protocol("lmtp")
    assert e.value.reply.text == "4.3.0 Error loading protocol lmtp: no such protocol"
    with pytest.raises(LoadError) as e:
        registry.backend("maildir")
    assert e.value.reply.text == "4.3.0 Error loading backend maildir: no such backend"
