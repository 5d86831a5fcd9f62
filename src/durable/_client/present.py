"""Runs, steps, hooks, events and values as plain JSON: what the web API and ``durable ... --json`` print.

Built from the one projection (:mod:`.projection`) and, for what only the log knows (attempts,
timers, hook payloads), the :mod:`.timeline`, so JSON, tables and widgets agree. Values come
out of the codec and through ``to_plain_json``. Pickled payloads never reach a client (they
are not unpickled here at all: the server answers for the bytes it decodes). Recorded
tracebacks name files and source lines, so they are left out unless the caller says the
reader may see them (``tracebacks=True``: the web app decides who may, see
``durable.web._guard``; ``durable inspect`` shows them to someone with access to the store);
lists never carry them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .._core import codec as _codec
from .._core.durations import as_datetime
from .._core.errorinfo import ErrorInfo, decode_error
from .._core.errors import SerializationError
from .._core.events import Event
from .._core.queues import QueueState
from .hookschema import expected_payload
from .projection import HookInfo, RunInfo, ScheduleInfo, StepInfo, Waiting, waiting_for
from .published import Published
from .timeline import Attempt, Lane, Timeline

PICKLED = "<pickled value>"


def iso(when: datetime | float | None) -> str | None:
    """ISO 8601 with its zone (UTC)."""
    if when is None:
        return None
    if not isinstance(when, datetime):
        when = as_datetime(when)
    return when.isoformat()


def dumps(value: Any) -> str:
    """Compact JSON text; never contains a raw newline, so it fits on one SSE ``data:`` line.

    Always encodable as UTF-8: a lone surrogate (which the codec keeps in stored values) is
    written as its ``\\udXXX`` escape -- valid JSON -- instead of failing the response.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def plain_value(data: bytes | None) -> Any:
    """A codec payload as plain JSON data.

    A value whose class this process cannot rebuild is shown in its tagged form, which is
    already plain JSON: a person still sees the data instead of an error.
    """
    if data is None:
        return None
    data = bytes(data)
    if data[:4] == _codec.PICKLE_TAG:
        return PICKLED
    if data[:4] == _codec.ENCRYPTED_TAG:
        return _codec.ENCRYPTED  # this process holds no key for it (see durable.Encryption)
    try:
        return _codec.to_plain_json(_codec.decode(data))
    except SerializationError:
        try:
            return json.loads(data[4:])
        except ValueError:
            return "<undecodable value>"


def error_json(error: ErrorInfo | bytes | None, *, traceback: bool = False) -> dict[str, str] | None:
    """An error's type and message, and its recorded traceback with ``traceback=True``."""
    if not error:
        return None
    info = error if isinstance(error, ErrorInfo) else decode_error(error, encrypted_ok=True)
    out = {"type": info.type, "message": info.message}
    if traceback and info.traceback:
        out["traceback"] = info.traceback
    return out


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def run_summary(r: RunInfo) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "workflow": r.workflow_name,
        "version": r.version,
        "forked_from": {"run_id": r.forked_from, "step": r.forked_step} if r.forked_from else None,
        "status": r.status,
        "created_at": iso(r.created_at),
        "started_at": iso(r.started_at),
        "completed_at": iso(r.completed_at),
        "duration": _seconds(r.duration),
        "error": error_json(r.error),
        "parent_run_id": r.parent_run_id,
        "cancel_reason": r.cancel_reason,
        "deadline": iso(r.deadline),
        "schedule": None if r.schedule is None else {"name": r.schedule, "scheduled_at": iso(r.scheduled_at)},
        "queue": None if r.queue is None else {
            "name": r.queue, "priority": r.priority, "key": r.queue_key, "admitted_at": iso(r.admitted_at),
            "waiting": r.queued,
        },
    }


def schedule_json(s: ScheduleInfo) -> dict[str, Any]:
    return {
        "name": s.name,
        "workflow": s.workflow_name,
        "cron": s.cron,
        "every": s.every,
        "timezone": s.timezone,
        "overlap": s.overlap,
        "catchup_window": s.catchup_window,
        "paused": s.paused,
        "next_at": iso(s.next_at),
        "buffered_at": iso(s.buffered_at),
        "skipped": s.skipped,
        "last_tick": iso(s.last_tick),
        "last_run_id": s.last_run_id,
    }


