"""``Runtime(retention="30d")``: a background task that deletes finished runs past their retention.

It collects once soon after the runtime opens, then every ``interval`` seconds (a tenth of the
retention, between one second and an hour), in batches of :data:`BATCH` runs with a pause between
batches, so that a backlog is worked off at a modest rate next to the runtime's real work. Any
number of runtimes may do it on one store: each batch is one transaction, and on PostgreSQL a run
another transaction holds is skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from .._client.retention import collect_garbage
from .._core.durations import Duration, parse_duration
from ..stores._base import Store

log = logging.getLogger("durable")

BATCH = 100
PAUSE = 0.5  # seconds between two batches of one collection
FIRST_DELAY = 1.0  # after the runtime opens: not in the way of its start


class Collector:
    """Deletes finished runs that completed more than ``older_than`` seconds ago, periodically."""

    def __init__(
        self, store: Store, retention: Duration, *, interval: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.clock = clock
        self.older_than = parse_duration(retention, what="retention")
        self.interval = interval if interval is not None else min(3600.0, max(1.0, self.older_than / 10))
        self.collected = 0  # runs deleted by this runtime (for tests and statistics)

    async def run(self) -> None:
        await anyio.sleep(min(FIRST_DELAY, self.interval))
        while True:
            try:
                report = await collect_garbage(self.store, self.older_than, batch_size=BATCH, pause=PAUSE, clock=self.clock)
            except Exception:
                log.exception("durable: deleting finished runs past their retention failed; trying again later")
            else:
                self.collected += report.runs
                if report.runs:
                    log.info("durable retention: %s", report)
            await anyio.sleep(self.interval)
