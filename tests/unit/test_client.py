"""The client side of a runtime: what start and resume refuse in workflow code, what start warns,
how waiters end when the store closes, and what bad timeouts and unknown runs say.

Each case was found by a review of the public API's edges and failed (hung, passed bad input
through, or raised an unclear error) before its fix.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import durable

pytestmark = pytest.mark.anyio


# -- workflow code cannot act on the world ----------------------------------------------------------


@durable.workflow(name="edges.child")
async def edges_child(x: int) -> int:
    return x * 2


@durable.workflow(name="edges.starts_a_child_in_workflow_code")
async def starts_a_child_in_workflow_code() -> str:
    run = await durable.start(edges_child, 21)  # belongs in a step: a replay would start it again
    return run.run_id


@durable.workflow(name="edges.resumes_in_workflow_code")
async def resumes_in_workflow_code() -> object:
    return await durable.resume_hook("edges-anything", 1)


@pytest.mark.parametrize("sticky", [64, 0])
async def test_start_or_resume_in_workflow_code_fails_the_run_clearly(store_url: str, sticky: int) -> None:
    """Not a hang and not an unrecorded child run: the workflow fails naming the call and the fix."""
    async with durable.Runtime(
        store_url, workflows=[starts_a_child_in_workflow_code, resumes_in_workflow_code, edges_child],
        sticky_cache_size=sticky, poll_interval=0.2,
    ) as rt:
        for workflow, api in [(starts_a_child_in_workflow_code, "start"), (resumes_in_workflow_code, "resume_hook")]:
            run = await rt.start(workflow)
            with pytest.raises(durable.RunFailed) as failed:
                await run.result(timeout=10)
            assert failed.value.error_type == "durable.SideEffectInWorkflowError"
            assert f"durable.{api}() cannot be called in workflow code" in failed.value.message
            assert "@durable.step" in failed.value.message
        assert [r.workflow_name for r in await rt.list_runs(workflow="edges.child")] == []


# -- waiters learn that the store closed ----------------------------------------------------------


@durable.workflow(name="edges.waits_forever")
async def edges_waits_forever() -> object:
    return await durable.create_hook(token="edges-forever")


async def test_waiters_end_with_store_error_when_the_runtime_exits(store_url: str) -> None:
    async with durable.Runtime(store_url, workflows=[edges_waits_forever]) as rt:
        run = await rt.start(edges_waits_forever)
        result = asyncio.create_task(run.result())
        chunk = asyncio.ensure_future(anext(aiter(run.stream())))  # anext() gives an awaitable, not a coroutine
        await asyncio.sleep(0.2)
    done, pending = await asyncio.wait([result, chunk], timeout=10)
    assert not pending
    for task in done:
        assert isinstance(task.exception(), durable.StoreError)


@durable.workflow(name="edges.quick")
async def edges_quick() -> int:
    return 7


async def test_waiting_outlasts_a_store_out_of_reach_until_its_own_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store out of reach past its reconnect budget: result() keeps waiting, and only a
    deadline passing with the store still away raises StoreUnavailable."""
    async with durable.Runtime("memory://", workflows=[edges_quick]) as rt:
        run = await rt.start(edges_quick)
        real = rt.store.get_run
        outage = {"left": 2}

        async def flaky(run_id: str) -> object:
            if outage["left"] > 0:
                outage["left"] -= 1
                raise durable.StoreUnavailable("lost the connection (test)")
            return await real(run_id)

        monkeypatch.setattr(rt.store, "get_run", flaky)
        assert await run.result(timeout=30) == 7
        assert outage["left"] == 0

        outage["left"] = 10**6
        with pytest.raises(durable.StoreUnavailable, match="lost the connection"):
            await run.result(timeout=0.3)


async def test_starting_a_workflow_this_runtime_does_not_run_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async with durable.Runtime("memory://", workflows=[edges_child]) as rt:
        with caplog.at_level(logging.WARNING, logger="durable"):
            run = await rt.start(edges_waits_forever)
    assert f"run {run.run_id} of workflow 'edges.waits_forever' waits for a runtime that executes it" in caplog.text


# -- bad input names what is wrong ------------------------------------------------------------------


async def test_timeouts_take_durations_and_unknown_runs_are_not_found(tmp_path: Path) -> None:
    async with durable.Runtime(f"sqlite:///{tmp_path / 'x.db'}", workflows=[edges_waits_forever]) as rt:
        run = await rt.start(edges_waits_forever)
        with pytest.raises(TimeoutError, match="within '50ms'"):
            await run.result(timeout="50ms")
        with pytest.raises(ValueError, match="cannot read timeout 'soon'"):
            await run.result(timeout="soon")
        with pytest.raises(durable.RunNotFound):
            await durable.Run("run_nope", rt).streams()
        await run.cancel()


# -- parameters a caller gets wrong (issue 16) --------------------------------------------------------


