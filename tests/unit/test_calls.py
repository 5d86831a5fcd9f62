"""Calls are recorded by their bound arguments, checked against the signature before anything is recorded,
and a step runs the code its own run called (closures, methods, steps passed as values)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

import durable
import durable.testing
from durable._core import codec

pytestmark = pytest.mark.anyio


@durable.step
async def calls_greet(name: str, punct: str = "!") -> str:
    return f"hello {name}{punct}"


@durable.workflow
async def calls_spellings(name: str) -> list[str]:
    return [await calls_greet(name), await calls_greet(name=name), await calls_greet(name, "!")]


async def test_spellings_of_one_call_are_one_recorded_call(runtime: durable.Runtime) -> None:
    """greet("ann"), greet(name="ann") and greet("ann", "!") record the same arguments and replay cleanly."""
    run = await runtime.start(calls_spellings, "ann")
    assert await run.result(timeout=20) == ["hello ann!"] * 3
    created = [e.data for e in await run.events() if e.kind == "step_created"]
    assert len(set(created)) == 1 and codec.decode(created[0] or b"") == {"args": ["ann", "!"], "kwargs": {}}
    assert (await durable.testing.check_replay(run)).status == "completed"


@durable.workflow
async def calls_changed_default(name: str) -> str:
    return await calls_greet(name)


async def test_a_changed_default_is_still_caught_on_replay(runtime: durable.Runtime) -> None:
    """A log recorded with the old default does not replay with a new one (NonDeterminismError)."""
    run = await runtime.start(calls_changed_default, "bo")
    await run.result(timeout=20)
    events = await run.events()

    @durable.step(name=calls_greet.name)
    async def changed(name: str, punct: str = "?") -> str:
        return ""

    @durable.workflow(name="calls.changed")
    async def replayed(name: str) -> str:
        return await changed(name)

    try:
        with pytest.raises(durable.NonDeterminismError):
            durable.testing.replay_events(replayed, events)
    finally:
        durable._workflow.step.steps[calls_greet.name] = calls_greet  # type: ignore[attr-defined]


@durable.workflow
async def calls_start_target(order: str, amount: int) -> str:
    return f"{order}={amount}"


async def test_start_refuses_arguments_that_do_not_fit_before_recording_anything(runtime: durable.Runtime) -> None:
    """TypeError naming the workflow; no run is created."""
    before = len(await runtime.list_runs(workflow=calls_start_target.name))
    with pytest.raises(TypeError, match=r"calls_start_target.*amount"):
        await runtime.start(calls_start_target, "o1")
    with pytest.raises(TypeError, match="unexpected keyword"):
        await runtime.start(calls_start_target, "o1", 1, colour="red")
    assert len(await runtime.list_runs(workflow=calls_start_target.name)) == before
    same = await runtime.start(calls_start_target, "o2", amount=5, idempotency_key="calls-o2")
    assert await runtime.start(calls_start_target, "o2", 5, idempotency_key="calls-o2") == same


@durable.workflow
async def calls_bad_step_call() -> str:
    try:
        await calls_greet()  # type: ignore[call-arg]  # on purpose: missing its argument
    except TypeError as exc:
        return f"caught: {exc}"
    return "not raised"


async def test_a_step_call_that_does_not_fit_raises_type_error_in_the_workflow(runtime: durable.Runtime) -> None:
    """Catchable where it is called; no step is recorded or retried."""
    run = await runtime.start(calls_bad_step_call)
    result = await run.result(timeout=20)
    assert result.startswith("caught: step") and "name" in result
    assert await run.steps() == []


# -- the code a step runs -------------------------------------------------------------------------


@durable.workflow
async def calls_closure(tag: str, delay: float) -> str:
    @durable.step
    async def tagged() -> str:
        await asyncio.sleep(delay)
        return tag

    return await tagged()


async def test_steps_defined_in_the_workflow_body_run_their_own_runs_closure(runtime: durable.Runtime) -> None:
    """Two overlapping runs with different closure values each get their own value back."""
    slow = await runtime.start(calls_closure, "first", 0.3)
    fast = await runtime.start(calls_closure, "second", 0.0)
    assert (await slow.result(timeout=20), await fast.result(timeout=20)) == ("first", "second")


async def test_a_closure_step_recovered_by_another_runtime_rebuilds_its_closure(sqlite_url: str) -> None:
    """Without the live instance (a new process, an eviction), the closure is rebuilt by replaying the run."""
    async with durable.Runtime(sqlite_url, execute_steps=False) as client:
        run = await client.start(calls_closure, "rebuilt", 0.0)
        await asyncio.sleep(0.2)  # its step is created, not run
    async with durable.Runtime(sqlite_url, sticky_cache_size=0) as rt:
        assert await (await rt.get_run(run.run_id)).result(timeout=20) == "rebuilt"


@dataclass
class Account:
    owner: str

    @durable.step
    async def describe(self, suffix: str) -> str:
        return f"{self.owner}{suffix}"

    @durable.step
    @classmethod
    async def kind(cls, n: int) -> str:
        return f"{cls.__name__}x{n}"


@durable.step
async def calls_apply(fn: Callable[[int], Awaitable[str]], n: int) -> str:  # a step passed as a value
    return await fn(n)


@durable.workflow
async def calls_methods(owner: str) -> list[str]:
    account = Account(owner)
    return [await account.describe("!"), await Account.kind(2), await calls_apply(Account.kind, 3)]


async def test_steps_bind_self_and_cls_and_travel_as_values(runtime: durable.Runtime) -> None:
    """A method step binds its instance, a classmethod step its class; a step passed to a step is a reference by name."""
    run = await runtime.start(calls_methods, "ann")
    assert await run.result(timeout=20) == ["ann!", "Accountx2", "Accountx3"]
    assert (await durable.testing.check_replay(run)).status == "completed"


def test_a_step_round_trips_the_codec_by_name() -> None:
    """Encoded, a step is its name; decoded in a process that defines it, the same step."""
    data = codec.encode({"fn": calls_greet})
    assert b"calls_greet" in data and codec.decode(data)["fn"] is calls_greet
