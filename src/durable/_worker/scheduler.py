"""The scheduler: turns the due ticks of a runtime's schedules into runs, one transaction per schedule.

Ticks live in the store (``schedules.next_at``), so they survive restarts. Each pass reads the
schedules that are due, computes their ticks with the definition (cron or interval, in its time
zone), and hands them to :meth:`Store.fire_schedule`, which starts the runs its overlap policy
allows -- only if nobody processed those ticks first -- and moves the schedule on. A tick's run
id is derived from the schedule and the tick, so two runtimes can never start a tick twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from .._workflow.schedules import Schedule, jitter_delay
from ..stores._base import ScheduleDef, Store, TickRun

log = logging.getLogger("durable")


class Scheduler:
    def __init__(self, store: Store, schedules: Sequence[Schedule], *, poll_interval: float) -> None:
        self.store = store
        self.schedules = {s.name: s for s in schedules}
        if len(self.schedules) != len(schedules):
            raise ValueError("two schedules of one runtime have the same name")
        self.poll_interval = poll_interval

    async def register(self, now: float | None = None) -> None:
        """Write the definitions; a new schedule's first tick is the first after ``now`` (default: the clock)."""
        now = time.time() if now is None else now
        await self.store.define_schedules(
            [ScheduleDef(s.name, s.workflow.name, s.input, s.spec, s.options, s.next_tick(now)) for s in self.schedules.values()],
            now,
        )

    async def run(self) -> None:
        while True:
            listener = self.store.notifier.listen("schedules")
            try:
                wake = await self.tick_once()
            except Exception:
                log.exception("durable scheduler: store error; retrying")
                wake = time.time() + 1.0
            timeout = max(0.001, min(self.poll_interval * 4, wake - time.time()))
            await self.store.notifier.wait(listener, timeout)

    async def tick_once(self, now: float | None = None) -> float:
        """Fire what is due now; return when to look again."""
        now = time.time() if now is None else now
        records = await self.store.list_schedules(sorted(self.schedules))
        wake = now + self.poll_interval * 4
        for record in records:
            schedule = self.schedules[record.name]
            if record.next_at <= now or record.buffered_at is not None:
                fire, skipped, next_at = schedule.due(record.next_at, now) if record.next_at <= now else ([], 0, record.next_at)
                ticks = ([record.buffered_at] if record.buffered_at is not None else []) + fire
                runs = [TickRun(t, schedule.run_id(t), t + jitter_delay(schedule, t)) for t in ticks]
                started = await self.store.fire_schedule(record.name, record.next_at, runs, skipped, next_at, now)
                if skipped:
                    log.info("schedule %r: %d tick(s) older than its catch-up window were skipped", record.name, skipped)
                if started:
                    log.debug("schedule %r started %s", record.name, ", ".join(started))
                wake = min(wake, next_at)
                if record.buffered_at is not None or (schedule.overlap == "buffer_one" and fire):
                    wake = min(wake, now + self.poll_interval)  # a buffered tick starts when the run before it ends
            else:
                wake = min(wake, record.next_at)
        return wake
