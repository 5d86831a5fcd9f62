"""``durable.random`` / ``durable.uuid4``: seeded by the run, the same on every replay, and made only
when a workflow first uses them (a live instance that never does carries no generator)."""

from __future__ import annotations

import random
import uuid

import anyio
import pytest

import durable

pytestmark = pytest.mark.anyio


@durable.step(name="wr.noop")
async def noop() -> None:
    return None


@durable.workflow(name="wr.draws")
async def draws() -> list[str]:
    await noop()  # a step between: the draws after it are made by a replayed instance on a cold replay
    first = durable.random()
    await noop()
    return [repr(first), repr(durable.random.randint(1, 10**9)), str(durable.uuid4())]


@durable.workflow(name="wr.sleeper")
async def sleeper() -> None:
    await noop()
    await durable.sleep("1 day")


def expected(seed: str) -> list[str]:
    rng = random.Random(f"{seed}:random")
    return [repr(rng.random()), repr(rng.randint(1, 10**9)), str(uuid.UUID(int=rng.getrandbits(128), version=4))]


@pytest.mark.parametrize("sticky", [1024, 0], ids=["sticky", "cold-replays"])
async def test_draws_follow_the_runs_seed_live_and_replayed(sticky: int) -> None:
    """The values drawn are those of random.Random seeded with the run's seed, whether the instance stayed live or was replayed cold after each step."""
    async with durable.Runtime("memory://", workflows=[draws], sticky_cache_size=sticky) as rt:
        run = await rt.start(draws)
        result = await run.result(timeout=10)
        record = await rt.store.get_run(run.run_id)
        assert record is not None
        assert result == expected(record.seed)


async def test_a_live_instance_that_never_draws_carries_no_generator() -> None:
    """A run suspended in the sticky cache without calling durable.random has made no random.Random."""
    async with durable.Runtime("memory://", workflows=[sleeper]) as rt:
        run = await rt.start(sleeper)
        with anyio.fail_after(10):
            while [s.status for s in await run.steps()] != ["completed"] or rt.cache.get(run.run_id) is None:
                await anyio.sleep(0.01)
        entry = rt.cache.get(run.run_id)
        assert entry is not None
        assert entry.instance._user_random is None
        assert await run.status() == "running"  # suspended on its timer, live in the cache
