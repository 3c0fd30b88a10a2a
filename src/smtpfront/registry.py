"""Protocols, back ends and plugins by mailfront's names, and the plugin list as mailfront 2.x builds it.

The list comes from the command line (each argument a colon-separated list)
and then $PLUGINS.  Each name is `name` (load it at the end of the list),
`+name` (at the front) or `-name` (remove it; `-*` empties the list).  A
plugin named again moves: it is never in the list twice.  A module is
imported only when it is loaded.
"""

from __future__ import annotations

from .smtp import Reply

PROTOCOLS = {
    "smtp": "smtpfront.protocols.smtp",
    "qmqp": "smtpfront.protocols.qmqp",
    "qmtp": "smtpfront.protocols.qmtp",
}
BACKENDS = {
    "echo": ("smtpfront.backends.echo", "Echo"),
    "qmail": ("smtpfront.backends.qmail", "QmailQueue"),
    "queuedir": ("smtpfront.backends.queuedir", "QueueDir"),
}
PLUGINS = {
    "accept": ("smtpfront.plugins.builtins", "Accept"),
    "accept-recipient": ("smtpfront.plugins.builtins", "AcceptRecipient"),
    "accept-sender": ("smtpfront.plugins.builtins", "AcceptSender"),
    "add-received": ("smtpfront.plugins.add_received", "AddReceived"),
    "check-fqdn": ("smtpfront.plugins.check_fqdn", "CheckFqdn"),
    "clamav": ("smtpfront.plugins.clamav", "ClamAV"),
    "counters": ("smtpfront.plugins.counters", "Counters"),
    "cvm-authenticate": ("smtpfront.plugins.cvm_authenticate", "CvmAuthenticate"),
    "cvm-validate": ("smtpfront.plugins.cvm_validate", "CvmValidate"),
    "force-file": ("smtpfront.plugins.builtins", "ForceFile"),
    "limits": ("smtpfront.plugins.limits", "Limits"),
    "mailrules": ("smtpfront.plugins.mailrules", "MailRules"),
    "patterns": ("smtpfront.plugins.patterns", "Patterns"),
    "qmail-validate": ("smtpfront.plugins.qmail_validate", "QmailValidate"),
    "rbl": ("smtpfront.plugins.rbl", "Rbl"),
    "reject": ("smtpfront.plugins.builtins", "Reject"),
    "relayclient": ("smtpfront.plugins.builtins", "RelayClient"),
    "require-auth": ("smtpfront.plugins.builtins", "RequireAuth"),
    "spamassassin": ("smtpfront.plugins.spamassassin", "SpamAssassin"),
}
# mailfront's plugins that smtpfront does not have (docs/differences.md says why)
UNSUPPORTED = {
    "lua": ("not supported by smtpfront: move its policy to $MAILRULES or $PATTERNS, or into a Python plugin"
            " (docs/differences.md)"),
    "starttls-ucspi": ("not needed by smtpfront: drop it from the list and set $TLS_CERTFILE (and $TLS_KEYFILE)"
                       " for STARTTLS"),
}


class LoadError(Exception):
    """A protocol, back end or plugin can't be loaded; `reply` is mailfront's 451 for it."""

    def __init__(self, kind: str, name: str, why: str) -> None:
        self.reply = Reply(451, f"4.3.0 Error loading {kind} {name}: {why}")
        super().__init__(self.reply.text)


def plugin_names(lists: list[str]) -> list[str]:
    """The plugin list built from `lists` (the arguments, then $PLUGINS); raises LoadError for an unknown name."""
    names: list[str] = []
    for listed in lists:
        for name in listed.split(":"):
            if not name:
                continue
            if name[0] == "-":
                if name == "-*":
                    names.clear()
                elif name[1:] in names:
                    names.remove(name[1:])
                continue
            front = name[0] == "+"
            name = name[1:] if front else name
            if name not in PLUGINS:
                raise LoadError("plugin", name, UNSUPPORTED.get(name, "no such plugin"))
            if name in names:
                names.remove(name)
            if front:
                names.insert(0, name)
            else:
                names.append(name)
    return names


def _import(module: str):
    return __import__(module, fromlist=["_"])


def protocol(name: str):
    """The protocol module; raises LoadError."""
    if name not in PROTOCOLS:
        raise LoadError("protocol", name, "no such protocol")
    return _import(PROTOCOLS[name])


def backend(name: str):
    """A new back end; raises LoadError."""
    if name not in BACKENDS:
        raise LoadError("backend", name, "no such backend")
    module, cls = BACKENDS[name]
    return getattr(_import(module), cls)()


def plugins(names: list[str]) -> list:
    """New plugins for the names, in order."""
    return [getattr(_import(PLUGINS[n][0]), PLUGINS[n][1])() for n in names]
