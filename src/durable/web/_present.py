"""Store records as plain JSON for HTTP clients and the runs page.

Values come out of the codec and through ``to_plain_json``. Two things never reach a client:
pickled payloads (they are not unpickled here at all: the server answers for the bytes it
decodes) and recorded tracebacks (they may name files and locals; ``durable inspect`` shows
them to someone with access to the store).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .._client.projection import hook_metadata
from .._core import codec as _codec
from .._core.errorinfo import decode_error
from .._core.errors import SerializationError
from .._core.events import Event
from .._core.ids import WEBHOOK_PATH
from ..stores._base import HookRecord, RunRecord, StepRecord

PICKLED = "<pickled value>"


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


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
    try:
        return _codec.to_plain_json(_codec.decode(data))
    except SerializationError:
        try:
            return json.loads(data[4:])
        except ValueError:
            return "<undecodable value>"


def error_json(data: bytes | None) -> dict[str, str] | None:
    if not data:
        return None
    info = decode_error(data)
    return {"type": info.type, "message": info.message}


def _duration(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(end - start, 6)


def run_summary(r: RunRecord) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "workflow": r.workflow_name,
        "status": r.status,
        "created_at": iso(r.created_at),
        "started_at": iso(r.started_at),
        "completed_at": iso(r.completed_at),
        "duration": _duration(r.started_at, r.completed_at),
        "error": error_json(r.error),
    }


def step_json(s: StepRecord) -> dict[str, Any]:
    return {
        "step_id": s.step_id,
        "name": s.name,
        "status": s.status,
        "attempts": s.attempt,
        "max_attempts": s.max_attempts,
        "created_at": iso(s.created_at),
        "started_at": iso(s.started_at),
        "completed_at": iso(s.completed_at),
        "duration": _duration(s.started_at, s.completed_at),
        "retry_at": iso(s.ready_at) if s.status == "pending" and s.attempt > 0 else None,
        "error": error_json(s.error),
    }


def hook_json(h: HookRecord) -> dict[str, Any]:
    try:
        metadata = hook_metadata(h)
    except SerializationError:
        metadata = {}
    is_webhook = "webhook" in metadata
    out: dict[str, Any] = {
        "hook_id": h.hook_id,
        "token": h.token,
        "status": h.status,
        "kind": "webhook" if is_webhook else "hook",
        "created_at": iso(h.created_at),
    }
    if metadata.get("schema"):
        out["schema"] = str(metadata["schema"])
    if is_webhook:
        out["path"] = WEBHOOK_PATH + quote(h.token, safe="")
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
    if e.kind in ("step_failed", "step_retrying", "run_failed") and e.data:
        return error_json(e.data)
    if e.kind == "stream_written" and e.data:
        return {"digest": bytes(e.data).hex()}  # the chunk itself is in the stream, by index
    return plain_value(e.data)


def run_detail(
    r: RunRecord, steps: list[StepRecord], hooks: list[HookRecord], streams: list[tuple[str, int, bool]]
) -> dict[str, Any]:
    out = run_summary(r)
    out["idempotency_key"] = r.idempotency_key
    out["result"] = plain_value(r.output) if r.status == "completed" else None
    out["steps"] = [step_json(s) for s in steps]
    out["hooks"] = [hook_json(h) for h in hooks]
    out["streams"] = [{"namespace": ns, "chunks": n, "closed": closed} for ns, n, closed in streams]
    return out
