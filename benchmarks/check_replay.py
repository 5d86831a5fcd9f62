"""``durable check-replay`` over a store of 1,000 recorded runs of 100 steps each.

Records the runs with the real runtime (SQLite, ``synchronous=normal``; 500 finished and 500
suspended on a hook, so both kinds are checked), then times:

- the check in-process (``durable.testing._replay.check_store``: list the runs, read each log,
  replay it cold with the code of now), per run and in total;
- the command a deploy pipeline runs, ``durable check-replay --app check_replay --limit 500``, as
  a subprocess: interpreter start and imports included;
- floor, in the same run: reading every run's log and decoding its rows, without replaying.

Run: ``.venv/bin/python benchmarks/check_replay.py`` (``BENCH_QUICK=1``: 100 runs of 20 steps).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import fresh_db, header, quick, sqlite_url

import durable
from durable._core import codec as _codec
from durable.stores import store_from_url
from durable.testing._replay import check_store

RUNS, STEPS = (100, 20) if quick() else (1000, 100)


@durable.step(name="bench.check.add")
async def add(i: int, total: int) -> int:
    return total + i


@durable.workflow(name="bench.check_replay")
async def summed(n: int, wait: bool) -> int:
    total = 0
    for i in range(n):
        total = await add(i, total)
    if wait:
        await durable.create_hook()  # stays unfinished: check-replay replays every unfinished run
    return total


async def record(url: str) -> None:
    async with durable.Runtime(url, workflows=[summed], max_concurrent_steps=64) as rt:
        batch = 50
        for start in range(0, RUNS, batch):
            runs = [await rt.start(summed, STEPS, i % 2 == 1) for i in range(start, min(RUNS, start + batch))]
            for i, run in enumerate(runs, start):
                if i % 2 == 0:
                    await run.result(timeout=600)
                else:
                    while not await rt.store.list_hooks(run.run_id):  # it reached its hook: all its steps are recorded
                        await asyncio.sleep(0.01)


async def floor(url: str) -> float:
    async with store_from_url(url) as store:
        t0 = time.perf_counter()
        for status in ("running", "completed"):
            for record_ in await store.list_runs(status=status, limit=RUNS):
                for event in await store.load_events(record_.run_id):
                    if event.data is not None and event.data[:4] == _codec.JSON_TAG:
                        _codec.decode(event.data)
        return time.perf_counter() - t0


async def in_process(url: str) -> tuple[float, int, int]:
    async with store_from_url(url) as store:
        report = await check_store(store, {summed.name: summed}.get, [summed.name], limit=RUNS)
    return report.seconds, report.checked, len(report.diverged)


def command(url: str) -> tuple[float, str, int]:
    here = Path(__file__).parent
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "durable", "check-replay", "--app", "check_replay", "--store", url, "--limit", str(RUNS)],
        cwd=here, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(here.parent / "src")},
    )
    return time.perf_counter() - t0, (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1], done.returncode


async def main() -> None:
    url = sqlite_url(fresh_db("check-replay"), "normal")
    header(f"check-replay: {RUNS} recorded runs of {STEPS} steps (half finished, half waiting on a hook)")
    t0 = time.perf_counter()
    await record(url)
    print(f"recorded in {time.perf_counter() - t0:.1f} s")
    gc.collect()
    gc.freeze()  # the recording's garbage is not the check's: keep it out of the collector's passes
    read = await floor(url)
    seconds, checked, diverged = await in_process(url)
    print(f"in process:   {checked} runs checked in {seconds:.2f} s ({seconds / checked * 1e3:.2f} ms per run, "
          f"{seconds / (checked * STEPS) * 1e6:.1f} µs per step), {diverged} diverged")
    print(f"floor:        reading and decoding every run's rows: {read:.2f} s ({read / checked * 1e3:.2f} ms per run)")
    took, summary, code = command(url)
    print(f"the command:  {took:.2f} s wall clock, exit {code}: {summary}")


if __name__ == "__main__":
    asyncio.run(main())