def queue_json(q: QueueState) -> dict[str, Any]:
    """A queue's occupancy: what is active, what waits, its rate window and why it admits nothing now."""
    return {
        "name": q.name,
        "concurrency": q.concurrency,
        "active": q.active,
        "waiting": q.waiting,
        "rate": None if q.rate_count is None else {"count": q.rate_count, "period": q.rate_period,
                                                   "used": q.admitted_in_window},
        "next_admission_at": iso(q.next_admission_at),
        "blocked_by": q.blocked_by,
    }


def waiting_reasons(runs: list[dict[str, Any]], states: list[QueueState]) -> None:
    """Say why each waiting queued run (of these summaries) waits: its queue's ``blocked_by``."""
    by_name = {q.name: q for q in states}
    for run in runs:
        queue = run.get("queue")
        if queue and queue["waiting"]:
            state = by_name.get(queue["name"])
            queue["why"] = (state.blocked_by if state is not None else None) or "waiting to be admitted"


def step_json(s: StepInfo) -> dict[str, Any]:
    return {
        "step_id": s.step_id,
        "name": s.name,
        "status": s.status,
        "attempts": s.attempts,
        "max_attempts": s.max_attempts,
        "created_at": iso(s.created_at),
        "started_at": iso(s.started_at),
        "completed_at": iso(s.completed_at),
        "duration": _seconds(s.duration),
        "retry_at": iso(s.retry_at),
        "error": error_json(s.error),
    }


def hook_json(h: HookInfo, timeline: Timeline | None = None) -> dict[str, Any]:
    """A hook; with the run's ``timeline``, the payloads it received, and for a typed hook what
    it expects (``expected``: its JSON Schema and an example payload, where this process knows
    the definition)."""
    out: dict[str, Any] = {
        "hook_id": h.hook_id,
        "token": h.token,
        "status": h.status,
        "kind": "webhook" if h.is_webhook else "hook",
        "created_at": iso(h.created_at),
    }
    if h.schema:
        out["schema"] = h.schema
    if h.path is not None:
        out["path"] = h.path
    if timeline is not None:
        out["received"] = [{"at": iso(at), "payload": plain_value(data)} for at, data in timeline.payloads(h.hook_id)]
        if h.schema:
            described, example, known = expected_payload(h.schema)
            out["expected"] = {"known": known, "json_schema": described, "example": example}
    return out


def event_json(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "kind": e.kind,
        "correlation_id": e.correlation_id,
        "name": e.name,
        "attempt": e.attempt,
        "created_at": iso(e.created_at),
        "data": _event_data(e),
    }


def _event_data(e: Event) -> Any:
    if e.kind in ("step_failed", "step_retrying", "run_failed", "child_failed") and e.data:
        return error_json(e.data)
    if e.kind == "wait_created" and e.data:
        resume_at = plain_value(e.data)  # a timer's deadline, as a time a person can read
        if isinstance(resume_at, int | float) and not isinstance(resume_at, bool):
            try:
                return {"resume_at": iso(resume_at)}
            except (OverflowError, ValueError, OSError):
                return {"resume_at": resume_at}
    if e.kind == "stream_written" and e.data and not _codec.is_encrypted(e.data):
        return {"digest": bytes(e.data).hex()}  # the chunk itself is in the stream, by index
    return plain_value(e.data)


def run_detail(
    r: RunInfo, output: bytes | None, steps: list[StepInfo], hooks: list[HookInfo], streams: list[tuple[str, int, bool]],
    children: list[RunInfo] | None = None, values: list[tuple[str, bytes, int, float]] | None = None,
    *, input: bytes | None = None, timeline: Timeline | None = None, tracebacks: bool = False,
) -> dict[str, Any]:
    """A run with its steps, hooks and streams; with its recorded ``input``, the arguments it
    was started with; with its ``timeline`` (every event of the log folded in), the waterfall,
    what it waits for and the payloads its hooks received."""
    out = run_summary(r)
    out["error"] = error_json(r.error, traceback=tracebacks)
    out["idempotency_key"] = r.idempotency_key
    if input is not None:
        out["input"] = input_json(input)
    out["result"] = plain_value(output) if r.status == "completed" else None
    out["steps"] = [step_json(s) for s in steps]
    out["hooks"] = [hook_json(h, timeline) for h in hooks]
    out["streams"] = [{"namespace": ns, "chunks": n, "closed": closed} for ns, n, closed in streams]
    out["children"] = [run_summary(c) for c in children or []]
    out["values"] = {key: plain_value(data) for key, data, _, _ in values or []}
    if timeline is not None:
        out["timeline"] = timeline_json(timeline)
        out["waiting_for"] = [waiting_json(w) for w in waiting_for(r, steps, hooks, timeline.wait_events)]
    return out


