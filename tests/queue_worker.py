"""A worker process for the multi-worker queue tests: runs the queued workflows below until terminated.

Usage: ``python -m tests.queue_worker STORE_URL WORKER_ID LOG`` (from the repository root). It
prints ``ready WORKER_ID`` once it executes work. Every attempt of a queued step appends
``WORKER_ID QUEUE START END`` to LOG (``time.time()`` when the step body began and ended), so
a test can reconstruct how many steps of each queue ran at once across every process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TextIO

import durable

LIMITED = durable.Queue("qw.limited", concurrency=3)
RATED = durable.Queue("qw.rated", rate="20/1s")
LOG: TextIO | None = None
WORKER = ""


def _log(queue: str, start: float) -> None:
    assert LOG is not None
    LOG.write(f"{WORKER} {queue} {start!r} {time.time()!r}\n")
    LOG.flush()


@durable.step(name="qw.limited_step", queue=LIMITED)
async def limited_step(i: int, k: int) -> int:
    start = time.time()
    await asyncio.sleep(0.05)
    _log("qw.limited", start)
    return i * 100 + k


@durable.step(name="qw.rated_step", queue=RATED)
async def rated_step(i: int, k: int) -> int:
    _log("qw.rated", time.time())
    return i * 100 + k


@durable.workflow(name="qw.fan")
async def fan(i: int, n: int, rated: bool) -> int:
    step = rated_step if rated else limited_step
    return sum(await asyncio.gather(*(step(i, k) for k in range(n))))


async def serve(url: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable.Runtime(url, workflows=[fan], worker_id=WORKER, heartbeat_interval=0.2, poll_interval=0.2):
        print(f"ready {WORKER}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    url, WORKER, log = sys.argv[1:4]
    LOG = open(log, "a")  # noqa: SIM115 - open for the whole life of the process
    asyncio.run(serve(url))
