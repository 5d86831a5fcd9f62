"""Workflows for the crash tests, and a child-process entry point that the tests SIGKILL.

Every step appends ``[label, idempotency_key, attempt]`` to the side-effect log named by
``CRASH_LOG`` (fsynced), so a test can count executions. A step reaching the point named by
``CRASH_AT`` on its first attempt writes a marker file and waits to be killed.

Usage: ``python crash_app.py STORE_URL RUN_ID WORKFLOW [ARG]``: start (or re-attach to) the
run and wait for it, as a process that the test kills.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import anyio

import durable


def log_effect(*parts: object) -> None:
    with open(os.environ["CRASH_LOG"], "a") as f:
        f.write(json.dumps(parts) + "\n")
        f.flush()
        os.fsync(f.fileno())


async def wait_to_be_killed(point: str) -> None:
    Path(os.environ["CRASH_DIR"], point).touch()
    await anyio.sleep(120)


def crash_point(point: str, attempt: int) -> bool:
    return os.environ.get("CRASH_AT") == point and attempt == 1


@durable.step(name="crash.record", retry_delay="50ms")
async def record(label: str) -> str:
    meta = durable.get_step_metadata()
    log_effect(label, meta.idempotency_key, meta.attempt, time.time())
    if crash_point(f"step:{label}", meta.attempt):
        await wait_to_be_killed(f"step:{label}")
    return label.upper()


@durable.step(name="crash.stream_tokens", retry_delay="50ms")
async def stream_tokens(n: int) -> int:
    meta = durable.get_step_metadata()
    log_effect("stream", meta.idempotency_key, meta.attempt, time.time())
    writer = durable.get_writable("tokens")
    for i in range(n):
        await writer.write({"i": i, "attempt": meta.attempt})
        if i == n // 2 and crash_point("mid-stream", meta.attempt):
            await writer.flush()
            await wait_to_be_killed("mid-stream")
    await writer.close()
    return n


@durable.workflow(name="crash.pipeline")
async def pipeline() -> list[str]:
    out = [await record("a")]
    b, c = await asyncio.gather(record("b"), record("c"))
    out += [b, c]
    out.append(await record("d"))
    return out


@durable.workflow(name="crash.sleeper")
async def sleeper(seconds: float) -> dict[str, float]:
    await record("before-sleep")
    started = durable.now().timestamp()
    await durable.sleep(seconds)
    await record("after-sleep")
    return {"slept_from": started, "woke_at": durable.now().timestamp()}


@durable.workflow(name="crash.approvals")
async def approvals() -> list[object]:
    hook = durable.create_hook(token="crash-approval")
    await record("waiting")
    received = []
    async for payload in hook:
        received.append(payload)
        if payload.get("last"):
            break
    received.append(await record("after-hook"))
    return received


@durable.workflow(name="crash.streaming")
async def streaming() -> int:
    await record("start")
    return await stream_tokens(10)


@durable.workflow(name="crash.shipment")
async def shipment(item: str) -> str:
    return await record(f"ship-{item}")


@durable.workflow(name="crash.order")
async def order(item: str) -> list[str]:
    before = await record("order-before")
    shipped = await shipment(item)  # a child run: started in this run's commit, once
    return [before, shipped, await record("order-after")]


@durable.step(name="crash.tick_step", retry_delay="50ms")
async def tick_step(n: int) -> float:
    meta = durable.get_step_metadata()
    scheduled = durable.get_workflow_metadata().scheduled_at
    assert scheduled is not None
    log_effect("tick", meta.idempotency_key, meta.attempt, time.time(), scheduled.timestamp())
    if os.environ.get("CRASH_AT") == "tick" and meta.attempt == 1 and len(Path(os.environ["CRASH_LOG"]).read_text().splitlines()) >= n:
        await wait_to_be_killed("tick")
    return scheduled.timestamp()


@durable.workflow(name="crash.ticked")
async def ticked(n: int) -> float:
    return await tick_step(n)


TICKS = durable.schedule("crash.every", ticked, every="300ms", args=(4,), overlap="allow_all")


async def serve_schedule(url: str) -> None:
    async with durable.Runtime(url, heartbeat_interval=0.2, poll_interval=0.05, schedules=[TICKS]):
        await anyio.sleep(120)


async def main(url: str, run_id: str, workflow: str, *args: str) -> None:
    key = os.environ.get("CRASH_ENCRYPTION_KEY")  # payloads encrypted at rest (test_encryption.py)
    encryption = durable.Encryption(key, key_id="crash") if key else None
    async with durable.Runtime(url, heartbeat_interval=0.2, encryption=encryption) as rt:
        parsed = [json.loads(a) for a in args]
        run = await rt.start(workflow, *parsed, run_id=run_id)
        print(json.dumps(await run.result(timeout=120)), flush=True)


if __name__ == "__main__":
    if sys.argv[2] == "--schedule":
        asyncio.run(serve_schedule(sys.argv[1]))
    else:
        asyncio.run(main(*sys.argv[1:]))
