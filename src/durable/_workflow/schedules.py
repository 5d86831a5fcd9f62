"""``durable.schedule``: a workflow started on a cron expression or a fixed interval.

A :class:`Schedule` is a definition: checked when it is made (a bad cron string, an unknown
time zone or overlap policy is refused with what to write), registered with a runtime
(``Runtime(schedules=[...])``), and kept in the store, where its next tick lives. The worker's
scheduler (``_worker/scheduler.py``) turns due ticks into runs; each tick's run id is derived
from the schedule and the tick time, so however many runtimes serve a schedule, a tick starts
one run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .._core.durations import Duration, parse_duration
from .._core.ids import is_text
from .workflow import Workflow

Overlap = Literal["skip", "buffer_one", "allow_all"]
OVERLAP_POLICIES: tuple[str, ...] = ("skip", "buffer_one", "allow_all")
MAX_TICKS = 10_000  # ticks looked at in one catch-up; older ones are counted as skipped at once


class Schedule:
    """A workflow started at every tick of ``cron`` (in ``timezone``) or ``every`` interval.

    - ``overlap``: what a tick does while an earlier tick's run is still unfinished --
      ``"skip"`` (default: no run for it), ``"buffer_one"`` (one run waits and starts when the
      earlier one ends; further ticks meanwhile are skipped) or ``"allow_all"`` (runs overlap).
    - ``catchup_window``: after downtime, missed ticks younger than this run once each, oldest
      first (respecting ``overlap``); older ones are skipped and counted.
    - ``jitter``: each tick's run starts up to this long after the tick (a random delay).
    """

    def __init__(
        self,
        name: str,
        workflow: Workflow[Any, Any],
        *,
        cron: str | None = None,
        every: Duration | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        timezone: str = "UTC",
        overlap: Overlap = "skip",
        catchup_window: Duration = "1h",
        jitter: Duration | None = None,
    ) -> None:
        if not is_text(name) or len(name) > 120 or "/" in name:
            raise ValueError(f"schedule name must be text of 1-120 characters without '/', got {name!r}")
        if not isinstance(workflow, Workflow):
            raise TypeError(f"schedule {name!r} needs a @durable.workflow function, got {workflow!r}")
        if (cron is None) == (every is None):
            raise ValueError(f"schedule {name!r} needs exactly one of cron='0 3 * * *' or every='15m'")
        if overlap not in OVERLAP_POLICIES:
            raise ValueError(
                f"schedule {name!r}: overlap must be 'skip' (a tick while a run is unfinished starts nothing), "
                f"'buffer_one' (it starts when that run ends) or 'allow_all' (runs overlap), got {overlap!r}"
            )
        try:
            self.zone: tzinfo = ZoneInfo(timezone) if timezone != "UTC" else UTC
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"schedule {name!r}: unknown time zone {timezone!r}; use an IANA name such as 'UTC', "
                "'Europe/Paris' or 'America/New_York'"
            ) from None
        self.name = name
        self.workflow = workflow
        self.cron = cron
        self.every = None if every is None else parse_duration(every, what=f"schedule {name!r} every")
        if self.every is not None and self.every <= 0:
            raise ValueError(f"schedule {name!r}: every must be a positive duration like '15m', got {every!r}")
        if cron is not None:
            self._check_cron(cron)
        self.timezone = timezone
        self.overlap: Overlap = overlap
        self.catchup_window = parse_duration(catchup_window, what=f"schedule {name!r} catchup_window")
        self.jitter = None if jitter is None else parse_duration(jitter, what=f"schedule {name!r} jitter")
        bound_args, bound_kwargs = workflow.binder.bind(tuple(args), dict(kwargs or {}))
        self.input = workflow.binder.encode(
            bound_args, bound_kwargs, serializer=workflow.serializer, root=f"arguments of schedule {name!r}"
        )

    def __repr__(self) -> str:
        when = f"cron={self.cron!r}" if self.cron is not None else f"every={self.every:g}s"
        return f"<durable.Schedule {self.name!r} {self.workflow.name} {when}>"

    def _check_cron(self, cron: str) -> None:
        from cronsim import CronSim, CronSimError

        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
        except (CronSimError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"schedule {self.name!r}: cannot read cron {cron!r} ({exc}); write five fields: minute hour "
                "day-of-month month day-of-week, e.g. '0 3 * * *' (03:00 daily) or '*/15 * * * *' (every 15 minutes)"
            ) from None

    @property
    def spec(self) -> str:
        """What decides the ticks, as stored (a change of it restarts the schedule from now)."""
        return json.dumps(
            {"cron": self.cron, "every": self.every, "timezone": self.timezone, "workflow": self.workflow.name,
             "input": hashlib.blake2b(self.input, digest_size=8).hexdigest()},
            sort_keys=True,
        )

    @property
    def options(self) -> str:
        """How ticks become runs, as stored (read by the scheduler of any runtime)."""
        return json.dumps({"overlap": self.overlap, "catchup_window": self.catchup_window, "jitter": self.jitter})

    def ticks(self, after: float) -> Iterator[float]:
        """Tick times (epoch seconds) strictly after ``after``, in order."""
        if self.every is not None:
            # Intervals are counted from the epoch, so every runtime agrees on the ticks.
            k = int(after // self.every) + 1
            while True:
                yield k * self.every
                k += 1
        from cronsim import CronSim

        assert self.cron is not None
        start = datetime.fromtimestamp(after, self.zone)
        for when in CronSim(self.cron, start):
            tick = when.timestamp()
            if tick > after:
                yield tick

    def next_tick(self, after: float) -> float:
        return next(self.ticks(after))

    def due(self, next_at: float, now: float) -> tuple[list[float], int, float]:
        """The ticks from ``next_at`` to ``now``: those inside the catch-up window (oldest first), how many
        older ones are skipped, and the first tick after ``now``."""
        fire: list[float] = []
        skipped = 0
        tick = next_at
        ticks = self.ticks(next_at)
        for _ in range(MAX_TICKS):
            if tick > now:
                return fire, skipped, tick
            if tick < now - self.catchup_window:
                skipped += 1
            else:
                fire.append(tick)
            tick = next(ticks)
        return fire, skipped + 1, self.next_tick(now)  # a very long downtime: the rest is skipped too

    def run_id(self, tick: float) -> str:
        """The run of one tick: the same for every runtime (a second start is a no-op)."""
        return f"sched-{self.name}-{datetime.fromtimestamp(tick, UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"


def schedule(
    name: str,
    workflow: Workflow[Any, Any],
    *,
    cron: str | None = None,
    every: Duration | None = None,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    timezone: str = "UTC",
    overlap: Overlap = "skip",
    catchup_window: Duration = "1h",
    jitter: Duration | None = None,
) -> Schedule:
    """Define a schedule: start ``workflow(*args, **kwargs)`` at every tick of ``cron`` or ``every``.

    Register it with a runtime: ``Runtime(schedules=[...])``. See :class:`Schedule` for
    ``overlap``, ``catchup_window`` and ``jitter``; ``timezone`` is an IANA name for cron
    schedules (``"Europe/Paris"``; DST is respected). Workflow code reads the tick it was started
    for as ``durable.get_workflow_metadata().scheduled_at``.
    """
    return Schedule(
        name, workflow, cron=cron, every=every, args=args, kwargs=kwargs, timezone=timezone, overlap=overlap,
        catchup_window=catchup_window, jitter=jitter,
    )


def jitter_delay(schedule: Schedule, tick: float) -> float:
    """A delay in [0, jitter) drawn from the tick itself: every runtime draws the same one."""
    if not schedule.jitter:
        return 0.0
    digest = hashlib.blake2b(f"{schedule.name}:{tick!r}".encode(), digest_size=8).digest()
    return schedule.jitter * int.from_bytes(digest, "big") / 2**64