async def test_list_runs_and_stream_refuse_bad_parameters_naming_them_and_their_range(store_url: str) -> None:
    """``list_runs(limit="5")``, ``limit=10**20`` and ``stream(start_index=10**30)`` raise TypeError/ValueError
    naming the parameter and what it accepts, on every store, before any SQL runs.

    Before: a TypeError from comparing str with int, an OverflowError from the driver ("Python int too
    large to convert to SQLite INTEGER"), or a PostgreSQL error."""
    async with durable.Client(store_url) as client:
        with pytest.raises(TypeError, match=r"limit must be an int from 1 to 10,000, got '5'"):
            await client.list_runs(limit="5")  # type: ignore[arg-type]
        for limit in (0, 10**20):
            with pytest.raises(ValueError, match=r"limit must be from 1 to 10,000"):
                await client.list_runs(limit=limit)
            with pytest.raises(ValueError, match=r"limit must be from 1 to 10,000"):
                await client.store.list_runs(limit=limit)
        with pytest.raises(ValueError, match="status must be one of pending, running, completed, failed, cancelled"):
            await client.list_runs(status="done")
        with pytest.raises(ValueError, match=r"start_index must be from -9,007,199,254,740,992 to 9,007,199,254,740,992"):
            client.run("run_x").stream(start_index=10**30)
        with pytest.raises(TypeError, match=r"start_index must be an int"):
            client.run("run_x").stream(start_index="3")  # type: ignore[arg-type]
        assert await client.list_runs(limit=10_000) == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"poll_interval": 0}, ValueError, r"poll_interval must be from 0\.001 s to 3,600 s, got 0"),
        ({"poll_interval": float("nan")}, ValueError, r"poll_interval must be from 0\.001 s to 3,600 s, got nan"),
        ({"lease_ttl": -1}, ValueError, r"lease_ttl must be from 0\.1 s to 86,400 s, got -1"),
        ({"sticky_cache_size": -5}, ValueError, r"sticky_cache_size must be from 0 to 10,000,000, got -5"),
        ({"max_concurrent_steps": "3"}, TypeError, r"max_concurrent_steps must be an int from 1 to 100,000, got '3'"),
        ({"max_concurrent_steps": 0}, ValueError, r"max_concurrent_steps must be from 1 to 100,000, got 0"),
        ({"heartbeat_interval": 10.0}, ValueError, r"heartbeat_interval must be shorter than lease_ttl \(10 s\)"),
        ({"heartbeat_interval": 0}, ValueError, r"heartbeat_interval must be from 0\.01 s"),
    ],
)
def test_runtime_options_out_of_range_are_refused_naming_the_option_and_its_range(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each Runtime option out of its range is refused at construction, naming it and the range.

    Before: ``poll_interval=0`` made an idle runtime spin at ~90% CPU, ``lease_ttl=-1`` made every lease
    lapse at once, ``sticky_cache_size=-5`` and ``max_concurrent_steps="3"`` failed later and obscurely,
    and a heartbeat no shorter than the lease let a live worker lose its leases."""
    with pytest.raises(error, match=message):
        durable.Runtime("memory://", **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll_interval"):
        durable.Client("memory://", poll_interval=-1)


# -- listeners of finished waits (issue 16) -------------------------------------------------------------


async def test_reading_many_finished_runs_leaves_the_notifier_at_its_baseline(store_url: str) -> None:
    """Reading the result and the stream of 10,000 finished runs leaves the store's notifier holding
    as many listeners as before: a waiter that ended takes its listener with it.

    Before: each read left its entries ("run-end" and "stream" topics, ~1.1 KB each) in the notifier for
    good, two per run, so a long-lived server grew without bound."""
    from typing import Any, cast

    from durable._core import codec
    from durable.stores._sql import DB
    from durable.stores._sqlstore import SQLStore

    n = 10_000
    output, data = codec.encode("done"), codec.encode({"args": [], "kwargs": {}})

    def insert_finished_runs(db: DB) -> None:
        db.executemany(
            "INSERT INTO runs (run_id, workflow_name, status, input, seed, output, created_at, updated_at, "
            "started_at, completed_at, last_seq) VALUES (?, 'wf', 'completed', ?, 'seed', ?, 1.0, 2.0, 1.0, 2.0, 3)",
            [(f"run_{i:05d}", data, output) for i in range(n)],
        )

    async with durable.Client(store_url) as client:
        await cast(SQLStore, client.store)._run(insert_finished_runs)
        notifier = client.store.notifier
        baseline = len(notifier)

        async def read(run_id: str) -> Any:
            run = client.run(run_id)
            return await run.result(timeout=10), [chunk async for chunk in run.stream()]

        for start in range(0, n, 100):
            results = await asyncio.gather(*(read(f"run_{i:05d}") for i in range(start, start + 100)))
            assert results == [("done", [])] * 100
        assert len(notifier) == baseline, f"{len(notifier) - baseline} listener(s) left behind"
