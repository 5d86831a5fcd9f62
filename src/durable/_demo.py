"""``durable demo`` (``make demo``): a workflow survives a real crash.

A worker process runs an order workflow on the embedded SQLite store; this process follows
the run's progress stream from the database, SIGKILLs the worker in the middle of a step,
then starts a fresh runtime that picks the run up where it stopped: finished steps are not
run again, the interrupted one runs again with the same step id, and the stream keeps going.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import durable
from durable.stores import DEFAULT_URL, default_url, store_from_url

EFFECTS_ENV = "DURABLE_DEMO_EFFECTS"


def _effect(line: str) -> None:
    """Record a side effect (what an external system would see) in a file both processes share."""
    path = os.environ.get(EFFECTS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@durable.step(name="demo.reserve_inventory")
async def reserve_inventory(order: dict[str, Any]) -> str:
    await durable.get_writable("progress").write({"done": 1, "of": 5, "step": "inventory reserved"})
    _effect(f"reserve {order['id']}")
    return f"rsv-{order['id']}"


@durable.step(name="demo.charge_card", retry_delay="200ms")
async def charge_card(order: dict[str, Any]) -> str:
    meta = durable.get_step_metadata()
    progress = durable.get_writable("progress")
    await progress.write({"done": 2, "of": 5, "step": f"charging card (attempt {meta.attempt})"})
    await progress.flush()
    _effect(f"charge {order['amount']} with idempotency key {meta.idempotency_key} (attempt {meta.attempt})")
    await anyio.sleep(1.5 if meta.attempt == 1 else 0.2)  # slow payment provider: the crash lands here
    return f"ch-{meta.idempotency_key}"


@durable.step(name="demo.notify")
async def notify(channel: str, order: dict[str, Any]) -> str:
    _effect(f"notify {channel} for {order['id']}")
    return f"{channel} sent"


@durable.workflow(name="demo.order")
async def order_workflow(order: dict[str, Any]) -> dict[str, Any]:
    """Reserve, charge, then notify in parallel, wait a moment durably, and finish."""
    progress = durable.get_writable("progress")
    reservation = await reserve_inventory(order)
    charge = await charge_card(order)
    await progress.write({"done": 3, "of": 5, "step": "card charged"})
    email, ledger = await asyncio.gather(notify("email", order), notify("ledger", order))
    await progress.write({"done": 4, "of": 5, "step": "notified; waiting 1s (a durable timer)"})
    await durable.sleep("1s")
    await progress.write({"done": 5, "of": 5, "step": "done"})
    return {"reservation": reservation, "charge": charge, "notified": [email, ledger]}


def _say(text: str = "") -> None:
    print(text, flush=True)


async def _follow(url: str, run_id: str, stop: anyio.Event, position: list[int]) -> None:
    """Print progress chunks as they land in the database (polling, like any other process would)."""
    async with store_from_url(url) as store:
        while not stop.is_set():
            index = position[0]
            try:
                page = await store.read_chunks(run_id, "progress", index, 100)
            except durable.RunNotFound:  # the worker has not created it yet
                await anyio.sleep(0.05)
                continue
            for chunk in page.chunks:
                value = durable._core.codec.decode(chunk.data)
                position[0] = chunk.index + 1
                _say(f"   progress #{chunk.index}: {value['done']}/{value['of']} {value['step']}")
            if page.closed:
                return
            with anyio.move_on_after(0.05):
                await stop.wait()


async def _main(url: str) -> int:
    run_id = f"demo-{int(time.time())}-{os.getpid()}"
    workdir = Path(".durable")
    workdir.mkdir(exist_ok=True)  # noqa: ASYNC240 - one tiny directory, before anything else runs
    effects = workdir / f"{run_id}.effects"
    os.environ[EFFECTS_ENV] = str(effects)
    _say(f"durable demo — store: {url}")
    _say(f"1. A worker process starts run {run_id} of workflow 'demo.order'.")
    worker = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; we never wait on it blocking
        [sys.executable, "-m", "durable._demo", "--worker", url, run_id],
        env={**os.environ}, stdout=subprocess.DEVNULL,
    )
    stop = anyio.Event()
    position = [0]
    killed_at = 0.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(_follow, url, run_id, stop, position)
        # Wait until the worker is inside the slow payment step, then kill it without warning.
        with anyio.fail_after(60):
            while "charge" not in (effects.read_text() if effects.exists() else ""):
                if worker.poll() is not None:
                    _say("the worker exited early; see its output above")
                    return 1
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        killed_at = time.time()
        _say(f"2. 💥 SIGKILL to worker pid {worker.pid} in the middle of step 'demo.charge_card'.")
        stop.set()
    _say("3. A fresh runtime opens the same database and recovers the run:")
    async with durable.Runtime(url, workflows=[order_workflow], heartbeat_interval=0.2) as rt:
        run = await rt.get_run(run_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_follow, url, run_id, anyio.Event(), position)  # ends when the run closes the stream
            result = await run.result(timeout=60)
        steps = await run.steps()
        events = await run.events()
    _say(f"4. Completed {time.time() - killed_at:.1f}s after the crash with result:")
    _say("   " + json.dumps(result))
    _say("   steps (name: attempts):")
    for s in steps:
        _say(f"     {s.name}: {s.attempts} attempt(s), {s.status}")
    _say("   side effects as the outside world saw them:")
    for line in effects.read_text().splitlines():
        _say(f"     {line}")
    _say(f"   the event log holds {len(events)} events: " + ", ".join(e.kind for e in events[:6]) + ", …")
    _say()
    _say("The reservation ran once; the charge ran again as attempt 2 with the SAME idempotency key,")
    _say("so a payment provider would deduplicate it; the durable timer and the stream carried on.")
    _say()
    _say("Look around:")
    for line in hints(run_id, url):
        _say("  " + line)
    _say()
    _say("Composing and operating workflows -- child workflows, run timeouts, queues with concurrency and")
    _say("rate limits, cron schedules, live values (set_event), retention (durable gc) and encryption at rest")
    _say("-- each has a README section with a program that runs as written: README.md, 'Child workflows'")
    _say("to 'Encryption at rest'.")
    effects.unlink(missing_ok=True)
    return 0


def hints(run_id: str, url: str) -> list[str]:
    """The commands to look at the demo's run, as a pip user types them (``durable`` on the PATH),
    on the store the demo used (``--store`` unless it is the default one)."""
    store = "" if url == DEFAULT_URL else f" --store {shlex.quote(url)}"
    return [
        f"durable inspect {run_id}{store}      # steps, attempts, timings",
        f"durable events {run_id}{store}       # the event log",
        f"durable tail {run_id} --namespace progress{store}",
        f"durable serve --app durable._demo{store}   # the live runs page at http://127.0.0.1:8000/",
    ]


async def _worker(url: str, run_id: str) -> None:
    async with durable.Runtime(url, workflows=[order_workflow]) as rt:
        run = await rt.start(order_workflow, {"id": "A-1001", "amount": "42.00 EUR"}, run_id=run_id)
        await run.result()


def run_demo(store_url: str | None = None) -> int:
    """Entry point of ``durable demo``; returns the exit code."""
    url = store_url or default_url()
    store_from_url(url)  # a bad URL fails here, clearly
    return asyncio.run(_main(url))


def __getattr__(name: str) -> Any:
    # ``durable serve --app durable._demo:app`` serves the demo's runs with the web extra.
    if name == "app":
        from durable.web import create_app

        return create_app(durable.Runtime(default_url(), workflows=[order_workflow]))
    raise AttributeError(name)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        asyncio.run(_worker(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else None))
