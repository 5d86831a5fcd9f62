"""Group commit of inline SQLite writes: the writes other tasks make in one loop iteration commit
together in the next (each in its own savepoint only when one of them fails); a lone task's
writes still commit at once.

(``memory://`` and ``synchronous=normal`` write inline on the event loop; under ``full`` writes
go to the database thread, which groups them itself.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable.stores._base import NewRun
from durable.stores._sqlite import SQLiteStore
from tests.helpers import encode_args

pytestmark = pytest.mark.anyio


def _new_run(i: int) -> NewRun:
    return NewRun(f"run_{i}", "wf", encode_args(i), "seed", None, 1.0 + i)


@contextmanager
def _commits(store: SQLiteStore, *also: str) -> Iterator[list[str]]:
    """The COMMITs (and statements starting with one of ``also``) the store's inline connection runs meanwhile."""
    seen: list[str] = []
    conn = store._inline
    assert conn is not None
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" or sql.startswith(also) else None)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


async def test_writes_that_many_tasks_make_in_one_iteration_commit_together() -> None:
    """Fifty runs created at once by fifty tasks: all recorded, in two commits (the first write's own,
    then one for the 49 that joined its group) instead of fifty."""
    store = SQLiteStore(":memory:")
    async with store:
        with _commits(store, "SAVEPOINT", "ROLLBACK") as commits:
            created = await asyncio.gather(*(store.create_run(_new_run(i)) for i in range(50)))
        assert [new for _, new in created] == [True] * 50
        assert commits == ["COMMIT", "COMMIT"]  # and no savepoint: none of them failed
        for i in range(50):
            run = await store.get_run(f"run_{i}")
            assert run is not None and run.input == encode_args(i)


async def test_a_write_that_fails_in_a_group_undoes_only_itself() -> None:
    """A write that raises after changing rows undoes the group; run again, each in its own savepoint,
    it gets its error and the writes grouped with it (before and after) are all committed, once."""
    store = SQLiteStore(":memory:")
    async with store:
        await store.create_run(_new_run(0))

        def insert_then_fail(db: Any) -> None:
            db.execute("UPDATE runs SET status = 'failed' WHERE run_id = 'run_0'")
            raise ValueError("refused after writing")

        await asyncio.sleep(0)  # the first create_run's group (nobody joined) is gone
        with _commits(store, "SAVEPOINT") as statements:
            results = await asyncio.gather(
                store.create_run(_new_run(1)),  # commits inline, opening the group the rest join
                *(store.create_run(_new_run(i)) for i in range(2, 6)), store._run(insert_then_fail),
                *(store.create_run(_new_run(i)) for i in range(6, 11)), return_exceptions=True,
            )
        assert statements == ["COMMIT"] + [f"SAVEPOINT op{i}" for i in range(10)] + ["COMMIT"]
        assert isinstance(results[5], ValueError)
        assert all(isinstance(r, tuple) and r[1] for r in results[:5] + results[6:])
        run_0 = await store.get_run("run_0")
        assert run_0 is not None and run_0.status == "pending"
        assert [await store.get_run(f"run_{i}") is not None for i in range(1, 11)] == [True] * 10


async def test_a_lone_task_commits_each_write_at_once_without_yielding() -> None:
    """Twenty writes in a row by one task: twenty commits, and no other callback ran in between
    (its own writes never wait for the group its first write opened)."""
    store = SQLiteStore(":memory:")
    async with store:
        others: list[int] = []
        asyncio.get_running_loop().call_soon(others.append, 1)
        with _commits(store) as commits:
            for i in range(20):
                await store.create_run(_new_run(i))
            assert others == []
        assert len(commits) == 20


async def test_a_group_blocked_by_another_connections_lock_waits_for_it_on_the_database_thread(tmp_path: Path) -> None:
    """When another connection takes the write lock between the group's first write and its commit,
    the group goes to the database thread, which waits for the lock: every write lands once it is
    released, none fails."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path, synchronous="normal")
    async with store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            async def first_then_lock() -> Any:
                created = await store.create_run(_new_run(0))  # inline, opens the group
                other.execute("BEGIN IMMEDIATE")  # same iteration: before the group commits
                return created

            async def release() -> None:
                await anyio.sleep(0.3)
                other.execute("COMMIT")

            results = await asyncio.gather(
                first_then_lock(), *(store.create_run(_new_run(i)) for i in range(1, 6)), release()
            )
        finally:
            other.close()
        assert all(created for _, created in results[:6])
        assert [await store.get_run(f"run_{i}") is not None for i in range(6)] == [True] * 6
