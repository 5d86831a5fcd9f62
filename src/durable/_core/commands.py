"""Commands: what a workflow asks the runtime to do, produced by replay and committed by the store.

A command at position *k* carries the correlation id ``<kind>_<k>``; the store turns each into
its creation event (``step_created``, ``hook_created``/``hook_conflict``, ``wait_created``,
``stream_written``, ``stream_closed``, ``child_started``, ``patch_marked``) or its follow-up (``wait_cancelled``,
``hook_disposed``, a child's cancellation) in the same transaction as the rest of the invocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .queues import QueueSpec

# Plain slotted records, not frozen: a frozen dataclass's __init__ sets each field through
# object.__setattr__ (~1 µs more for five fields), and a ScheduleStep is made on every step call.
# Nothing changes a command once it is made.


@dataclass(slots=True)
class ScheduleStep:
    correlation_id: str
    name: str
    input: bytes
    max_attempts: int
    queue: QueueSpec | None = None  # @step(queue=...): the step waits for its queue's admission


@dataclass(slots=True)
class CreateHook:
    correlation_id: str
    token: str
    metadata: bytes | None  # codec bytes: {"webhook": ..., "schema": ...}


@dataclass(slots=True)
class StartWait:
    correlation_id: str
    resume_at: float


@dataclass(slots=True)
class CancelWait:
    correlation_id: str


@dataclass(slots=True)
class DisposeHook:
    correlation_id: str


@dataclass(slots=True)
class WriteChunk:
    correlation_id: str
    namespace: str
    data: bytes
    digest: bytes


@dataclass(slots=True)
class CloseStream:
    correlation_id: str
    namespace: str


@dataclass(slots=True)
class StartChild:
    """Create a child run in the parent's commit (its id is deterministic, so it is created once)."""

    correlation_id: str
    workflow_name: str
    input: bytes
    run_id: str
    seed: str
    on_parent_close: str  # "cancel" | "abandon"
    timeout: float | None = None  # the child workflow's @workflow(timeout=...): its deadline is counted from its start
    queue: QueueSpec | None = None  # start_child(queue=...): the child waits for its queue's admission


@dataclass(slots=True)
class CancelChild:
    correlation_id: str  # the child_started position


@dataclass(slots=True)
class SetValue:
    """``durable.set_event(key, value)``: publish the run's current value under ``key``."""

    correlation_id: str
    key: str
    data: bytes


@dataclass(slots=True)
class MarkPatch:
    """``durable.patched(patch_id)`` reached for the first time: the run takes the patched code from here."""

    correlation_id: str
    patch_id: str


Command: TypeAlias = (
    ScheduleStep | CreateHook | StartWait | CancelWait | DisposeHook | WriteChunk | CloseStream | StartChild | CancelChild
    | SetValue | MarkPatch
)
