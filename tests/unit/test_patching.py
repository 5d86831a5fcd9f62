"""``durable.patched`` / ``deprecate_patch``: workflow code changed while runs are in flight.

Deploy tests stop a runtime running the old code and start one running the new code over the
same store (``deploy_store``: every backend); the pure tests replay logs with the engine alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import durable
from durable._core import codec as _codec
from durable._core.events import Event, EventKind
from durable._workflow.workflow import Workflow
from durable.stores._base import Store
from durable.testing import replay_events
from tests.helpers import encode_args, wait_for_hook

pytestmark = pytest.mark.anyio
NAME = "patching.checkout"


@durable.step(name="patching.fee")
async def fee(amount: int) -> int:
    return amount // 10


@durable.step(name="patching.fee_v2")
async def fee_v2(amount: int) -> int:
    return amount // 5


@durable.step(name="patching.audit")
async def audit(note: str) -> str:
    return f"audited {note}"


def version(fn: Callable[..., Awaitable[Any]]) -> Workflow[Any, Any]:
    """One deployed version of the workflow: every version has the same name, as after an edit."""
    return Workflow(fn, name=NAME, serializer="json")


async def _fee_then_wait_v1(order: str, amount: int) -> list[Any]:
    charged = await fee(amount)
    await durable.create_hook(token=f"pay:{order}")
    return ["v1", charged]


async def _fee_then_wait_v2(order: str, amount: int) -> list[Any]:
    if durable.patched("fee-v2"):
        charged = await fee_v2(amount)
    else:
        charged = await fee(amount)
    await durable.create_hook(token=f"pay:{order}")
    return ["v2", charged]


async def _run_to_end(store: str | Store, wf: Workflow[Any, Any], run_id: str, token: str) -> Any:
    async with durable.Runtime(store, workflows=[wf], poll_interval=0.05) as rt:
        await wait_for_hook(rt, token)
        await rt.resume_hook(token, "paid")
        return await (await rt.get_run(run_id)).result(timeout=20)


async def _start_and_wait_for(store: str | Store, wf: Workflow[Any, Any], order: str) -> str:
    async with durable.Runtime(store, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, order, 100)
        await wait_for_hook(rt, f"pay:{order}")
        return run.run_id


async def test_runs_in_flight_keep_the_old_branch_and_new_runs_take_the_patch(deploy_store: str | Store) -> None:
    """A run recorded before the patch finishes on the old branch under the new code; a new run
    takes the patched branch and records the marker at its position."""
    old = await _start_and_wait_for(deploy_store, version(_fee_then_wait_v1), "A")
    v2 = version(_fee_then_wait_v2)
    assert await _run_to_end(deploy_store, v2, old, "pay:A") == ["v2", 10]  # fee() as recorded: amount // 10
    new = await _start_and_wait_for(deploy_store, v2, "B")
    assert await _run_to_end(deploy_store, v2, new, "pay:B") == ["v2", 20]  # fee_v2(): amount // 5
    async with durable.Runtime(deploy_store, workflows=[v2]) as rt:
        old_events = await (await rt.get_run(old)).events()
        new_events = await (await rt.get_run(new)).events()
    assert EventKind.PATCH_MARKED not in [e.kind for e in old_events]
    markers = [(e.correlation_id, e.name) for e in new_events if e.kind == EventKind.PATCH_MARKED]
    assert markers == [("patch_1", "fee-v2")]
    assert [e.name for e in new_events if e.kind == EventKind.STEP_CREATED] == ["patching.fee_v2"]


async def _wait_then_fee_v1(order: str, amount: int) -> list[Any]:
    await durable.create_hook(token=f"pay:{order}")
    return ["v1", await fee(amount)]


async def _wait_then_fee_v2(order: str, amount: int) -> list[Any]:
    await durable.create_hook(token=f"pay:{order}")
    if durable.patched("fee-v2"):
        return ["v2", await fee_v2(amount)]
    return ["v2", await fee(amount)]


async def test_a_run_reaching_the_patch_after_the_deploy_takes_the_patched_branch(deploy_store: str | Store) -> None:
    """A run recorded before the patch but suspended before the patched code runs the new code from there."""
    old = await _start_and_wait_for(deploy_store, version(_wait_then_fee_v1), "C")
    assert await _run_to_end(deploy_store, version(_wait_then_fee_v2), old, "pay:C") == ["v2", 20]


async def _patched_twice(order: str, amount: int) -> int:
    first = durable.patched("fee-v2")
    second = durable.patched("fee-v2")
    return await fee(amount) if first and second else 0


async def test_the_same_patch_id_twice_in_one_run_fails_it_with_non_determinism(store_url: str) -> None:
    """A second ``patched()`` with one id fails the run with NonDeterminismError saying so."""
    wf = version(_patched_twice)
    async with durable.Runtime(store_url, workflows=[wf]) as rt:
        run = await rt.start(wf, "D", 100)
        with pytest.raises(durable.RunFailed) as info:
            await run.result(timeout=20)
    assert info.value.error_type == "durable.NonDeterminismError"
    assert "patched('fee-v2') a second time" in info.value.message


async def test_a_recorded_marker_the_code_no_longer_checks_is_non_determinism(deploy_store: str | Store) -> None:
    """Removing ``patched()`` while a run that recorded its marker is in flight fails that run,
    naming the marker, instead of replaying it down the wrong branch."""
    run_id = await _start_and_wait_for(deploy_store, version(_fee_then_wait_v2), "E")

    async def removed(order: str, amount: int) -> list[Any]:
        charged = await fee_v2(amount)
        await durable.create_hook(token=f"pay:{order}")
        return ["v3", charged]

    async with durable.Runtime(deploy_store, workflows=[version(removed)], poll_interval=0.05) as rt:
        await rt.resume_hook("pay:E", "paid")
        with pytest.raises(durable.RunFailed) as info:
            await (await rt.get_run(run_id)).result(timeout=20)
    assert info.value.error_type == "durable.NonDeterminismError"
    assert "patch marker 'fee-v2'" in info.value.message and "command #1" in info.value.message


async def _deprecated(order: str, amount: int) -> list[Any]:
    durable.deprecate_patch("fee-v2")
    charged = await fee_v2(amount)
    await durable.create_hook(token=f"pay:{order}")
    return ["v3", charged]


async def test_deprecate_patch_replays_runs_with_the_marker_and_still_records_it(deploy_store: str | Store) -> None:
    """After the old runs are gone: runs that recorded the marker replay under ``deprecate_patch``,
    and new runs record it too (a worker still on the ``patched()`` code takes the new branch for them)."""
    patched_run = await _start_and_wait_for(deploy_store, version(_fee_then_wait_v2), "F")
    v3 = version(_deprecated)
    assert await _run_to_end(deploy_store, v3, patched_run, "pay:F") == ["v3", 20]
    new = await _start_and_wait_for(deploy_store, v3, "G")
    # A worker still running the patched() version finishes the run deprecate_patch started.
    assert await _run_to_end(deploy_store, version(_fee_then_wait_v2), new, "pay:G") == ["v2", 20]


# -- the engine alone -------------------------------------------------------------------------------


def _log(*entries: tuple[str, str | None, str | None, bytes | None], ended: bool = False) -> list[Event]:
    events = [Event("run_p", 1, EventKind.RUN_CREATED, None, 1.0, NAME, encode_args()), Event("run_p", 2, EventKind.RUN_STARTED, None, 1.0)]
    for kind, corr, name, data in entries:
        events.append(Event("run_p", len(events) + 1, kind, corr, 2.0, name, data))
    if ended:
        events.append(Event("run_p", len(events) + 1, EventKind.RUN_COMPLETED, None, 3.0, None, _codec.encode(None)))
    return events


def test_a_position_left_empty_in_its_own_slice_is_not_the_frontier() -> None:
    """A hook created and disposed in one slice leaves its position unrecorded; a ``patched()``
    there, with records after it, belongs to a run recorded before the patch: False."""

    async def new_code() -> list[Any]:
        if durable.patched("p"):
            return ["new", await audit("x")]
        durable.create_hook(token="t").dispose()  # position 1: issued and undone in one slice
        return ["old", await audit("y")]

    log = _log((EventKind.STEP_CREATED, "step_2", "patching.audit", encode_args("y")),
               (EventKind.STEP_COMPLETED, "step_2", None, _codec.encode("audited y")))
    assert replay_events(version(new_code), log).result == ["old", "audited y"]


def test_a_patch_after_the_last_command_of_a_finished_run_keeps_the_old_branch() -> None:
    """A complete history (with its terminal event) is all recorded: a patch past its last command
    is old code for it, so replaying the finished run reproduces it instead of issuing new commands."""

    async def new_code() -> str:
        await audit("x")
        if durable.patched("tail"):
            await audit("extra")
            return "new"
        return "old"

    entries = ((EventKind.STEP_CREATED, "step_1", "patching.audit", encode_args("x")),
               (EventKind.STEP_COMPLETED, "step_1", None, _codec.encode("audited x")))
    finished = replay_events(version(new_code), _log(*entries, ended=True))
    assert (finished.status, finished.result, finished.new_commands) == ("completed", "old", [])
    suspended = replay_events(version(new_code), _log(*entries))  # still running: it continues on the patch
    assert suspended.status == "suspended" and [type(c).__name__ for c in suspended.new_commands] == ["MarkPatch", "ScheduleStep"]


def test_patches_in_concurrent_branches_replay_at_their_positions() -> None:
    """``patched()`` in gathered branches: the markers take the positions the branches reached them at,
    and an old log (recorded before both patches) replays both old branches."""

    async def branch(tag: str) -> str:
        first = await audit(tag)
        if durable.patched(f"p-{tag}"):
            return "new " + await audit(tag + "!")
        return "old " + first

    async def new_code() -> list[str]:
        return list(await asyncio.gather(branch("a"), branch("b")))

    wf = version(new_code)
    old = _log(
        (EventKind.STEP_CREATED, "step_1", "patching.audit", encode_args("a")),
        (EventKind.STEP_CREATED, "step_2", "patching.audit", encode_args("b")),
        (EventKind.STEP_COMPLETED, "step_2", None, _codec.encode("audited b")),
        (EventKind.STEP_COMPLETED, "step_1", None, _codec.encode("audited a")),
    )
    fresh = replay_events(wf, old)  # still running: both branches reach their patches live
    assert [(type(c).__name__, c.correlation_id) for c in fresh.new_commands] == [
        ("MarkPatch", "patch_3"), ("ScheduleStep", "step_4"), ("MarkPatch", "patch_5"), ("ScheduleStep", "step_6"),
    ]
    assert replay_events(wf, [*old, Event("run_p", 7, EventKind.RUN_COMPLETED, None, 3.0)]).result == ["old audited a", "old audited b"]


def test_patch_ids_are_checked_and_patched_works_only_in_workflows() -> None:
    """An empty or non-text patch id is ValueError; outside workflow code ``patched`` is NotInWorkflowError."""
    with pytest.raises(durable.NotInWorkflowError):
        durable.patched("fee-v2")

    async def bad() -> None:
        durable.patched("")

    result = replay_events(version(bad), _log())
    assert isinstance(result.error, ValueError) and "patch id" in str(result.error)


async def test_patched_code_finishes_in_a_real_runtime_with_durable_waits(store_url: str) -> None:
    """A sanity check of the whole path: markers commit with steps and timers in one invocation."""

    async def flow() -> list[Any]:
        out: list[Any] = []
        if durable.patched("a"):
            out.append(await audit("a"))
        await durable.sleep(0.01)
        if durable.patched("b"):
            out.append(await audit("b"))
        return out

    wf = version(flow)
    async with durable.Runtime(store_url, workflows=[wf]) as rt:
        run = await rt.start(wf)
        with anyio.fail_after(20):
            assert await run.result() == ["audited a", "audited b"]
        kinds = [(e.kind, e.correlation_id) for e in await run.events() if e.kind in ("patch_marked", "wait_created")]
    assert kinds == [("patch_marked", "patch_1"), ("wait_created", "wait_3"), ("patch_marked", "patch_4")]
