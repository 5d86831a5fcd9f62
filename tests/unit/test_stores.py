"""The stores themselves, below the runtime: what a refused commit leaves behind.

Store URLs are tested in test_api.py, PostgreSQL's own behaviour in test_postgres.py, and every
store against a model of it in tests/property/test_store_model.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from durable._core.events import Event, EventKind
from durable.stores import store_from_url
from durable.stores._base import NewRun
from tests.helpers import encode_args, undo_inline_step

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


@pytest.mark.anyio
async def test_a_store_of_the_previous_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """A version-1 SQLite store (no trace_link, consumed_seq, version or fork columns, no published workflows) opens as
    the current version, its runs intact."""
    from durable.stores._sql import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    async with store_from_url(url) as store:
        await store.create_run(NewRun("old-run", "wf", b"DJ1:{}", "seed", None, 1.0))
    with sqlite3.connect(tmp_path / "old.db") as conn:  # back to what version 1 wrote
        undo_compose(conn)
        conn.execute("ALTER TABLE runs DROP COLUMN trace_link")
        conn.execute("ALTER TABLE runs DROP COLUMN consumed_seq")
        conn.execute("DROP TABLE published_workflows")
        conn.execute("UPDATE durable_meta SET value = '1' WHERE key = 'schema_version'")
    async with store_from_url(url) as store:
        record = await store.get_run("old-run")
        assert record is not None and record.trace_link is None
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


# -- published workflows ---------------------------------------------------------------------------


async def test_a_store_from_before_published_workflows_gains_their_table(tmp_path: Path) -> None:
    """A store written before workflows were published (schema 2) is upgraded on open: publish and list work, runs stay."""
    from durable.stores._base import PublishedWorkflow
    from durable.stores._sql import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    async with store_from_url(url) as store:
        await store.create_run(NewRun("run_old", "wf", encode_args(), "seed", None, 1.0))
    with sqlite3.connect(tmp_path / "old.db") as conn:  # what the version before looks like
        undo_compose(conn)
        conn.execute("DROP TABLE published_workflows")
        conn.execute("UPDATE durable_meta SET value = '2' WHERE key = 'schema_version'")
    async with store_from_url(url) as store:
        assert await store.get_run("run_old") is not None
        published = PublishedWorkflow("m:wf", "[]", "json", None, "w1", 2.0)
        await store.publish_workflows([published])
        assert await store.list_workflows() == [published]
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


# -- the h-compose migration (schema 3 -> 4) ---------------------------------------------------------------


def undo_compose(conn: sqlite3.Connection) -> None:
    """Take a current SQLite store back to schema 3: drop what the h-verify and h-compose migrations add (indexes, tables, columns)."""
    from durable.stores import _sql

    for statement in undo_inline_step():  # the later schemas' changes first
        conn.execute(statement)
    for column in ("version", "forked_from", "forked_step"):  # (h-verify's)
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")

    for statement in reversed(_sql._COMPOSE_CHANGES):
        words = statement.split()
        if words[:2] == ["CREATE", "INDEX"] or words[:3] == ["CREATE", "UNIQUE", "INDEX"]:
            conn.execute(f"DROP INDEX {words[words.index('INDEX') + 1]}")
        elif words[:2] == ["CREATE", "TABLE"]:
            conn.execute(f"DROP TABLE {words[2]}")
        elif words[:2] == ["ALTER", "TABLE"]:
            conn.execute(f"ALTER TABLE {words[2]} DROP COLUMN {words[5]}")


async def test_a_schema_3_sqlite_store_is_migrated_and_its_runs_stay_readable(tmp_path: Path) -> None:
    """A store written before child runs, timeouts, queues, schedules and values (schema 3) opens: its runs read back
    unchanged, and the new columns and tables work."""
    from durable.stores._sql import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    async with store_from_url(url) as store:
        await store.create_run(NewRun("run_old", "wf", encode_args(), "seed", None, 1.0))
    with sqlite3.connect(tmp_path / "old.db") as conn:
        undo_compose(conn)
        conn.execute("UPDATE durable_meta SET value = '3' WHERE key = 'schema_version'")
        assert "parent_run_id" not in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    async with store_from_url(url) as store:
        record = await store.get_run("run_old")
        assert record is not None and (record.status, record.parent_run_id, record.deadline, record.queue) == (
            "pending", None, None, None
        )
        assert await store.list_children("run_old") == [] and await store.list_schedules() == []
        assert await store.list_values("run_old") == [] and await store.queue_states(None, 2.0) == []
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
