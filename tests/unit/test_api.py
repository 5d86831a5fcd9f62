"""The public surface: exports, module-level functions, the default runtime, store URLs and bad input."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import durable
from durable._workflow.workflow import workflows as registered_workflows
from durable.stores import store_from_url
from durable.stores._sqlite import SQLiteStore
from tests.helpers import encode_args, wait_for_hook

pytestmark = pytest.mark.anyio


def test_all_matches_the_real_exports() -> None:
    """__all__ lists exactly the public names defined in durable/__init__.py."""
    public = {n for n in vars(durable) if not n.startswith("_") and n not in {"stores", "testing"}}
    public -= {name for name, value in vars(durable).items() if type(value).__name__ == "module"}
    assert sorted(durable.__all__) == sorted(public)


def test_importing_durable_loads_no_optional_dependency() -> None:
    """`import durable` must not import starlette, ipywidgets, psycopg, pydantic or uvicorn."""
    code = (
        "import sys, durable; "
        "bad = [m for m in ('starlette', 'sse_starlette', 'uvicorn', 'ipywidgets', 'psycopg', 'pydantic', 'typer', 'rich') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@durable.step
async def shout(text: str) -> str:
    return text.upper()


@durable.workflow
async def greet(name: str) -> str:
    return await shout(f"hello {name}")


async def test_module_level_functions_use_the_current_runtime(store_url: str) -> None:
    """Inside `async with Runtime()`, durable.start/get_run/list_runs act on that runtime."""
    async with durable.Runtime(store_url) as rt:
        assert await durable.get_runtime() is rt
        run = await durable.start(greet, "ann")
        assert await run.result(timeout=20) == "HELLO ANN"
        assert (await durable.get_run(run.run_id)).run_id == run.run_id
        assert run.run_id in {r.run_id for r in await durable.list_runs()}
    with pytest.raises(durable.RunNotFound):
        async with durable.Runtime(store_url) as rt2:
            await durable.get_run("missing")
    assert rt2.store is not rt.store


def test_default_runtime_starts_lazily_on_the_running_loop(tmp_path: Path) -> None:
    """Outside any runtime, durable.start uses a default runtime on the configured store, closed with the loop."""
    durable.configure(store=f"sqlite:///{tmp_path / 'default.db'}")

    async def main() -> str:
        run = await durable.start(greet, "bob")
        runtime = await durable.get_runtime()
        assert runtime.store.url.endswith("default.db")
        return str(await run.result(timeout=20))

    try:
        assert asyncio.run(main()) == "HELLO BOB"
        assert asyncio.run(main()) == "HELLO BOB"  # a new loop gets a new default runtime
    finally:
        durable.configure()
    with sqlite3.connect(tmp_path / "default.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0] == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlit:///x.db", "unknown scheme 'sqlit' (did you mean sqlite://"),
        ("sqlite://x.db", "use sqlite:///x.db (three slashes)"),
        ("sqlite:/x.db", "use sqlite:///relative/path.db or sqlite:////absolute/path.db"),
        ("sqlite:x.db", "use sqlite:///relative/path.db or sqlite:////absolute/path.db"),
        ("sqlite:///", "no database file"),
        ("sqlite:///x.db?synchronous=fast", "synchronous must be full or normal"),
        ("sqlite:///x.db?journal=wal", "unknown option(s) journal"),
        ("sqlite:///x.db?busy_timeout=abc", "busy_timeout must be a number of seconds from 0 to 86400, got 'abc'"),
        ("sqlite:///x.db?busy_timeout=-1", "busy_timeout must be a number of seconds from 0 to 86400, got '-1'"),
        ("sqlite:///x.db?busy_timeout=nan", "busy_timeout must be a number of seconds from 0 to 86400, got 'nan'"),
        ("sqlite:///x.db?mode=rx", "mode must be ro (read only) or rw"),
        ("redis://localhost", "unknown scheme 'redis'"),
    ],
)
def test_store_url_typos_get_a_clear_error(url: str, message: str) -> None:
    """Malformed store URLs raise InvalidStoreURL saying what to write instead."""
    with pytest.raises(durable.InvalidStoreURL) as info:
        store_from_url(url)
    assert message in str(info.value)


def sqlite_store(url: str) -> SQLiteStore:
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore)
    return store


def test_store_urls_follow_the_sqlalchemy_convention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///rel.db is relative, sqlite:////abs.db absolute; DURABLE_STORE sets the default."""
    assert sqlite_store("sqlite:///rel/x.db").path == "rel/x.db"
    assert sqlite_store(f"sqlite:///{tmp_path}/y.db").path == f"{tmp_path}/y.db"
    assert sqlite_store("sqlite:///z.db?synchronous=normal").synchronous == "normal"
    monkeypatch.setenv("DURABLE_STORE", "memory://")
    assert store_from_url().url == "memory://"
    monkeypatch.delenv("DURABLE_STORE")
    assert store_from_url().url == "sqlite:///.durable/durable.db"


