"""``durable.testing.check_determinism`` on users' workflows: what it passes, what it catches, how it says so."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable
import durable.testing
from durable.testing import strategies as ds

EXAMPLES = 25


@durable.step(name="dc.price")
async def price(order: str) -> int:
    return len(order)


@durable.step(name="dc.charge", max_retries=2)
async def charge(order: str, amount: int) -> str:
    return f"charged {amount}"


@dataclass
class Decision:
    approved: bool


decision: durable.HookDefinition[Decision] = durable.define_hook(schema=Decision, name="dc.decision")


@durable.workflow(name="dc.checkout")
async def checkout(order: str) -> list[Any]:
    amount = await price(order)
    hook = decision.create(token=f"approve:{order}")
    try:
        answer = await asyncio.wait_for(hook, timeout=3600)
    except TimeoutError:
        return ["expired", durable.now().isoformat()]
    if not answer.approved:
        return ["rejected"]
    results = await asyncio.gather(charge(order, amount), charge(order, amount + 1), return_exceptions=True)
    return [str(r) for r in results] + [durable.random() < 2, str(durable.uuid4())[:4]]


def test_a_deterministic_workflow_passes() -> None:
    """Steps in parallel, a typed hook raced against its timeout, retries, crashes: nothing to report."""
    durable.testing.check_determinism(
        checkout, hooks={"approve:": st.builds(dict, approved=st.booleans())}, max_examples=EXAMPLES
    )


@durable.workflow(name="dc.parcel")
async def ship_parcel(order: str, parcel: int) -> str:
    return await charge(f"{order}/{parcel}", parcel)


@durable.workflow(name="dc.shipment")
async def shipment(order: str) -> list[str]:
    """Children awaited together, one started and cancelled when it takes longer than a day."""
    shipped = await asyncio.gather(ship_parcel(order, 1), ship_parcel(order, 2), return_exceptions=True)
    slow = await durable.start_child(ship_parcel, order, 3)
    try:
        last = await asyncio.wait_for(asyncio.shield(slow), timeout=86_400)
    except TimeoutError:
        slow.cancel()
        last = "gave up"
    except (durable.RunCancelled, durable.ChildFailed, durable.FatalError) as exc:
        last = type(exc).__name__
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in shipped] + [last]


@durable.workflow(name="dc.shipment_clock")
async def shipment_by_clock(order: str) -> str:
    shipped: str = await ship_parcel(order, int(time.time()) % 7)
    return shipped


def test_child_workflows_end_in_any_order_and_way_and_are_checked_like_steps() -> None:
    """Children complete (with values of their return annotation), fail or are cancelled, before or after
    the parent awaits them; a parent that passes the wall clock to a child is caught at that child."""
    durable.testing.check_determinism(shipment, max_examples=EXAMPLES)
    with pytest.raises(durable.testing.NotDeterministic) as info:
        durable.testing.check_determinism(shipment_by_clock, max_examples=EXAMPLES)
    assert "first child run of 'dc.parcel'" in str(info.value)


def test_a_generated_run_of_children_covers_each_way_a_child_ends() -> None:
    """Over generated runs, children complete, fail and are cancelled, and the parent cancels a slow one."""
    seen: set[str] = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(run=ds.runs(shipment))
    def collect(run: ds.SimulatedRun) -> None:
        ds.check(run)
        seen.update(e.kind for e in run.events if e.kind.startswith("child_"))
        seen.update("parent cancelled" for line in run.schedule if "cancelling child" in line)

    collect()
    assert seen >= {"child_started", "child_completed", "child_failed", "child_cancelled", "parent cancelled"}, seen


@durable.workflow(name="dc.clock")
async def stamped(order: str) -> str:
    return await charge(order, int(time.time()))


@durable.workflow(name="dc.global_random")
async def coin(order: str) -> str:
    return await charge(order, 1 if random.random() < 0.5 else 2)


@durable.workflow(name="dc.now")
async def dated(order: str) -> str:
    return await charge(order, datetime.now().microsecond)


@durable.workflow(name="dc.uuid")
async def keyed(order: str) -> str:
    return await charge(str(uuid.uuid4()), 1)


@pytest.mark.parametrize("workflow", [stamped, coin, dated, keyed], ids=["time.time", "random.random", "datetime.now", "uuid4"])
def test_wall_clock_and_global_randomness_are_caught_naming_the_command(workflow: durable.Workflow[Any, Any]) -> None:
    """The same schedule run with another wall clock and random seed issues another command: the report
    names both versions of it, says what to use instead, and prints the schedule."""
    with pytest.raises(durable.testing.NotDeterministic) as info:
        durable.testing.check_determinism(workflow, max_examples=EXAMPLES)
    message = str(info.value)
    assert "issue other commands at invocation 1: first step 'dc.charge'" in message
    assert "use durable.now(), durable.random() and durable.uuid4()" in message
    assert "schedule:\n    1. invocation 1 (the run starts): step 'dc.charge'" in message


seen_orders: set[str] = set()


@durable.workflow(name="dc.memo")
async def memoised(order: str) -> str:
    if order in seen_orders:  # process state: a replay on another worker, or after a crash, takes the other branch
        return "already charged"
    seen_orders.add(order)
    return await charge(order, 1)


def test_state_kept_outside_the_workflow_is_caught() -> None:
    """A workflow that reads process state behaves otherwise when run again with the same choices: the
    report says it depends on state outside the run."""
    seen_orders.clear()
    with pytest.raises(durable.testing.NotDeterministic, match="depends on state outside the run"):
        durable.testing.check_determinism(memoised, max_examples=EXAMPLES)


class Money:
    """A class whose codec methods lose the currency: it does not survive being recorded."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency

    def __durable_serialize__(self) -> dict[str, int]:
        return {"cents": self.cents}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, int]) -> Money:
        return cls(data["cents"], "EUR")


