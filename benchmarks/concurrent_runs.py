"""Durable steps per second with many runs at once: 1,000 runs of 10 trivial steps, started together.

Every run is started (one ``start`` each, all at once in one ``gather``), then every
``result()`` is awaited; the rate is the 10,000 steps over the wall time from the first start to
the last result. With more runs than ``max_concurrent_steps`` (64), the step slots are the
bottleneck: a step's successor is claimed in its commit only if a slot is free for it.

Next to the rate, per step: ``unclaimed`` -- successors a finished step's commit created but
could not claim for want of a free slot (``Runtime.stats["unclaimed_successors"]``; each costs
the dispatcher a claim transaction and a new task) -- and ``get_run`` -- the run reads made while
waiting for the results (``Run.result()`` re-reading its run). The floor is one ``BEGIN
IMMEDIATE; INSERT; COMMIT`` per step with the same pragmas, in the same run.

Run: ``.venv/bin/python benchmarks/concurrent_runs.py`` (``BENCH_QUICK=1`` shrinks it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import fresh_db, header, median, quick, sqlite_url
from steps import insert_floor

import durable


@durable.step(name="benchc.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="benchc.chain")
async def chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


async def concurrent_steps(url: str, runs: int, steps: int) -> tuple[float, float, float]:
    """(steps per second, unclaimed successors per step, get_run reads per step)."""
    async with durable.Runtime(url, workflows=[chain]) as rt:
        await (await rt.start(chain, 5)).result()  # warm up
        store = rt.store
        reads = 0
        real_get_run: Callable[[str], Awaitable[Any]] = store.get_run

        async def counted_get_run(run_id: str) -> Any:
            nonlocal reads
            reads += 1
            return await real_get_run(run_id)

        store.get_run = counted_get_run  # type: ignore[method-assign]
        unclaimed = rt.stats["unclaimed_successors"]
        t0 = time.perf_counter()
        started = await asyncio.gather(*(rt.start(chain, steps) for _ in range(runs)))
        results = await asyncio.gather(*(run.result() for run in started))
        elapsed = time.perf_counter() - t0
        assert results == [steps * (steps - 1) // 2] * runs
        total = runs * steps
        return total / elapsed, (rt.stats["unclaimed_successors"] - unclaimed) / total, reads / total


async def main() -> None:
    runs, steps = (100, 10) if quick() else (1000, 10)
    repeats = 1 if quick() else 3
    header(f"concurrent: {runs} runs x {steps} sequential steps, started at once")
    print(f"{'store':<16}{'steps/s':>10}{'unclaimed/step':>16}{'get_run/step':>14}{'floor/s':>10}{'floor/rate':>12}")
    for label, url, sync in (
        ("memory://", "memory://", None), ("sqlite normal", None, "normal"), ("sqlite full", None, "full"),
    ):
        figures = [
            await concurrent_steps(url or sqlite_url(fresh_db("concurrent"), sync or "full"), runs, steps)
            for _ in range(repeats)
        ]
        rate = median([f[0] for f in figures])
        unclaimed = median([f[1] for f in figures])
        reads = median([f[2] for f in figures])
        if sync is None:
            print(f"{label:<16}{rate:>10.0f}{unclaimed:>16.2f}{reads:>14.2f}{'':>10}{'':>12}")
            continue
        floor = median([insert_floor(fresh_db("floor"), sync, runs * steps // 5) for _ in range(repeats)])
        print(f"{label:<16}{rate:>10.0f}{unclaimed:>16.2f}{reads:>14.2f}{1 / floor:>10.0f}{1 / floor / rate:>11.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