async def test_foreign_and_corrupt_database_files_are_refused(tmp_path: Path) -> None:
    """A SQLite file of another application, or a file that is not SQLite at all, gives StoreCorrupt and is left untouched."""
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(durable.StoreCorrupt, match=r"not a durable store.*customers"):
        async with durable.Runtime(f"sqlite:///{foreign}"):
            pass
    with sqlite3.connect(foreign) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["customers"]
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(durable.StoreCorrupt):
        async with durable.Runtime(f"sqlite:///{garbage}"):
            pass
    newer = tmp_path / "newer.db"
    async with durable.Runtime(f"sqlite:///{newer}", workflows=[]):
        pass
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE durable_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(durable.StoreCorrupt, match="newer durable"):
        async with durable.Runtime(f"sqlite:///{newer}"):
            pass


@durable.workflow(name="edited")
async def edited_v1(x: int) -> str | int:
    await durable.sleep(0.3)
    return await shout(str(x)) and x


async def test_an_edited_workflow_fails_with_non_determinism_and_keeps_its_log(sqlite_url: str) -> None:
    """Code changed under a suspended run: the replay raises NonDeterminismError naming the position; the log stays."""
    async with durable.Runtime(sqlite_url, workflows=[edited_v1]) as rt:
        run = await rt.start(edited_v1, 7)
        with anyio.fail_after(10):
            while not any(e.kind == "wait_created" for e in await run.events()):
                await anyio.sleep(0.02)
    logged = [e.kind for e in await _events(sqlite_url, run.run_id)]

    @durable.workflow(name="edited")
    async def edited_v2(x: int) -> str:
        return await shout(str(x + 1))  # the sleep is gone: position 1 is now a step

    try:
        async with durable.Runtime(sqlite_url, workflows=[edited_v2]) as rt:
            with pytest.raises(durable.RunFailed) as info:
                await (await rt.get_run(run.run_id)).result(timeout=20)
            events = await (await rt.get_run(run.run_id)).events()
    finally:
        registered_workflows["edited"] = edited_v1
    assert info.value.error_type == "durable.NonDeterminismError"
    assert "command #1" in info.value.message and "durable sleep" in info.value.message and "shout" in info.value.message
    assert [e.kind for e in events][: len(logged)] == logged  # nothing rewritten
    assert events[-1].kind == "run_failed"


async def _events(url: str, run_id: str) -> list[durable.Event]:
    async with store_from_url(url) as store:
        return await store.load_events(run_id)


async def test_runs_of_unknown_workflows_stay_pending_for_a_runtime_that_knows_them(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A runtime that does not know a run's workflow warns and leaves it pending; one that knows it finishes it."""
    from durable.stores._base import NewRun

    async with store_from_url(sqlite_url) as store:  # a run recorded by some other deployment
        await store.create_run(NewRun("orphan-1", "greet", encode_args("zed"), "seed", None, 0.0))
    caplog.set_level(logging.WARNING, logger="durable")
    async with durable.Runtime(sqlite_url, workflows=[edited_v1]) as blind:
        await anyio.sleep(0.3)
        assert await (await blind.get_run("orphan-1")).status() == "pending"
    assert "1 unfinished run(s) of workflow 'greet' are not executed by this runtime" in caplog.text
    caplog.clear()
    async with durable.Runtime(sqlite_url, workflows=[]):  # a client: running runs is not its business
        pass
    assert "unfinished run(s)" not in caplog.text
    async with durable.Runtime(sqlite_url, workflows=[greet]) as knowing:
        assert await (await knowing.get_run("orphan-1")).result(timeout=20) == "HELLO ZED"


# -- found by a review of the core: module-level durable.* calls inside a step reached the executing runtime only sometimes


@durable.step(name="review.resume_from_step")
async def resume_from_step(token: str, value: int) -> str:
    try:
        await durable.resume_hook(token, value)  # the module-level API: "the current runtime"
    except durable.HookNotFound as exc:
        return f"HookNotFound: {exc}"
    return "delivered"


@durable.workflow(name="review.collects_two")
async def collects_two() -> list[object]:
    hook = durable.create_hook(token="review-two")
    return [await hook, await hook]


@durable.workflow(name="review.resumes_from_a_step")
async def resumes_from_a_step(value: int, sleep_first: bool) -> str:
    if sleep_first:
        await durable.sleep(0.05)  # the next invocation is claimed by the dispatcher
    return await resume_from_step("review-two", value)


async def test_module_level_calls_in_a_step_use_the_runtime_running_it(
    runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable.resume_hook called in a step reaches the runtime executing the step, however the step was launched."""
    monkeypatch.setenv("DURABLE_STORE", "memory://")  # where a stray default runtime would go
    collector = await runtime.start(collects_two)
    await wait_for_hook(runtime, "review-two")
    direct = await runtime.start(resumes_from_a_step, 1, False)
    assert await direct.result(timeout=10) == "delivered"
    after_sleep = await runtime.start(resumes_from_a_step, 2, True)
    try:
        assert await after_sleep.result(timeout=10) == "delivered"
        assert await collector.result(timeout=10) == [1, 2]
    finally:
        await collector.cancel()
