"""Replay cost per event for workflows of 100, 1,000 and 10,000 sequential steps.

- cold: a fresh instance replays the whole log read from the store (one range read);
- sticky: a live instance fed the log one result at a time, as the runtime's sticky cache does
  between steps; we report the median cost of one delivery over the last tenth of the log, which
  must not depend on N;
- floors, measured in the same run: reading the same rows from SQLite plus decoding each
  step result; and awaiting an empty coroutine N times.

Run: ``.venv/bin/python benchmarks/replay.py`` (both synchronous=full and normal stores).
"""

from __future__ import annotations

import asyncio
import time

from _common import fresh_db, header, median, quick, sqlite_url

import durable
from durable._core import codec as _codec
from durable._engine.instance import WorkflowInstance
from durable.stores import store_from_url


@durable.step(name="bench.inc")
async def inc(x: int) -> int:
    return x + 1


@durable.workflow(name="bench.sequential")
async def sequential(n: int) -> int:
    x = 0
    for _ in range(n):
        x = await inc(x)
    return x


async def record(url: str, n: int) -> str:
    async with durable.Runtime(url, workflows=[sequential]) as rt:
        run = await rt.start(sequential, n)
        assert await run.result() == n
        return run.run_id


async def empty() -> None:
    return None


async def measure(url: str, n: int, repeats: int) -> dict[str, float]:
    run_id = await record(url, n)
    async with store_from_url(url) as store:
        record_ = await store.get_run(run_id)
        assert record_ is not None
        cold, floor_read, sticky = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            events, _ = await store.read_log(run_id, 0)
            instance = WorkflowInstance(sequential, run_id=run_id, input=record_.input, seed=record_.seed)
            outcome = instance.advance(events)
            cold.append(time.perf_counter() - t0)
            assert outcome.status == "completed", outcome
            instance.close()

            t0 = time.perf_counter()
            rows, _ = await store.read_log(run_id, 0)
            for e in rows:
                if e.kind == "step_completed" and e.data is not None:
                    _codec.decode(e.data)
            floor_read.append(time.perf_counter() - t0)

            # Sticky: feed the log one result at a time (with the records before it), timing each.
            instance = WorkflowInstance(sequential, run_id=run_id, input=record_.input, seed=record_.seed)
            per_delivery, batch = [], []
            for e in events:
                batch.append(e)
                if e.kind in ("step_completed", "run_started"):
                    t0 = time.perf_counter()
                    outcome = instance.advance(batch)
                    per_delivery.append(time.perf_counter() - t0)
                    batch = []
            assert outcome.status == "completed"
            sticky.append(median(per_delivery[-max(1, len(per_delivery) // 10):]))
            instance.close()

        coroutine = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(n):
                await empty()
            coroutine.append(time.perf_counter() - t0)
    return {
        "cold": median(cold) / n,
        "floor_read": median(floor_read) / n,
        "floor_coroutine": median(coroutine) / n,
        "sticky": median(sticky),
    }


async def main() -> None:
    sizes = [100, 1000] if quick() else [100, 1_000, 10_000]
    header("replay: cost per replayed step (cold) and per resumed event (sticky)")
    print(f"{'store':<22}{'N':>7}{'cold/step':>13}{'floor read+decode':>19}{'ratio':>7}"
          f"{'floor empty await':>19}{'sticky resume':>15}")
    for sync in ("full", "normal"):
        for n in sizes:
            url = sqlite_url(fresh_db(f"replay-{sync}-{n}"), sync)
            r = await measure(url, n, repeats=3 if n >= 10_000 else 7)
            print(
                f"{'sqlite ' + sync:<22}{n:>7}{r['cold'] * 1e6:>10.2f} µs{r['floor_read'] * 1e6:>16.2f} µs"
                f"{r['cold'] / r['floor_read']:>6.1f}x{r['floor_coroutine'] * 1e6:>16.3f} µs{r['sticky'] * 1e6:>12.1f} µs"
            )


if __name__ == "__main__":
    asyncio.run(main())
