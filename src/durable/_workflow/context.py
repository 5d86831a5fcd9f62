"""Where workflow and step code is running: the context variables, what they hold, and the metadata.

Workflow-side objects (steps called in a workflow, hooks, stream handles, ``durable.sleep``)
talk to whatever runs them only through the small protocols below: :class:`WorkflowHost` is
the replay engine's instance of a run, :class:`StepHost` the worker's view of one step
attempt. Typing them as protocols keeps this layer below the engine and the worker, which
implement them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .._core.errors import NotInStepError, NotInWorkflowError, SideEffectInWorkflowError
from .._core.events import Event


@dataclass(frozen=True, slots=True)
class WorkflowMetadata:
    """The current run: its id, workflow name, start time and the base URL of its webhooks; for a run a
    schedule started, the tick it was started for (``scheduled_at``)."""

    run_id: str
    workflow_name: str
    started_at: datetime
    url: str | None = None
    scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StepMetadata:
    """Who this attempt is. ``step_id`` is the step's id within its run (``step_1``, as
    ``run.steps()``, the events, the CLI and the runs page show it); ``idempotency_key`` is
    ``"<run_id>/<step_id>"``: stable across retries and unique across runs, the key to hand to
    external side effects."""

    step_id: str
    step_name: str
    attempt: int
    started_at: datetime
    run_id: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.step_id}"


class HookSubscriber(Protocol):
    """What the engine delivers a hook's events to."""

    def deliver(self, event: Event) -> None: ...
    def conflict(self) -> None: ...


class WorkflowHost(Protocol):
    """What workflow code reaches through :data:`current_instance`: one run's replay instance."""

    run_id: str
    metadata: WorkflowMetadata

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def user_random(self) -> random.Random: ...
    @property
    def is_replaying(self) -> bool: ...
    def call_step(
        self, step: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, spelled: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> Coroutine[Any, Any, Any]: ...
    def create_hook(self, hook: HookSubscriber, token: str | None, metadata: bytes | None) -> tuple[str, str]: ...
    def dispose_hook(self, correlation_id: str) -> None: ...
    def write_chunk(self, namespace: str, value: Any, *, root: str = "chunk") -> None: ...
    def close_stream(self, namespace: str) -> None: ...
    def start_child(
        self, workflow: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, run_id: str | None, on_parent_close: str,
        queue: Any,
    ) -> Any: ...  # a ChildHandle (_workflow/children.py); queue: a QueueSpec or None
    def cancel_child(self, correlation_id: str) -> None: ...
    def set_value(self, key: str, value: Any) -> None: ...
    def patch(self, patch_id: str, *, deprecated: bool) -> bool: ...


class StepWriter(Protocol):
    """A step's buffered writer to one stream (``durable.get_writable()`` in a step)."""

    @property
    def closed(self) -> bool: ...
    async def write(self, value: Any) -> None: ...
    async def flush(self) -> None: ...
    async def close(self) -> None: ...


class StepHost(Protocol):
    """What step code reaches through :data:`current_step`: the attempt that is running."""

    @property
    def metadata(self) -> StepMetadata: ...
    @property
    def workflow_metadata(self) -> WorkflowMetadata: ...
    def writer(self, namespace: str, run_id: str | None = None) -> StepWriter: ...


# Set inside the tasks of a workflow's deterministic loop.
current_instance: ContextVar[WorkflowHost | None] = ContextVar("durable_instance", default=None)
# Set while a step attempt runs on the runtime's loop.
current_step: ContextVar[StepHost | None] = ContextVar("durable_step", default=None)


def workflow_host(api: str) -> WorkflowHost:
    """The running workflow's instance; NotInWorkflowError naming ``api`` outside a workflow."""
    host = current_instance.get()
    if host is None:
        raise NotInWorkflowError(api)
    return host


def refuse_in_workflow(api: str) -> None:
    """Workflow code must not act on the world: only steps' effects are recorded, once."""
    if current_instance.get() is not None:
        raise SideEffectInWorkflowError(api)


def get_workflow_metadata() -> WorkflowMetadata:
    """The current run's id, workflow name and start time; works in workflows and in steps."""
    host = current_instance.get()
    if host is not None:
        return host.metadata
    step = current_step.get()
    if step is not None:
        return step.workflow_metadata
    raise NotInWorkflowError("get_workflow_metadata")


def get_step_metadata() -> StepMetadata:
    """The running step's id (stable across retries), attempt number (1-based) and first start time."""
    step = current_step.get()
    if step is None:
        raise NotInStepError("get_step_metadata")
    return step.metadata
