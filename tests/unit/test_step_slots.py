"""Step slots (``max_concurrent_steps``): a finished step hands its slot to its successor, the bound
holds, every slot comes back, and a chain that never ends still lets queued steps through."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest

import durable
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio

STORES = ["memory", "sqlite-full"]


def url_for(kind: str, tmp_path: Path) -> str:
    return "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'slots.db'}"


@durable.step(name="slots.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="slots.chain")
async def chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


@pytest.mark.parametrize("kind", STORES)
async def test_a_finished_step_hands_its_slot_to_its_successor(kind: str, tmp_path: Path) -> None:
    """With one slot, held by the step that just finished, each successor is still claimed in that step's commit."""
    async with durable.Runtime(url_for(kind, tmp_path), max_concurrent_steps=1, workflows=[chain]) as rt:
        assert await (await rt.start(chain, 6)).result(timeout=10) == 15
        assert rt.stats["unclaimed_successors"] == 0
        assert rt.stats["speculative_commits"] == 7  # the start, then one commit per step: none stored alone
        await wait_until(lambda: rt.slots.free == 1, timeout=10)


running = {"now": 0, "max": 0}


@durable.step(name="slots.occupy")
async def occupy(i: int) -> int:
    running["now"] += 1
    running["max"] = max(running["max"], running["now"])
    try:
        await anyio.sleep(0.002)
    finally:
        running["now"] -= 1
    return i


@durable.workflow(name="slots.mixed")
async def mixed(n: int) -> int:
    total = 0
    for i in range(n):
        total += await occupy(i)
        total += sum(await asyncio.gather(occupy(i), occupy(i), occupy(i)))
    return total


@pytest.mark.parametrize("kind", STORES)
async def test_handing_slots_on_keeps_the_bound_and_returns_every_slot(kind: str, tmp_path: Path) -> None:
    """Runs of sequential steps and gathers, more than the slots, never run more steps at once than the bound, and every slot is free at the end."""
    running.update(now=0, max=0)
    async with durable.Runtime(url_for(kind, tmp_path), max_concurrent_steps=2, workflows=[mixed]) as rt:
        runs = [await rt.start(mixed, 4) for _ in range(5)]
        assert [await run.result(timeout=30) for run in runs] == [4 * 6] * 5
        # (The dispatcher reserves the free slots while its claim is in flight: they come back after it.)
        await wait_until(lambda: rt.slots.free == 2, timeout=10)
    assert running["max"] == 2


order: list[str] = []


@durable.step(name="slots.mark")
async def mark(tag: str) -> None:
    order.append(tag)


@durable.workflow(name="slots.long")
async def long_chain(n: int) -> None:
    for _ in range(n):
        await mark("long")


@durable.workflow(name="slots.short")
async def short() -> None:
    await mark("short")


@pytest.mark.parametrize("kind", STORES)
async def test_a_chain_without_end_lets_a_queued_step_through(kind: str, tmp_path: Path) -> None:
    """With one slot held by a long chain of steps, a step queued for a slot runs within about 100 of the chain's steps, not after all of them."""
    order.clear()
    async with durable.Runtime(url_for(kind, tmp_path), max_concurrent_steps=1, workflows=[long_chain, short]) as rt:
        long_run = await rt.start(long_chain, 1000)
        await wait_until(lambda: order, timeout=10)  # the chain holds the slot: the short run's step queues
        short_run = await rt.start(short)
        queued_after = len(order)
        await short_run.result(timeout=30)
        await long_run.result(timeout=60)
    assert len(order) == 1001
    # The chain gives its slot up once every 100 steps (a few more ran before the short step was queued).
    assert order.index("short") - queued_after <= 150
