"""Streams as workflow code sees them: ``durable.get_writable()`` and the :class:`StreamHandle` it returns.

In a workflow, writes are recorded commands (replays do not repeat them); in a step they go
through the step attempt's buffered writer.
"""

from __future__ import annotations

from typing import Any

from .._core.errors import NotInWorkflowError
from .._core.ids import DEFAULT_NAMESPACE, is_text
from .context import StepWriter, current_instance, current_step


class StreamHandle:
    """A reference to a run's stream: what ``get_writable()`` returns inside a workflow, and what a
    writer becomes when passed to a step. Writes from a workflow are recorded commands (replays
    do not repeat them); in a step they go through the step's buffered writer."""

    def __init__(self, run_id: str, namespace: str) -> None:
        self.run_id = run_id
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"<StreamHandle run={self.run_id} namespace={self.namespace!r}>"

    async def write(self, value: Any) -> None:
        instance = current_instance.get()
        if instance is not None:
            instance.write_chunk(self.namespace, value)
            return
        await _step_writer(self.namespace, self.run_id).write(value)

    async def flush(self) -> None:
        if current_instance.get() is None:
            await _step_writer(self.namespace, self.run_id).flush()

    async def close(self) -> None:
        instance = current_instance.get()
        if instance is not None:
            instance.close_stream(self.namespace)
            return
        await _step_writer(self.namespace, self.run_id).close()

    async def __aenter__(self) -> StreamHandle:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()

    def __durable_serialize__(self) -> dict[str, str]:
        return {"run_id": self.run_id, "namespace": self.namespace}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, str]) -> StreamHandle:
        return cls(data["run_id"], data["namespace"])


def _step_writer(namespace: str, run_id: str | None) -> StepWriter:
    step = current_step.get()
    if step is None:
        raise NotInWorkflowError("get_writable")
    return step.writer(namespace, run_id)


def get_writable(namespace: str = DEFAULT_NAMESPACE) -> Any:
    """The run's stream ``namespace``: a buffered :class:`StreamWriter` in a step, a
    :class:`StreamHandle` in a workflow (recorded writes, passable to steps)."""
    if not is_text(namespace):
        raise ValueError(f"stream namespace must be non-empty text, got {namespace!r}")
    instance = current_instance.get()
    if instance is not None:
        return StreamHandle(instance.run_id, namespace)
    return _step_writer(namespace, None)
