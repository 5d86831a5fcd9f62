"""A run's timeline: when each step attempt, timer and hook wait began and ended, from its event log.

The rows of the store say where a step is now (status, attempt count, first start, completion);
only the log says what happened in between: when each attempt started and how it ended, how
long a retry waited, when a timer was set and for when, when a hook was created and when each
payload arrived. :class:`Timeline` folds events into that, incrementally (``feed`` the events
after :attr:`Timeline.last_seq`), so a live view reads each event once, not the whole log on
every change. The runs page draws it as a waterfall; the step view lists a step's attempts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._core import codec as _codec
from .._core.errorinfo import ErrorInfo, decode_error
from .._core.errors import SerializationError
from .._core.events import Event, EventKind

_ENDS_ATTEMPT = {
    EventKind.STEP_COMPLETED: "completed",
    EventKind.STEP_RETRYING: "retrying",
    EventKind.STEP_FAILED: "failed",
    EventKind.STEP_CANCELLED: "cancelled",
}


@dataclass(slots=True)
class Attempt:
    """One attempt of a step. ``outcome``: running, completed, retrying (it failed and the step
    is retried at ``retry_at``), failed, cancelled, or lost (its worker died: the next attempt
    started without this one ending)."""

    attempt: int
    started_at: float
    ended_at: float | None = None
    outcome: str = "running"
    error: ErrorInfo | None = None
    retry_at: float | None = None


@dataclass(slots=True)
class Lane:
    """One row of the waterfall: a step, a timer (``durable.sleep``) or a hook wait.

    ``status``: a step's pending/running/retrying/completed/failed/cancelled; a timer's
    waiting/fired/cancelled; a hook's waiting/received/disposed/conflict (a hook that received
    a payload and is still iterated stays ``received``).
    """

    kind: str  # step | timer | hook
    id: str  # the correlation id: step_3, wait_4, hook_5
    name: str | None  # the step name, or the hook token
    created_at: float
    status: str
    ended_at: float | None = None
    until: float | None = None  # a timer's deadline
    attempts: list[Attempt] = field(default_factory=list)
    received: list[tuple[float, bytes | None]] = field(default_factory=list)  # a hook's payloads (time, encoded)


class Timeline:
    """The lanes of one run, in the order the workflow created them, built by :meth:`feed`."""

    def __init__(self) -> None:
        self.lanes: dict[str, Lane] = {}
        self.last_seq = 0
        self.created_at: float | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        # Timer events, kept for projection.waiting_for (a timer's deadline is only in the log).
        self.wait_events: list[Event] = []

    def feed(self, events: list[Event]) -> None:
        for e in events:
            if e.seq <= self.last_seq:
                continue  # already folded in (a read that overlapped the previous one)
            self.last_seq = e.seq
            self._apply(e)

    def _apply(self, e: Event) -> None:
        kind, corr = e.kind, e.correlation_id
        if kind == EventKind.RUN_CREATED:
            self.created_at = e.created_at
        elif kind == EventKind.RUN_STARTED:
            self.started_at = self.started_at or e.created_at
        elif kind in (EventKind.RUN_COMPLETED, EventKind.RUN_FAILED, EventKind.RUN_CANCELLED):
            self.ended_at = e.created_at
        elif not corr:
            return
        elif kind == EventKind.STEP_CREATED:
            lane = self.lanes[corr] = Lane("step", corr, e.name, e.created_at, "pending")
            if e.attempt:  # claimed by the commit that created it: its first attempt started then
                self._start(lane, e)
        elif kind == EventKind.STEP_STARTED:
            self._start(self._lane(corr, "step", e), e)
        elif kind in _ENDS_ATTEMPT:
            lane = self._lane(corr, "step", e)
            outcome = _ENDS_ATTEMPT[EventKind(kind)]
            error = _error(e.data) if kind != EventKind.STEP_COMPLETED else None
            current = lane.attempts[-1] if lane.attempts and lane.attempts[-1].ended_at is None else None
            if current is None:  # an end without a start (a step cancelled before it ran)
                current = Attempt(e.attempt or len(lane.attempts), e.created_at)
                if outcome != "cancelled" or e.attempt:
                    lane.attempts.append(current)
            current.ended_at, current.outcome, current.error = e.created_at, outcome, error
            current.retry_at = error.retry_at if error is not None and outcome == "retrying" else None
            lane.status = outcome
            if outcome != "retrying":
                lane.ended_at = e.created_at
        elif kind == EventKind.WAIT_CREATED:
            until = _number(e.data)
            self.lanes[corr] = Lane("timer", corr, None, e.created_at, "waiting", until=until)
            self.wait_events.append(e)
        elif kind in (EventKind.WAIT_COMPLETED, EventKind.WAIT_CANCELLED):
            lane = self._lane(corr, "timer", e)
            lane.status = "fired" if kind == EventKind.WAIT_COMPLETED else "cancelled"
            lane.ended_at = e.created_at
            self.wait_events.append(e)
        elif kind in (EventKind.HOOK_CREATED, EventKind.HOOK_CONFLICT):
            conflict = kind == EventKind.HOOK_CONFLICT
            self.lanes[corr] = Lane(
                "hook", corr, e.name, e.created_at, "conflict" if conflict else "waiting",
                ended_at=e.created_at if conflict else None,
            )
        elif kind == EventKind.HOOK_RECEIVED:
            lane = self._lane(corr, "hook", e)
            lane.received.append((e.created_at, e.data))
            lane.status = "received"
            lane.ended_at = lane.ended_at or e.created_at  # the wait ended with the first payload
        elif kind == EventKind.HOOK_DISPOSED:
            lane = self._lane(corr, "hook", e)
            if not lane.received and lane.status != "conflict":
                lane.status, lane.ended_at = "disposed", e.created_at

    def _lane(self, corr: str, kind: str, e: Event) -> Lane:
        """The lane an event belongs to; one is made up if the log lacks its creation (a fork's copied history)."""
        lane = self.lanes.get(corr)
        if lane is None:
            lane = self.lanes[corr] = Lane(kind, corr, e.name, e.created_at, "pending" if kind == "step" else "waiting")
        return lane

    @staticmethod
    def _start(lane: Lane, e: Event) -> None:
        """An attempt of the lane's step starts (``e``: its step_started, or the step_created that started it)."""
        if lane.attempts and lane.attempts[-1].ended_at is None:  # its worker died mid-attempt
            lane.attempts[-1].ended_at, lane.attempts[-1].outcome = e.created_at, "lost"
        lane.attempts.append(Attempt(e.attempt or len(lane.attempts) + 1, e.created_at))
        lane.status = "running"

    def lane(self, corr: str) -> Lane | None:
        return self.lanes.get(corr)

    def payloads(self, hook_id: str) -> list[tuple[float, bytes | None]]:
        """The payloads the hook ``hook_id`` received, in order, as (time, encoded payload)."""
        lane = self.lanes.get(hook_id)
        return lane.received if lane is not None else []


def _error(data: bytes | None) -> ErrorInfo | None:
    if not data:
        return None
    try:
        return decode_error(data)
    except (SerializationError, ValueError, KeyError, TypeError, AttributeError):
        return ErrorInfo("<undecodable error>", "", "")


def _number(data: bytes | None) -> float | None:
    if not data or bytes(data[:4]) != _codec.JSON_TAG:
        return None
    try:
        value = _codec.decode(data)
    except SerializationError:
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
