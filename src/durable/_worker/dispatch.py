"""The dispatcher: claims due runs and pending steps whenever the store says there may be work.

It sleeps on the store's ``"work"`` topic (written by every transaction that creates work,
and by a step slot freed while work was waiting for one), bounded by the earliest due
timer or retry; where other processes can write without waking this one (SQLite files), it
also polls with back-off capped at ``poll_interval``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.lowlevel

from .._core.clock import SYSTEM_CLOCK, Clock
from ..stores._base import RunRecord, StepClaim, Store, Versions
from .slots import StepSlots

log = logging.getLogger("durable")


class Dispatcher:
    """Claims work for one worker: ``invoke(record)`` for each run leased, ``launch(claims)`` for steps."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        slots: StepSlots,
        workflow_names: Callable[[], list[str]],
        step_names: Callable[[], list[str]],
        invoke: Callable[[RunRecord], None],
        launch: Callable[[list[StepClaim]], None],
        poll_interval: float,
        versions: Callable[[], Versions | None] = lambda: None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.slots = slots
        self._workflow_names = workflow_names
        self._step_names = step_names
        self._invoke = invoke
        self._launch = launch
        self._versions = versions
        self._clock = clock
        self.poll_interval = poll_interval

    async def run(self) -> None:
        wait = 0.01
        while True:
            # Store calls may complete without yielding (inline SQLite): never spin without a checkpoint.
            await anyio.lowlevel.checkpoint()
            try:
                busy = await self.dispatch_once()
            except Exception:
                log.exception("durable dispatcher: store error; retrying")
                busy = False
                await anyio.sleep(min(1.0, wait * 4))
            if busy:
                wait = 0.01
                continue
            listener = self.store.notifier.listen("work")
            timeout = self._poll_timeout(wait)
            # Due steps matter only with a free slot; a step finishing while work waits for a
            # slot notifies "work" (see StepSlots.starved).
            step_names = self._step_names() if self.slots.free > 0 else []
            if not step_names:
                self.slots.starved = True
            try:
                due = await self.store.next_wake(self._workflow_names(), step_names, self._clock.time(), self._versions())
            except Exception:
                due = None
            # (The clock waits at least a millisecond: something due that could not be claimed --
            # held by a live worker -- must not turn this loop into a spin.)
            if not await self._clock.sleep_until(listener, due, timeout):
                wait = min(self.poll_interval, wait * 2)
            else:
                wait = 0.01

    def _poll_timeout(self, wait: float) -> float:
        if self.store.cross_process and not self.store.notifies_across_processes:
            return wait
        return self.poll_interval * 4

    async def dispatch_once(self) -> bool:
        """Claim what is due now; True if anything was claimed."""
        now = self._clock.time()
        busy = False
        for record in await self.store.claim_runs(self.worker_id, self._workflow_names(), now, 16, self._versions()):
            busy = True
            log.debug("claimed run %s (%s, %s)", record.run_id, record.workflow_name, record.status)
            self._invoke(record)
        free = self.slots.free
        if free > 0:
            # Reserve the slots before awaiting: an invocation committing meanwhile must not
            # claim the same ones (max_concurrent_steps is a hard bound).
            self.slots.take(free)
            claims: list[StepClaim] = []
            try:
                # A fresh clock: a queue's rate window counts admissions at the time of the claim.
                claims = await self.store.claim_steps(self.worker_id, self._step_names(), self._clock.time(), free)
            finally:
                self.slots.give_back(free - len(claims))
            self.slots.starved = len(claims) == free
            busy = busy or bool(claims)
            self._launch(claims)
        return busy
