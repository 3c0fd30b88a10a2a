"""clamd's INSTREAM command (its `n` form, with newline-ended lines), and one scan of a file.

Request: `nINSTREAM\\n`, then chunks, each a 4-byte big-endian length and that
many bytes, then a chunk of length 0.  Answer: one line, `stream: OK`,
`stream: NAME FOUND`, or an error (`INSTREAM size limit exceeded. ERROR` when
the message is over clamd's StreamMaxLength), ended by a newline or by
clamd closing the connection.  `OK` is clean, `NAME FOUND` names a virus,
anything else is a failure to scan (mailfront takes any other `stream: `
line for a virus, a cut answer too: docs/differences.md).
"""

from __future__ import annotations

COMMAND = b"nINSTREAM\n"
END = b"\0\0\0\0"
MAX_LINE = 4096  # clamd's answers are short; a longer one is not clamd
CLEAN, INFECTED, FAILED = "clean", "infected", "failed"


def chunk_header(length: int) -> bytes:
    return length.to_bytes(4, "big")


class Verdict:
    """`status` is CLEAN, INFECTED or FAILED; `text` is the virus (`NAME FOUND`) or why the scan failed."""

    __slots__ = ("status", "text")

    def __init__(self, status: str, text: str = "") -> None:
        self.status, self.text = status, text

    def __repr__(self) -> str:
        return f"Verdict({self.status!r}, {self.text!r})"


def parse_answer(line: bytes) -> Verdict:
    """The verdict of one answer line (its newline and trailing blanks are ignored, as mailfront strips them)."""
    text = line.rstrip().decode("utf-8", "surrogateescape")
    if text == "stream: OK":
        return Verdict(CLEAN)
    if text.startswith("stream: ") and text.endswith(" FOUND"):
        return Verdict(INFECTED, text[8:])
    return Verdict(FAILED, f"clamd answered {text[:200]!r}")


class Answer:
    """clamd's answer fed in any pieces; `verdict` is set once its line is complete (or the input ended)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.verdict: Verdict | None = None

    def feed(self, data: bytes) -> Verdict | None:
        if self.verdict is None:
            self.buffer += data
            end = self.buffer.find(b"\n")
            if end >= 0:
                self.verdict = parse_answer(self.buffer[:end])
            elif len(self.buffer) > MAX_LINE:
                self.verdict = Verdict(FAILED, f"an answer line longer than {MAX_LINE} bytes")
        return self.verdict

    def end(self) -> Verdict:
        """The input ended: a line without its newline counts, as mailfront reads it."""
        if self.verdict is None:
            self.verdict = parse_answer(self.buffer) if self.buffer else Verdict(FAILED, "closed without an answer")
        return self.verdict


def scan(targets: list[tuple], file, length: int, timeouts) -> tuple[Verdict, list[str]]:
    """Scan `length` bytes of `file` at the first target (`scanners.targets`) that answers.

    Returns the verdict and, for each target that failed, why: a FAILED
    verdict when none answered.
    """
    from . import scanners

    failures = []
    for family, address in targets:
        try:
            verdict = _scan_at(family, address, file, length, timeouts)
        except OSError as e:
            verdict = Verdict(FAILED, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        if verdict.status != FAILED:
            return verdict, failures
        failures.append(f"{scanners.describe(family, address)}: {verdict.text}")
    return Verdict(FAILED, "no scanner answered"), failures


def _scan_at(family: int, address, file, length: int, timeouts) -> Verdict:
    from . import scanners

    sock = scanners.connect(family, address, timeouts.connect)
    try:
        sock.settimeout(timeouts.send)
        sock.sendall(COMMAND)
        scanners.send_file(sock, file, length, chunk_header)
        sock.sendall(END)
        receiver = scanners.Receiver(sock, timeouts)
        answer = Answer()
        while answer.verdict is None:
            data = receiver.recv(MAX_LINE)
            if not data:
                return answer.end()
            answer.feed(data)
        return answer.verdict
    finally:
        sock.close()
