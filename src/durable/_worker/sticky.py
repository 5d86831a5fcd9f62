"""The sticky cache: live workflow instances kept between events, and one lock per run.

After a run suspends, its instance stays here, so the next event costs one delivery instead
of a cold replay of the whole history (O(N) per run, not O(N²)). What the cache knows about
each run's log beside its instance (:attr:`Sticky.store_seq`) is the worker's bookkeeping,
not the engine's: the engine only knows which events it has consumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._engine.instance import WorkflowInstance

log = logging.getLogger("durable")


@dataclass(slots=True)
class Sticky:
    """A live instance and, when known, the seq the run's log ends at.

    ``store_seq`` is set when the log is known to end exactly where the instance has consumed
    it (its own commit was the last write): then a step result can be fed to the instance
    before it is stored, and committed in one transaction with what it leads to. ``None``
    means "unknown": the next invocation reads the log first.
    """

    instance: WorkflowInstance
    store_seq: int | None = None


class RunLock:
    """One invocation of a run at a time in this process: a FIFO asyncio lock.

    Held once per step; asyncio.Lock's free path is three more Python calls (acquire, release and
    _wake_up_first) and anyio's always checkpoints, costing a loop iteration. Taking it when free
    never yields; releasing it hands it to the first waiter still waiting, which holds it from then on.
    """

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] | None = None  # made on first contention (a deque is 624 bytes)

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        if self._held:
            await self._wait()
        else:
            self._held = True

    async def __aexit__(self, *exc: Any) -> None:
        self._release()

    async def _wait(self) -> None:
        if self._waiters is None:
            self._waiters = deque()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # resolved by _release: handed the lock, which stays held
        except asyncio.CancelledError:
            if waiter.cancelled():
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            else:  # handed the lock just as this task was cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held = False


class StickyCache:
    """At most ``size`` live instances, least recently used evicted first (``size=0``: none kept)."""

    def __init__(self, size: int, on_size: Callable[[int], object] | None = None) -> None:
        self.size = size
        self._on_size = on_size  # told +1 / -1 as instances come and go (the sticky-instances metric)
        self._entries: OrderedDict[str, Sticky] = OrderedDict()
        self._locks: dict[str, RunLock] = {}
        # The entry of a run, or None: the dict's own get (a C call), asked several times a step.
        self.get: Callable[[str], Sticky | None] = self._entries.get

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._entries

    def lock(self, run_id: str) -> RunLock:
        """The lock one invocation of ``run_id`` holds at a time in this process."""
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = RunLock()
        return lock

    def forget_lock(self, run_id: str) -> None:
        """The run is over: nobody will invoke it again here."""
        self._locks.pop(run_id, None)

    def touch(self, run_id: str) -> None:
        """Mark ``run_id`` as just used (the last to be evicted)."""
        self._entries.move_to_end(run_id)

    def put(self, run_id: str, instance: WorkflowInstance, store_seq: int | None = None) -> Sticky:
        """Keep ``instance`` live for the run's next event, evicting the least recently used others."""
        replaced = self._entries.get(run_id)
        entry = self._entries[run_id] = Sticky(instance, store_seq)
        self._entries.move_to_end(run_id)
        if self._on_size is not None and replaced is None:
            self._on_size(1)
        while len(self._entries) > max(1, self.size):
            self.evict(next(iter(self._entries)))
        return entry

    def release_if_uncached(self, run_id: str) -> None:
        """With ``size=0`` every invocation replays cold: drop the instance once it is committed."""
        if self.size == 0:
            self.evict(run_id)

    def evict(self, run_id: str) -> None:
        entry = self._entries.pop(run_id, None)
        if entry is not None:
            if self._on_size is not None:
                self._on_size(-1)
            try:
                entry.instance.close()
            except Exception:
                log.exception("closing the workflow instance of run %s", run_id)

    def clear(self) -> None:
        for run_id in list(self._entries):
            self.evict(run_id)
