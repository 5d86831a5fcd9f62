"""How the SQLite store has the sqlite3 module bind None and bytes: through identity adapters,
which skip the module's costly PEP 246 lookup and bind exactly the same values."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import durable.stores._sqlite  # noqa: F401  (registers the adapters)


def test_none_and_bytes_bind_through_identity_adapters() -> None:
    for value in (None, b"", b"\x00payload\xff"):
        adapter = sqlite3.adapters[(type(value), sqlite3.PrepareProtocol)]
        assert adapter(value) is value


def test_values_bind_and_read_back_as_before() -> None:
    class Tagged(bytes):  # a subclass is not exactly bytes: it keeps the module's own path
        pass

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    values = [None, b"", b"\x00\x01", Tagged(b"sub"), bytearray(b"ba"), 7, 2.5, "text"]
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    rows = [r[0] for r in conn.execute("SELECT v FROM t ORDER BY rowid")]
    assert rows == [None, b"", b"\x00\x01", b"sub", b"ba", 7, 2.5, "text"]
    assert [type(r) for r in rows[:5]] == [type(None), bytes, bytes, bytes, bytes]
    assert conn.execute("SELECT count(*) FROM t WHERE v IS ?", (None,)).fetchone() == (1,)


def test_an_adapter_the_application_registered_first_is_kept() -> None:
    code = (
        "import sqlite3\n"
        "def mine(b): return b'mine:' + b\n"
        "sqlite3.register_adapter(bytes, mine)\n"
        "import durable\n"
        "store_module = __import__('durable.stores._sqlite')\n"
        "assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)] is mine\n"
        "conn = sqlite3.connect(':memory:')\n"
        "print(conn.execute('SELECT ?', (b'x',)).fetchone()[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "b'mine:x'"
