"""The one projection of stored runs, steps and hooks: what every view shows.

The Python API (``run.info()``, ``run.steps()``, ``run.hooks()``), the web API and runs page,
the CLI and the notebook all build their views from :class:`RunInfo`, :class:`StepInfo` and
:class:`HookInfo`, so a status, a duration, an attempt count or a retry time reads the same
wherever it is shown. Durations follow one rule: from the first start to completion, or to
now while unfinished; ``None`` if it never started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .._core import codec as _codec
from .._core.durations import LATEST as _LATEST
from .._core.durations import as_datetime as stored_datetime
from .._core.errorinfo import ErrorInfo, decode_error
from .._core.errors import SerializationError
from .._core.events import Event, EventKind
from .._core.ids import WEBHOOK_PATH
from ..stores._base import TERMINAL, HookRecord, RunRecord, ScheduleRecord, StepRecord


def as_datetime(ts: float | None) -> datetime | None:
    """A stored epoch timestamp as an aware datetime (None stays None; out of range: the earliest or
    latest moment, so no stored value can break a view)."""
    return None if ts is None else stored_datetime(ts)


def _required(ts: float) -> datetime:
    value = as_datetime(ts)
    assert value is not None
    return value


def _duration(started_at: datetime | None, completed_at: datetime | None) -> float | None:
    if started_at is None:
        return None
    end = completed_at or datetime.now(UTC)
    return max(0.0, (end - started_at).total_seconds())


def hook_metadata(record: HookRecord | None) -> dict[str, Any]:
    """What a stored hook carries: ``"schema"`` (a define_hook name), ``"webhook"`` (its answer
    mode) and ``"user"`` (create_hook's metadata); ``{}`` when it has none. Raises
    SerializationError when it cannot be decoded here: callers that check a schema must not
    skip the check because of it."""
    if record is None or not record.metadata:
        return {}
    value = _codec.decode(record.metadata, root="hook metadata")
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class ResumeResult:
    """Which hook of which run a resume delivered to."""

    run_id: str
    hook_id: str
    token: str


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    workflow_name: str
    status: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: ErrorInfo | None
    idempotency_key: str | None
    parent_run_id: str | None = None  # the run that started this one as its child
    cancel_reason: str | None = None  # why a cancelled run was cancelled: "timeout", "parent closed" (None: cancel())
    deadline: datetime | None = None  # when it is cancelled if still unfinished (timeout=)
    queue: str | None = None  # the queue it was started in
    priority: int | None = None
    queue_key: str | None = None
    admitted_at: datetime | None = None  # when its queue admitted it; None while it waits (or unqueued)
    schedule: str | None = None  # the schedule that started it
    scheduled_at: datetime | None = None  # the tick it was started for
    version: str | None = None  # the version label of the code that started the run
    forked_from: str | None = None  # the run this one was forked from (run.fork, durable.rerun) ...
    forked_step: str | None = None  # ... at this command: what came before it is that run's history

    @classmethod
    def from_record(cls, r: RunRecord) -> RunInfo:
        return cls(
            r.run_id, r.workflow_name, r.status, _required(r.created_at), as_datetime(r.started_at),
            as_datetime(r.completed_at), decode_error(r.error, encrypted_ok=True) if r.error else None, r.idempotency_key,
            r.parent_run_id, r.cancel_reason, as_datetime(r.deadline), r.queue, r.priority, r.queue_key,
            as_datetime(r.admitted_at), r.schedule, as_datetime(r.scheduled_at),
            r.version, r.forked_from, r.forked_step,
        )

    @property
    def queued(self) -> bool:
        """Waiting for its queue to admit it."""
        return self.queue is not None and self.admitted_at is None and self.status == "pending"

    @property
    def duration(self) -> float | None:
        """Seconds from the start to completion (to now while unfinished); None before it started."""
        return _duration(self.started_at, self.completed_at)


@dataclass(frozen=True, slots=True)
class StepInfo:
    step_id: str
    name: str
    status: str
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    retry_at: datetime | None  # when the next attempt is due, for a step waiting to be retried
    error: ErrorInfo | None
    input: bytes | None = None  # the recorded arguments, as stored (see :attr:`arguments`)

    @property
    def arguments(self) -> tuple[list[Any], dict[str, Any]] | None:
        """The step's arguments ``(args, kwargs)``, or None when this process cannot decode them
        (pickled, or a class it cannot import)."""
        if not self.input or self.input[:4] != _codec.JSON_TAG:
            return None
        try:
            value = _codec.decode(self.input, root="step arguments")
        except SerializationError:
            return None
        return list(value.get("args", [])), dict(value.get("kwargs", {}))

    @classmethod
    def from_record(cls, r: StepRecord) -> StepInfo:
        # A pending step that never ran is due at once: it has no retry time, only a retried one does.
        retry_at = as_datetime(r.ready_at) if r.status == "pending" and r.attempt > 0 else None
        return cls(
            r.step_id, r.name, r.status, r.attempt, r.max_attempts, _required(r.created_at),
            as_datetime(r.started_at), as_datetime(r.completed_at), retry_at,
            decode_error(r.error, encrypted_ok=True) if r.error else None, r.input,
        )

    @property
    def duration(self) -> float | None:
        """Seconds from the first start to completion (to now while unfinished); None before it started."""
        return _duration(self.started_at, self.completed_at)


@dataclass(frozen=True, slots=True)
class HookInfo:
    hook_id: str
    token: str
    status: str
    created_at: datetime
    metadata: Any  # what the workflow passed to create_hook(metadata=...)
    is_webhook: bool = False
    schema: str | None = None  # the define_hook name, for typed hooks

    @classmethod
    def from_record(cls, r: HookRecord) -> HookInfo:
        try:
            meta = hook_metadata(r)
        except SerializationError:  # e.g. a class only the workflow's process can rebuild
            meta = {}
        schema = meta.get("schema")
        return cls(
            r.hook_id, r.token, r.status, _required(r.created_at), meta.get("user"), "webhook" in meta,
            None if schema is None else str(schema),
        )

    @property
    def path(self) -> str | None:
        """The URL path a webhook is reached at (None for a plain hook)."""
        return WEBHOOK_PATH + quote(self.token, safe="") if self.is_webhook else None


@dataclass(frozen=True, slots=True)
class Waiting:
    """One thing an unfinished run waits for: a ``timer`` (``until``), a ``hook`` or ``webhook``
    (``token``), a ``step`` running or due, or a ``retry`` of a step (``until`` the next attempt)."""

    kind: str  # timer | hook | webhook | step | retry
    id: str  # the wait, hook or step id within the run
    until: datetime | None = None
    token: str | None = None
    step: StepInfo | None = None


def waiting_for(run: RunInfo, steps: list[StepInfo], hooks: list[HookInfo], events: list[Event]) -> list[Waiting]:
    """What an unfinished run waits for, soonest first where there is a time; nothing once it ended.

    Timers come from the log (``wait_created`` without a ``wait_completed``/``wait_cancelled``),
    hooks and steps from their rows. Read ``events`` before the rows: separate reads are separate
    snapshots, and rows older than the log would show a step still running next to the timer
    its completion led to.
    """
    if run.status in TERMINAL:
        return []
    timers: dict[str, datetime | None] = {}
    for e in events:
        if e.kind == EventKind.WAIT_CREATED and e.correlation_id:
            try:
                resume_at = _codec.decode(e.data) if e.data else None
            except SerializationError:
                resume_at = None
            timers[e.correlation_id] = as_datetime(resume_at) if isinstance(resume_at, int | float) else None
        elif e.kind in (EventKind.WAIT_COMPLETED, EventKind.WAIT_CANCELLED) and e.correlation_id:
            timers.pop(e.correlation_id, None)
    out = [Waiting("timer", wait_id, until=until) for wait_id, until in timers.items()]
    for s in steps:
        if s.status in ("pending", "running"):
            retrying = s.status == "pending" and s.retry_at is not None
            out.append(Waiting("retry" if retrying else "step", s.step_id, until=s.retry_at if retrying else None, step=s))
    out.extend(
        Waiting("webhook" if h.is_webhook else "hook", h.hook_id, token=h.token) for h in hooks if h.status == "active"
    )
    return sorted(out, key=lambda w: (w.until is None, w.until or _LATEST))
@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as the store keeps it: its next tick, whether it is paused, what it skipped."""

    name: str
    workflow_name: str
    cron: str | None
    every: float | None
    timezone: str
    overlap: str
    catchup_window: float
    paused: bool
    next_at: datetime
    buffered_at: datetime | None  # a tick waiting for the run before it to end (overlap="buffer_one")
    skipped: int
    last_tick: datetime | None
    last_run_id: str | None

    @classmethod
    def from_record(cls, r: ScheduleRecord) -> ScheduleInfo:
        spec, options = json.loads(r.spec), json.loads(r.options)
        return cls(
            r.name, r.workflow_name, spec.get("cron"), spec.get("every"), spec.get("timezone", "UTC"),
            options.get("overlap", "skip"), float(options.get("catchup_window", 0.0)), r.paused, _required(r.next_at),
            as_datetime(r.buffered_at), r.skipped, as_datetime(r.last_tick), r.last_run_id,
        )
