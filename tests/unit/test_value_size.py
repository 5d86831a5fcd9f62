"""Values too big to store: ``max_value_size`` refuses them where they are made, before anything is
written, and a value the store itself cannot hold fails its step instead of poisoning the worker."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, cast

import anyio
import pytest

import durable
from durable.stores._sql import DB
from durable.stores._sqlite import SQLiteStore
from durable.stores._sqlstore import SQLStore

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024
BIG = "x" * 100_000  # encodes to ~100 KB: over LIMIT


@durable.step
async def returns_big() -> str:
    return BIG


@durable.step
async def takes(value: str) -> int:
    return len(value)


@durable.step
async def writes_big() -> str:
    writer = durable.get_writable()
    await writer.write("small")
    try:
        await writer.write(BIG)
    except durable.SerializationError as exc:
        await writer.flush()
        return str(exc)
    return "written"


@durable.workflow
async def oversized(what: str) -> Any:
    if what == "step result":
        try:
            await returns_big()
        except durable.SerializationError as exc:
            return f"caught: {exc}"
    if what == "step argument":
        try:
            await takes(BIG)
        except durable.SerializationError as exc:
            return f"caught: {exc} / then {await takes('small')}"
    if what == "chunk":
        return await writes_big()
    if what == "workflow result":
        return BIG
    if what == "hook payload":
        return await durable.create_hook(token="size-hook")
    return None


@durable.workflow
async def yields_big() -> Any:
    yield "small"
    yield BIG


def _sizes_named(message: str) -> bool:
    return "more than the 65,536-byte limit for one value (max_value_size)" in message and "bytes" in message


async def test_values_over_max_value_size_are_refused_where_made_and_nothing_is_written(store_url: str) -> None:
    """Arguments, results, step calls, chunks, yields and hook payloads over ``max_value_size`` raise
    SerializationError naming their size and the limit, before anything is written: the step or the
    run fails (or the call raises), and no event holds the value."""
    async with durable.Runtime(store_url, workflows=[oversized, yields_big], max_value_size=LIMIT) as rt:
        with pytest.raises(durable.SerializationError) as refused:
            await rt.start(oversized, BIG)
        assert _sizes_named(str(refused.value)) and "arguments of" in str(refused.value)
        assert await rt.list_runs() == []

        run = await rt.start(oversized, "step result")
        caught = await run.result(timeout=10)
        assert caught.startswith("caught: result of step") and _sizes_named(caught), caught
        [step] = await run.steps()
        assert step.status == "failed"

        run = await rt.start(oversized, "step argument")
        caught = await run.result(timeout=10)
        assert caught.startswith("caught: arguments of step") and _sizes_named(caught) and caught.endswith("then 5")

        run = await rt.start(oversized, "chunk")
        message = await run.result(timeout=10)
        assert _sizes_named(message) and "chunk #1" in message
        assert [c async for c in run.stream()] == ["small"]

        for workflow, what in ((oversized, "workflow result"), (yields_big, None)):
            run = await (rt.start(workflow, what) if what else rt.start(workflow))
            with pytest.raises(durable.RunFailed) as failed:
                await run.result(timeout=10)
            assert failed.value.error_type == "durable.SerializationError", failed.value
            assert _sizes_named(failed.value.message), failed.value.message

        run = await rt.start(oversized, "hook payload")
        await run.wait_for_hook("size-hook", timeout=10)
        with pytest.raises(durable.SerializationError) as too_big:
            await rt.resume_hook("size-hook", {"blob": BIG})
        assert _sizes_named(str(too_big.value)) and "hook payload" in str(too_big.value)
        await rt.resume_hook("size-hook", {"ok": True})
        assert await run.result(timeout=10) == {"ok": True}

        for r in await rt.list_runs():
            for event in await rt.run(r.run_id).events():
                assert len(event.data or b"") < LIMIT, (r.workflow_name, event.kind)
    with pytest.raises(ValueError, match=r"max_value_size must be from 65,536 to 268,435,456"):
        durable.Runtime(store_url, max_value_size=10**10)


@durable.step
async def quick() -> str:
    return "done"


@durable.workflow
async def one_quick_step() -> str:
    return await quick()


@durable.step
async def returns_medium() -> str:
    return "y" * 60_000


@durable.workflow
async def beyond_the_store() -> str:
    try:
        await returns_medium()
    except durable.SerializationError as exc:
        return f"failed: {exc}"
    return "stored"


async def test_a_result_the_store_itself_cannot_hold_fails_its_step_instead_of_poisoning_the_worker(
    sqlite_url: str,
) -> None:
    """A step result under ``max_value_size`` but over the store's own limit (here SQLite's, lowered to
    50 KB) fails the step with SerializationError, a step call the store cannot hold fails its run, and
    the worker goes on with other runs.

    Before: recording it raised "string or blob too big"; the outcome was retried by every heartbeat
    forever, the step never failed and its run never finished."""
    async with durable.Runtime(sqlite_url, workflows=[beyond_the_store, oversized, one_quick_step]) as rt:
        store = cast(SQLiteStore, rt.store)
        assert store._inline is not None
        store._inline.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 50_000)
        run = await rt.start(beyond_the_store)
        message = await run.result(timeout=10)
        assert message.startswith("failed:") and "too big for SQLite" in message, message
        assert [s.status for s in await run.steps()] == ["failed"]
        unstorable = await rt.start(oversized, "step argument")
        with pytest.raises(durable.RunFailed, match="too big for SQLite"):
            await unstorable.result(timeout=10)
        assert await (await rt.start(one_quick_step)).result(timeout=10) == "done"


async def test_the_heartbeat_renews_leases_while_an_outcome_keeps_failing_to_be_recorded(store_url: str) -> None:
    """While a finished step's outcome cannot be recorded (the store refuses it for a while), the
    heartbeat still renews this worker's leases, and the outcome lands once the store takes it.

    Before: the heartbeat retried unrecorded outcomes first; the failing retry aborted it before lease
    renewal, so a live worker lost all its leases (and other workers ran its steps again)."""
    async with durable.Runtime(
        store_url, workflows=[one_quick_step], sticky_cache_size=0, lease_ttl=0.5, heartbeat_interval=0.05
    ) as rt:
        store = cast(SQLStore, rt.store)
        real = store.finish_step
        refusing = True

        async def finish_step(*args: Any, **kwargs: Any) -> bool:
            if refusing:
                raise durable.StoreError("the store is unreachable (a test)")
            return await real(*args, **kwargs)

        store.finish_step = finish_step  # type: ignore[method-assign]
        run = await rt.start(one_quick_step)
        with anyio.fail_after(10):
            while not rt.steps._unrecorded:
                await anyio.sleep(0.02)
        await anyio.sleep(1.5)  # three times lease_ttl: only heartbeats keep the worker alive now

        def worker_row(db: DB) -> list[tuple[Any, ...]]:
            return db.execute("SELECT alive_until FROM workers WHERE worker_id = ?", (rt.worker_id,))

        [(alive_until,)] = await store._run(worker_row)
        assert alive_until > time.time(), "the worker's lease lapsed while it was alive"
        refusing = False
        assert await run.result(timeout=10) == "done"
        completed = [e for e in await run.events() if e.kind == "step_completed"]
        assert len(completed) == 1
