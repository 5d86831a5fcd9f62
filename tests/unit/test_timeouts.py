"""Run-level timeouts on every store: a run past its deadline is cancelled with reason "timeout"."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

import durable
from durable._core import codec as _codec
from tests.helpers import wait_for_hook, wait_until

pytestmark = pytest.mark.anyio

stopped: list[str] = []


@durable.step(max_retries=0)
async def slow_step(label: str) -> str:
    writer = durable.get_writable("progress")
    await writer.write({"label": label})
    await writer.flush()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        stopped.append(label)  # cancelled cooperatively: the step sees CancelledError
        raise
    return label


@durable.workflow
async def long_job(label: str) -> str:
    durable.create_hook(token=f"{label}-hook")
    return await slow_step(label)


async def test_a_run_past_its_timeout_is_cancelled_with_reason_timeout(runtime: durable.Runtime) -> None:
    """start(timeout=...) cancels the run at its deadline: its step is cancelled, hooks disposed, streams closed."""
    run = await runtime.start(long_job, "t1", timeout=0.5)
    info = await run.info()
    assert info.deadline is not None and (info.deadline - info.created_at).total_seconds() == pytest.approx(0.5)
    await wait_for_hook(runtime, "t1-hook")
    with pytest.raises(durable.RunCancelled, match=r"\(timeout\)") as caught:
        await run.result(timeout=20)
    assert caught.value.reason == "timeout"
    info = await run.info()
    assert (info.status, info.cancel_reason) == ("cancelled", "timeout")
    (cancelled,) = [e for e in await run.events() if e.kind == "run_cancelled"]
    assert _codec.decode(cancelled.data or b"") == {"reason": "timeout"}
    assert await runtime.store.get_hook("t1-hook") is None
    with pytest.raises(durable.StreamFailed):
        async for _ in run.stream("progress"):
            pass
    await wait_until(lambda: "t1" in stopped)
    with anyio.fail_after(10):
        while (await run.steps())[0].status != "cancelled":
            await anyio.sleep(0.02)


@durable.workflow(timeout="300ms")
async def waits_forever(token: str) -> Any:
    return await durable.create_hook(token=token)


async def test_a_workflow_timeout_cancels_a_suspended_run(runtime: durable.Runtime) -> None:
    """@workflow(timeout=...) applies to every run; a run suspended on a hook is cancelled at its deadline."""
    run = await runtime.start(waits_forever, "nobody-answers")
    with pytest.raises(durable.RunCancelled):
        await run.result(timeout=20)
    assert (await run.info()).cancel_reason == "timeout"


async def test_a_run_that_finishes_in_time_completes(runtime: durable.Runtime) -> None:
    """A timeout that is not reached changes nothing; start(timeout=) overrides the workflow's own."""
    run = await runtime.start(waits_forever, "answered", timeout="1h")
    await wait_for_hook(runtime, "answered")
    await runtime.resume_hook("answered", "yes")
    assert await run.result(timeout=20) == "yes"
    info = await run.info()
    assert (info.status, info.cancel_reason) == ("completed", None)


@durable.workflow
async def parent_of_slow(token: str) -> str:
    try:
        return str(await waits_forever(token))  # the child's own @workflow(timeout=...) applies
    except durable.RunCancelled as exc:
        return f"child cancelled: {exc.reason}"


async def test_a_timed_out_child_raises_run_cancelled_with_the_reason_in_its_parent(runtime: durable.Runtime) -> None:
    """A child run's workflow timeout counts from its start; the parent sees RunCancelled(reason="timeout")."""
    run = await runtime.start(parent_of_slow, "child-never-answered")
    assert await run.result(timeout=20) == "child cancelled: timeout"
    (child,) = await run.children()
    assert child.cancel_reason == "timeout"


def test_bad_timeouts_are_refused_at_definition_and_at_start() -> None:
    """A timeout that is not a positive duration is a ValueError naming it."""
    with pytest.raises(ValueError, match="cannot read workflow timeout 'soon'"):
        durable.workflow(timeout="soon")
    with pytest.raises(ValueError, match="workflow timeout must be positive"):
        durable.workflow(timeout=0)


async def test_start_refuses_a_bad_timeout_before_recording_anything(runtime: durable.Runtime) -> None:
    """start(timeout=-1) raises and creates no run."""
    with pytest.raises(ValueError, match="workflow timeout"):
        await runtime.start(waits_forever, "x", timeout=-1)
    assert await runtime.list_runs() == []
