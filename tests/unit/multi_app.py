"""A worker process for the multi-process SQLite test: executes the ``multi.*`` workflows until killed."""

from __future__ import annotations

import asyncio
import os
import sys

import anyio

import durable


@durable.step(name="multi.work")
async def work(run_tag: str, i: int) -> str:
    with open(os.environ["MULTI_LOG"], "a") as f:
        f.write(f"{os.getpid()} {run_tag} {i}\n")
    await anyio.sleep(0.01)
    return f"{run_tag}-{i}"


@durable.workflow(name="multi.job")
async def job(run_tag: str) -> list[str]:
    first = await work(run_tag, 0)
    rest = await asyncio.gather(work(run_tag, 1), work(run_tag, 2))
    return [first, *rest]


async def main(url: str) -> None:
    async with durable.Runtime(url, workflows=[job], heartbeat_interval=0.2, poll_interval=0.1):
        await anyio.sleep_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
