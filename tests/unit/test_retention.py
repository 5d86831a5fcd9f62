"""Retention: ``Client.gc`` / ``durable gc`` / ``Runtime(retention=...)`` delete finished runs with
everything that belongs to them, in bounded batches, on every store -- and never what is still needed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

import durable
from durable._cli import app
from durable.stores import _sql
from durable.stores._base import Store
from durable.stores._encrypted import EncryptedStore
from durable.stores._sqlstore import SQLStore
from tests.helpers import sqlite_store_url, undo_inline_step

pytestmark = pytest.mark.anyio

_TABLES = ("events", "steps", "hooks", "waits", "streams", "chunks", "run_values")


async def rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of the store's own tables, read behind the Store interface."""
    inner = store.inner if isinstance(store, EncryptedStore) else store
    assert isinstance(inner, SQLStore)
    return await inner._run(lambda db: db.execute(sql, params), write=False)


async def left_of(store: Store, run_ids: list[str]) -> dict[str, int]:
    """How many rows each table still holds for these runs."""
    marks = ",".join("?" * len(run_ids))
    counts = {"runs": len(await rows(store, f"SELECT 1 FROM runs WHERE run_id IN ({marks})", *run_ids))}
    for table in _TABLES:
        counts[table] = len(await rows(store, f"SELECT 1 FROM {table} WHERE run_id IN ({marks})", *run_ids))
    return counts


@durable.step(name="retain.write_and_double")
async def write_and_double(x: int) -> int:
    await durable.get_writable().write({"x": x})
    return 2 * x


@durable.workflow(name="retain.child")
async def child(x: int) -> int:
    return await write_and_double(x)


@durable.workflow(name="retain.everything")
async def everything(x: int, token: str) -> int:
    # Two at once: the second has a steps row (a step that completes in its run's chain has none).
    y = int((await asyncio.gather(write_and_double(x), write_and_double(0)))[0])
    durable.set_event("y", y)
    got = await durable.create_hook(token=token)
    await durable.sleep(0.01)
    return int(y + await child(got))


@durable.workflow(name="retain.waits")
async def waits_for(token: str) -> str:
    return str(await durable.create_hook(token=token))


@durable.workflow(name="retain.quick")
async def quick(n: int) -> int:
    return n


@durable.workflow(name="retain.parent_of_waiting")
async def parent_of_waiting(token: str) -> str:
    await durable.start_child(waits_for, token, on_parent_close="abandon")
    return "parent done"


@durable.workflow(name="retain.parent_then_waits")
async def parent_then_waits(token: str) -> int:
    n: int = await child(1)
    await durable.create_hook(token=token)
    return n


async def test_gc_deletes_a_finished_run_with_its_events_steps_hooks_waits_streams_values_and_children(
    runtime: durable.Runtime,
) -> None:
    """A finished run and its finished child go with every row of theirs, and the report counts each table."""
    run = await runtime.start(everything, 3, "retain-all")
    await runtime.resume_hook("retain-all", 5, wait="10s")
    assert await run.result(timeout=20) == 6 + 10
    ids = [run.run_id, *[c.run_id for c in await run.children()]]
    before = await left_of(runtime.store, ids)
    assert before["runs"] == 2 and all(before[t] > 0 for t in _TABLES), before
    report = await runtime.gc("0s")
    assert report.runs == 2 and report.batches == 1
    assert {t: report.counts[t] for t in ("runs", *_TABLES)} == before
    assert await left_of(runtime.store, ids) == dict.fromkeys(("runs", *_TABLES), 0)
    with pytest.raises(durable.RunNotFound):
        await runtime.get_run(run.run_id)


async def test_gc_keeps_unfinished_runs_and_runs_that_finished_after_the_cut_off(runtime: durable.Runtime) -> None:
    """Only finished runs older than the cut-off go: a waiting run stays, and so does a recent one under "1h"."""
    waiting = await runtime.start(waits_for, "retain-waiting")
    await waiting.wait_for_hook("retain-waiting", timeout="10s")
    done = await runtime.start(quick, 1)
    await done.result(timeout=10)
    assert (await runtime.gc("1h")).runs == 0
    report = await runtime.gc("0s")
    assert report.runs == 1
    assert (await waiting.status(), await runtime.store.get_run(done.run_id)) == ("running", None)


