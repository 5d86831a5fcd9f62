"""Helpers for testing workflows: replay a recorded history against (possibly changed) code.

``await check_replay(run)`` replays the run's event log cold, with the code registered now,
and raises :class:`durable.NonDeterminismError` if the code no longer matches the history --
the check to run in CI before deploying a change to a workflow that has runs in flight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._client.run import Run
from ._core import codec as _codec
from ._core.commands import Command
from ._core.errorinfo import decode_error
from ._core.errors import NonDeterminismError, WorkflowNotFound
from ._core.events import Event, EventKind
from ._engine.instance import WorkflowInstance
from ._workflow.workflow import Workflow
from ._workflow.workflow import workflows as registered_workflows


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
