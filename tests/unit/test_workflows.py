"""Workflows and steps end to end on every store: results, parallelism, timers, replay, errors."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta

import anyio
import pytest

import durable
from durable.testing import check_replay
from tests.helpers import wait_for_status, wait_until

pytestmark = pytest.mark.anyio

calls: dict[str, int] = {}


def bump(key: str) -> int:
    calls[key] = calls.get(key, 0) + 1
    return calls[key]


@durable.step
async def add(a: int, b: int) -> int:
    return a + b


@durable.step
async def double(x: int) -> int:
    return 2 * x


@durable.workflow
async def arithmetic(x: int) -> dict[str, int]:
    a = await add(x, 1)
    b, c = await asyncio.gather(double(a), add(a, 10))
    meta = durable.get_workflow_metadata()
    assert meta.workflow_name == arithmetic.name == "tests.unit.test_workflows:arithmetic"
    return {"a": a, "b": b, "c": c}


async def test_sequential_and_parallel_steps_give_the_result(runtime: durable.Runtime) -> None:
    """A workflow with sequential and gathered steps completes with the computed result."""
    run = await runtime.start(arithmetic, 4)
    assert await run.result(timeout=20) == {"a": 5, "b": 10, "c": 15}
    assert await run.status() == "completed"
    steps = await run.steps()
    assert [s.name for s in steps] == [add.name, double.name, add.name]
    assert all(s.status == "completed" and s.attempts == 1 for s in steps)


@durable.workflow
async def fan_out(n: int) -> list[int]:
    return list(await asyncio.gather(*(double(i) for i in range(n))))


async def test_gather_of_50_steps_replays_identically(runtime: durable.Runtime) -> None:
    """50 parallel steps finish in any order, yet a cold replay of the log gives the same result and no new commands."""
    run = await runtime.start(fan_out, 50)
    result = await run.result(timeout=30)
    assert result == [2 * i for i in range(50)]
    replay = await check_replay(run)
    assert replay.status == "completed"
    assert replay.result == result
    assert replay.new_commands == []


@durable.workflow
async def branchy() -> dict[str, object]:
    values = [durable.random() for _ in range(3)]
    dice = durable.random.randint(1, 6)
    ident = durable.uuid4()
    first = await (double(1) if values[0] < 0.5 else add(1, 1))
    return {"values": values, "dice": dice, "uuid": ident, "first": first, "now": durable.now()}


async def test_random_now_and_uuid_are_the_same_on_replay(runtime: durable.Runtime) -> None:
    """A workflow that branches on durable.random() replays to the same values, uuid and time."""
    run = await runtime.start(branchy)
    result = await run.result(timeout=20)
    assert len(result["values"]) == 3 and 1 <= result["dice"] <= 6
    replay = await check_replay(run)
    assert replay.result == result
    other = await (await runtime.start(branchy)).result(timeout=20)
    assert other["values"] != result["values"]  # seeded per run, not globally


@durable.workflow
async def sleepy() -> list[str]:
    order = []
    t0 = durable.now()
    await durable.sleep("200ms")
    order.append("durable.sleep")
    await asyncio.sleep(0.1)
    order.append("asyncio.sleep")
    await durable.sleep(timedelta(milliseconds=50))
    await durable.sleep(durable.now() - timedelta(seconds=1))  # a deadline in the past: no wait
    elapsed = (durable.now() - t0).total_seconds()
    order.append(f"elapsed>={elapsed >= 0.35}")
    return order


async def test_durable_sleeps_are_recorded_waits(runtime: durable.Runtime) -> None:
    """durable.sleep and asyncio.sleep inside a workflow become wait events and workflow time advances."""
    run = await runtime.start(sleepy)
    assert await run.result(timeout=20) == ["durable.sleep", "asyncio.sleep", "elapsed>=True"]
    kinds = [e.kind for e in await run.events()]
    assert kinds.count("wait_created") == 3 and kinds.count("wait_completed") == 3


@durable.step
async def slow_step(delay: float, value: str) -> str:
    await anyio.sleep(delay)
    return value


@durable.workflow
async def racing() -> dict[str, object]:
    fast = asyncio.ensure_future(slow_step(0.01, "fast"))
    slow = asyncio.ensure_future(slow_step(0.3, "slow"))
    done, _ = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
    first = next(iter(done)).result()
    try:
        timed = await asyncio.wait_for(slow_step(5.0, "never"), timeout=0.2)
    except TimeoutError:
        timed = "timed out"
    async with asyncio.TaskGroup() as tg:
        t1 = tg.create_task(double(3))
        t2 = tg.create_task(double(4))
    results = []
    async with anyio.create_task_group() as atg:

        async def collect(x: int) -> None:
            results.append(await add(x, x))

        for i in range(3):
            atg.start_soon(collect, i)
    await slow
    return {"first": first, "timed": timed, "tg": [t1.result(), t2.result()], "anyio": sorted(results)}


async def test_wait_first_completed_wait_for_and_task_groups(runtime: durable.Runtime) -> None:
    """asyncio.wait, asyncio.wait_for with a durable timeout, TaskGroup and anyio task groups work and replay."""
    run = await runtime.start(racing)
    result = await run.result(timeout=30)
    assert result == {"first": "fast", "timed": "timed out", "tg": [6, 8], "anyio": [0, 2, 4]}
    replay = await check_replay(run)
    assert replay.result == result
    kinds = [e.kind for e in await run.events()]
    assert "wait_created" in kinds  # the wait_for timeout was durable


@durable.step(max_retries=3, retry_delay="10ms")
async def flaky(key: str, failures: int) -> str:
    meta = durable.get_step_metadata()
    if meta.attempt <= failures:
        raise ConnectionError(f"attempt {meta.attempt} failed")
    return f"{meta.idempotency_key}@{meta.attempt}"


@durable.workflow
async def retrying(failures: int) -> str:
    return await flaky("k", failures)


async def test_failing_step_is_retried_with_the_same_step_id(runtime: durable.Runtime) -> None:
    """A step failing twice succeeds on attempt 3 with a step_id stable across attempts."""
    run = await runtime.start(retrying, 2)
    result = await run.result(timeout=20)
    assert result == f"{run.run_id}/step_1@3"
    (step,) = await run.steps()
    assert step.attempts == 3 and step.status == "completed"
    assert result.startswith(f"{run.run_id}/{step.step_id}@")  # the idempotency key is run id / step id
    # Claimed as it was created (the usual case), the step's first attempt starts with its
    # step_created (attempt 1); created unclaimed (a commit that found no free slot), a
    # step_started 1 follows it. Either way each attempt starts once.
    kinds = [(e.kind, e.attempt) for e in await run.events() if e.kind.startswith("step_")]
    first = [("step_created", 1)] if kinds[0] == ("step_created", 1) else [("step_created", None), ("step_started", 1)]
    assert kinds == [*first, ("step_retrying", 1), ("step_started", 2), ("step_retrying", 2),
                     ("step_started", 3), ("step_completed", 3)]
    assert [e.attempt for e in await run.events() if e.starts_attempt] == [1, 2, 3]


@durable.step
async def whoami() -> list[str]:
    meta = durable.get_step_metadata()
    return [meta.step_id, meta.idempotency_key]


@durable.workflow
async def asks_who_it_is() -> list[list[str]]:
    return [await whoami(), await whoami()]


async def test_a_steps_metadata_names_it_as_the_runs_steps_do(runtime: durable.Runtime) -> None:
    """``get_step_metadata().step_id`` is the id ``run.steps()`` and the events show; the key
    unique across runs is ``idempotency_key``, one name per format."""
    run = await runtime.start(asks_who_it_is)
    (first, second) = await run.result(timeout=20)
    ids = [s.step_id for s in await run.steps()]
    assert [first[0], second[0]] == ids == ["step_1", "step_2"]
    assert [first[1], second[1]] == [f"{run.run_id}/step_1", f"{run.run_id}/step_2"]
    assert {e.correlation_id for e in await run.events() if e.kind == "step_completed"} == set(ids)


async def test_exhausted_retries_raise_the_original_error_type(runtime: durable.Runtime) -> None:
    """After max_retries + 1 attempts the step's error reaches the workflow, and the run fails with its type."""
    run = await runtime.start(retrying, 10)
    with pytest.raises(durable.RunFailed) as info:
        await run.result(timeout=20)
    assert info.value.error_type == "ConnectionError"
    assert "attempt 4 failed" in info.value.message
    assert isinstance(info.value.error, ConnectionError)
    assert "flaky" in info.value.traceback
    (step,) = await run.steps()
    assert step.attempts == 4 and step.status == "failed"


