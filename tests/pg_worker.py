"""A durable worker process for the multi-worker tests: runs the workflows below until killed.

Usage: ``python -m tests.pg_worker STORE_URL WORKER_ID [--host NAME] [--lease-ttl S] [--log FILE]``
(from the repository root). It opens ``durable.Runtime(STORE_URL)`` with these workflows
registered, prints ``ready WORKER_ID`` once it executes work, and runs until it is
terminated (SIGTERM: a clean shutdown) or killed (SIGKILL: what the tests are about).

Every step attempt appends ``WORKER_ID RUN_ID STEP_ID ATTEMPT`` to ``--log`` before it
does its work, so a test can tell which worker ran which attempt of which step.

``--host NAME`` makes the process report NAME as its host name: a stand-in for a worker on
another machine, whose death the others cannot see by pid and must infer from its lease
running out (only the name differs; the process, the database and the kill are real).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from typing import TextIO

import durable

LOG: TextIO | None = None
WORKER = ""
STEP_DELAY = float(os.environ.get("PGW_STEP_DELAY", "0.02"))


def _log_attempt() -> None:
    meta = durable.get_step_metadata()
    step_id = meta.step_id
    if LOG is not None:
        LOG.write(f"{WORKER} {meta.run_id} {step_id} {meta.attempt}\n")
        LOG.flush()  # the page cache survives SIGKILL of this process; no fsync needed


@durable.step(name="pgw.work")
async def work(i: int, k: int) -> int:
    _log_attempt()
    await asyncio.sleep(STEP_DELAY)
    return i * 10 + k


@durable.workflow(name="pgw.chain")
async def chain(i: int, n: int) -> int:
    """``n`` sequential steps, then two in parallel: each step of each run is a unit of work to hand over."""
    total = 0
    for k in range(n):
        total += await work(i, k)
    a, b = await asyncio.gather(work(i, n), work(i, n + 1))
    return total + a + b


def expected(i: int, n: int) -> int:
    return sum(i * 10 + k for k in range(n + 2))


async def serve(url: str, worker_id: str, lease_ttl: float, poll_interval: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable.Runtime(
        url, workflows=[chain], worker_id=worker_id, lease_ttl=lease_ttl, heartbeat_interval=min(0.5, lease_ttl / 4),
        poll_interval=poll_interval,
    ):
        print(f"ready {worker_id}", flush=True)
        await stop.wait()


def main() -> None:
    global LOG, WORKER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("worker_id")
    parser.add_argument("--host", help="host name to report (a worker 'on another machine')")
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--log", help="file to append one line per step attempt to")
    args = parser.parse_args()
    if args.host:
        fake = args.host
        socket.gethostname = lambda: fake  # read by Runtime() for its worker row
    WORKER = args.worker_id
    if args.log:
        LOG = open(args.log, "a")  # noqa: SIM115 - open for the whole life of the process
    asyncio.run(serve(args.url, args.worker_id, args.lease_ttl, args.poll_interval))


if __name__ == "__main__":
    main()
