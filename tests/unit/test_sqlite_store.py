"""The SQLite store on a hostile file system: a disk that fills up, a WAL under continuous load,
files that are not durable stores, and read-only locations (backups, snapshots, read-only mounts).

The disk-full and read-only tests mount a small tmpfs (CI runs as root); elsewhere they skip
saying so.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

import durable
from durable._cli import app
from durable.stores._base import NewRun
from durable.stores._sqlite import SQLiteStore
from tests.helpers import encode_args, fill_disk, remount, small_tmpfs, wait_for_hook

pytestmark = pytest.mark.anyio


def _new_run(i: int, size: int = 1000) -> NewRun:
    return NewRun(f"run_{i}", "wf", encode_args("x" * size), "seed", None, 1.0 + i)


# -- a full disk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_a_full_disk_fails_writes_clearly_and_the_store_works_again_once_space_returns(
    tmp_path: Path, synchronous: str
) -> None:
    """Writes on a full disk raise StoreError ("disk full") and never hang; freed space makes writes
    work again, and every write accepted before is still there, also after reopening.

    Before: COMMIT failed with SQLITE_FULL, SQLite had already rolled back, the store's own ROLLBACK
    raised "no transaction is active": inline (``normal``) that raw sqlite3 error reached the caller;
    on the database thread (``full``) it killed the thread, and every later write waited forever.
    """
    with small_tmpfs(tmp_path / "disk", "3m") as disk:
        store = SQLiteStore(disk / "durable.db", synchronous=synchronous)
        accepted: list[str] = []
        async with store:
            for i in range(5):
                record, _ = await store.create_run(_new_run(i))
                accepted.append(record.run_id)
            filler = fill_disk(disk)
            failures: list[durable.StoreError] = []
            for i in range(5, 25):  # each ~50 KB: the WAL must grow, and cannot
                with anyio.fail_after(10):  # a dead database thread would hang here
                    try:
                        record, _ = await store.create_run(_new_run(i, 50_000))
                    except durable.StoreError as exc:
                        failures.append(exc)
                    else:
                        accepted.append(record.run_id)
            assert len(failures) >= 10, "the disk never filled up"
            assert all("disk full" in str(exc) for exc in failures), [str(e) for e in failures]
            assert not any(isinstance(exc, durable.StoreCorrupt) for exc in failures)
            filler.unlink()
            with anyio.fail_after(10):
                record, _ = await store.create_run(_new_run(100, 50_000))
            accepted.append(record.run_id)
            assert sorted(r.run_id for r in await store.list_runs(limit=1000)) == sorted(accepted)
        async with SQLiteStore(disk / "durable.db", synchronous=synchronous) as reopened:
            assert sorted(r.run_id for r in await reopened.list_runs(limit=1000)) == sorted(accepted)
            assert len(await reopened.load_events("run_100")) == 1
        with sqlite3.connect(disk / "durable.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@durable.workflow
async def waits_for_a_payload(token: str) -> Any:
    return await durable.create_hook(token=token)


async def test_a_runtime_on_a_full_disk_refuses_a_payload_then_takes_it_once_space_returns(tmp_path: Path) -> None:
    """A hook payload sent while the disk is full is refused with StoreError ("disk full"), not lost
    silently; once space returns the same runtime takes it and the run finishes."""
    with small_tmpfs(tmp_path / "disk", "3m") as disk:
        async with durable.Runtime(f"sqlite:///{disk / 'durable.db'}", workflows=[waits_for_a_payload],
                                   heartbeat_interval=0.1) as rt:
            run = await rt.start(waits_for_a_payload, "full-disk")
            await wait_for_hook(rt, "full-disk")
            filler = fill_disk(disk)
            with pytest.raises(durable.StoreError, match="disk full"), anyio.fail_after(10):
                await rt.resume_hook("full-disk", {"blob": "x" * 200_000})
            filler.unlink()
            await rt.resume_hook("full-disk", {"approved": True})
            assert await run.result(timeout=10) == {"approved": True}


# -- the WAL under continuous load -------------------------------------------------------------------


@durable.step
async def measure_wal(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@durable.workflow
async def wal_chain(path: str, n: int) -> int:
    largest = 0
    for _ in range(n):
        largest = max(largest, await measure_wal(path))
    return largest


async def test_the_wal_stays_bounded_under_a_continuous_chain_of_inline_writes(tmp_path: Path) -> None:
    """Under ``synchronous=normal`` (writes inline, back to back) the WAL stays near its limit.

    Before: passive checkpoints on the database thread never caught up with the inline writer, so
    the WAL never started over: ~25 KB per step, without bound (here ~38 MB after 1,500 steps).
    """
    path = tmp_path / "durable.db"
    limit = 256 * 1024
    store = SQLiteStore(path, synchronous="normal", wal_limit=limit)
    async with durable.Runtime(store, workflows=[wal_chain]) as rt:
        run = await rt.start(wal_chain, f"{path}-wal", 1500)
        largest = await run.result(timeout=120)
    # Past twice the limit the next inline write waits for the checkpoint, however loaded the machine
    # (before that, a checkpoint that lost its turn to the chain let it reach 28 MB here): the WAL
    # stays under 2 x the limit plus the ~100 steps' pages written between two looks at its size.
    assert largest < 2 * limit + 4 * 1024 * 1024, f"the WAL reached {largest:,} bytes"


# -- files that are not durable stores ---------------------------------------------------------------


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def test_files_that_are_not_durable_stores_are_refused_and_left_byte_for_byte_untouched(tmp_path: Path) -> None:
    """Another application's SQLite file (WAL or not), a file that is not SQLite, and a store of a newer
    schema raise StoreCorrupt and stay exactly as they were: same bytes, no -wal, -shm or -journal.

    Before: ``PRAGMA journal_mode=WAL`` ran first, rewrote the foreign file's header and left -wal/-shm.
    """
    cases: dict[str, Path] = {}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "app.db") as conn:
        conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'ann')")
    conn.close()
    cases["foreign"] = foreign / "app.db"
    foreign_wal = tmp_path / "foreign-wal"
    foreign_wal.mkdir()
    conn = sqlite3.connect(foreign_wal / "app.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.commit()
    conn.close()  # the last connection: checkpointed, -wal and -shm removed
    cases["foreign-wal"] = foreign_wal / "app.db"
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "notes.db").write_bytes(b"this is not a database" * 100)
    cases["garbage"] = garbage / "notes.db"
    newer = tmp_path / "newer"
    newer.mkdir()
    async with SQLiteStore(newer / "durable.db"):
        pass
    conn = sqlite3.connect(newer / "durable.db")
    conn.execute("UPDATE durable_meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    cases["newer"] = newer / "durable.db"

    expected = {"foreign": "customers", "foreign-wal": "orders", "garbage": "not a SQLite database", "newer": "newer durable"}
    for name, path in cases.items():
        before = _files(path.parent)
        assert list(before) == [path.name], name
        openers: list[durable.Client] = [durable.Runtime(f"sqlite:///{path}"), durable.Client(f"sqlite:///{path}?mode=ro")]
        for opener in openers:
            with pytest.raises(durable.StoreCorrupt) as info:
                async with opener:
                    pass
            assert str(path) in str(info.value) and expected[name] in str(info.value), (name, str(info.value))
            assert _files(path.parent) == before, f"{name}: the file was changed or files were left beside it"


# -- read-only locations -------------------------------------------------------------------------------


@durable.step
async def progress(n: int) -> int:
    writer = durable.get_writable()
    for i in range(n):
        await writer.write({"done": i + 1})
    return n


@durable.workflow
async def archived(n: int) -> int:
    return await progress(n)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


async def test_a_store_on_a_read_only_location_is_read_read_only_and_writes_say_why(tmp_path: Path) -> None:
    """A healthy store on a read-only mount is not "corrupt": a Client reads it (runs, result, events,
    steps, streams), the CLI's read commands work, and anything that must write fails with StoreError
    saying "read-only" and naming the path.

    Before: opening it raised StoreCorrupt ("unable to open database file"), and even `durable runs` refused it.
    """
    with small_tmpfs(tmp_path / "backup", "8m") as disk:
        url = f"sqlite:///{disk / 'durable.db'}"
        async with durable.Runtime(url, workflows=[archived]) as rt:
            run_id = (await rt.start(archived, 3)).run_id
            assert await rt.run(run_id).result(timeout=10) == 3
        assert sorted(p.name for p in disk.iterdir()) == ["durable.db"]
        remount(disk, "ro")
        try:
            async with durable.Client(url) as client:
                assert [r.run_id for r in await client.list_runs()] == [run_id]
                run = client.run(run_id)
                assert await run.result() == 3
                assert [e.kind for e in await run.events()][-1] == "run_completed"
                assert [s.status for s in await run.steps()] == ["completed"]
                assert [c async for c in run.stream()] == [{"done": 1}, {"done": 2}, {"done": 3}]
                with pytest.raises(durable.StoreError, match="read-only") as info:
                    await client.start(archived, 1)
                assert str(disk / "durable.db") in str(info.value)
            with pytest.raises(durable.StoreError, match="read-only") as refused:
                async with durable.Runtime(url, workflows=[archived]):
                    pass
            assert not isinstance(refused.value, durable.StoreCorrupt)
            assert str(disk / "durable.db") in str(refused.value)
            runs = await anyio.to_thread.run_sync(_cli, "runs", "--store", url)
            assert runs.exit_code == 0 and run_id in runs.output, runs.output
            inspected = await anyio.to_thread.run_sync(_cli, "inspect", run_id, "--store", url)
            assert inspected.exit_code == 0 and "completed" in inspected.output, inspected.output
            events = await anyio.to_thread.run_sync(_cli, "events", run_id, "--store", url)
            assert events.exit_code == 0 and "run_completed" in events.output, events.output
            with pytest.raises(durable.StoreError, match="read-only file system") as creating:
                async with durable.Client(f"sqlite:///{disk / 'new.db'}") as client:
                    pass
            assert str(disk / "new.db") in str(creating.value)
        finally:
            remount(disk, "rw")


async def test_mode_ro_reads_a_live_store_without_writing_to_it(tmp_path: Path) -> None:
    """``?mode=ro`` reads a store another runtime is writing, sees its commits, and refuses writes by name."""
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    async with durable.Runtime(url, workflows=[archived]) as rt:
        run = await rt.start(archived, 2)
        assert await run.result(timeout=10) == 2
        async with durable.Client(url + "?mode=ro") as reader:
            assert await reader.run(run.run_id).result() == 2
            with pytest.raises(durable.StoreError, match=r"read-only \(opened with mode=ro\): cancel_run"):
                await reader.cancel(run.run_id)
        later = await rt.start(archived, 1)
        assert await later.result(timeout=10) == 1
    with pytest.raises(durable.StoreError, match="does not exist"):
        async with durable.Client(f"sqlite:///{tmp_path / 'missing.db'}?mode=ro"):
            pass
    assert not (tmp_path / "missing.db").exists()
