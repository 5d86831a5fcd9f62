"""``durable.testing.TestRuntime``: virtual time (autojump and by hand) and step fakes, on a real runtime."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import durable
from durable._workflow.workflow import Workflow
from durable.testing import TestRuntime

pytestmark = pytest.mark.anyio
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
calls: list[str] = []


@durable.step(name="trt.remind", max_retries=3, retry_delay="1h", max_retry_delay="1 day")
async def remind(name: str) -> str:
    calls.append(name)
    return f"reminded {name}"


async def _reminder(name: str) -> list[Any]:
    first = durable.now()
    await durable.sleep("3 days")
    after_sleep = durable.now()
    hook = durable.create_hook(token=f"trt:{name}")
    try:
        answer = await asyncio.wait_for(hook, timeout=3600)
    except TimeoutError:
        answer = "no answer"
    return [first.isoformat(), after_sleep.isoformat(), answer, await remind(name)]


def flow(fn: Any, name: str = "trt.reminder") -> Workflow[Any, Any]:
    return Workflow(fn, name=name, serializer="json")


@pytest.fixture(autouse=True)
def _clean() -> None:
    calls.clear()


async def test_a_three_day_sleep_and_a_timeout_pass_in_virtual_time() -> None:
    """With autojump the clock jumps to each deadline once the runtime only waits: the sleep ends three
    days later exactly, the hook's one-hour timeout fires, ``durable.now()`` follows the clock."""
    wf = flow(_reminder)
    async with TestRuntime(workflows=[wf], start=START) as rt:
        result = await rt.run((await rt.start(wf, "ann")).run_id).result(timeout=20)
        assert rt.clock.jumps >= 2 and rt.clock.now() >= START + timedelta(days=3, hours=1)
    assert result == [START.isoformat(), (START + timedelta(days=3)).isoformat(), "no answer", "reminded ann"]


async def test_without_autojump_time_moves_only_when_advanced() -> None:
    """``autojump=False``: the run waits until ``clock.advance`` passes its deadline; a payload sent
    before the hook's timeout wins the race."""
    wf = flow(_reminder)
    async with TestRuntime(workflows=[wf], start=START, autojump=False) as rt:
        run = await rt.start(wf, "bob")
        await rt.clock.advance("2 days 23h")
        assert await rt.store.get_hook("trt:bob") is None  # still asleep
        await rt.clock.advance("1h")
        assert (await rt.store.get_hook("trt:bob")) is not None
        await rt.clock.advance("59 minutes")
        await rt.resume_hook("trt:bob", "yes")
        await rt.clock.settle()
        assert await run.result(timeout=20) == [
            START.isoformat(), (START + timedelta(days=3)).isoformat(), "yes", "reminded bob",
        ]
        assert rt.clock.jumps == 0 and rt.clock.now() == START + timedelta(days=3, minutes=59)


async def test_retry_back_offs_are_virtual() -> None:
    """A step retried with one-hour back-offs finishes at once in virtual time, its attempts an hour
    or more apart (half that with the jitter) in the recorded times."""
    attempts: list[int] = []

    @durable.step(name="trt.flaky", max_retries=3, retry_delay="1h", max_retry_delay="1 day")
    async def flaky(value: int) -> int:
        attempts.append(durable.get_step_metadata().attempt)
        if len(attempts) % 3:
            raise durable.RetryableError("not yet")
        return value * 2

    async def doubled(value: int) -> list[int]:
        return [await flaky(value), await flaky(value + 1)]

    wf = flow(doubled, "trt.doubled")
    async with TestRuntime(workflows=[wf]) as rt:
        run = await rt.start(wf, 5)
        assert await run.result(timeout=20) == [10, 12]
        started = [e.created_at for e in await run.events() if e.starts_attempt]
    assert attempts == [1, 2, 3, 1, 2, 3]
    assert [round(b - a) >= 1800 for a, b in itertools.pairwise(started)] == [True, True, False, True, True]


