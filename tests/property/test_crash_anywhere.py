"""Property 2: a crash anywhere loses nothing and duplicates nothing.

Generated programs run on a SQLite file until a crash at a generated point (after any append,
between a step's side effects and the record of its outcome, in the middle of a stream flush);
then the file is reopened and a fresh runtime finishes the run. The final result, hook payloads
and workflow streams are what the program must produce (the oracle, same seed), every step's
outcome is recorded exactly once, stream indices have no gap or duplicate, and step streams hold
whole attempts in order.

Simulated crashes (:class:`crashing.CrashingStore`) give breadth; a few cases kill a real child
process with SIGKILL at a generated point of its log, and recover in this process, where the
runtime finds the dead worker by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import Phase, assume, event, given, note, settings
from hypothesis import strategies as st

import durable
from durable._core import codec as _codec
from durable.stores._sqlite import SQLiteStore
from tests.helpers import ROOT

from .conftest import examples
from .crashing import CrashingStore, CrashPlan, SimulatedCrash, check_recovered
from .harness import drive_hooks, read_history
from .programs import (
    CHILD_WORKFLOWS,
    STEP_MAX_ATTEMPTS,
    Program,
    Step,
    mutate_seq_items,
    programs,
    sequences,
    to_workflow,
)
from .sim import History, simulate


async def _quietly(fn: Any, *args: Any) -> None:
    with contextlib.suppress(SimulatedCrash):  # the outside world's calls fail once the store is dead
        await fn(*args)


async def _until_crash_or_end(store: CrashingStore, run_id: str) -> None:
    while not store.dead:
        try:
            record = await store.get_run(run_id)
        except SimulatedCrash:
            return
        if record is not None and record.status in ("completed", "failed", "cancelled"):
            return
        with anyio.move_on_after(0.01):
            await store.crashed.wait()


async def _recover(path: str, program: Program, run_id: str, dead_worker: str | None) -> History:
    store = SQLiteStore(path, synchronous="normal")
    await store.open()
    if dead_worker is not None:
        await store.mark_workers_dead([dead_worker])  # what the runtime does for a worker whose pid is gone
    workflow = to_workflow(program)
    async with durable.Runtime(store, workflows=[workflow, *CHILD_WORKFLOWS], poll_interval=0.02, heartbeat_interval=0.1) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive_hooks, rt, run_id, program)
            await rt.run(run_id).wait(timeout=30)
            tg.cancel_scope.cancel()
        return await read_history(rt.store, run_id)


async def crash_then_recover(program: Program, plan: CrashPlan, path: str) -> tuple[History, str]:
    """Run until the plan's crash (or the end), abandon that runtime, recover with a fresh one."""
    workflow = to_workflow(program)
    store = CrashingStore(path, plan)
    rt = durable.Runtime(store, workflows=[workflow, *CHILD_WORKFLOWS], poll_interval=0.02, heartbeat_interval=0.1)
    await rt.open()
    run_id = ""
    quiet = logging.getLogger("durable")
    quiet.disabled = True  # the dying runtime logs every operation that failed: expected here
    try:
        run = await rt.start(workflow)
        run_id = run.run_id
        async with anyio.create_task_group() as tg:
            tg.start_soon(_quietly, drive_hooks, rt, run_id, program)
            with anyio.fail_after(30):
                await _until_crash_or_end(store, run_id)
            tg.cancel_scope.cancel()
    finally:
        with contextlib.suppress(SimulatedCrash):  # it unregisters its worker: the dead store refuses
            await rt.aclose()
        quiet.disabled = False
    return await _recover(path, program, run_id, rt.worker_id), store.crash_point or "no crash: the run ended first"


@contextlib.contextmanager
def _collected() -> Iterator[None]:
    """Collect the abandoned runtime's garbage here, so anything it leaked is reported by this test."""
    try:
        yield
    finally:
        gc.collect()


def _bounds(program: Program) -> dict[str, int]:
    """Rough sizes of an uninterrupted run, to aim generated crash points inside it."""
    history = simulate(program, seed="bounds", rng=random.Random(0))
    outcomes = sum(1 for e in history.events if e.kind in ("step_completed", "step_failed", "step_retrying"))
    keys = {e.correlation_id: _codec.decode(e.data or b"")["args"][0] for e in history.events if e.kind == "step_created"}
    steps = program.steps()
    # A step writing n chunks appends them in two batches when n >= 2 (it flushes half-way), else one.
    flushes = sum(
        min(2, steps[keys[e.correlation_id]].chunks) for e in history.events if e.kind == "step_started"
    )
    return {
        "after-append": len(history.events) + sum(len(c) for c in history.chunks.values()),
        "before-outcome": outcomes,
        "mid-flush": flushes,
    }