class PaymentDeclined(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"declined with code {code}")


@durable.step(max_retries=5, retry_delay="10ms")
async def charge(amount: int) -> str:
    bump("charge")
    if amount > 100:
        raise durable.FatalError(f"amount {amount} over the limit")
    raise PaymentDeclined(51)


@durable.step(retry_delay="10ms")
async def retry_later() -> str:
    if durable.get_step_metadata().attempt == 1:
        raise durable.RetryableError("rate limited", retry_after="150ms")
    return "ok"


@durable.workflow
async def payments() -> dict[str, object]:
    out: dict[str, object] = {}
    try:
        await charge(500)
    except durable.FatalError as exc:
        out["fatal"] = str(exc)
    try:
        await charge(5)
    except PaymentDeclined as exc:
        out["declined"] = exc.code
    t0 = durable.now()
    out["later"] = await retry_later()
    out["waited"] = (durable.now() - t0).total_seconds() >= 0.14
    return out


async def test_fatal_error_stops_at_once_and_errors_keep_their_type(runtime: durable.Runtime) -> None:
    """FatalError fails without retrying; a custom exception reaches the workflow with its attributes; RetryableError sets the delay."""
    calls.clear()
    run = await runtime.start(payments)
    result = await run.result(timeout=30)
    assert result == {"fatal": "amount 500 over the limit", "declined": 51, "later": "ok", "waited": True}
    assert calls["charge"] == 1 + 6