def value_json(key: str, data: bytes, seq: int, updated_at: float) -> dict[str, Any]:
    return {"key": key, "value": plain_value(data), "seq": seq, "updated_at": iso(updated_at)}


def input_json(data: bytes) -> dict[str, Any] | None:
    """A run's recorded arguments as ``{"args", "kwargs", "exact"}``; None when pickled or undecodable.

    ``exact``: the arguments are plain JSON as recorded, so starting a run with them (POST /runs)
    records the same input; values JSON has no word for (dates, dataclasses, ...) are shown in
    their plain form, which a new start would not turn back into the same values.
    """
    value = plain_value(data)
    if not isinstance(value, dict) or not isinstance(value.get("args"), list) or not isinstance(value.get("kwargs"), dict):
        return None
    try:
        exact = json.loads(bytes(data)[4:]) == value
    except ValueError:
        exact = False
    return {"args": value["args"], "kwargs": value["kwargs"], "exact": exact}


def attempt_json(a: Attempt, *, tracebacks: bool = False) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "started_at": iso(a.started_at),
        "ended_at": iso(a.ended_at),
        "duration": None if a.ended_at is None else _seconds(max(0.0, a.ended_at - a.started_at)),
        "outcome": a.outcome,
        "error": error_json(a.error, traceback=tracebacks),
        "retry_at": iso(a.retry_at),
    }


def lane_json(lane: Lane) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": lane.kind, "id": lane.id, "name": lane.name, "status": lane.status,
        "created_at": iso(lane.created_at), "ended_at": iso(lane.ended_at),
    }
    if lane.kind == "step":
        out["attempts"] = [attempt_json(a) for a in lane.attempts]
    elif lane.kind == "timer":
        out["until"] = iso(lane.until)
    elif lane.kind == "hook":
        out["received"] = [iso(at) for at, _ in lane.received]
    return out


def timeline_json(t: Timeline) -> dict[str, Any]:
    """The waterfall: the run's start and end, and one lane per step, timer and hook, in the order created."""
    return {
        "created_at": iso(t.created_at), "started_at": iso(t.started_at), "ended_at": iso(t.ended_at),
        "lanes": [lane_json(lane) for lane in t.lanes.values()],
    }


def step_detail(s: StepInfo, output: bytes | None, lane: Lane | None, *, tracebacks: bool = False) -> dict[str, Any]:
    """One step in full: its arguments, its result or error, every attempt with its timings."""
    out = step_json(s)
    out["error"] = error_json(s.error, traceback=tracebacks)
    out["arguments"] = plain_value(s.input)  # {"args", "kwargs"}, or "<pickled value>"
    out["result"] = plain_value(output) if s.status == "completed" else None
    out["queued"] = (
        None if s.started_at is None else _seconds(max(0.0, (s.started_at - s.created_at).total_seconds()))
    )
    out["attempt_history"] = [attempt_json(a, tracebacks=tracebacks) for a in lane.attempts] if lane is not None else []
    return out


def waiting_json(w: Waiting) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": w.kind, "id": w.id}
    if w.until is not None:
        out["until"] = iso(w.until)
    if w.token is not None:
        out["token"] = w.token
    if w.step is not None:
        out.update(name=w.step.name, status=w.step.status, attempts=w.step.attempts, max_attempts=w.step.max_attempts,
                   error=error_json(w.step.error))
    return out


def published_json(p: Published) -> dict[str, Any]:
    r = p.record
    return {
        "name": r.name, "parameters": p.parameters, "serializer": r.serializer, "version": r.version,
        "startable": p.startable, "published_by": r.worker_id, "published_at": iso(r.published_at),
    }