async def test_a_finished_child_stays_while_its_parent_is_unfinished(runtime: durable.Runtime) -> None:
    """A child that finished goes only once its parent has finished too (the parent's views list it)."""
    parent = await runtime.start(parent_then_waits, "retain-parent")
    await parent.wait_for_hook("retain-parent", timeout="10s")
    (kid,) = await parent.children()
    assert kid.status == "completed"
    assert (await runtime.gc("0s")).runs == 0
    await runtime.resume_hook("retain-parent", "go")
    await parent.result(timeout=10)
    assert (await runtime.gc("0s")).runs == 2


async def test_a_finished_parent_stays_while_an_abandoned_child_runs(runtime: durable.Runtime) -> None:
    """A parent whose abandoned child still runs stays (the child's end is delivered to it); both go once it ends."""
    parent = await runtime.start(parent_of_waiting, "retain-orphan")
    assert await parent.result(timeout=10) == "parent done"
    (kid,) = await parent.children()
    await runtime.run(kid.run_id).wait_for_hook("retain-orphan", timeout="10s")
    assert (await runtime.gc("0s")).runs == 0
    await runtime.resume_hook("retain-orphan", "late")
    await runtime.run(kid.run_id).result(timeout=10)
    assert (await runtime.gc("0s")).runs == 2


async def test_the_idempotency_key_of_a_deleted_run_starts_a_new_run(runtime: durable.Runtime) -> None:
    """Once its run is deleted, an idempotency key names nothing: the same start makes (and runs) a new run."""
    first = await runtime.start(quick, 7, idempotency_key="retain-key")
    assert await first.result(timeout=10) == 7
    assert await runtime.start(quick, 7, idempotency_key="retain-key") == first  # still taken: the same run
    await runtime.gc("0s")
    second = await runtime.start(quick, 8, idempotency_key="retain-key")
    assert second != first and await second.result(timeout=10) == 8


async def test_gc_deletes_in_bounded_batches_of_one_transaction_each(runtime: durable.Runtime) -> None:
    """Seven runs in batches of three take three batches; a row budget smaller than a run takes one run per batch."""
    for i in range(7):
        await (await runtime.start(quick, i)).result(timeout=10)
    report = await runtime.gc("0s", batch_size=3)
    assert (report.runs, report.batches) == (7, 3)
    for i in range(3):
        await (await runtime.start(quick, i)).result(timeout=10)
    now = time.time()
    batch = await runtime.store.collect_runs(now, ["completed"], limit=10, max_rows=1, now=now)
    assert (len(batch.run_ids), batch.more) == (1, True)  # the oldest one; more are due
    assert (await runtime.gc("0s", max_rows=1)).batches == 2


async def test_status_says_which_finished_runs_go(runtime: durable.Runtime) -> None:
    """``status="cancelled"`` deletes cancelled runs only; an unfinished status is refused before anything is deleted."""
    done = await runtime.start(quick, 1)
    await done.result(timeout=10)
    cancelled = await runtime.start(waits_for, "retain-cancel")
    await runtime.cancel(cancelled.run_id)
    with pytest.raises(ValueError, match="finished runs"):
        await runtime.gc("0s", status="running")
    # On PostgreSQL a run another transaction holds (its worker settling the cancel) is skipped,
    # not waited for: a later pass takes it.
    deadline = time.monotonic() + 10
    while (report := await runtime.gc("0s", status="cancelled")).runs == 0 and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert report.runs == 1
    assert await runtime.store.get_run(cancelled.run_id) is None and await runtime.store.get_run(done.run_id) is not None


async def test_a_runtime_with_retention_deletes_finished_runs_in_the_background(store_url: str) -> None:
    """``Runtime(retention="1s")`` deletes a finished run soon after it is a second old; a waiting run stays."""
    async with durable.Runtime(store_url, retention="1s", heartbeat_interval=0.2, poll_interval=0.2) as rt:
        assert rt.collector is not None and rt.collector.interval == 1.0
        waiting = await rt.start(waits_for, "retain-background")
        done = await rt.start(quick, 1)
        await done.result(timeout=10)
        deadline = time.monotonic() + 15
        # The row goes in the collection's first batch; the count is added once the collection is done.
        while await rt.store.get_run(done.run_id) is not None or rt.collector.collected < 1:
            assert time.monotonic() < deadline, "the finished run was not collected"
            await anyio.sleep(0.2)
        assert await waiting.status() in ("pending", "running")


# -- SQLite: space ---------------------------------------------------------------------------------


@durable.workflow(name="retain.big")
async def big(n: int) -> str:
    return "x" * n


