"""Runs, steps, hooks, events and values as plain JSON: what the web API and ``durable ... --json`` print.

Built from the one projection (:mod:`.projection`), so JSON, tables and widgets agree. Values
come out of the codec and through ``to_plain_json``. Two things never reach a client:
pickled payloads (they are not unpickled here at all: the server answers for the bytes it
decodes) and recorded tracebacks (they may name files and locals; ``durable inspect`` shows
them to someone with access to the store).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .._core import codec as _codec
from .._core.errorinfo import ErrorInfo, decode_error
from .._core.errors import SerializationError
from .._core.events import Event
from .._core.queues import QueueState
from .projection import HookInfo, RunInfo, ScheduleInfo, StepInfo, Waiting
from .published import Published

PICKLED = "<pickled value>"


def iso(when: datetime | float | None) -> str | None:
    """ISO 8601 with its zone (UTC)."""
    if when is None:
        return None
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
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


def error_json(error: ErrorInfo | bytes | None) -> dict[str, str] | None:
    """An error's type and message (its traceback stays out of HTTP answers)."""
    if not error:
        return None
    info = error if isinstance(error, ErrorInfo) else decode_error(error, encrypted_ok=True)
    return {"type": info.type, "message": info.message}


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


def hook_json(h: HookInfo) -> dict[str, Any]:
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
) -> dict[str, Any]:
    out = run_summary(r)
    out["idempotency_key"] = r.idempotency_key
    out["result"] = plain_value(output) if r.status == "completed" else None
    out["steps"] = [step_json(s) for s in steps]
    out["hooks"] = [hook_json(h) for h in hooks]
    out["streams"] = [{"namespace": ns, "chunks": n, "closed": closed} for ns, n, closed in streams]
    out["children"] = [run_summary(c) for c in children or []]
    out["values"] = {key: plain_value(data) for key, data, _, _ in values or []}
    return out


def value_json(key: str, data: bytes, seq: int, updated_at: float) -> dict[str, Any]:
    return {"key": key, "value": plain_value(data), "seq": seq, "updated_at": iso(updated_at)}
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
