"""A worker and a client in two processes; the client does not have the workflow code.

Run: ``python examples/worker_and_client.py`` (a SQLite file in a temporary directory). It starts
``durable worker --app orders`` -- which publishes the workflows of ``orders.py`` in the store
when it opens -- then, as a client with nothing imported but durable, lists those workflows and
starts runs by name with JSON arguments, checked against the published signature.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

import durable


async def main() -> None:
    store = f"sqlite:///{Path(tempfile.mkdtemp()) / 'orders.db'}"
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "durable", "worker", "--app", "orders", "--store", store,
        cwd=Path(__file__).parent, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with durable.Client(store) as client:
            while not (published := await client.published_workflows()):  # noqa: ASYNC110 - another process writes it
                await asyncio.sleep(0.05)  # the worker publishes its workflows as it opens
            print("published:", [p.name for p in published])
            run = await client.start_published("orders:order", ["pear", 2], {"note": "ripe"})
            print("result:", await run.result(timeout=30))
            try:
                await client.start_published("orders:order", [], {"quantity": 2})
            except TypeError as exc:  # checked before anything is recorded
                print("refused:", exc)
    finally:
        worker.send_signal(signal.SIGTERM)
        await worker.wait()


if __name__ == "__main__":
    os.environ.pop("DURABLE_STORE", None)
    asyncio.run(main())
