"""Record runs with the code before the gift-wrap step and export their histories.

Run: ``python record.py STORE_URL [DIRECTORY]`` -- three runs of ``shop.checkout`` as version 1
ran it: one finished, one waiting for its payment, one waiting after it (so past the point
where version 2 inserts a step). With a directory, each history is exported there as
``<order>.json`` (what ``durable export RUN_ID > file`` writes), which is how ``histories/`` was made.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import shop  # its steps; the workflow below is the old version of its checkout

import durable
import durable.testing


async def checkout_v1(order: str) -> list[str]:
    done = [await shop.reserve(order)]
    await durable.create_hook(token=f"paid:{order}")
    done.append(await shop.ship(order))
    await durable.create_hook(token=f"delivered:{order}")
    return done


checkout = durable.Workflow(checkout_v1, name="shop.checkout", serializer="json", version="1")


async def main(store: str) -> dict[str, str]:
    """Record the three runs; their histories as ``durable export`` writes them, by order."""
    async with durable.Runtime(store, workflows=[checkout]) as rt:
        runs = {}
        for order in ("done", "waiting", "late"):
            runs[order] = await rt.start(checkout, order)
            await runs[order].wait_for_hook(f"paid:{order}", timeout="10s")
        for order in ("done", "late"):
            await rt.resume_hook(f"paid:{order}", {"amount": 10})
            await runs[order].wait_for_hook(f"delivered:{order}", timeout="10s")
        await rt.resume_hook("delivered:done", "signed")
        await runs["done"].result(timeout=10)
        return {order: (await durable.testing.read_history(run)).to_json() for order, run in runs.items()}


if __name__ == "__main__":
    histories = asyncio.run(main(sys.argv[1]))
    if len(sys.argv) > 2:
        directory = Path(sys.argv[2])
        directory.mkdir(parents=True, exist_ok=True)
        for order, text in histories.items():
            (directory / f"{order}.json").write_text(text)
