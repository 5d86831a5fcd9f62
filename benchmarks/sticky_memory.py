"""Memory per suspended sticky run: N runs each run one step, then sleep a day, live in the sticky cache.

The heap is what ``tracemalloc`` sees allocated by Python between before the runs were started and
after all of them suspended (the instances, their loops and tasks, the cache's bookkeeping); RSS
also counts the store's own memory (memory:// is an in-memory SQLite database, outside the
Python heap). Both per run, each measured in a fresh process of its own: tracemalloc's own
bookkeeping (a trace per live allocation) would count in RSS, ~7 KiB a run, and RSS after a
first round in the same process only counts what the allocator could not reuse from it.

Run: ``.venv/bin/python benchmarks/sticky_memory.py`` (``BENCH_QUICK=1`` shrinks it).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tracemalloc

from _common import header, quick

import durable


@durable.step(name="benchm.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="benchm.sleeper")
async def sleeper(i: int) -> int:
    await noop(i)
    await durable.sleep("1 day")
    return i


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def per_run(n: int, *, trace: bool) -> float:
    """Heap bytes (``trace``) or RSS bytes (tracemalloc off) per suspended sticky run."""
    async with durable.Runtime("memory://", workflows=[sleeper], sticky_cache_size=n + 10) as rt:
        await rt.start(sleeper, -1)  # warm up: the first run allocates what every run shares
        while rt.stats["speculative_commits"] < 2:
            await asyncio.sleep(0.01)
        gc.collect()
        if trace:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if trace else rss()
        base = rt.stats["speculative_commits"]
        for i in range(n):
            await rt.start(sleeper, i)
        while rt.stats["speculative_commits"] < base + 2 * n:  # each run: its start, then its step's commit
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if trace else rss()
        tracemalloc.stop()
        assert len(rt.cache) == n + 1
        return (after - before) / n


def measured(n: int, what: str) -> float:
    """One figure, from a fresh process."""
    out = subprocess.run([sys.executable, __file__, what, str(n)], check=True, capture_output=True, text=True)
    return float(out.stdout)


def main() -> None:
    n = 200 if quick() else 2000
    header(f"sticky memory: {n} suspended sticky runs (one step done, sleeping)")
    heap, resident = measured(n, "heap"), measured(n, "rss")
    print(f"{'per run':<16}{'heap':>12}{'RSS':>12}")
    print(f"{'memory://':<16}{heap / 1024:>8.1f} KiB{resident / 1024:>8.1f} KiB")


if __name__ == "__main__":
    if len(sys.argv) == 3:  # one measurement, in this process (see measured)
        print(asyncio.run(per_run(int(sys.argv[2]), trace=sys.argv[1] == "heap")))
    else:
        main()
