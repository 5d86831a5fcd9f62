"""Workflows for the fault-injection suite, and the worker process it SIGKILLs again and again.

Every step appends ``[idempotency_key, attempt, label]`` (``run_id/step_N``) to the
side-effect log named by ``FAULT_LOG``, before it returns: a test reads it to check that every
recorded step really ran, and to count how often steps ran again after a kill.

Usage: ``python fault_app.py STORE_URL``: a worker executing these workflows until killed.
``FAULT_WAL_LIMIT`` (bytes) sets the SQLite store's WAL limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from typing import Any

import anyio

import durable


def log_effect(label: str) -> None:
    meta = durable.get_step_metadata()
    line = json.dumps([meta.idempotency_key, meta.attempt, label]) + "\n"
    fd = os.open(os.environ["FAULT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())  # one small O_APPEND write: lines never interleave
    finally:
        os.close(fd)


@durable.step(name="fault.effect", retry_delay="20ms", max_retry_delay="20ms", max_retries=1000)
async def effect(key: str, label: str) -> str:
    log_effect(label)
    # Real time after the side effect, before the result is recorded: a kill landing here makes
    # the step run again (at least once), and its completion must still be recorded once.
    await anyio.sleep(random.uniform(0, 0.03))
    return f"{label}:{key}"


@durable.step(name="fault.flaky", retry_delay="20ms", max_retry_delay="20ms", max_retries=1000)
async def flaky(key: str) -> str:
    log_effect("flaky")
    if durable.get_step_metadata().attempt == 1:
        raise durable.RetryableError("the first attempt always fails", retry_after=0.03)
    return f"flaky:{key}"


@durable.step(name="fault.progress", retry_delay="20ms", max_retry_delay="20ms", max_retries=1000)
async def progress(key: str, n: int) -> int:
    attempt = durable.get_step_metadata().attempt
    writer = durable.get_writable("progress")
    for i in range(n):
        await writer.write({"i": i, "attempt": attempt})
        await anyio.sleep(0.005)
    log_effect("progress")
    return n


@durable.workflow(name="fault.mixed")
async def mixed(key: str) -> dict[str, Any]:
    """Steps, a retry, a timer, a hook, a step's stream and parallel steps."""
    a = await effect(key, "a")
    b = await flaky(key)
    await durable.sleep(0.1)
    payload = await durable.create_hook(token=f"fault:{key}")
    n = await progress(key, 5)
    parallel = await asyncio.gather(effect(key, "p1"), effect(key, "p2"))
    return {"a": a, "b": b, "payload": payload, "n": n, "parallel": list(parallel)}


def expected_mixed(key: str) -> dict[str, Any]:
    return {"a": f"a:{key}", "b": f"flaky:{key}", "payload": {"key": key}, "n": 5,
            "parallel": [f"p1:{key}", f"p2:{key}"]}


@durable.workflow(name="fault.streamer")
async def streamer(key: str, n: int) -> Any:
    """An async-generator workflow: its yields are the run's default stream, written once each."""
    for i in range(n):
        yield {"i": i}
        await effect(key, f"s{i}")


async def work(url: str) -> None:
    store: Any = url
    wal_limit = os.environ.get("FAULT_WAL_LIMIT")
    if wal_limit and url.startswith("sqlite:"):
        from durable.stores import store_from_url

        store = store_from_url(url)
        store.wal_limit = int(wal_limit)
    async with durable.Runtime(store, workflows=[mixed, streamer], heartbeat_interval=0.1, poll_interval=0.1):
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1]))