@st.composite
def crash_cases(draw: st.DrawFn) -> tuple[Program, CrashPlan]:
    program = draw(programs().filter(lambda p: bool(p.steps())))
    bounds = _bounds(program)
    modes = [m for m, b in bounds.items() if b > 0]
    mode = draw(st.sampled_from(modes))
    return program, CrashPlan(mode, draw(st.integers(1, bounds[mode])))


@settings(max_examples=examples(60))
@given(crash_cases())
def test_a_crash_anywhere_loses_and_duplicates_nothing(case: tuple[Program, CrashPlan]) -> None:
    """After a simulated crash at a generated point and a restart, the run ends exactly as if uninterrupted."""
    program, plan = case
    note(f"{plan}\n{program!r}")
    with tempfile.TemporaryDirectory() as tmp, _collected():
        recovered, point = asyncio.run(crash_then_recover(program, plan, str(Path(tmp) / "crash.db")))
    note(f"crashed {point}")
    event(f"{plan.mode}: {'no crash' if point.startswith('no crash') else 'crashed'}")
    assert recovered.status in ("completed", "failed"), recovered.status
    check_recovered(program, recovered)


# -- real processes, really killed ------------------------------------------------------------------------


def _progress(db: str, run_id: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            seq = conn.execute("SELECT last_seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            chunks = conn.execute("SELECT count(*) FROM chunks WHERE run_id = ?", (run_id,)).fetchone()
    except sqlite3.Error:
        return 0
    return (seq[0] if seq else 0) + (chunks[0] if chunks else 0)


def _kill_at(db: str, program: Program, run_id: str, target: int, tmp: str) -> str:
    """Run the program in a child process and SIGKILL it once its run holds ``target`` log entries and chunks."""
    program_file = Path(tmp) / "program.bin"
    program_file.write_bytes(_codec.encode(program))
    log_path = Path(tmp) / "child.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.property.crash_child", db, str(program_file), run_id],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        try:
            while child.poll() is None and time.monotonic() < deadline:
                if _progress(db, run_id) >= target:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait()
                    return f"killed at {target} entries"
                time.sleep(0.001)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, f"the child failed before the kill point:\n{log_path.read_text()}"
    return "the child finished first"


def _no_last_attempts(program: Program) -> Program:
    """The program with every step ending by its third attempt (exhausting ones fail fatally instead).

    A kill during a step's last allowed attempt fails the step by design ("attempts lost to
    crashes count"); the simulated crashes hold back there, a real SIGKILL cannot.
    """

    # Every sequence, nested ones too (Random, Patched and Parallel branches): each keeps its
    # length, so the paths stay valid while items are replaced.
    for path, seq in sequences(program):
        current = dict(sequences(program))[path]
        items = tuple(
            dataclasses.replace(item, fails=2, fatal=True) if isinstance(item, Step) and item.fails >= STEP_MAX_ATTEMPTS
            else item
            for item in current.items
        )
        if items != seq.items:
            program = mutate_seq_items(program, path, items)
    return program


@pytest.mark.slow
# A real kill lands wherever the child happens to be: the same example does not crash the same
# way twice, so shrinking would only chase flakiness. A failure is reported as generated.
@settings(max_examples=examples(6), phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(program=programs().filter(lambda p: len(p.steps()) >= 2), fraction=st.floats(0.2, 0.9))
def test_sigkill_of_a_real_process_loses_and_duplicates_nothing(program: Program, fraction: float) -> None:
    """A child process SIGKILLed part-way through a run; a runtime here recovers it (finding the dead pid) and it ends as uninterrupted."""
    assume(any(isinstance(n, Step) for n in program.body.items))
    program = _no_last_attempts(program)
    target = max(3, int(_bounds(program)["after-append"] * fraction))
    note(f"kill at {target} entries\n{program!r}")
    with tempfile.TemporaryDirectory() as tmp, _collected():
        db = str(Path(tmp) / "kill.db")
        how = _kill_at(db, program, "run_killed", target, tmp)
        note(how)
        event(how.split(" at ")[0])
        recovered = asyncio.run(_recover(db, program, "run_killed", None))
    assert recovered.status in ("completed", "failed"), recovered.status
    check_recovered(program, recovered)
