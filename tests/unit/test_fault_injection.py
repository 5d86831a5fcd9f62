"""The fault-injection suite: three worker processes share one store (a SQLite file, and separately
PostgreSQL) and run a mixed workload -- steps with side effects, retries, timers, hooks resumed by a
client, a step's stream and a workflow's yields -- while one of them, chosen at random, is SIGKILLed
every 0.5-1 s and restarted, at least 50 times. Then every run must have finished with the right
result, every step's completion be recorded once (a step may run more than once: at least once, but
recorded once), every recorded step have really run, chunk indices be contiguous without duplicates,
every hook payload be delivered once, the WAL have stayed bounded and the notifier of the client that
read it all be back at its baseline.

``make soak`` runs the same for 1,000 kills, one every 0.5-2 s (``DURABLE_FAULT_KILLS``,
``DURABLE_FAULT_MAX_INTERVAL``) and prints the figures.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import durable
from tests.conftest import BACKENDS
from tests.helpers import ROOT, fresh_store_url
from tests.unit import fault_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLS = int(os.environ.get("DURABLE_FAULT_KILLS", "50"))
MAX_INTERVAL = float(os.environ.get("DURABLE_FAULT_MAX_INTERVAL", "1.0"))
WORKERS = 3
IN_FLIGHT = 20
WAL_LIMIT = 1024 * 1024
APP = Path(fault_app.__file__)


class Workers:
    """The worker processes, their logs, and the kills."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.effects = directory / "effects.log"
        self.env = {**os.environ, "FAULT_LOG": str(self.effects), "FAULT_WAL_LIMIT": str(WAL_LIMIT),
                    "PYTHONPATH": str(ROOT)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kills = 0
        self.started = 0

    def start(self, index: int) -> None:
        with open(self.directory / f"worker-{index}.err", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, str(APP), self.url], env=self.env, stdout=subprocess.DEVNULL, stderr=err
            )
        self.started += 1
        if index < len(self.procs):
            self.procs[index] = proc
        else:
            self.procs.append(proc)

    def kill_one(self) -> None:
        index = random.randrange(len(self.procs))
        proc = self.procs[index]
        if proc.poll() is not None:  # it died by itself: that is a failure of its own
            raise AssertionError(f"worker {index} exited with {proc.returncode}: {self.log(index)}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.kills += 1
        self.start(index)

    def log(self, index: int) -> str:
        return (self.directory / f"worker-{index}.err").read_text()[-3000:]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wal_size(url: str) -> int:
    if not url.startswith("sqlite:"):
        return 0
    try:
        return os.path.getsize(url.removeprefix("sqlite:///").partition("?")[0] + "-wal")
    except OSError:
        return 0


# Long enough for the killing (at most MAX_INTERVAL per kill) and the checks; the marker would
# override a --timeout given on the command line.
@pytest.mark.timeout(600 + int(KILLS * MAX_INTERVAL * 2))
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "memory"])
async def test_sigkilled_workers_lose_nothing_and_record_nothing_twice(backend: str, tmp_path: Path) -> None:
    """Three workers, one SIGKILLed at random every 0.5-1 s (50 times) and restarted, on a mixed workload:
    every run finishes right, nothing recorded is lost or recorded twice, no run is stuck, the WAL stays
    bounded and the reading client's notifier is back at its baseline."""
    url = fresh_store_url(backend, tmp_path) if backend == "postgres" else f"sqlite:///{tmp_path / 'fault.db'}?synchronous=normal"
    workers = Workers(url, tmp_path)
    runs: dict[str, tuple[str, str]] = {}  # run_id -> (workflow, key)
    unresumed: dict[str, str] = {}  # hook token -> key, for mixed runs not yet resumed
    unfinished: set[str] = set()
    wal_max = 0
    began = time.monotonic()
    async with durable.Client(url) as client:
        baseline = len(client.store.notifier)
        for i in range(WORKERS):
            workers.start(i)
        try:
            next_kill = time.monotonic() + 1.0 + random.uniform(0.5, MAX_INTERVAL)  # the first workers start up

            async def tend(starting: bool) -> None:
                """Start runs to keep IN_FLIGHT going, resume hooks that are there, see what finished."""
                nonlocal wal_max
                for run_id in list(unfinished):
                    record = await client.store.get_run(run_id)
                    assert record is not None
                    if record.status in ("completed", "failed", "cancelled"):
                        unfinished.discard(run_id)
                for token, key in list(unresumed.items()):
                    if await client.store.get_hook(token) is not None:
                        await client.resume_hook(token, {"key": key})
                        del unresumed[token]
                while starting and len(unfinished) < IN_FLIGHT:
                    key = f"k{len(runs)}"
                    if len(runs) % 4 == 3:
                        run = await client.start(fault_app.streamer, key, 4)
                        runs[run.run_id] = ("streamer", key)
                    else:
                        run = await client.start(fault_app.mixed, key)
                        runs[run.run_id] = ("mixed", key)
                        unresumed[f"fault:{key}"] = key
                    unfinished.add(run.run_id)
                wal_max = max(wal_max, _wal_size(url))

            while workers.kills < KILLS:
                await tend(starting=True)
                if time.monotonic() >= next_kill:
                    workers.kill_one()
                    next_kill = time.monotonic() + random.uniform(0.5, MAX_INTERVAL)
                await anyio.sleep(0.05)
            killing_ended = time.monotonic()
            with anyio.fail_after(120):  # no run may be stuck once the killing stops
                while unfinished:
                    await tend(starting=False)
                    await anyio.sleep(0.05)
            settled = time.monotonic()
        finally:
            workers.stop()

        figures = await _check(client, runs, workers.effects)
        assert len(client.store.notifier) == baseline, "the reading client left listeners behind"
    if url.startswith("sqlite:"):
        # Between two looks at its size the WAL grows by what ~100 steps write, more under load.
        assert wal_max < WAL_LIMIT + 16 * 1024 * 1024, f"the WAL reached {wal_max:,} bytes"
    figures.update(
        backend=backend, kills=workers.kills, workers_started=workers.started, wal_max_bytes=wal_max,
        seconds_killing=round(killing_ended - began, 1), seconds_to_settle=round(settled - killing_ended, 1),
    )
    print("\nfault injection:", json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    assert figures["lost"] == 0 and figures["duplicated"] == 0, figures


async def _check(client: durable.Client, runs: dict[str, tuple[str, str]], effects_log: Path) -> dict[str, Any]:
    """Every invariant of the suite, run by run; the figures."""
    executed: Counter[tuple[str, int]] = Counter()
    for line in effects_log.read_text().splitlines():
        step_id, attempt, _label = json.loads(line)
        executed[(step_id, attempt)] += 1
    steps = lost = duplicated = 0
    for run_id, (workflow, key) in runs.items():
        run = client.run(run_id)
        result = await run.result(timeout=5)
        events = await run.events()
        completions = Counter(e.correlation_id for e in events if e.kind == "step_completed")
        created = {e.correlation_id for e in events if e.kind == "step_created"}
        assert set(completions) == created, (run_id, "a created step never completed")
        duplicated += sum(count - 1 for count in completions.values())
        for event in events:
            if event.kind == "step_completed":
                steps += 1
                if executed[(f"{run_id}/{event.correlation_id}", event.attempt or 0)] == 0:
                    lost += 1  # recorded as completed by an attempt that never ran its body
        if workflow == "mixed":
            assert result == fault_app.expected_mixed(key), (run_id, result)
            assert [e.kind for e in events].count("hook_received") == 1, (run_id, "a payload delivered twice or never")
            chunks = [c async for c in run.stream("progress", with_metadata=True)]
            assert [c.index for c in chunks] == list(range(len(chunks))), (run_id, "chunk indices have gaps or repeats")
            [corr] = [e.correlation_id for e in events if e.kind == "step_created" and e.name == "fault.progress"]
            [done] = [e for e in events if e.kind == "step_completed" and e.correlation_id == corr]
            final = [c.value for c in chunks if c.attempt == done.attempt]
            assert final == [{"i": i, "attempt": done.attempt} for i in range(5)], (run_id, final)
        else:
            assert result is None
            assert [c async for c in run.stream()] == [{"i": i} for i in range(4)], (run_id, "a yield written twice")
    # Each mixed run's flaky step fails its first attempt on purpose; the other extra executions are
    # steps run again after a kill (at least once), never recorded twice.
    by_design = sum(1 for workflow, _ in runs.values() if workflow == "mixed")
    return {"runs": len(runs), "steps": steps, "executions": sum(executed.values()),
            "re_executions": sum(executed.values()) - steps - by_design, "lost": lost, "duplicated": duplicated}
