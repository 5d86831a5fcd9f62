"""Event records: the event log is the truth about a run.

Kinds, grouped by what replay does with them:

- *creation records* say the workflow issued a command at a position (``step_created``,
  ``hook_created``, ``hook_conflict``, ``wait_created``, ``stream_written``,
  ``stream_closed``, ``child_started``, ``value_set``, ``patch_marked``); replay checks each new call
  against the record at its position;
- *deliveries* resolve something the workflow awaits, one per idle point, in log order
  (``run_started``, ``step_completed``, ``step_failed``, ``wait_completed``,
  ``hook_received``, ``hook_conflict``, ``child_completed``, ``child_failed``,
  ``child_cancelled``: a child run's end, appended to its parent's log by the child's last
  transaction);
- the rest are history that replay skips (``run_created``, ``step_started``,
  ``step_retrying``, ``step_cancelled``, ``wait_cancelled``, ``hook_disposed``, terminal run
  events).

A step's attempts start with ``step_started`` (``attempt``: which one), except the first attempt of
a step claimed by the very commit that created it (a chain's next step, the first steps of a gather):
its ``step_created`` carries ``attempt=1`` instead (schema 9: one event a step fewer). On any other
``step_created``, ``attempt`` is None: the step waits to be claimed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from . import codec as _codec
from .durations import as_datetime


class EventKind(StrEnum):
    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    STEP_CREATED = "step_created"
    STEP_STARTED = "step_started"
    STEP_RETRYING = "step_retrying"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_CANCELLED = "step_cancelled"  # a running attempt whose run was cancelled (or ended) meanwhile
    HOOK_CREATED = "hook_created"
    HOOK_CONFLICT = "hook_conflict"
    HOOK_RECEIVED = "hook_received"
    HOOK_DISPOSED = "hook_disposed"
    WAIT_CREATED = "wait_created"
    WAIT_COMPLETED = "wait_completed"
    WAIT_CANCELLED = "wait_cancelled"
    STREAM_WRITTEN = "stream_written"
    STREAM_CLOSED = "stream_closed"
    CHILD_STARTED = "child_started"  # name: the child's workflow, data: its arguments
    CHILD_COMPLETED = "child_completed"  # data: the child's result
    CHILD_FAILED = "child_failed"  # data: the child's error record
    CHILD_CANCELLED = "child_cancelled"
    VALUE_SET = "value_set"  # name: the key, data: the value (durable.set_event)
    PATCH_MARKED = "patch_marked"  # durable.patched(name) took the patched code at this position


CREATION_KINDS = frozenset(
    {
        EventKind.STEP_CREATED,
        EventKind.HOOK_CREATED,
        EventKind.HOOK_CONFLICT,
        EventKind.WAIT_CREATED,
        EventKind.STREAM_WRITTEN,
        EventKind.STREAM_CLOSED,
        EventKind.CHILD_STARTED,
        EventKind.VALUE_SET,
        EventKind.PATCH_MARKED,
    }
)
DELIVERY_KINDS = frozenset(
    {
        EventKind.RUN_STARTED,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_FAILED,
        EventKind.WAIT_COMPLETED,
        EventKind.HOOK_RECEIVED,
        EventKind.HOOK_CONFLICT,
        EventKind.CHILD_COMPLETED,
        EventKind.CHILD_FAILED,
        EventKind.CHILD_CANCELLED,
    }
)
CHILD_ENDS = frozenset({EventKind.CHILD_COMPLETED, EventKind.CHILD_FAILED, EventKind.CHILD_CANCELLED})
# What replay needs to read; everything else is skipped when loading a log.
REPLAY_KINDS = CREATION_KINDS | DELIVERY_KINDS | {EventKind.WAIT_CANCELLED, EventKind.HOOK_DISPOSED}
# A run's last event: a history that holds one is complete (no command can follow).
TERMINAL_KINDS = frozenset({EventKind.RUN_COMPLETED, EventKind.RUN_FAILED, EventKind.RUN_CANCELLED})


class Event(NamedTuple):
    """One entry of a run's event log.

    ``correlation_id`` names the step, hook, wait or stream write the event is about
    (``step_3``: the third command the workflow issued); ``name`` is the step name, hook
    token or stream namespace; ``data`` is the codec payload (arguments, result, error,
    hook payload, ...), decoded by :attr:`value`. A named tuple: replay builds thousands of
    these per log, and tuples are the cheapest immutable records Python has.
    """

    run_id: str
    seq: int
    kind: str
    correlation_id: str | None
    created_at: float
    name: str | None = None
    data: bytes | None = None
    attempt: int | None = None

    @property
    def timestamp(self) -> datetime:
        return as_datetime(self.created_at)

    @property
    def value(self) -> Any:
        """The decoded payload (``None`` when the event has none). Pickled payloads are not decoded here."""
        if self.data is None:
            return None
        if self.data[:4] == _codec.PICKLE_TAG:
            return "<pickled value>"
        if self.data[:4] == _codec.ENCRYPTED_TAG:
            return _codec.ENCRYPTED  # read without its key (see durable.Encryption)
        return _codec.decode(self.data, root=f"{self.kind}.data")

    @property
    def starts_attempt(self) -> bool:
        """Whether an attempt of the event's step started with it: a ``step_started``, or the
        ``step_created`` of a step claimed as it was created (its first attempt, ``attempt`` 1)."""
        return self.kind == EventKind.STEP_STARTED or (self.kind == EventKind.STEP_CREATED and self.attempt is not None)

    @property
    def position(self) -> int | None:
        """The command position encoded in the correlation id (``step_3`` -> 3)."""
        if not self.correlation_id:
            return None
        return int(self.correlation_id.rpartition("_")[2])

    def __repr__(self) -> str:
        extra = f" {self.correlation_id}" if self.correlation_id else ""
        name = f" {self.name!r}" if self.name else ""
        return f"<Event #{self.seq} {self.kind}{extra}{name}>"
