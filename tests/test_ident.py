"""$TCPREMOTEINFO as tcpserver asks for it, from small identds on loopback addresses (port 113: root)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from smtpfront.ident import remote_info

IDENTD_IP = "127.0.0.82"


@pytest.fixture
def identd():
    """identd(answer): an identd on 127.0.0.82:113 that reads one query and sends `answer` (None: says nothing)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((IDENTD_IP, 113))
    sock.listen(5)
    queries: list[bytes] = []

    def start(answer: bytes | None) -> list[bytes]:
        def serve() -> None:
            conn, _ = sock.accept()
            with conn:
                queries.append(conn.recv(100))
                if answer is None:
                    time.sleep(1)
                else:
                    conn.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        return queries

    yield start
    sock.close()


def test_the_answer_after_the_third_colon_without_blanks(identd):
    queries = identd(b"6191, 23 : USERID : UNIX : Joe \tSmith:x\r\nmore\r\n")
    assert remote_info(IDENTD_IP, 6191, "127.0.0.1", 23, 5) == b"JoeSmith:x"
    assert queries == [b"6191 , 23\r\n"]


def test_an_error_answer_is_empty_not_missing(identd):
    identd(b"6191, 23 : ERROR : NO-USER\r\n")
    assert remote_info(IDENTD_IP, 6191, "127.0.0.1", 23, 5) == b""


def test_long_answers_are_cut(identd):
    identd(b"1,2:USERID:UNIX:" + b"x" * 1000 + b"\r\n")
    assert remote_info(IDENTD_IP, 1, "127.0.0.1", 2, 5) == b"x" * 257


@pytest.mark.parametrize("answer", [b"1,2:USERID:UNIX:joe", None])
def test_no_line_end_or_no_answer_in_time_is_none(identd, answer):
    identd(answer)
    assert remote_info(IDENTD_IP, 1, "127.0.0.1", 2, 0.3) is None


def test_nobody_listening_is_none():
    assert remote_info("127.0.0.83", 1, "127.0.0.1", 2, 5) is None


def test_an_answer_is_cut_at_a_nul_as_tcpserver_cuts_it(identd):
    """The value goes into the environment, where a NUL ends it (putenv refuses one: the child died)."""
    identd(b"1,2:USERID:UNIX:jo\0Tevil\r\n")
    assert remote_info(IDENTD_IP, 1, "127.0.0.1", 2, 5) == b"jo"
