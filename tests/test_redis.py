"""The Redis client: RESP as pure functions, URLs, and the driver against a real redis-server."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import Silent
from smtpfront.redis import (
    Connection,
    ProtocolError,
    ReplyError,
    Script,
    StoreError,
    command,
    parse,
    parse_url,
)

# -- the wire format ------------------------------------------------------------


def test_command_is_an_array_of_bulk_strings():
    assert command("SET", "k", 12, b"\r\n") == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\r\n\r\n"


REPLIES = [
    (b"+OK\r\n", "OK"),
    (b"-NOSCRIPT No matching script\r\n", ReplyError("NOSCRIPT No matching script")),
    (b"-ERR " + b"a long script error " * 20 + b"\r\n", ReplyError("ERR " + "a long script error " * 20)),
    (b":-42\r\n", -42),
    (b"$5\r\nh\r\nlo\r\n", b"h\r\nlo"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n-ERR x\r\n$-1\r\n", [1, [b"a", ReplyError("ERR x")], None]),
]


@pytest.mark.parametrize(("data", "value"), REPLIES)
def test_replies(data, value):
    assert parse(data) == (value, len(data))
    assert type(parse(data)[0]) is type(value)
    assert parse(data + b":7\r\n") == (value, len(data))  # what follows is the next reply's
    for cut in range(len(data)):
        assert parse(data[:cut]) is None


@pytest.mark.parametrize("data", [b"?what\r\n", b":12a\r\n", b"$3\r\nabcd\r\n", b"$-2\r\n", b"*-5\r\n",
                                  b"$99999999\r\n", b"+" + b"x" * 70000, b":\r\n"])
def test_malformed_replies_raise(data):
    with pytest.raises(ProtocolError):
        parse(data)


values = st.recursive(
    st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=40) | st.none()
    | st.text(alphabet=st.characters(blacklist_characters="\r\n", codec="ascii"), max_size=20),
    lambda inner: st.lists(inner, max_size=5), max_leaves=12)


def encode(value) -> bytes:
    """A reply as a server writes one (an independent encoder: the test's, not the module's)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, str):
        return b"+" + value.encode() + b"\r\n"
    return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)


@given(values, st.data())
def test_any_split_parses_the_same(value, data):
    wire = encode(value)
    cut = data.draw(st.integers(0, len(wire)))
    assert parse(wire[:cut]) is None or cut == len(wire)
    assert parse(wire) == (value, len(wire))


@given(st.binary(max_size=80))
def test_parser_never_fails_otherwise(data):
    try:
        parse(data)
    except ProtocolError:
        pass


# -- URLs -----------------------------------------------------------------------


def test_urls():
    url = parse_url("redis://:pw@10.0.0.5:6380/3?timeout_ms=40&connect_timeout_ms=75")
    assert (url.host, url.port, url.db, url.user, url.password, url.timeout, url.connect_timeout) == (
        "10.0.0.5", 6380, 3, "", "pw", 0.04, 0.075)
    assert str(url) == "redis://10.0.0.5:6380/3"  # for log lines: no password
    url = parse_url("redis://smtp:pw@[::1]/2")
    assert (url.host, url.port, url.db, url.user, url.password) == ("::1", 6379, 2, "smtp", "pw")
    url = parse_url("unix:/run/redis/redis.sock?db=7&password_file=/etc/smtpfront/redis.pw")
    assert (url.unix, url.db, url.password_file) == ("/run/redis/redis.sock", 7, "/etc/smtpfront/redis.pw")
    assert parse_url("redis://localhost").host == "localhost"


@pytest.mark.parametrize("bad", ["http://x", "rediss://:secret@h:6379", "unix:relative.sock", "redis://h:port", "redis://h/x",
                                 "redis://h?timeout_ms=-1", "redis://h?color=blue", "redis://:secret@h:x"])
def test_bad_urls(bad):
    with pytest.raises(ValueError) as e:
        parse_url(bad)
    assert "secret" not in str(e.value)


# -- the driver, against redis-server -------------------------------------------


@pytest.mark.parametrize("unix", [True, False], ids=["unix", "tcp"])
def test_commands_and_scripts(redis_server, redis_db, unix):
    conn = Connection(parse_url(redis_server.url(redis_db, unix)))
    assert conn.call("SET", "k", "v") == "OK"
    assert conn.call("GET", "k") == b"v"
    assert conn.call("INCRBY", "n", 5) == 5
    assert isinstance(conn.call("INCR", "k"), ReplyError)  # an error reply is a value; the connection goes on
    script = Script(f"return {{KEYS[1], ARGV[1] + {redis_db}}}")
    redis_server.call("SCRIPT", "FLUSH")
    assert conn.call("EVALSHA", script.sha, 0).startswith("NOSCRIPT")
    assert conn.run(script, ["a"], [1]) == [b"a", 1 + redis_db]  # fell back to EVAL, which loads it
    assert redis_server.call("SCRIPT", "EXISTS", script.sha) == b"*1\r\n:1\r\n"
    assert conn.run(script, ["b"], [2]) == [b"b", 2 + redis_db]
    assert redis_server.call("GET", "k", db=redis_db) == b"$1\r\nv\r\n"  # SELECTed the URL's database


def test_auth_with_a_password_file(tmp_path):
    from conftest import RedisServer

    server = RedisServer(tmp_path)
    try:
        assert server.call("CONFIG", "SET", "requirepass", "pw of the store") == b"+OK\r\n"
        (tmp_path / "pw").write_text("pw of the store\n")
        conn = Connection(parse_url(f"unix:{server.socket}?password_file={tmp_path}/pw"))
        assert conn.call("PING") == "PONG"
        (tmp_path / "pw").write_text("wrong\n")
        with pytest.raises(StoreError) as e:
            Connection(parse_url(f"unix:{server.socket}?password_file={tmp_path}/pw")).call("PING")
        assert "AUTH refused" in str(e.value) and "wrong" not in str(e.value)
    finally:
        server.stop()


def test_no_server_fails_at_once_and_for_good(tmp_path):
    conn = Connection(parse_url(f"unix:{tmp_path}/nothing.sock"))
    with pytest.raises(StoreError):
        conn.call("PING")
    (tmp_path / "nothing.sock").touch()
    with pytest.raises(StoreError) as e:
        conn.call("PING")  # broken for good: not tried again
    assert "nothing.sock" in str(e.value)


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def test_a_server_that_never_answers_costs_one_timeout(silent):
    conn = Connection(parse_url(f"redis://127.0.0.1:{silent.port}?timeout_ms=100"))
    start = time.monotonic()
    with pytest.raises(StoreError) as e:
        conn.call("PING")
    assert "timed out" in str(e.value) and silent.accepted.is_set()
    with pytest.raises(StoreError):
        conn.call("PING")
    # the bound is the timeout; the slack is for a loaded machine, far below "hangs"
    assert time.monotonic() - start < 5


def test_a_reply_nested_past_recursion_is_a_store_error(tmp_path):
    """A hostile server's `*1` nested thousands deep: the store is unusable (fail open), no internal error."""
    import socket
    import threading

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "deep.sock"))
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"*1\r\n" * 5000 + b":1\r\n")
            conn.recv(1024)  # until the client lets go

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(StoreError):
        Connection(parse_url(f"unix:{tmp_path}/deep.sock")).call("PING")
    listener.close()