async def _racing(name: str) -> list[Any]:
    out: list[Any] = []
    await durable.sleep(0.05)
    try:
        out.append(await asyncio.wait_for(durable.create_hook(token=f"race:{name}"), 0.05))
    except TimeoutError:
        out.append("timed out")
    out.append(await remind(name))
    out.append(await asyncio.wait_for(remind(name + "!"), 60))  # the step beats its timer
    return out


async def test_a_workflow_gives_the_same_result_and_history_as_on_a_real_runtime() -> None:
    """Sleeps, a hook timeout and a step raced against a timer: the same result, the same events."""
    wf = flow(_racing, "trt.racing")
    async with durable.Runtime("memory://", workflows=[wf]) as real:
        run = await real.start(wf, "fe")
        expected = await run.result(timeout=20)
        real_kinds = [e.kind for e in await run.events()]
    async with TestRuntime(workflows=[wf]) as rt:
        run = await rt.start(wf, "fe")
        assert await run.result(timeout=20) == expected == ["timed out", "reminded fe", "reminded fe!"]
        assert [e.kind for e in await run.events()] == real_kinds


async def test_replace_step_runs_the_fake_with_the_same_recording_retries_and_metadata() -> None:
    """The fake replaces the body in this runtime only: its value is recorded as the step's; a
    RetryableError from it is retried, a FatalError fails the step; metadata works inside it; the
    context-manager form restores the real body."""
    seen: list[tuple[str, int]] = []

    async def fake(name: str) -> str:
        meta = durable.get_step_metadata()
        seen.append((name, meta.attempt))
        if meta.attempt == 1:
            raise durable.RetryableError("flaky fake", retry_after=5)
        return f"faked {name}"

    async def once(name: str) -> str:
        return await remind(name)

    wf = flow(once, "trt.once")
    async with TestRuntime(workflows=[wf]) as rt:
        with rt.replace_step(remind, fake):
            run = await rt.start(wf, "cy")
            assert await run.result(timeout=20) == "faked cy"
        assert seen == [("cy", 1), ("cy", 2)] and calls == []
        kinds = [(e.kind, e.attempt) for e in await run.events() if e.kind.startswith("step_")]
        assert kinds == [("step_created", 1), ("step_retrying", 1), ("step_started", 2), ("step_completed", 2)]
        assert await rt.run((await rt.start(wf, "di")).run_id).result(timeout=20) == "reminded di"  # restored

        def fatal(name: str) -> str:  # a plain function works too
            raise durable.FatalError(f"no {name}")

        rt.replace_step(remind, fatal)
        with pytest.raises(durable.RunFailed, match="no ed"):
            await (await rt.start(wf, "ed")).result(timeout=20)
        with pytest.raises(TypeError, match=r"@durable\.step"):
            rt.replace_step(once, fake)  # type: ignore[arg-type]  # a coroutine function, not a step


async def test_the_clock_is_used_inside_its_runtime_and_only_forward() -> None:
    """``advance`` outside the runtime is RuntimeError; a negative duration is ValueError; a naive start is refused."""
    rt = TestRuntime()
    with pytest.raises(RuntimeError, match="inside"):
        await rt.clock.advance("1s")
    async with rt:
        with pytest.raises(ValueError, match="zero or positive"):
            await rt.clock.advance(-1)
    with pytest.raises(ValueError, match="aware datetime"):
        TestRuntime(start=datetime(2025, 1, 1))


def test_importing_durable_testing_does_not_import_hypothesis() -> None:
    """Hypothesis is a test dependency: ``import durable`` never imports durable.testing, and
    ``import durable.testing`` imports hypothesis only when check_determinism or strategies is used."""
    code = (
        "import sys, durable; assert 'durable.testing' not in sys.modules; "
        "import durable.testing; assert 'hypothesis' not in sys.modules, 'imported'; "
        "durable.testing.strategies; assert 'hypothesis' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
