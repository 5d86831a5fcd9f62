"""The stores themselves, below the runtime: what a refused commit leaves behind.

Store URLs are tested in test_api.py, PostgreSQL's own behaviour in test_postgres.py, and every
store against a model of it in tests/property/test_store_model.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from durable._core.events import Event, EventKind
from tests.helpers import encode_args

pytestmark = pytest.mark.anyio


# -- found by the store-model property (tests/property/test_store_model.py); fixed in 760b79f ------


async def test_a_refused_commit_changes_nothing() -> None:
    """A commit refused on its second speculative event leaves the run exactly as it was.

    Found by test_store_model: ``speculative=[run_started, run_started]`` returns ok=False
    ("run already started") yet the first one's ``UPDATE runs SET status = 'running'`` stays
    committed -- a running run with no ``run_started`` event, which no invocation would ever
    start. Fixed by checking every speculative event before writing anything.
    """
    from durable.stores._base import Invocation, NewRun
    from durable.stores._sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    await store.open()
    try:
        await store.create_run(NewRun("run_a", "wf", encode_args(), "seed", None, 1.0))
        result = await store.commit(
            Invocation(
                run_id="run_a", worker_id="w", known_seq=1, now=2.0, commands=[], status="suspended",
                speculative=[Event("run_a", 2, EventKind.RUN_STARTED, None, 2.0), Event("run_a", 3, EventKind.RUN_STARTED, None, 2.0)],
            )
        )
        record = await store.get_run("run_a")
    finally:
        await store.aclose()
    assert not result.ok
    assert record is not None and (record.status, record.started_at, record.last_seq) == ("pending", None, 1)


# -- the h-compose migration (schema 1 -> 2) ---------------------------------------------------------------


async def test_a_schema_1_sqlite_store_is_migrated_and_its_runs_stay_readable(tmp_path: Path) -> None:
    """A store written before child runs (schema 1) opens: its runs read back unchanged, and new columns work."""
    import sqlite3

    from durable.stores import _sql
    from durable.stores._sqlite import SQLiteStore

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    old = [s for s in _sql.schema(blob="BLOB", real="REAL", bigint="INTEGER", norowid=" WITHOUT ROWID")
           if s not in _sql.compose_migration(blob="BLOB", real="REAL", bigint="INTEGER", norowid=" WITHOUT ROWID")]
    for statement in old:
        conn.execute(statement)
    conn.execute("INSERT INTO durable_meta VALUES ('schema_version', '1'), ('format', 'durable-sqlite')")
    conn.execute(
        "INSERT INTO runs (run_id, workflow_name, status, input, seed, created_at, updated_at, last_seq, wake_at) "
        "VALUES ('run_old', 'wf', 'completed', ?, 's', 1.0, 1.0, 1, NULL)", (encode_args(),),
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        record = await store.get_run("run_old")
        assert record is not None and (record.status, record.parent_run_id, record.cancel_reason) == ("completed", None, None)
        assert await store.list_children("run_old") == []
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(_sql.SCHEMA_VERSION),)
    conn.close()
