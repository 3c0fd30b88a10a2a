"""Log lines: what a client sends can't forge a line, hide text or make an escape look like another."""

from __future__ import annotations

import posix

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfront.log import Log
from smtpfront.smtp import text


def logged(message: str) -> str:
    read, write = posix.pipe()
    try:
        Log("mailfront", write)(message)
        posix.close(write)
        data = posix.read(read, 65536)
    finally:
        posix.close(read)
    prefix = f"mailfront[{posix.getpid()}]: ".encode()
    assert data.startswith(prefix) and data.endswith(b"\n") and data.count(b"\n") == 1
    return data[len(prefix) : -1].decode("utf-8")


@pytest.mark.parametrize(("message", "line"), [
    ("MAIL FROM:<a@b.example>", "MAIL FROM:<a@b.example>"),
    ("tab\there, new\nline, cr\r, nul\0, del\x7f", "tab\\x09here, new\\x0aline, cr\\x0d, nul\\x00, del\\x7f"),
    ("a\\x0a stays what it was sent as", "a\\\\x0a stays what it was sent as"),  # a backslash is doubled
    ("\\u{41} and \\\\x41 and \\\t", "\\\\u{41} and \\\\\\\\x41 and \\\\\\x09"),  # ... where an escape could be read
    ("co:lon\\ and x\\y", "co:lon\\ and x\\y"),  # and nowhere else: as C writes it
    ("ma\u202egnp.exe", "ma\\u{202e}gnp.exe"),  # right-to-left override: shown, never applied
    ("zero\u200bwidth, line\u2028separator, C1 \x85", "zero\\u{200b}width, line\\u{2028}separator, C1 \\u{85}"),
    ("café, 日本, emoji \U0001f600", "café, 日本, emoji \U0001f600"),  # printable text as it is, in UTF-8
    (text(b"bad \xff\xc3 utf-8"), "bad \\xff\\xc3 utf-8"),  # bytes that are not UTF-8: the bytes
])
def test_what_a_log_line_says(message, line):
    assert logged(message) == line


def read_back(line: str) -> str:
    """A log reader's decoding: `\\\\` a backslash, `\\xNN` a control or a byte that is not UTF-8, `\\u{N}` a
    character; any other backslash is itself."""
    import re

    def one(m: re.Match) -> str:
        if m[0] == "\\\\":
            return "\\"
        if m[1] is not None:
            n = int(m[1], 16)
            return chr(n) if n < 0x80 else text(bytes([n]))
        return chr(int(m[2], 16))

    return re.sub(r"\\\\|\\x([0-9a-f]{2})|\\u\{([0-9a-f]+)\}", one, line)


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from("\\xu{}\t\n\0\u202e"))
       | st.binary().map(text))
def test_every_line_reads_back_as_what_was_logged(message):
    line = logged(message)
    assert line.isprintable() and read_back(line) == message