@durable.step(timeout="100ms", max_retries=1, retry_delay="10ms")
async def hangs() -> str:
    await anyio.sleep(10)
    return "never"


@durable.workflow
async def timing_out() -> str:
    try:
        return await hangs()
    except durable.StepTimeout as exc:
        return f"timeout {exc.timeout}"


async def test_step_timeout_cancels_the_attempt_and_counts_as_a_failure(runtime: durable.Runtime) -> None:
    """A step over its timeout is cancelled, retried, then fails with StepTimeout in the workflow."""
    t0 = time.monotonic()
    run = await runtime.start(timing_out)
    assert await run.result(timeout=20) == "timeout 0.1"
    assert time.monotonic() - t0 < 5
    (step,) = await run.steps()
    assert step.attempts == 2 and step.status == "failed"


async def test_idempotency_key_and_run_id(runtime: durable.Runtime) -> None:
    """Starting twice with one idempotency key returns the same run; a caller-chosen run_id is used."""
    first = await runtime.start(arithmetic, 1, idempotency_key="order-7")
    second = await runtime.start(arithmetic, 1, idempotency_key="order-7")
    assert first.run_id == second.run_id
    chosen = await runtime.start(arithmetic, 2, run_id="my-run-1")
    assert chosen.run_id == "my-run-1"
    assert await chosen.result(timeout=20) == {"a": 3, "b": 6, "c": 13}
    runs = await runtime.list_runs(workflow="arithmetic")
    assert {r.run_id for r in runs} >= {first.run_id, "my-run-1"}


