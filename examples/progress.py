"""Streaming progress: an async-generator workflow yields chunks; readers follow them live, and
can read them again from any index later.

Run: ``python examples/progress.py``
"""

from __future__ import annotations

import asyncio
import sys

import durable


@durable.step
async def work(i: int) -> int:
    writer = durable.get_writable("logs")  # a step's own stream, buffered and back-pressured
    await writer.write(f"working on item {i}")
    await asyncio.sleep(0.01)
    return i * i


@durable.workflow(name="examples.progress")
async def progress(n: int):  # type: ignore[no-untyped-def]  # each yield is a chunk of the default stream
    total = 0
    for i in range(n):
        total += await work(i)
        yield {"done": i + 1, "of": n, "total": total}


async def main(store: str) -> None:
    async with durable.Runtime(store, workflows=[progress]) as rt:
        run = await rt.start(progress, 5)
        async for chunk in run.stream():  # follows live until the run ends and closes the stream
            print("live:", chunk)
        print("last two again:", [c async for c in run.stream(start_index=-2)])
        print("logs:", [c async for c in run.stream("logs")])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))
