"""A run's whole history as stable, documented JSON: what ``durable export`` writes and
``durable.testing.load_history`` reads.

Format (``"format": "durable.history"``, ``"format_version": 1``; a reader refuses versions it
does not know, and later versions only add keys)::

    {
      "format": "durable.history", "format_version": 1,
      "run_id": "run_01J...", "workflow": "shop:checkout", "version": "2" | null,
      "status": "completed", "seed": "9f2c...", "created_at": 1718000000.125,
      "input": <payload>, "forked_from": null | {"run_id": "...", "step": "step_4"},
      "events": [
        {"seq": 1, "kind": "run_created", "correlation_id": null, "name": "shop:checkout",
         "attempt": null, "created_at": 1718000000.125, "data": <payload>},
        ...
      ]
    }

A ``<payload>`` is ``null``, ``{"json": "<text>"}`` for a value of durable's JSON codec (the
exact text it recorded, after its ``DJ1:`` tag: readable, and replayed byte for byte), or
``{"base64": "<bytes>"}`` for anything else (a pickled value, a stream write's digest).
Timestamps are seconds since the epoch, as recorded. Events are every kind the store keeps,
oldest first; one event per line, so two exports diff well.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.codec import JSON_TAG
from .._core.errors import RunNotFound
from .._core.events import Event
from ..stores._base import Store

FORMAT = "durable.history"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class History:
    """One run's recorded history: what its replay needs (events, input, seed) and what it was."""

    run_id: str
    workflow: str
    status: str
    input: bytes
    seed: str
    events: list[Event] = field(repr=False)
    version: str | None = None
    created_at: float = 0.0
    forked_from: str | None = None
    forked_step: str | None = None

    def to_json(self) -> str:
        """The documented JSON text (one event per line)."""
        head: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "run_id": self.run_id, "workflow": self.workflow,
            "version": self.version, "status": self.status, "seed": self.seed, "created_at": self.created_at,
            "input": _payload(self.input),
            "forked_from": {"run_id": self.forked_from, "step": self.forked_step} if self.forked_from else None,
        }
        lines = [json.dumps(_event_json(e), ensure_ascii=False, separators=(", ", ": ")) for e in self.events]
        body = json.dumps(head, ensure_ascii=False, indent=2)[:-2]  # without the closing "\n}"
        return body + ',\n  "events": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "history") -> History:
        """Parse the documented JSON; ValueError naming what is wrong."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{source} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"{source} is not a durable history (no \"format\": {FORMAT!r}): write one with `durable export`")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source} has format_version {doc.get('format_version')!r}; this durable reads version {FORMAT_VERSION}"
            )
        try:
            run_id = _text(doc, "run_id")
            events = [_event(run_id, e, i) for i, e in enumerate(doc["events"])]
            forked = doc.get("forked_from")
            return cls(
                run_id=run_id, workflow=_text(doc, "workflow"), status=_text(doc, "status"),
                input=_bytes(doc["input"], "input") or b"", seed=_text(doc, "seed"), events=events,
                version=doc.get("version"), created_at=float(doc.get("created_at") or 0.0),
                forked_from=forked["run_id"] if forked else None, forked_step=forked["step"] if forked else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source} is not a valid durable history: {exc!r}") from None


async def read_history(store: Store, run_id: str) -> History:
    """A run's history as stored now (RunNotFound if there is no such run)."""
    record = await store.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    events = await store.load_events(run_id)
    return History(
        run_id=record.run_id, workflow=record.workflow_name, status=record.status, input=record.input, seed=record.seed,
        events=events, version=record.version, created_at=record.created_at, forked_from=record.forked_from,
        forked_step=record.forked_step,
    )


def load_history(path: str | Path) -> History:
    """Read a history written by ``durable export`` (a file path)."""
    location = Path(path)
    return History.from_json(location.read_bytes(), source=str(location))


def _payload(data: bytes | None) -> dict[str, str] | None:
    if data is None:
        return None
    data = bytes(data)
    if data[:4] == JSON_TAG:
        try:
            return {"json": data[4:].decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {"base64": base64.b64encode(data).decode("ascii")}


def _bytes(payload: Any, where: str) -> bytes | None:
    if payload is None:
        return None
    if isinstance(payload, dict) and isinstance(payload.get("json"), str) and len(payload) == 1:
        text: str = payload["json"]
        return JSON_TAG + text.encode("utf-8")
    if isinstance(payload, dict) and isinstance(payload.get("base64"), str) and len(payload) == 1:
        encoded: str = payload["base64"]
        return base64.b64decode(encoded, validate=True)
    raise ValueError(f"{where}: a payload is null, {{\"json\": text}} or {{\"base64\": text}}, not {payload!r}")


def _event_json(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq, "kind": e.kind, "correlation_id": e.correlation_id, "name": e.name, "attempt": e.attempt,
        "created_at": e.created_at, "data": _payload(e.data),
    }


def _event(run_id: str, raw: Any, index: int) -> Event:
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    seq, kind, created = raw["seq"], raw["kind"], raw["created_at"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(kind, str) or not isinstance(created, int | float):
        raise ValueError(f"{where}: seq must be an integer, kind a string and created_at a number")
    return Event(
        run_id, seq, kind, raw.get("correlation_id"), float(created), raw.get("name"), _bytes(raw.get("data"), where),
        raw.get("attempt"),
    )


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {value!r}")
    return value
