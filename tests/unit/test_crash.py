"""Crash safety with real processes: SIGKILL a runtime at several points, resume in another process."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import durable
from tests.helpers import ROOT
from tests.unit import crash_app, multi_app  # noqa: F401 - register the crash.* and multi.* workflows here

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
APP = Path(__file__).with_name("crash_app.py")


class Crash:
    """A child process running ``crash_app.py`` against a SQLite file, and its side-effect log."""

    def __init__(self, tmp_path: Path, crash_at: str = "") -> None:
        self.url = f"sqlite:///{tmp_path / 'crash.db'}"
        self.log = tmp_path / "effects.log"
        self.dir = tmp_path
        self.env = {**os.environ, "CRASH_LOG": str(self.log), "CRASH_DIR": str(tmp_path), "CRASH_AT": crash_at,
                    "PYTHONPATH": str(ROOT)}
        os.environ["CRASH_LOG"] = str(self.log)  # steps re-run in this process log to the same file
        os.environ["CRASH_DIR"] = str(tmp_path)
        os.environ["CRASH_AT"] = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, run_id: str, workflow: str, *args: object) -> None:
        with open(self.dir / "child.err", "wb") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, str(APP), self.url, run_id, workflow, *(json.dumps(a) for a in args)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=err,
            )

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited early: {(self.dir / 'child.err').read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the child")
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    def effects(self) -> list[list[Any]]:  # JSON lines: [label, step_id, attempt, time]
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def logged(self, label: str) -> bool:
        return any(e[0] == label for e in self.effects())


async def test_kill_during_a_step_reruns_only_that_step_with_the_same_id(tmp_path: Path) -> None:
    """SIGKILL mid-step: completed steps are not re-run; the interrupted one re-runs as attempt 2, promptly."""
    crash = Crash(tmp_path, crash_at="step:b")
    crash.start("run-1", "crash.pipeline")
    crash.wait_until(lambda: (tmp_path / "step:b").exists())
    crash.kill()
    restarted = time.time()
    async with durable.Runtime(crash.url, heartbeat_interval=0.2) as rt:
        run = await rt.get_run("run-1")
        assert await run.result(timeout=30) == ["A", "B", "C", "D"]
        completions = [e for e in await run.events() if e.kind == "step_completed"]
    effects = crash.effects()
    by_label: dict[str, list[list[Any]]] = {}
    for e in effects:
        by_label.setdefault(str(e[0]), []).append(e)
    assert len(by_label["a"]) == 1 and len(by_label["d"]) == 1
    first, second = by_label["b"]
    assert first[1] == second[1] == "run-1/step_2"  # same step_id across attempts
    assert (first[2], second[2]) == (1, 2)
    assert float(second[3]) - restarted < 2.0  # recovered within two seconds
    assert sorted(str(e.correlation_id) for e in completions) == ["step_1", "step_2", "step_3", "step_4"]


async def test_kill_during_a_durable_sleep_fires_at_the_original_deadline(tmp_path: Path) -> None:
    """SIGKILL while the workflow sleeps: a new process wakes it at the deadline recorded before the crash."""
    crash = Crash(tmp_path)
    crash.start("run-2", "crash.sleeper", 2.0)
    crash.wait_until(lambda: crash.logged("before-sleep"))
    await anyio.sleep(0.3)  # let the wait be committed
    crash.kill()
    async with durable.Runtime(crash.url, heartbeat_interval=0.2) as rt:
        result = await (await rt.get_run("run-2")).result(timeout=30)
    assert result["woke_at"] - result["slept_from"] >= 2.0
    after = next(e for e in crash.effects() if e[0] == "after-sleep")
    assert abs(float(after[3]) - (result["slept_from"] + 2.0)) < 1.0  # not restarted from zero


async def test_hook_payloads_sent_while_the_runtime_is_dead_arrive_in_order(tmp_path: Path) -> None:
    """Payloads accepted while no runtime runs are kept durably and delivered once each, in order."""
    crash = Crash(tmp_path)
    crash.start("run-3", "crash.approvals")
    crash.wait_until(lambda: crash.logged("waiting"))
    await anyio.sleep(0.2)
    crash.kill()
    async with durable.Runtime(crash.url, workflows=[], execute_steps=False) as outside:  # executes nothing
        await outside.resume_hook("crash-approval", {"n": 1})
        await outside.resume_hook("crash-approval", {"n": 2})
    async with durable.Runtime(crash.url, heartbeat_interval=0.2) as rt:
        run = await rt.get_run("run-3")
        await rt.resume_hook("crash-approval", {"n": 3, "last": True})
        assert await run.result(timeout=30) == [{"n": 1}, {"n": 2}, {"n": 3, "last": True}, "AFTER-HOOK"]
        received = [e for e in await run.events() if e.kind == "hook_received"]
        assert [e.value["n"] for e in received] == [1, 2, 3]


async def test_kill_mid_stream_keeps_flushed_chunks_and_the_retry_writes_again(tmp_path: Path) -> None:
    """SIGKILL mid-stream: flushed chunks stay (marked attempt 1), the retry writes a full attempt 2, indices stay contiguous."""
    crash = Crash(tmp_path, crash_at="mid-stream")
    crash.start("run-4", "crash.streaming")
    crash.wait_until(lambda: (tmp_path / "mid-stream").exists())
    crash.kill()
    async with durable.Runtime(crash.url, heartbeat_interval=0.2) as rt:
        run = await rt.get_run("run-4")
        assert await run.result(timeout=30) == 10
        chunks = [c async for c in run.stream("tokens", with_metadata=True)]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    first = [c.value["i"] for c in chunks if c.attempt == 1]
    second = [c.value["i"] for c in chunks if c.attempt == 2]
    assert first == list(range(6))
    assert second == list(range(10))
    assert all(c.value["attempt"] == c.attempt for c in chunks)


async def test_kill_while_a_child_runs_starts_the_child_once_and_delivers_its_result_once(tmp_path: Path) -> None:
    """SIGKILL after the parent's commit that started a child (the child's step mid-way): a new process finds the
    child it started -- one child run, one child_started, one child_completed -- and only the interrupted step re-runs."""
    crash = Crash(tmp_path, crash_at="step:ship-box")
    crash.start("run-6", "crash.order", "box")
    crash.wait_until(lambda: (tmp_path / "step:ship-box").exists())
    crash.kill()
    async with durable.Runtime(crash.url, heartbeat_interval=0.2) as rt:
        run = await rt.get_run("run-6")
        assert await run.result(timeout=30) == ["ORDER-BEFORE", "SHIP-BOX", "ORDER-AFTER"]
        children = await run.children()
        kinds = [e.kind for e in await run.events()]
        child_events = [e.kind for e in await rt.run("run-6-c2").events()]
    assert [c.run_id for c in children] == ["run-6-c2"] and children[0].status == "completed"
    assert kinds.count("child_started") == 1 and kinds.count("child_completed") == 1
    assert child_events.count("run_created") == 1 and child_events.count("run_started") == 1
    by_label: dict[str, list[list[Any]]] = {}
    for e in crash.effects():
        by_label.setdefault(str(e[0]), []).append(e)
    assert len(by_label["order-before"]) == 1 and len(by_label["order-after"]) == 1
    first, second = by_label["ship-box"]  # the interrupted step re-ran once, with its step id
    assert first[1] == second[1] == "run-6-c2/step_1" and (first[2], second[2]) == (1, 2)


async def test_kill_during_a_schedule_tick_starts_each_tick_once(tmp_path: Path) -> None:
    """SIGKILL a runtime serving a schedule while one tick's run is mid-step; a new runtime catches up: every tick
    from the first to the last has exactly one run, and only the interrupted step ran twice."""
    crash = Crash(tmp_path, crash_at="tick")
    assert crash.proc is None
    with open(tmp_path / "child.err", "wb") as err:
        crash.proc = subprocess.Popen([sys.executable, str(APP), crash.url, "--schedule"], env=crash.env,
                                      stdout=subprocess.DEVNULL, stderr=err)
    crash.wait_until(lambda: (tmp_path / "tick").exists())
    crash.kill()
    await anyio.sleep(1.0)  # ticks pass while nobody serves the schedule: they are caught up
    async with durable.Runtime(crash.url, heartbeat_interval=0.2, poll_interval=0.05, schedules=[crash_app.TICKS]) as rt:
        with anyio.fail_after(30):
            while len([r for r in await rt.list_runs(limit=1000) if r.status == "completed"]) < 12:
                await anyio.sleep(0.05)
        await rt.pause_schedule("crash.every")
        runs = [r for r in await rt.list_runs(limit=1000) if r.schedule == "crash.every"]
        for r in runs:
            await rt.run(r.run_id).wait(timeout=30)
    ticks = sorted(r.scheduled_at.timestamp() for r in runs if r.scheduled_at is not None)
    assert len(ticks) == len(set(ticks)) == len(runs)  # one run per tick
    assert all(round(b - a, 3) == 0.3 for a, b in itertools.pairwise(ticks))  # and no tick left out
    attempts: dict[float, list[int]] = {}
    for label, _, attempt, _, scheduled in crash.effects():
        assert label == "tick"
        attempts.setdefault(scheduled, []).append(attempt)
    twice = [t for t, a in attempts.items() if len(a) > 1]
    assert len(twice) == 1 and attempts[twice[0]] == [1, 2]  # the interrupted tick's step, re-run once
    assert all(a == [1] for t, a in attempts.items() if t not in twice)


async def test_several_processes_share_one_sqlite_file_without_running_anything_twice(tmp_path: Path) -> None:
    """Two worker processes on one SQLite file: every run completes and each step is executed and recorded once."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    log = tmp_path / "multi.log"
    env = {**os.environ, "MULTI_LOG": str(log), "PYTHONPATH": str(ROOT)}
    app = Path(__file__).with_name("multi_app.py")
    async with durable.Runtime(url, workflows=[], execute_steps=False) as client:  # records runs, executes nothing
        runs = [await client.start("multi.job", f"r{i}") for i in range(40)]
        workers = [
            subprocess.Popen([sys.executable, str(app), url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)
        ]
        try:
            for i, run in enumerate(runs):
                assert await run.result(timeout=60) == [f"r{i}-0", f"r{i}-1", f"r{i}-2"]
            for run in runs:
                completions = [str(e.correlation_id) for e in await run.events() if e.kind == "step_completed"]
                assert sorted(completions) == ["step_1", "step_2", "step_3"]
        finally:
            for w in workers:
                w.kill()
                w.wait()
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 120  # no step ran twice: nobody crashed, so at-least-once is exactly once here
    assert len(set(lines)) == 120
