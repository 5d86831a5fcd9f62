"""Queue throughput: steps per second through a queue with a concurrency limit, next to the same steps without one.

A workflow gathers N trivial steps. Without a queue the runtime runs up to
``max_concurrent_steps`` of them at once and claims new ones in the commit that creates them;
through a queue every attempt is admitted by ``claim_steps`` under the queue's row lock and
counted against its limit, so each admission costs a claim transaction of its own. Rows: no
queue, a queue without limits (the cost of admission alone), and concurrency limits of 16 and 4
(the cost of waiting for room). A sequential chain shows the fast path a queued step gives up.

Run: ``.venv/bin/python benchmarks/queues.py``
"""

from __future__ import annotations

import asyncio
import time

from _common import fresh_db, header, median, quick, sqlite_url

import durable

UNLIMITED = durable.Queue("bench.unlimited")
WIDE = durable.Queue("bench.wide", concurrency=16)
NARROW = durable.Queue("bench.narrow", concurrency=4)


async def _noop(i: int) -> int:
    return i


plain = durable.step(name="bench.q.plain")(_noop)
STEPS = {
    "no queue": plain,
    "queue, no limit": durable.step(name="bench.q.unlimited", queue=UNLIMITED)(_noop),
    "concurrency=16": durable.step(name="bench.q.wide", queue=WIDE)(_noop),
    "concurrency=4": durable.step(name="bench.q.narrow", queue=NARROW)(_noop),
}


@durable.workflow(name="bench.q.fan")
async def fan(kind: str, n: int) -> int:
    step = STEPS[kind]
    return sum(await asyncio.gather(*(step(i) for i in range(n))))


@durable.workflow(name="bench.q.chain")
async def chain(kind: str, n: int) -> int:
    step = STEPS[kind]
    total = 0
    for i in range(n):
        total += await step(i)
    return total


async def per_second(url: str, workflow: durable.Workflow[..., int], kind: str, n: int) -> float:
    async with durable.Runtime(url, workflows=[fan, chain], max_concurrent_steps=64) as rt:
        await (await rt.start(workflow, kind, 10)).result()  # warm up
        t0 = time.perf_counter()
        await (await rt.start(workflow, kind, n)).result(timeout=600)
        return n / (time.perf_counter() - t0)


async def main() -> None:
    n = 100 if quick() else 1000
    repeats = 1 if quick() else 3
    header(f"queues: {n} trivial steps per run, sqlite synchronous=normal")
    print(f"{'':<18}{'gathered steps/s':>18}{'vs no queue':>13}{'sequential steps/s':>20}{'vs no queue':>13}")
    base: dict[str, float] = {}
    for kind in STEPS:
        row = []
        for workflow in (fan, chain):
            rate = median([await per_second(sqlite_url(fresh_db("queues"), "normal"), workflow, kind, n)
                           for _ in range(repeats)])
            base.setdefault(workflow.name, rate)
            row.append((rate, rate / base[workflow.name]))
        (g, gr), (c, cr) = row
        print(f"{kind:<18}{g:>18.0f}{gr:>12.2f}x{c:>20.0f}{cr:>12.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
