"""Commands: what a workflow asks the runtime to do, produced by replay and committed by the store.

A command at position *k* carries the correlation id ``<kind>_<k>``; the store turns each into
its creation event (``step_created``, ``hook_created``/``hook_conflict``, ``wait_created``,
``stream_written``, ``stream_closed``, ``patch_marked``) or its follow-up (``wait_cancelled``, ``hook_disposed``)
in the same transaction as the rest of the invocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    correlation_id: str
    name: str
    input: bytes
    max_attempts: int


@dataclass(frozen=True, slots=True)
class CreateHook:
    correlation_id: str
    token: str
    metadata: bytes | None  # codec bytes: {"webhook": ..., "schema": ...}


@dataclass(frozen=True, slots=True)
class StartWait:
    correlation_id: str
    resume_at: float


@dataclass(frozen=True, slots=True)
class CancelWait:
    correlation_id: str


@dataclass(frozen=True, slots=True)
class DisposeHook:
    correlation_id: str


@dataclass(frozen=True, slots=True)
class WriteChunk:
    correlation_id: str
    namespace: str
    data: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class CloseStream:
    correlation_id: str
    namespace: str


@dataclass(frozen=True, slots=True)
class MarkPatch:
    """``durable.patched(patch_id)`` reached for the first time: the run takes the patched code from here."""

    correlation_id: str
    patch_id: str


Command: TypeAlias = (
    ScheduleStep | CreateHook | StartWait | CancelWait | DisposeHook | WriteChunk | CloseStream | MarkPatch
)
