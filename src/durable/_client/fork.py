"""Fork and rerun: a new run that reuses a run's history up to a point and continues with the code deployed now.

``run.fork(from_step=4)`` copies the run's history before its 4th command (``step_4``): every
step recorded before it keeps its result and is not run again; hooks, timers, payloads and
stream chunks recorded by then come along. The new run replays that history with the current
code and runs the rest; it records ``forked_from`` (the source run and the step). The source is
only read. ``durable.rerun(run)`` forks a failed or cancelled run at its first failed (or, when
cancelled, unfinished) step; without one -- the workflow's own code failed, or its replay
diverged -- at the command that diverged, else at the end of its history, so fixed code replays
every recorded step and only what comes after runs.

Before anything is created, the history is replayed with the code this process defines: a fork
that would diverge raises NonDeterminismError here instead of making a run that fails at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._core.errorinfo import decode_error
from .._core.errors import ForkError, NonDeterminismError, RunNotFound, WorkflowNotFound
from .._core.events import CREATION_KINDS, REPLAY_KINDS, Event, EventKind
from .._core.ids import new_run_id
from .._engine.instance import WorkflowInstance
from .._workflow.context import refuse_in_workflow
from .._workflow.workflow import Workflow
from ..stores._base import ForkRun, RunRecord, Store

END = "end"  # forked_step of a fork that copies a whole history (it resumes after its last command)


async def fork_run(
    store: Store, run_id: str, from_step: int | str | None, input: Any, *,
    find: Callable[[str], Workflow[Any, Any] | None], rerun: bool = False,
) -> str:
    """Fork ``run_id`` before ``from_step`` (None: where a rerun starts); the new run's id.
    ``find`` looks up the workflow's code in this process (to bind ``input`` and check the replay)."""
    refuse_in_workflow("fork")
    record = await store.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    if rerun and record.status not in ("failed", "cancelled"):
        raise ForkError(run_id, f"it is {record.status}: rerun takes a failed or cancelled run (fork runs again from a step)")
    events = await store.load_events(run_id)
    cut, label = rerun_point(record, events) if from_step is None else step_point(run_id, events, from_step)
    wf = find(record.workflow_name)
    data: bytes | None = None
    if input is not None:
        if wf is None:
            raise WorkflowNotFound(record.workflow_name, [])
        args, kwargs = _arguments(input)
        bound_args, bound_kwargs = wf.binder.bind(args, kwargs)
        data = wf.binder.encode(bound_args, bound_kwargs, serializer=wf.serializer, root=f"arguments of {wf.name}")
    if wf is not None:
        _check_replay(wf, record, events, cut, data)
    created = await store.fork_run(ForkRun(
        source_id=run_id, run_id=new_run_id(), before_seq=cut, forked_step=label, input=data,
        version=wf.version if wf is not None else record.version, now=time.time(),
    ))
    return created.run_id


def step_point(run_id: str, events: Sequence[Event], from_step: int | str) -> tuple[int, str]:
    """The seq of the creation of ``step_<n>`` (``from_step`` is n, or that id), and the id."""
    if isinstance(from_step, bool) or not isinstance(from_step, int | str):
        raise TypeError(f"from_step must be a step's position (4) or id ('step_4'), got {from_step!r}")
    corr = f"step_{from_step}" if isinstance(from_step, int) else from_step
    created = next((e for e in events if e.kind == EventKind.STEP_CREATED and e.correlation_id == corr), None)
    if created is None:
        steps = [e.correlation_id or "" for e in events if e.kind == EventKind.STEP_CREATED]
        raise ForkError(run_id, f"it has no step {corr!r} (its steps: {', '.join(steps) or 'none'})")
    return created.seq, corr


def rerun_point(record: RunRecord, events: Sequence[Event]) -> tuple[int, str]:
    """Where a rerun starts: the first failed step; for a cancelled run the first step it left
    unfinished; for a divergence the command that diverged; else after the last recorded command."""
    creations = {e.correlation_id: e for e in events if e.kind in CREATION_KINDS and e.correlation_id}
    ended = {e.correlation_id for e in events if e.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED)}
    failed = [e for e in events if e.kind == EventKind.STEP_FAILED]
    if failed:
        first = min(failed, key=lambda e: e.position or 0).correlation_id or ""
        return creations[first].seq, first
    if record.status == "cancelled":
        unfinished = [e for e in events if e.kind == EventKind.STEP_CREATED and e.correlation_id not in ended]
        if unfinished:
            first_left = min(unfinished, key=lambda e: e.position or 0)
            return first_left.seq, first_left.correlation_id or ""
    error = decode_error(record.error).exception if record.error else None
    if isinstance(error, NonDeterminismError):
        diverged = next((e for e in creations.values() if e.position == error.position), None)
        if diverged is not None:
            return diverged.seq, diverged.correlation_id or ""
    return end_of_history(events), END


def end_of_history(events: Sequence[Event]) -> int:
    """The seq after the last command an ended run recorded: before its run-end cleanup (the hooks
    disposed, waits cancelled and streams closed when it ended) and its terminal event."""
    index = len(events)
    if index and events[-1].kind in (EventKind.RUN_COMPLETED, EventKind.RUN_FAILED, EventKind.RUN_CANCELLED):
        index -= 1
        while index and _cleanup(events[index - 1]):
            index -= 1
    return events[index].seq if index < len(events) else (events[-1].seq + 1 if events else 1)


def _cleanup(event: Event) -> bool:
    # A workflow's own dispose carries no token and its own close a position; those of the run's
    # end do. A wait the code cancelled in its last slice may be taken for cleanup: its replay
    # cancels it again.
    return (
        (event.kind == EventKind.HOOK_DISPOSED and event.name is not None)
        or event.kind == EventKind.WAIT_CANCELLED
        or (event.kind == EventKind.STREAM_CLOSED and event.correlation_id is None)
    )


def _arguments(value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``input=``: a list of positional arguments, or ``{"args": [...], "kwargs": {...}}``."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"args", "kwargs"}
        args, kwargs = value.get("args", []), value.get("kwargs", {})
        if unknown or not isinstance(args, Sequence) or isinstance(args, str) or not isinstance(kwargs, Mapping):
            raise TypeError(f'input must be a list of arguments or {{"args": [...], "kwargs": {{...}}}}, got {value!r}')
        return tuple(args), dict(kwargs)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(value), {}
    raise TypeError(f'input must be a list of arguments or {{"args": [...], "kwargs": {{...}}}}, got {value!r}')


def _check_replay(wf: Workflow[Any, Any], record: RunRecord, events: Sequence[Event], cut: int, data: bytes | None) -> None:
    prefix = [e for e in events if e.seq < cut and e.kind in REPLAY_KINDS]
    instance = WorkflowInstance(wf, run_id=record.run_id, input=data or record.input, seed=record.seed, replay_until=math.inf)
    try:
        outcome = instance.advance(prefix)
    finally:
        instance.close()
    if outcome.diverged:
        error = decode_error(outcome.error or b"").exception
        raise error if isinstance(error, NonDeterminismError) else NonDeterminismError(0, "?", str(error))
