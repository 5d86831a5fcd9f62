"""Queues: named limits on how much work runs at once, shared by every worker of a store.

``durable.Queue("emails", concurrency=5, rate="100/min")`` defines a queue; runs started with
``queue="emails"`` and steps declared ``@durable.step(queue="emails")`` wait in the store until
the queue admits them. The limits are kept in the store (each runtime writes the definitions it
has), and the claim queries enforce them in the transaction that claims the work, so they hold
across processes and machines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .durations import parse_duration
from .ids import is_text
from .registry import Registry

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(.+?)\s*$")
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0,
            "d": 86400.0, "day": 86400.0}


def parse_rate(rate: str) -> tuple[int, float]:
    """``"100/min"`` -> (100, 60.0); also ``"5/s"``, ``"10/30s"``, ``"1000/1h"``."""
    match = _RATE.match(rate) if isinstance(rate, str) else None
    if match is None:
        raise ValueError(f"queue rate must look like '100/min', '5/s' or '10/30s' (count/period), got {rate!r}")
    count, period_text = int(match.group(1)), match.group(2)
    period = _PERIODS.get(period_text.lower())
    if period is None:
        try:
            period = parse_duration(period_text, what="queue rate period")
        except (TypeError, ValueError):
            raise ValueError(
                f"queue rate must look like '100/min', '5/s' or '10/30s' (count/period), got {rate!r}"
            ) from None
    if count < 1 or period <= 0:
        raise ValueError(f"queue rate needs a count of at least 1 per a positive period, got {rate!r}")
    return count, period


def _positive(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int (or None for no limit), got {value!r}")
    return value


class Queue:
    """A named queue of runs and steps, with limits every worker sharing the store respects.

    - ``concurrency``: at most this many entries at once -- runs admitted and not finished (a
      run suspended on a timer or hook keeps its place) plus steps running. None: no limit.
    - ``per_key_concurrency``: at most this many at once per ``key=`` given at start.
    - ``rate``: at most this many admissions per period (``"100/min"``, ``"5/s"``,
      ``"10/30s"``), counted over a sliding window; each step attempt counts once.
    - ``priority_levels``: how many priorities ``start(..., priority=)`` may name, 1 (first
      admitted) to ``priority_levels``; a run without one gets the middle level.

    Defining a queue registers it in this process; a runtime writes the definitions it has to
    the store when it opens, and every start writes its queue's definition if the store has
    none yet.
    """

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        per_key_concurrency: int | None = None,
        rate: str | None = None,
        priority_levels: int = 1,
    ) -> None:
        if not is_text(name) or len(name) > 200:
            raise ValueError(f"queue name must be non-empty text of at most 200 characters, got {name!r}")
        self.name = name
        self.concurrency = _positive(concurrency, "concurrency")
        self.per_key_concurrency = _positive(per_key_concurrency, "per_key_concurrency")
        self.rate = rate
        self.rate_limit: tuple[int, float] | None = None if rate is None else parse_rate(rate)
        levels = _positive(priority_levels, "priority_levels")
        assert levels is not None
        self.priority_levels = levels
        queues[name] = self

    def __repr__(self) -> str:
        limits = [f"{k}={v!r}" for k, v in (("concurrency", self.concurrency), ("per_key_concurrency", self.per_key_concurrency),
                                             ("rate", self.rate)) if v is not None]
        return f"<durable.Queue {self.name!r} {' '.join(limits)}>".replace(" >", ">")

    @property
    def default_priority(self) -> int:
        return (self.priority_levels + 1) // 2

    def check_priority(self, priority: int | None) -> int:
        if priority is None:
            return self.default_priority
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= self.priority_levels:
            raise ValueError(
                f"priority for queue {self.name!r} must be an int from 1 (first) to {self.priority_levels}, got {priority!r}"
            )
        return priority

    def spec(self) -> QueueSpec:
        count, period = self.rate_limit if self.rate_limit is not None else (None, None)
        return QueueSpec(self.name, self.concurrency, self.per_key_concurrency, count, period, self.priority_levels)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue's limits as the store keeps them."""

    name: str
    concurrency: int | None
    per_key_concurrency: int | None
    rate_count: int | None
    rate_period: float | None
    priority_levels: int = 1


@dataclass(frozen=True, slots=True)
class QueueState:
    """What a queue holds now: what its entries wait for, and when it can admit again."""

    name: str
    concurrency: int | None
    active: int  # runs admitted and unfinished, plus steps running
    waiting: int  # runs and steps not yet admitted
    rate_count: int | None
    rate_period: float | None
    admitted_in_window: int  # admissions within the last rate period
    next_admission_at: float | None  # when the rate window frees a place (None: not rate-limited now)

    @property
    def blocked_by(self) -> str | None:
        """Why nothing more is admitted now, in words (None: it admits)."""
        if self.concurrency is not None and self.active >= self.concurrency:
            return f"queue {self.name!r} is full ({self.active}/{self.concurrency} running)"
        if self.rate_count is not None and self.admitted_in_window >= self.rate_count:
            return f"queue {self.name!r} reached its rate ({self.rate_count} per {self.rate_period:g}s)"
        return None


#: Every queue defined in this process, by name.
queues: Registry[Queue] = Registry("queue")


def resolve_queue(queue: str | Queue | None) -> Queue | None:
    """The queue a ``queue=`` option names; a clear error for one never defined."""
    if queue is None or isinstance(queue, Queue):
        return queue
    found = queues.get(queue) if isinstance(queue, str) else None
    if found is None:
        known = ", ".join(sorted(queues.names())) or "none"
        raise ValueError(f"no queue named {queue!r} is defined (define it with durable.Queue({queue!r}, ...); known: {known})")
    return found
