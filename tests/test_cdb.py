"""The cdb reader against files made by a real cdb tool (tinycdb's `cdb -c`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import need
from smtpfront.cdb import CDB, cdb_hash


def make_cdb(path: Path, records: dict[bytes, bytes]) -> None:
    """Build a cdb with tinycdb's `cdb -c` from cdbmake input."""
    tool = need("cdb")
    lines = b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in records.items()) + b"\n"
    subprocess.run([tool, "-c", str(path)], input=lines, check=True)


def test_hash_known_value():
    assert cdb_hash(b"") == 5381
    assert cdb_hash(b"a") == ((5381 << 5) + 5381) ^ ord("a")


def test_lookups(tmp_path):
    records = {b"example.org": b"", b"key": b"value", b"other": b"x" * 1000}
    path = tmp_path / "t.cdb"
    make_cdb(path, records)
    db = CDB(str(path))
    for k, v in records.items():
        assert db.get(k) == v
    assert db.get(b"missing") is None
    assert b"key" in db and b"kex" not in db


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=20), max_size=60))
def test_matches_tinycdb(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("cdb") / "p.cdb"
    make_cdb(path, records)
    db = CDB(str(path))
    for k, v in records.items():
        assert db.get(k) == v
    assert db.get(b"\xff" * 21) is None


def test_many_keys(tmp_path):
    records = {b"host%d.example" % i: b"" for i in range(20000)}
    path = tmp_path / "big.cdb"
    make_cdb(path, records)
    db = CDB(str(path))
    assert all(db.get(k) == b"" for k in list(records)[::997])
    assert db.get(b"host20000.example") is None


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=50), max_size=60))
def test_written_cdb_reads_back_with_tinycdb_and_ours(tmp_path_factory, records):
    from smtpfront.cdb import write_cdb

    path = tmp_path_factory.mktemp("w") / "w.cdb"
    write_cdb(str(path), records.items())
    dumped = subprocess.run([need("cdb"), "-d", str(path)], capture_output=True, check=True).stdout
    assert dumped == b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in records.items()) + b"\n"
    ours = CDB(str(path))
    for key, value in records.items():
        assert ours.get(key) == value
        if b"\0" not in key and not key.startswith(b"-"):  # an argument: no NUL, not an option
            assert subprocess.run([need("cdb"), "-q", str(path), key], capture_output=True).stdout == value
    assert ours.get(b"\xff" * 21) is None


def test_every_record_of_a_key(tmp_path):
    """A cdb file may hold several records under one key (the MAILRULES cache files one rule a record)."""
    path = tmp_path / "multi.cdb"
    lines = b"+1,3:a->one\n+1,1:b->x\n+1,3:a->two\n+1,5:a->three\n\n"
    subprocess.run([need("cdb"), "-c", str(path)], input=lines, check=True)
    db = CDB(str(path))
    assert list(db.find_all(b"a", cdb_hash(b"a"))) == [b"one", b"two", b"three"]
    assert db.get(b"a") == b"one" and list(db.find_all(b"c", cdb_hash(b"c"))) == []
