"""The rbl plugin against a real rbldnsd, beside C mailfront 2.12's plugin-rbl.so on the same server.

Both programs find the name server in $DNSCACHEIP (bglibs' resolver reads it
as djbdns' does, else /etc/resolv.conf) and ask it on port 53, the only port
either knows: rbldnsd serves the test zones on a loopback port of its own,
behind a relay on RBL_IP:53 (port 53 needs root; rbldnsd refuses to run as
root).  A hand-written server answers what rbldnsd can't be made to (a
truncated answer, a server failure); another address takes queries and never
answers, and on a last one nothing listens.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import BIN, LOGS, free_port, need, real_root
from fakenet import answer_dns_tcp
from smtpfront import dnslist

RBL_IP = "127.0.0.90"  # the relay to rbldnsd
FAKE_IP = "127.0.0.91"  # the hand-written server
DROP_IP = "127.0.0.92"  # never answers
DOWN_IP = "127.0.0.93"  # nothing listens: refused
C_MAILFRONT = "/usr/sbin/mailfront"
ZONES = {  # rbldnsd's data files: name -> (dataset type, contents)
    "bl.test": ("ip4set", ":127.0.0.2:Listed: $ is bad\n127.0.0.9\n127.0.0.10 :127.0.0.3:Spam from $, see x\n"),
    "wl.test": ("ip4set", ":127.0.0.2:white\n127.0.0.10\n127.0.0.12\n"),
    "notxt.test": ("ip4set", ":127.0.0.2:\n127.0.0.9\n"),  # an A record and no TXT: not listed, for mailfront
    "gen.test": ("generic", '8.0.0.127 TXT "tab\there \001 caf\303\251 end"\n'),  # (it shuffles records)
    "v6.test": ("ip6trie", "2001:db8::1 :127.0.0.2:v6 listed\n"),
}


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"


def txt(*strings: bytes) -> bytes:
    return b"".join(bytes([len(s)]) + s for s in strings)


# the hand-written server's answers: reversed address -> TXT records (written here, not with the code under test)
FAKE_TXT = {
    "1.0.0.127": [txt(b"ab", b"cd"), txt(b"ef")],  # two strings in a record; two records
    "2.0.0.127": [txt()],  # a record with no string: listed, with no text
    "3.0.0.127": [txt(b"big " * 60), txt(b"answer " * 35)],  # over 512 bytes: truncated by UDP
}
SERVFAIL = "4.0.0.127"


def fake_answer(query: bytes, tcp: bool) -> bytes:
    pos, labels = 12, []
    while query[pos]:
        labels.append(query[pos + 1 : pos + 1 + query[pos]].decode().lower())
        pos += 1 + query[pos]
    question = query[12 : pos + 5]
    key = ".".join(labels[:4])
    records = FAKE_TXT.get(key, []) if query[pos + 1 : pos + 3] == b"\0\x10" else []
    flags = b"\x81\x80" if records else b"\x81\x83"
    if key == SERVFAIL:
        flags = b"\x81\x82"
    out = query[:2] + flags + b"\0\1" + len(records).to_bytes(2, "big") + b"\0\0\0\0" + question
    for data in records:
        out += b"\xc0\x0c\0\x10\0\1\0\0\1\0" + len(data).to_bytes(2, "big") + data
    if len(out) > 512 and not tcp:
        return query[:2] + b"\x83\x80\0\1\0\0\0\0\0\0" + question
    return out


def serve(sock: socket.socket, stop: threading.Event, handle) -> None:
    sock.settimeout(0.1)  # polled, so that the thread sees `stop`
    while not stop.is_set():
        try:
            handle(sock)
        except TimeoutError:
            continue
        except OSError:
            if not stop.is_set():
                raise


def udp(ip: str, port: int = 53) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    return sock


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    """rbldnsd behind RBL_IP:53, the hand-written server on FAKE_IP:53, DROP_IP:53 silent; yields the query log."""
    work = tmp_path_factory.mktemp("rbldnsd")
    work.chmod(0o755)  # rbldnsd reads the zones as nobody, from within the directory
    specs = []
    for zone, (kind, text) in ZONES.items():
        (work / zone).write_bytes(text.encode("latin-1"))
        specs.append(f"{zone}:{kind}:{zone}")
    port = free_port()
    querylog = work / "queries.log"
    querylog.touch()
    querylog.chmod(0o666)  # written by nobody
    argv = [need("rbldnsd"), "-n", "-b", f"127.0.0.1/{port}", "-l", "+queries.log", "-w", str(work), *specs]
    if real_root():
        argv[1:1] = ["-u", "nobody"]  # it refuses to run as root; it reads the zones before it drops root
    else:  # the root of a user namespace (tests/test_privileged.py): an id of its own in a namespace inside
        argv[:0] = [need("unshare"), "--user", "--map-user=1"]
    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()
    relay, fake, fake_tcp, drop = udp(RBL_IP), udp(FAKE_IP), socket.socket(), udp(DROP_IP)
    fake_tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    fake_tcp.bind((FAKE_IP, 53))
    fake_tcp.listen(10)
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.connect(("127.0.0.1", port))
    upstream.settimeout(5)

    def forward(sock: socket.socket) -> None:
        query, peer = sock.recvfrom(512)
        try:
            upstream.send(query)
            while (answer := upstream.recv(4096))[:2] != query[:2]:
                continue
        except (ConnectionRefusedError, TimeoutError):  # not started yet, or gone: no answer, as from rbldnsd
            return
        sock.sendto(answer, peer)

    def answer_udp(sock: socket.socket) -> None:
        query, peer = sock.recvfrom(512)
        sock.sendto(fake_answer(query, tcp=False), peer)

    def answer_tcp(sock: socket.socket) -> None:
        answer_dns_tcp(sock.accept()[0], lambda query: fake_answer(query, tcp=True))

    threads = [threading.Thread(target=serve, args=(s, stop, h), daemon=True)
               for s, h in ((relay, forward), (fake, answer_udp), (fake_tcp, answer_tcp))]
    for t in threads:
        t.start()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.settimeout(0.2)
    q = b"\1\2\1\0\0\1\0\0\0\0\0\0" + dns_name("9.0.0.127.bl.test") + b"\0\x10\0\1"
    for _ in range(100):  # until rbldnsd has loaded its zones and answers through the relay
        if daemon.poll() is not None:
            break
        probe.sendto(q, (RBL_IP, 53))
        try:
            if probe.recv(512)[:2] == q[:2]:
                break
        except TimeoutError:
            continue
    else:
        daemon.kill()
        pytest.fail(f"rbldnsd does not answer: {daemon.stderr.read1().decode()}")  # type: ignore[union-attr]
    probe.close()
    yield querylog
    stop.set()
    for t in threads:
        t.join()
    daemon.terminate()
    daemon.wait()
    for sock in (relay, fake, fake_tcp, drop, upstream):
        sock.close()


def session(program: str, env: dict[str, str], dialogue: bytes = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n",
            plugins: tuple[str, ...] = ("rbl", "accept")) -> tuple[list[str], list[str], int, float]:
    """Replies, log lines (pids as PID), exit code and seconds taken by `mailfront smtp echo PLUGINS...`."""
    start = time.monotonic()
    done = subprocess.run([program, "smtp", "echo", *plugins], input=dialogue, capture_output=True, timeout=120,
                          env={"PATH": os.environ["PATH"], **env})
    took = time.monotonic() - start
    log = done.stderr.decode("utf-8", "replace")
    LOGS.append((program, log))
    lines = [re.sub(r"^mailfront\[\d+\]", "mailfront[PID]", line) for line in log.splitlines()]
    return done.stdout.decode("utf-8", "replace").split("\r\n")[:-1], lines, done.returncode, took


OURS = str(BIN / "mailfront")


DIALOGUE = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n"


def in_background(program: str, env: dict[str, str], dialogue: bytes = DIALOGUE):
    """A session started in a thread; calling the result waits for it and gives what `session` gives."""
    result = []
    thread = threading.Thread(target=lambda: result.append(session(program, env, dialogue)))
    thread.start()

    def wait():
        thread.join()
        return result[0]

    return wait


def ours_without_notes(result):
    """Our session's result with our own `smtpfront: ` log lines left out, as C has none."""
    replies, log, *rest = result
    return (replies, [line for line in log if "]: smtpfront: " not in line], *rest)


