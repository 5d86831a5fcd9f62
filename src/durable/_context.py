"""Context variables that tell the public API where it is being called from."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._replay import WorkflowInstance
    from ._runtime import Runtime
    from ._step_runner import StepContext

# Set inside the tasks of a workflow's deterministic loop.
current_instance: ContextVar[WorkflowInstance | None] = ContextVar("durable_instance", default=None)
# Set while a step attempt runs on the runtime's loop.
current_step: ContextVar[StepContext | None] = ContextVar("durable_step", default=None)
# Set inside ``async with Runtime(...)``: the module-level API acts on it.
current_runtime: ContextVar[Runtime | None] = ContextVar("durable_runtime", default=None)
