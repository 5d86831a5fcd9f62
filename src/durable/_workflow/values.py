"""``durable.set_event``: a run's named, durable values, read from outside while it runs.

A workflow publishes its current state under a key (``set_event("progress", 0.4)``); callers
read it with ``await run.get_event("progress")`` (which waits until it is set), over HTTP
(``GET /runs/{id}/values/{key}``, or followed live over SSE), in the notebook widget and on the
runs page. Each call is a recorded command (``value_set`` at its position): published once,
never again on replay, and checked there like any other command.
"""

from __future__ import annotations

from typing import Any

from .._core.ids import is_text
from .context import workflow_host


def set_event(key: str, value: Any) -> None:
    """Publish ``value`` (any codec value) as this run's current value under ``key``, replacing the last one."""
    host = workflow_host("set_event")
    if not is_text(key) or len(key) > 200 or "/" in key:
        raise ValueError(f"event key must be text of 1-200 characters without '/', got {key!r}")
    host.set_value(key, value)
