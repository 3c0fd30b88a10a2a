"""patterns: refuse a message whose content matches $PATTERNS (see smtpfront.patterns).

The file is read once, at start; a rule that sets PATTERNS to another file
has that one read when a message starts.  A file that can't be read refuses
service (mailfront warns and checks nothing).
"""

from __future__ import annotations

from ..smtp import Reply
from . import Plugin

PATTERNS_UNREADABLE = Reply(421, "4.3.0 Could not open $PATTERNS file")
PATTERNS_UNREADABLE_NOW = Reply(451, "4.3.0 Could not open $PATTERNS file")


def load_patterns(path: str, session):
    """The parsed file, or None (logged) when it can't be read."""
    from ..patterns import parse

    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        session.log.note(f"PATTERNS: {path}: {e.strerror}")
        return None
    return parse(text, session.settings.patterns_resp)


class Patterns(Plugin):
    path = None  # the file the scanner was built from; None: no $PATTERNS

    def init(self, session) -> Reply | None:
        if session.settings.patterns and not self._load(session.settings.patterns, session):
            return PATTERNS_UNREADABLE
        return None

    def _load(self, path: str, session) -> bool:
        from ..patterns import Scanner

        patterns = load_patterns(path, session)
        if patterns is None:
            return False
        self.path = path
        self.scanner = Scanner(patterns, session.settings.patterns_linemax)
        return True

    def data_start(self, session) -> Reply | None:
        path = session.getenv("PATTERNS") or None
        if path != self.path:
            if path is None:
                self.path = None
            elif not self._load(path, session):
                return PATTERNS_UNREADABLE_NOW
        if self.path is not None:
            self.scanner.reset()
        return None

    def data_block(self, session, block: bytes) -> Reply | None:
        if self.path is None:
            return None
        found = self.scanner.scan(block)
        return None if found is None else Reply(554, found)

    def message_end(self, session) -> Reply | None:
        if self.path is None:
            return None
        found = self.scanner.finish()
        return None if found is None else Reply(554, found)
