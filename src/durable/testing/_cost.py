"""What replaying a recorded run costs, with the code of now: ``await measure_replay(run)`` and ``durable bench-replay``.

Three figures, measured in the same process on the same store, so they compare:

- cold: read the run's log (one range read) and replay it with a fresh instance -- what a worker
  pays to pick up a run it holds no live instance of (after a restart, a crash, an eviction), per
  event of the log (median, min and max over ``repeat`` replays);
- sticky: deliver one event to a live instance -- what a run costs between steps normally;
- floor: read the same rows and decode their payloads, no replay: what any reader pays.

A cold replay costs O(events), flat per event; the sticky cost should not grow with the history.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._client.run import Run
from .._core import codec as _codec
from .._core.errorinfo import decode_error
from .._core.errors import NonDeterminismError, RunNotFound, WorkflowNotFound
from .._core.events import DELIVERY_KINDS, EventKind
from .._engine.instance import WorkflowInstance
from .._workflow.workflow import Workflow
from .._workflow.workflow import workflows as registered_workflows
from ..stores._base import Store


@dataclass(frozen=True)
class ReplayCost:
    """Microseconds per event of replaying one run; see the module docstring for what each figure is."""

    run_id: str
    workflow: str
    events: int  # events a replay reads (creations and deliveries)
    steps: int
    repeat: int
    cold_median: float
    cold_min: float
    cold_max: float
    sticky: float  # per delivery to a live instance (the event, the records before it, the slice it runs)
    floor: float  # reading and decoding the rows, per event

    def __str__(self) -> str:
        ratio = self.cold_median / self.floor if self.floor else float("nan")
        total = self.cold_median * self.events / 1000
        per_step = f" = {self.cold_median * self.events / self.steps:.1f} µs per step" if self.steps else ""
        return "\n".join([
            f"run {self.run_id} ({self.workflow}): {self.events} events read by a replay ({self.steps} steps), "
            f"replayed cold {self.repeat} times",
            f"cold replay:  {self.cold_median:7.2f} µs per event (min {self.cold_min:.2f}, max {self.cold_max:.2f}){per_step}: "
            f"{total:.2f} ms for the whole run",
            f"sticky:       {self.sticky:7.2f} µs per delivery to a live instance (a result and the slice it resumes: "
            "the path between steps)",
            f"floor:        {self.floor:7.2f} µs per event to read the rows and decode them ({ratio:.1f}x)",
        ])


async def measure_replay(run: Run, repeat: int = 5, *, workflow: Workflow[Any, Any] | None = None) -> ReplayCost:
    """Replay ``run`` cold ``repeat`` times with the code of now (``workflow``, or the one this process
    defines under its name) and measure what it costs; NonDeterminismError if the code no longer replays it."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    finder: Callable[[str], Workflow[Any, Any] | None] = getattr(run.client, "get_workflow", registered_workflows.resolve)
    return await measure_store(run.store, run.run_id, repeat, workflow=workflow, find=finder)


async def measure_store(
    store: Store, run_id: str, repeat: int, *, workflow: Workflow[Any, Any] | None = None,
    find: Callable[[str], Workflow[Any, Any] | None] = registered_workflows.resolve,
) -> ReplayCost:
    record = await store.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    wf = workflow or find(record.workflow_name)
    if wf is None:
        raise WorkflowNotFound(record.workflow_name, sorted(registered_workflows))
    cold, floor, sticky = [], [], []
    events: list[Any] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        events, _ = await store.read_log(run_id, 0)
        instance = WorkflowInstance(wf, run_id=run_id, input=record.input, seed=record.seed, replay_until=math.inf)
        try:
            outcome = instance.advance(events)
        finally:
            instance.close()
        cold.append(time.perf_counter() - t0)
        if outcome.diverged:
            error = decode_error(outcome.error or b"").exception
            raise error if isinstance(error, NonDeterminismError) else NonDeterminismError(0, "?", str(error))

        t0 = time.perf_counter()
        rows, _ = await store.read_log(run_id, 0)
        for event in rows:
            if event.data is not None and event.data[:4] == _codec.JSON_TAG:
                _codec.decode(event.data)
        floor.append(time.perf_counter() - t0)

        sticky.append(statistics.median(_deliveries(wf, record.input, record.seed, run_id, events) or [0.0]))
    count = max(1, len(events))
    per_event = [t / count * 1e6 for t in cold]
    return ReplayCost(
        run_id=run_id, workflow=record.workflow_name, events=len(events),
        steps=sum(1 for e in events if e.kind == EventKind.STEP_CREATED), repeat=repeat,
        cold_median=statistics.median(per_event), cold_min=min(per_event), cold_max=max(per_event),
        sticky=statistics.median(sticky) * 1e6, floor=statistics.median(floor) / count * 1e6,
    )


def _deliveries(wf: Workflow[Any, Any], input: bytes, seed: str, run_id: str, events: list[Any]) -> list[float]:
    """The time of each delivery to one live instance fed the log as the runtime feeds it: each event
    that resumes the workflow with the records before it."""
    instance = WorkflowInstance(wf, run_id=run_id, input=input, seed=seed, replay_until=math.inf)
    timings: list[float] = []
    batch: list[Any] = []
    try:
        for event in events:
            batch.append(event)
            if event.kind in DELIVERY_KINDS:
                t0 = time.perf_counter()
                instance.advance(batch)
                timings.append(time.perf_counter() - t0)
                batch = []
    finally:
        instance.close()
    return timings