def _size(path: Path) -> int:
    """The database's size with what its WAL holds (the file itself grows at checkpoints)."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0])


async def test_a_new_sqlite_store_gives_deleted_runs_pages_back(tmp_path: Path) -> None:
    """A new SQLite file uses incremental auto-vacuum: after gc the file is smaller, by what the report says."""
    path = tmp_path / "big.db"
    async with durable.Runtime(sqlite_store_url(path), workflows=[big]) as rt:
        for _ in range(40):
            await (await rt.start(big, 20_000)).result(timeout=10)
        size = _size(path)
        report = await rt.gc("0s")
        assert report.runs == 40 and report.reclaimed_bytes is not None and report.reclaimed_bytes > 40 * 20_000
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    assert path.stat().st_size < size - 40 * 20_000


async def test_an_older_sqlite_file_shrinks_with_vacuum_and_gains_incremental_vacuum(tmp_path: Path) -> None:
    """A file made before incremental auto-vacuum keeps its size after gc (pages are reused); ``vacuum=True`` shrinks it."""
    path = tmp_path / "old.db"
    async with durable.Runtime(sqlite_store_url(path), workflows=[big]):
        pass
    with sqlite3.connect(path, isolation_level=None) as conn:  # as an older durable created it
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    async with durable.Runtime(sqlite_store_url(path), workflows=[big]) as rt:
        for _ in range(20):
            await (await rt.start(big, 20_000)).result(timeout=10)
        assert (await rt.gc("0s")).reclaimed_bytes == 0
        await (await rt.start(big, 10)).result(timeout=10)
        size = _size(path)
        report = await rt.gc("0s", vacuum=True)
        assert report.reclaimed_bytes is not None and report.reclaimed_bytes > 20 * 20_000
    assert path.stat().st_size < size - 20 * 20_000
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)


async def test_a_store_from_before_retention_gains_the_finished_runs_index(store_url: str) -> None:
    """A store from before retention (the schema version before h-retain's) is upgraded on open: the index that
    finds finished runs is there."""
    if store_url == "memory://":
        pytest.skip("an in-memory store cannot be reopened")
    async with durable.Client(store_url) as client:
        await rows(client.store, "SELECT 1 FROM runs")  # created
        inner = client.store
        assert isinstance(inner, SQLStore)
        await inner._run(lambda db: ([db.execute(s) for s in undo_inline_step()], db.execute("DROP INDEX runs_finished"),
                                     db.execute("UPDATE durable_meta SET value = ? WHERE key = 'schema_version'",
                                                (str(_sql.RETAIN_MIGRATION_FROM),))))
    async with durable.Client(store_url) as client:
        version = await rows(client.store, "SELECT value FROM durable_meta WHERE key = 'schema_version'")
        assert version == [(str(_sql.SCHEMA_VERSION),)]
        if store_url.startswith("sqlite"):
            found = await rows(client.store, "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'runs_finished'")
        else:
            found = await rows(client.store, "SELECT indexname FROM pg_indexes WHERE indexname = 'runs_finished' "
                                             "AND schemaname = current_schema()")
        assert len(found) == 1


# -- the command ------------------------------------------------------------------------------------


def test_durable_gc_reports_what_it_deleted(tmp_path: Path) -> None:
    """``durable gc --older-than 0s`` prints the rows it deleted per table (``--json`` as numbers); bad input exits 2."""
    url = sqlite_store_url(tmp_path / "cli.db")

    async def three_runs() -> None:
        async with durable.Runtime(url, workflows=[quick]) as rt:
            for i in range(3):
                await (await rt.start(quick, i)).result(timeout=10)

    anyio.run(three_runs)
    runner = CliRunner()
    kept = runner.invoke(app, ["gc", "--older-than", "1d", "--store", url])
    assert (kept.exit_code, kept.output.split(",")[0]) == (0, "deleted 0 runs"), kept.output
    done = runner.invoke(app, ["gc", "--older-than", "0s", "--status", "completed", "--json", "--store", url])
    assert done.exit_code == 0, done.output
    import json

    report = json.loads(done.output)
    assert (report["runs"], report["events"], report["batches"]) == (3, 9, 1)
    wrong = runner.invoke(app, ["gc", "--older-than", "0s", "--status", "pending", "--store", url])
    assert wrong.exit_code == 2 and "finished runs" in wrong.output
    missing = runner.invoke(app, ["gc", "--store", url])
    assert missing.exit_code == 2 and "--older-than" in missing.output
    worker = runner.invoke(app, ["worker", "--app", "json", "--retention", "soon", "--store", url])
    assert worker.exit_code == 2 and "--retention" in worker.output
    assert os.path.exists(tmp_path / "cli.db")