async def test_unknown_run_and_workflow_names_give_clear_errors(runtime: durable.Runtime) -> None:
    """get_run of an unknown id raises RunNotFound; starting an unknown name raises WorkflowNotFound."""
    with pytest.raises(durable.RunNotFound, match="nope"):
        await runtime.get_run("nope")
    with pytest.raises(durable.WorkflowNotFound, match="no_such_workflow"):
        await runtime.start("no_such_workflow")


async def test_unserializable_arguments_fail_before_anything_is_written(runtime: durable.Runtime) -> None:
    """A start with an unencodable argument raises SerializationError naming the path, and creates no run."""
    before = len(await runtime.list_runs())
    with socket.socket() as s, pytest.raises(durable.SerializationError, match=r"\['x'\]\[1\]: .*socket"):
        await runtime.start(arithmetic, x=[1, s])
    assert len(await runtime.list_runs()) == before


async def test_steps_run_directly_outside_workflows_and_workflow_apis_refuse() -> None:
    """A step called outside a workflow just runs; durable.sleep outside one raises NotInWorkflowError."""
    assert await add(2, 3) == 5
    with pytest.raises(durable.NotInWorkflowError, match="sleep"):
        await durable.sleep(1)
    with pytest.raises(durable.NotInStepError):
        durable.get_step_metadata()
    with pytest.raises(durable.NotInWorkflowError):
        durable.random()


@durable.workflow(name="long-wait")
async def long_wait() -> str:
    await durable.sleep("1 day")
    return "done"


async def test_cancel_marks_the_run_and_result_raises(runtime: durable.Runtime) -> None:
    """Cancelling a waiting run makes it cancelled; result() raises RunCancelled; cancelling again is harmless."""
    run = await runtime.start(long_wait)
    await wait_for_status(run, "running")
    assert await run.cancel() == "cancelled"
    with pytest.raises(durable.RunCancelled):
        await run.result(timeout=5)
    assert await run.cancel() == "cancelled"
    assert (await run.events())[-1].kind == "run_cancelled"


cancelled_steps: list[str] = []


@durable.step
async def long_running(tag: str) -> str:
    try:
        await anyio.sleep(30)
    except BaseException:
        cancelled_steps.append(tag)
        raise
    return tag


@durable.workflow
async def cancellable(tag: str) -> str:
    hook = durable.create_hook(token=f"cancel-{tag}")
    await durable.get_writable("log").write("started")
    result = await long_running(tag)
    await hook
    return result


async def test_cancel_stops_running_steps_closes_streams_and_disposes_hooks(runtime: durable.Runtime) -> None:
    """run.cancel() cancels the running step through its cancel scope, closes streams and frees hook tokens."""
    run = await runtime.start(cancellable, "c1")
    with anyio.fail_after(10):
        while not [s for s in await run.steps() if s.status == "running"]:
            await anyio.sleep(0.02)
    await run.cancel()
    await wait_until(lambda: "c1" in cancelled_steps, 10)
    with pytest.raises(durable.StreamFailed, match="cancelled"):
        assert [c async for c in run.stream("log")] == ["started"]
    with pytest.raises(durable.HookNotFound):
        await runtime.resume_hook("cancel-c1", "too late")
    assert await run.status() == "cancelled"


@durable.workflow
async def many_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await double(i)
    return total


async def test_a_sequential_run_never_replays_from_the_start(runtime: durable.Runtime) -> None:
    """With the sticky cache, an N-step run is advanced event by event: no cold replay, one commit per step."""
    before = dict(runtime.stats)
    run = await runtime.start(many_steps, 60)
    assert await run.result(timeout=30) == 2 * sum(range(60))
    assert runtime.stats["cold_replays"] == before["cold_replays"]
    assert runtime.stats["speculative_commits"] - before["speculative_commits"] == 61  # start + one per step
