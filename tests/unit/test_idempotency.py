"""Idempotent starts: one idempotency key (or caller-chosen run id) names one call, never a different one."""

from __future__ import annotations

import pytest

import durable

pytestmark = pytest.mark.anyio


@durable.workflow
async def idem_charge(order: str, amount: int) -> str:
    return f"{order}:{amount}"


@durable.workflow
async def idem_other(order: str, amount: int) -> str:
    return order


async def test_the_same_call_with_the_same_key_returns_the_existing_run(runtime: durable.Runtime) -> None:
    """Repeating a start with its key returns the run the first start made (and its result)."""
    first = await runtime.start(idem_charge, "A-1", 42, idempotency_key="order-A-1")
    again = await runtime.start(idem_charge, "A-1", 42, idempotency_key="order-A-1")
    assert again == first
    assert await again.result(timeout=20) == "A-1:42"


async def test_a_key_reused_with_other_arguments_is_refused_naming_the_key(runtime: durable.Runtime) -> None:
    """Other arguments under a used key raise RunConflict (not the old run, not its old failure); nothing is recorded."""
    first = await runtime.start(idem_charge, "A-2", 42, idempotency_key="order-A-2")
    with pytest.raises(durable.RunConflict) as caught:
        await runtime.start(idem_charge, "A-2", 43, idempotency_key="order-A-2")
    assert caught.value.key == "order-A-2" and caught.value.other_arguments
    assert "order-A-2" in str(caught.value) and "other arguments" in str(caught.value)
    with pytest.raises(durable.RunConflict):
        await runtime.start(idem_charge, "A-2", amount=43, idempotency_key="order-A-2")
    runs = await runtime.list_runs(workflow=idem_charge.name)
    assert [r.run_id for r in runs if r.idempotency_key == "order-A-2"] == [first.run_id]
    assert await first.result(timeout=20) == "A-2:42"


async def test_a_key_reused_for_another_workflow_is_refused(runtime: durable.Runtime) -> None:
    """A key names one call of one workflow."""
    await runtime.start(idem_charge, "A-3", 1, idempotency_key="order-A-3")
    with pytest.raises(durable.RunConflict) as caught:
        await runtime.start(idem_other, "A-3", 1, idempotency_key="order-A-3")
    assert not caught.value.other_arguments


async def test_a_run_id_reused_with_other_arguments_is_refused(runtime: durable.Runtime) -> None:
    """A caller-chosen run id is a key too."""
    await runtime.start(idem_charge, "A-4", 1, run_id="run-A-4")
    assert (await runtime.start(idem_charge, "A-4", 1, run_id="run-A-4")).run_id == "run-A-4"
    with pytest.raises(durable.RunConflict):
        await runtime.start(idem_charge, "A-4", 2, run_id="run-A-4")