DIFFERENTIAL = {  # name: environment (every case asks RBL_IP unless it says otherwise)
    "listed": {"RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.0.0.9"},
    "listed, debug": {"RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.0.0.9", "RBL_DEBUG": "1"},
    "unlisted": {"RBL_BLACKLISTS": "bl.test,wl.test", "TCPREMOTEIP": "127.0.0.11", "RBL_DEBUG": "1"},
    "two lists: the last one's text": {"RBL_BLACKLISTS": "bl.test,wl.test", "TCPREMOTEIP": "127.0.0.10",
                                       "RBL_DEBUG": "1"},
    "an A record without TXT is not listed": {"RBL_BLACKLISTS": "notxt.test", "TCPREMOTEIP": "127.0.0.9"},
    "non-printing text": {"RBL_BLACKLISTS": "gen.test", "TCPREMOTEIP": "127.0.0.8", "RBL_DEBUG": ""},
    "no blacklists": {"TCPREMOTEIP": "127.0.0.9", "RBL_DEBUG": ""},
    "empty blacklists": {"RBL_BLACKLISTS": "", "TCPREMOTEIP": "127.0.0.9", "RBL_DEBUG": ""},
    "no client address": {"RBL_BLACKLISTS": "bl.test", "RBL_DEBUG": ""},
    "an address that is none": {"RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "1.2.3"},
    "an address read as bglibs reads it": {"RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.000.0.9x"},
    "an octet over 255": {"RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.0.0.300"},
    "two records, two strings in one": {"RBL_BLACKLISTS": "f.test", "TCPREMOTEIP": "127.0.0.1", "RBL_DEBUG": "",
                                   "DNSCACHEIP": FAKE_IP},
    "a record with no string": {"RBL_BLACKLISTS": "f.test", "TCPREMOTEIP": "127.0.0.2", "DNSCACHEIP": FAKE_IP},
    "truncated: asked again by TCP": {"RBL_BLACKLISTS": "f.test", "TCPREMOTEIP": "127.0.0.3", "DNSCACHEIP": FAKE_IP},
    "server failure": {"RBL_BLACKLISTS": "f.test", "TCPREMOTEIP": "127.0.0.4", "DNSCACHEIP": FAKE_IP},
    "a zone in UTF-8": {"RBL_BLACKLISTS": "bl.t\u00e9st", "TCPREMOTEIP": "127.0.0.9"},
    "a label over 63 bytes": {"RBL_BLACKLISTS": "x" * 64 + ".test", "TCPREMOTEIP": "127.0.0.9"},
    "server down": {"RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.0.0.9", "DNSCACHEIP": DOWN_IP},
}
TRANSACTION = (b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example>\r\nDATA\r\n"
               b"Subject: t\r\n\r\nbody\r\n.\r\nMAIL FROM:<g@h.example>\r\nRSET\r\nQUIT\r\n")


SILENT = {"DNSCACHEIP": DROP_IP, "RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.0.0.9", "RBL_TIMEOUT": "2"}
SLOW = ("server failure", "server down")  # C waits out its resolver's second round (11 s) on these


def environment(name: str) -> dict[str, str]:
    return {"DNSCACHEIP": RBL_IP, "RBL_TIMEOUT": "5", **DIFFERENTIAL[name]}


@pytest.fixture(scope="module")
def c_slow(dns):
    """C's sessions that take long, started at once in the background to overlap the rest of the module."""
    started = {name: in_background(C_MAILFRONT, environment(name)) for name in SLOW}
    started["silent"] = in_background(C_MAILFRONT, SILENT)
    return started


@pytest.mark.parametrize("name", list(DIFFERENTIAL))
def test_same_as_c_mailfront(name, dns, c_slow):
    ours = in_background(OURS, environment(name))
    c = c_slow[name]() if name in SLOW else session(C_MAILFRONT, environment(name), DIALOGUE)
    assert ours_without_notes(ours())[:3] == c[:3]


def test_the_replies_and_log_lines(dns):
    """What the differential cases compare, said once outright (so that agreeing on nothing would fail)."""
    replies, log, code, _ = session(OURS, {"DNSCACHEIP": FAKE_IP, "RBL_BLACKLISTS": "f.test",
                                           "TCPREMOTEIP": "127.0.0.1", "RBL_DEBUG": ""})
    assert replies == ["220 unknown mailfront ESMTP", "250 unknown", "451 Blocked: abcd", "221 2.0.0 Good bye."]
    assert log[:3] == ["mailfront[PID]: rbl: f.test:", "mailfront[PID]: abcd", "mailfront[PID]: ef"]
    assert "mailfront[PID]: 451 Blocked: abcd" in log and code == 0
    replies, _, _, _ = session(OURS, {"DNSCACHEIP": RBL_IP, "RBL_BLACKLISTS": "gen.test", "TCPREMOTEIP": "127.0.0.8"})
    assert replies[2] == "451 Blocked: tab?here ? caf?? end"


@pytest.mark.parametrize("where", ["RBL_QUEUEDIR", "missing RBL_QUEUEDIR"])
def test_listed_messages_captured_as_c_does(where, dns, tmp_path):
    """RBL_QUEUEDIR: the message is taken into that queue directory (RBL_-prefixed settings), then refused."""
    found = {}
    for side in ("c", "ours"):
        root = tmp_path / side
        for sub in ("tmp", "captured"):
            (root / sub).mkdir(parents=True)
        found[side] = root
    env = {"DNSCACHEIP": RBL_IP, "RBL_BLACKLISTS": "bl.test", "TCPREMOTEIP": "127.0.0.9",
           "RBL_QUEUEDIR_DEST": "captured", "QUEUEDIR_DEST": "wrong", "RBL_QUEUEDIR_NOSYNC": "1"}
    results = {}
    for side, program in (("c", C_MAILFRONT), ("ours", OURS)):
        if where == "RBL_QUEUEDIR":
            results[side] = session(program, {**env, "RBL_QUEUEDIR": str(found[side])}, TRANSACTION)
        else:  # no message after the refused MAIL: its lines would be commands, which we log otherwise
            results[side] = session(program, {**env, "RBL_QUEUEDIR": str(found[side] / "none")},
                                    b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n")
    (c_replies, c_log, c_code, _), (replies, log, code, _) = results["c"], results["ours"]
    assert (replies, code) == (c_replies, c_code)
    assert [line for line in log if "]: smtpfront: " not in line] == c_log
    captured = {side: [p.read_bytes() for p in (root / "captured").iterdir()] for side, root in found.items()}
    assert captured["ours"] == captured["c"]
    if where == "RBL_QUEUEDIR":
        assert "451 Blocked: Listed: 127.0.0.9 is bad" in replies and "250 Sender='g@h.example'." in replies
        assert captured["ours"] == [b"a@b.example\0c@d.example\0e@f.example\0\0Subject: t\n\nbody\n"]
    else:
        assert "451 4.3.0 Error creating queue file" in replies and captured["ours"] == []
    assert [list((root / "tmp").iterdir()) for root in found.values()] == [[], []]


def test_a_silent_server_gives_cs_451_within_rbl_timeout(dns, c_slow):
    """C waits 3, 11 and 45 seconds for a server that never answers; ours stops at $RBL_TIMEOUT."""
    ours = ours_without_notes(session(OURS, SILENT, DIALOGUE))
    c = c_slow["silent"]()
    assert ours[:3] == c[:3]
    assert ours[0] == ["451 4.3.0 DNS error doing RBL lookup"] and ours[2] == 1
    # generous bounds (the machine is shared): at least the 2 s asked for, and far less than C's minute
    assert 2 <= ours[3] < 30 <= c[3]


def test_a_whitelisted_client_is_not_looked_up_in_the_blacklists(dns):
    """RBL_WHITELISTS (upstream's, after 2.12): an A record there lets the client by, unasked in the blacklists."""
    env = {"DNSCACHEIP": RBL_IP, "RBL_BLACKLISTS": "bl.test", "RBL_WHITELISTS": "wl.test", "RBL_DEBUG": ""}
    before = len(dns.read_text())
    replies, log, _, _ = session(OURS, {**env, "TCPREMOTEIP": "127.0.0.10"})
    assert replies[2] == "250 Sender='a@b.example'." and "mailfront[PID]: rbl: wl.test: whitelisted" in log
    queries = dns.read_text()[before:]
    assert "10.0.0.127.wl.test" in queries and "10.0.0.127.bl.test" not in queries
    replies, _, _, _ = session(OURS, {**env, "TCPREMOTEIP": "127.0.0.9"})  # not on the whitelist: blocked
    assert replies[2] == "451 Blocked: Listed: 127.0.0.9 is bad"
    c_replies, _, _, _ = session(C_MAILFRONT, {**env, "TCPREMOTEIP": "127.0.0.10"})
    assert c_replies[2] == "451 Blocked: Spam from 127.0.0.10, see x"  # 2.12 has no whitelists


def test_ipv6_clients_looked_up_by_nibbles(dns):
    """RFC 5782's reversed nibbles, where C logs `Cannot parse IP` and lets the client by."""
    env = {"DNSCACHEIP": RBL_IP, "RBL_BLACKLISTS": "v6.test,bl.test"}
    replies, log, _, _ = session(OURS, {**env, "TCPREMOTEIP": "2001:db8::1"})
    assert replies[2] == "451 Blocked: v6 listed"
    assert ".".join(reversed("20010db8" + "0" * 23 + "1")) + ".v6.test" in dns.read_text()
    c_replies, c_log, _, _ = session(C_MAILFRONT, {**env, "TCPREMOTEIP": "2001:db8::1"})
    assert c_replies[2] == "250 Sender='a@b.example'." and "mailfront[PID]: rbl: Cannot parse IP '2001:db8::1'" in c_log
    replies, _, _, _ = session(OURS, {**env, "TCPREMOTEIP": "::ffff:127.0.0.9"})  # IPv4-mapped: as IPv4
    assert replies[2] == "451 Blocked: Listed: 127.0.0.9 is bad"
    replies, _, _, _ = session(OURS, {**env, "TCPREMOTEIP": "2001:db8::2"})
    assert replies[2] == "250 Sender='a@b.example'."


def test_every_zone_asked_at_once(dns):
    """One server that never answers costs one RBL_TIMEOUT for all the zones, not one each."""
    zones = ",".join(f"z{i}.test" for i in range(8))
    env = {"DNSCACHEIP": DROP_IP, "RBL_BLACKLISTS": zones, "TCPREMOTEIP": "127.0.0.9", "RBL_TIMEOUT": "1"}
    replies, _, code, took = session(OURS, env)
    assert replies == ["451 4.3.0 DNS error doing RBL lookup"] and code == 1
    assert took < 8  # generous (a loaded machine); one after the other, the eight would take 8 s


def test_empty_names_in_the_lists_are_skipped(dns):
    env = {"DNSCACHEIP": RBL_IP, "RBL_BLACKLISTS": ",bl.test, ,", "TCPREMOTEIP": "127.0.0.9"}
    replies, _, _, _ = session(OURS, env)
    assert replies[2] == "451 Blocked: Listed: 127.0.0.9 is bad"
    c_replies, _, _, _ = session(C_MAILFRONT, env)
    assert c_replies == ["451 4.3.0 DNS error doing RBL lookup"]  # C asks rbldnsd for `9.0.0.127.`: refused


def test_rbl_timeout_is_a_number_of_seconds(dns):
    replies, log, code, _ = session(OURS, {"RBL_TIMEOUT": "soon", "RBL_BLACKLISTS": "bl.test"})
    assert replies[0].startswith("421 ") and any("RBL_TIMEOUT" in line for line in log)


def test_the_resolver_is_read_from_resolv_conf_without_dnscacheip(dns, tmp_path):
    """No $DNSCACHEIP: /etc/resolv.conf's servers, as bglibs reads them (the test cannot rewrite /etc: the
    function both use is checked with a file of its own)."""
    from smtpfront.dnsname import resolvers

    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {RBL_IP}\n")
    assert resolvers({}, str(conf)) == [RBL_IP]
    import time as clock

    found = dnslist.lookup([("9.0.0.127.bl.test", dnslist.TXT), ("11.0.0.127.bl.test", dnslist.TXT)],
                           resolvers({}, str(conf)), clock.monotonic() + 5)
    assert [[dnslist.txt_text(r) for r in rs] for rs in found] == [["Listed: 127.0.0.9 is bad"], []]


# the pure functions

@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_ipv4_reversed(octets):
    ip = ".".join(map(str, octets))
    assert dnslist.reversed_name(ip) == ".".join(map(str, reversed(octets)))


@given(st.ip_addresses(v=6))
def test_ipv6_reversed_as_the_standard_library_says(address):
    expected = address.reverse_pointer.removesuffix(".ip6.arpa")
    if address.ipv4_mapped is not None:
        expected = address.ipv4_mapped.reverse_pointer.removesuffix(".in-addr.arpa")
    assert dnslist.reversed_name(str(address)) == expected
    assert dnslist.reversed_name(address.exploded) == expected


@pytest.mark.parametrize("text", ["", "1.2.3", "1.2.3.256", " 1.2.3.4", "a.b.c.d", "::g", "1:2"])
def test_not_addresses(text):
    assert dnslist.reversed_name(text) is None


@given(st.lists(st.binary(max_size=255), max_size=4))
def test_txt_strings_joined_and_non_printing_bytes_as_question_marks(strings):
    expected = "".join(chr(b) if 32 <= b <= 126 else "?" for s in strings for b in s)
    assert dnslist.txt_text(txt(*strings)) == expected


def answer_packet(q: bytes, records: list[tuple[int, bytes]], rcode: int = 0) -> bytes:
    out = q[:2] + bytes([0x81, 0x80 | rcode]) + b"\0\1" + len(records).to_bytes(2, "big") + b"\0\0\0\0" + q[12:]
    for qtype, data in records:
        out += b"\xc0\x0c" + qtype.to_bytes(2, "big") + b"\0\1\0\0\1\0" + len(data).to_bytes(2, "big") + data
    return out


@given(st.lists(st.tuples(st.sampled_from([dnslist.A, dnslist.TXT, 5]), st.binary(max_size=40)), max_size=5))
def test_records_of_the_type_asked(records):
    from smtpfront.dnsname import encode_name, query

    q = query(encode_name("9.0.0.127.bl.test"), dnslist.TXT)
    packet = answer_packet(q, records)
    assert dnslist.answers(packet, q)
    assert dnslist.records(packet, dnslist.TXT) == [data for qtype, data in records if qtype == dnslist.TXT]
    for cut in range(12, len(packet)):  # any truncation: a DNSError or fewer records, never another exception
        try:
            assert len(dnslist.records(packet[:cut], dnslist.TXT)) <= len(records)
        except dnslist.DNSError:
            pass


def test_answers_checks_id_and_question():
    from smtpfront.dnsname import encode_name, query

    q = query(encode_name("9.0.0.127.bl.test"), dnslist.TXT)
    packet = answer_packet(q, [])
    assert dnslist.answers(packet, q) and dnslist.answers(packet.replace(b"\2bl", b"\2BL"), q)
    assert not dnslist.answers(bytes([packet[0] ^ 1]) + packet[1:], q)
    assert not dnslist.answers(packet.replace(b"\4test", b"\4tost"), q)
    assert not dnslist.answers(q, q)  # the query itself is no answer
    assert dnslist.server_failed(answer_packet(q, [], 2)) and not dnslist.server_failed(answer_packet(q, [], 3))

