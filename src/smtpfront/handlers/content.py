"""patterns: reject a message whose content matches $PATTERNS (see smtpfront.patterns)."""

from __future__ import annotations

from ..smtp import Reply
from . import Handler

PATTERNS_UNREADABLE = Reply(421, "4.3.0 Could not open $PATTERNS file")


def load_patterns(settings, log):
    from ..cli import StartupError
    from ..patterns import parse

    try:
        with open(settings.patterns, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        log(f"PATTERNS: {settings.patterns}: {e.strerror}")
        raise StartupError(PATTERNS_UNREADABLE, f"cannot read {settings.patterns}") from None
    return parse(text, settings.patterns_resp), settings.patterns_linemax


class Patterns(Handler):
    def __init__(self, loaded) -> None:
        from ..patterns import Scanner

        patterns, linemax = loaded
        self.scanner = Scanner(patterns, linemax)

    def reset(self, session) -> None:
        self.scanner.reset()

    def data_block(self, session, block: bytes) -> Reply | None:
        found = self.scanner.scan(block)
        return None if found is None else Reply(554, found)

    def message_end(self, session) -> Reply | None:
        found = self.scanner.finish()
        return None if found is None else Reply(554, found)
