"""PATTERNS: content globs applied while the message streams."""

from __future__ import annotations

from smtpfront.patterns import Scanner, parse

FILE = "# comment\n=No executables (#5.3.4)\n\\TVqQAAMAA*\n:Subject: *viagra*\n=Banned word\n/*forbidden*\n"


def scan_with(text: str, blocks: list[bytes], default: str = "r"):
    s = Scanner(parse(text, default), 256)
    for b in blocks:
        found = s.scan(b)
        if found:
            return found
    return s.finish()


def scan(blocks: list[bytes]):
    return scan_with(FILE, blocks, "default")


def test_header_only_pattern():
    assert scan([b"Subject: cheap viagra\n\nbody\n"]) == "No executables (#5.3.4)"
    assert scan([b"Subject: x\n\nSubject: cheap viagra\n"]) is None


def test_after_blank_line_pattern():
    assert scan([b"Subject: x\n\n--b\n\nTVqQAAMAAxyz\n"]) == "No executables (#5.3.4)"
    assert scan([b"Subject: x\n\nline\nTVqQAAMAAxyz\n"]) is None


def test_plain_pattern_anywhere_and_split_blocks():
    assert scan([b"Subject: x\n\nthis is forb", b"idden text\n"]) == "Banned word"
    assert scan([b"X-Forbidden-Not: x\n\nok\n"]) is None  # case-sensitive


def test_first_character_is_never_part_of_the_glob():
    """As mailfront reads a file: any first character but # = : \\ makes the rest a pattern for any line."""
    patterns = parse("/Subject: *viagra*\n*FORBIDDEN*\n two\n", "r")
    assert [(where, glob.source) for where, glob, _ in patterns] == [
        ("any", "Subject: *viagra*"), ("any", "FORBIDDEN*"), ("any", "two")]
    assert scan_with("/Subject: *viagra*\n", [b"Subject: cheap viagra\n\nbody\n"]) == "r"
    assert scan_with("/Subject: *viagra*\n", [b"Subject: x\n\nSubject: viagra\n"]) == "r"  # any line
    assert scan_with("*FORBIDDEN*\n", [b"Subject: x\n\nFORBIDDEN words\n"]) == "r"
    assert scan_with("*FORBIDDEN*\n", [b"Subject: x\n\nsome FORBIDDEN words\n"]) is None
    assert scan_with(" two\n", [b"Subject: x\n\ntwo\n"]) == "r"


def test_trailing_white_space_is_not_part_of_a_line():
    """mailfront strips C's isspace() from the end of each line (a CRLF file too), nothing else."""
    patterns = parse("=Go away \t\n/exact \t\v\f\r\n/a\fb*\n/  lead\n", "r")
    assert [(glob.source, response) for _, glob, response in patterns] == [
        ("exact", "Go away"), ("a\fb*", "Go away"), ("  lead", "Go away")]
    assert parse("/\u00a0x\u00a0\n", "r")[0][1].source == "\u00a0x\u00a0"  # not C white space


def test_linemax_truncates():
    s = Scanner(parse("/*needle*\n", "r"), 10)
    assert s.scan(b"0123456789needle\n") is None
    assert s.scan(b"needle\n") == "r"


def test_session_rejects_and_queues_nothing(smtp, tmp_path, queue):
    patterns = tmp_path / "patterns"
    patterns.write_text(FILE)
    dialogue = (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nSubject: hi\r\n\r\n"
                b"a forbidden word\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n"
                b"Subject: hi\r\n\r\nclean\r\n.\r\n")
    r = smtp(dialogue, PATTERNS=str(patterns))
    assert r.reply_to(4) == "554 Banned word"
    assert r.codes[-1] == 250
    assert len(queue.messages()) == 1
    r = smtp(b"QUIT\r\n", PATTERNS=str(tmp_path / "missing"))
    assert r.codes == [421]


def test_patterns_resp_default(smtp, tmp_path):
    patterns = tmp_path / "p"
    patterns.write_text("/*bad*\n")
    r = smtp(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n\r\nbad\r\n.\r\n",
             PATTERNS=str(patterns), PATTERNS_RESP="Go away")
    assert r.lines[-1] == "554 Go away"
