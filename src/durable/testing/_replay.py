"""Replaying recorded histories with the code of now: single logs, runs, exported histories, a whole store.

``await check_replay(run)`` replays the run's event log cold, with the code registered now,
and raises :class:`durable.NonDeterminismError` if the code no longer matches the history --
the check to run in CI before deploying a change to a workflow that has runs in flight.
:func:`replay_history` does the same for a history exported with ``durable export``;
:func:`check_store` for every unfinished run (and the latest finished ones) of a store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._client.history import History
from .._client.history import read_history as _read_history
from .._client.run import Run
from .._core import codec as _codec
from .._core.commands import Command
from .._core.errorinfo import decode_error
from .._core.errors import NonDeterminismError, WorkflowNotFound
from .._core.events import Event, EventKind
from .._engine.instance import WorkflowInstance
from .._workflow.workflow import Workflow
from .._workflow.workflow import workflows as registered_workflows
from ..stores._base import ACTIVE, TERMINAL, RunRecord, Store


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a cold replay of a log produced."""

    status: str  # suspended | completed | failed
    new_commands: list[Command]  # commands the log does not hold yet (empty for a finished run)
    result: Any = None
    error: BaseException | None = None


def replay_events(
    workflow: Workflow[Any, Any], events: Sequence[Event], *, input: bytes | None = None, seed: str | None = None
) -> ReplayResult:
    """Replay ``events`` (a whole log, oldest first) with ``workflow``'s current code."""
    created = next((e for e in events if e.kind == EventKind.RUN_CREATED), None)
    if input is None:
        if created is None or created.data is None:
            raise ValueError("the log has no run_created event: pass input= explicitly")
        input = created.data
    run_id = events[0].run_id if events else "run_replay"
    # A check, not an execution: the code re-lives the whole log (durable.logger stays quiet).
    instance = WorkflowInstance(workflow, run_id=run_id, input=input, seed=seed or "replay", replay_until=math.inf)
    try:
        outcome = instance.advance(list(events))
    finally:
        instance.close()
    if outcome.diverged:
        info = decode_error(outcome.error or b"")
        raise info.exception if isinstance(info.exception, NonDeterminismError) else NonDeterminismError(0, "?", info.message)
    if outcome.status == "completed":
        return ReplayResult("completed", outcome.commands, result=_codec.decode(outcome.result or b"", allow_pickle=True))
    if outcome.status == "failed":
        return ReplayResult("failed", outcome.commands, error=decode_error(outcome.error or b"").exception)
    return ReplayResult("suspended", outcome.commands)


async def check_replay(run: Run, workflow: Workflow[Any, Any] | None = None) -> ReplayResult:
    """Replay ``run``'s log with the current code (the registered workflow of that name by default)."""
    record = await run.store.get_run(run.run_id)
    assert record is not None
    wf = workflow or registered_workflows.resolve(record.workflow_name)
    if wf is None:
        raise WorkflowNotFound(record.workflow_name, sorted(registered_workflows))
    events = await run.store.load_events(run.run_id)
    return replay_events(wf, events, input=record.input, seed=record.seed)


async def read_history(run: Run) -> History:
    """``run``'s whole history as stored now: what ``durable export`` writes (``.to_json()``)."""
    return await _read_history(run.store, run.run_id)


def replay_history(workflow: Workflow[Any, Any] | None, history: History) -> ReplayResult:
    """Replay an exported history (:func:`load_history`) with ``workflow``'s current code (None: the
    workflow defined in this process under the name the history records).

    Returns what the replay produced; raises NonDeterminismError naming the position, what the
    history holds there and what the code did instead.
    """
    wf = workflow or registered_workflows.resolve(history.workflow)
    if wf is None:
        raise WorkflowNotFound(history.workflow, sorted(registered_workflows))
    return replay_events(wf, history.events, input=history.input, seed=history.seed)


# -- a whole store ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Divergence:
    run_id: str
    workflow: str
    status: str
    error: NonDeterminismError


@dataclass
class StoreCheck:
    """What :func:`check_store` found."""

    checked: int = 0
    workflows: set[str] = field(default_factory=set)
    diverged: list[Divergence] = field(default_factory=list)
    no_code: dict[str, int] = field(default_factory=dict)  # unfinished runs of workflows the code does not define
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.diverged and not self.no_code


async def check_store(
    store: Store,
    find: Callable[[str], Workflow[Any, Any] | None],
    names: Sequence[str],
    *,
    limit: int = 20,
    statuses: Sequence[str] = ("pending", "running", "completed", "failed", "cancelled"),
    unknown: bool = True,
    on_divergence: Callable[[Divergence], None] | None = None,
) -> StoreCheck:
    """Replay, with the code ``find`` returns for a stored workflow name, every unfinished run and the
    ``limit`` most recent finished runs stored under each of ``names`` (of those ``statuses``).

    ``unknown``: also count the unfinished runs of workflows ``find`` does not know (once deployed,
    nothing would run them).
    """
    started = time.perf_counter()
    report = StoreCheck()
    for name in names:
        wf = find(name)
        if wf is None:
            continue
        for record in await _candidates(store, name, limit, statuses):
            report.checked += 1
            report.workflows.add(wf.name)
            events = await store.load_events(record.run_id)
            try:
                replay_events(wf, events, input=record.input, seed=record.seed)
            except NonDeterminismError as exc:
                found = Divergence(record.run_id, record.workflow_name, record.status, exc)
                report.diverged.append(found)
                if on_divergence is not None:
                    on_divergence(found)
    if unknown and any(s in ACTIVE for s in statuses):
        for name, count in sorted((await store.active_workflows()).items()):
            if find(name) is None:
                report.no_code[name] = count
    report.seconds = time.perf_counter() - started
    return report


async def _candidates(store: Store, name: str, limit: int, statuses: Sequence[str]) -> list[RunRecord]:
    """Every unfinished run of ``name`` (of the statuses asked for), then the ``limit`` latest finished ones."""
    out: list[RunRecord] = []
    for status in (s for s in statuses if s in ACTIVE):
        before: str | None = None
        while True:
            page = await store.list_runs(status=status, workflow=name, limit=1000, before=before)
            out.extend(page)
            if len(page) < 1000:
                break
            before = page[-1].run_id
    finished: list[RunRecord] = []
    for status in (s for s in statuses if s in TERMINAL):
        finished.extend(await store.list_runs(status=status, workflow=name, limit=max(1, limit)))
    finished.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
    return out + (finished[:limit] if limit > 0 else [])