@durable.step(name="dc.total")
async def total(order: str) -> Money:
    return Money(100, "EUR")


@durable.workflow(name="dc.money")
async def billed(order: str) -> int:
    return (await total(order)).cents


def test_a_value_that_does_not_round_trip_the_codec_is_named() -> None:
    """A step result whose recorded form loses something is reported with its value and what comes back."""
    money = st.builds(Money, st.integers(0, 10), st.sampled_from(["USD", "EUR"]))
    with pytest.raises(durable.testing.NotDeterministic, match=r"the result of step 'dc\.total' does not survive the codec"):
        durable.testing.check_determinism(billed, steps={total: money}, failures=False, max_examples=EXAMPLES)


@durable.step(name="dc.opaque")
async def opaque(order: str) -> object:
    return object()


@durable.workflow(name="dc.opaque_flow")
async def uses_opaque(order: str) -> str:
    await opaque(order)
    return "done"


def test_a_value_the_codec_cannot_record_is_named_and_missing_annotations_ask_for_strategies() -> None:
    """An unencodable step result is "cannot be recorded"; a workflow parameter or step without an
    annotation is TypeError saying which strategy to pass."""
    with pytest.raises(durable.testing.NotDeterministic, match=r"the result of step 'dc\.opaque' cannot be recorded"):
        durable.testing.check_determinism(uses_opaque, steps={opaque: st.builds(object)}, failures=False, max_examples=5)

    @durable.step(name="dc.bare")
    async def bare(x):  # type: ignore[no-untyped-def]
        return x

    async def untyped(order):  # type: ignore[no-untyped-def]
        return await bare(order)

    wf: durable.Workflow[Any, Any] = durable.Workflow(untyped, name="dc.untyped", serializer="json")
    with pytest.raises(TypeError, match=r"parameter 'order' of workflow 'dc\.untyped' has no annotation"):
        durable.testing.check_determinism(wf)

    async def typed(order: str) -> Any:
        return await bare(order)

    with pytest.raises(TypeError, match=r"step 'dc\.bare' has no return annotation"):
        durable.testing.check_determinism(durable.Workflow(typed, name="dc.typed", serializer="json"), max_examples=3)


@settings(max_examples=EXAMPLES, deadline=None)
@given(run=ds.runs(checkout, hooks={"approve:": st.builds(dict, approved=st.booleans())}, crashes=False))
def test_the_pieces_compose_into_a_property_of_ones_own(run: ds.SimulatedRun) -> None:
    """``strategies.runs`` gives simulated runs to assert on; ``strategies.check`` runs the replay checks on one."""
    ds.check(run)
    charges = [e for e in run.events if e.kind == "step_created" and e.name == "dc.charge"]
    assert len(charges) in (0, 2)  # both charges or none, whatever the schedule
    assert run.schedule[0].startswith("invocation 1 (the run starts)")
