"""``durable.logger``: logging from workflow and step code that a replay does not repeat.

A workflow's code runs again on every replay (after a crash, an eviction, a cold start), so a
plain ``logging`` call in it logs again each time. ``durable.logger`` logs once per real
execution: while the code re-lives history an earlier execution already committed, its records
are dropped. Every record carries ``run_id``, ``workflow``, and in steps ``step`` and
``attempt``, as ``extra`` fields (``%(run_id)s`` in a format, or structured log handlers).
``print()`` in workflow code is left alone -- and is repeated by replays: prefer the logger.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from .context import current_instance, current_step


class WorkflowLogger(logging.LoggerAdapter):  # type: ignore[type-arg]  # LoggerAdapter is generic only in stubs
    """A logger adapter that knows where it is called from (see the module docstring)."""

    def isEnabledFor(self, level: int) -> bool:
        host = current_instance.get()
        if host is not None and host.is_replaying:
            return False
        return bool(self.logger.isEnabledFor(level))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields: dict[str, Any] = {}
        host = current_instance.get()
        if host is not None:
            fields = {"run_id": host.metadata.run_id, "workflow": host.metadata.workflow_name}
        else:
            step = current_step.get()
            if step is not None:
                meta, workflow = step.metadata, step.workflow_metadata
                fields = {"run_id": meta.run_id, "workflow": workflow.workflow_name, "step": meta.step_name, "attempt": meta.attempt}
        if fields:
            kwargs["extra"] = {**fields, **(kwargs.get("extra") or {})}
        return msg, kwargs


#: Log from workflow and step code: once per real execution, with the run's fields.
logger = WorkflowLogger(logging.getLogger("durable.workflow"), {})
