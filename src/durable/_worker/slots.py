"""Step slots: the hard bound on steps running at once in one runtime (``max_concurrent_steps``)."""

from __future__ import annotations

from ..stores._base import Notifier


class StepSlots:
    """Free slots, shared by the dispatcher (claiming pending steps) and by commits (claiming
    the steps they create). A slot is taken *before* the claim is awaited, so two claimers
    can never exceed the bound between them.

    ``starved`` records that work may be waiting for a slot: the next slot given back then
    wakes the dispatcher (the ``"work"`` topic) instead of leaving it asleep until its poll.
    """

    def __init__(self, capacity: int, notifier: Notifier) -> None:
        if capacity < 1:
            raise ValueError(f"max_concurrent_steps must be at least 1, got {capacity}")
        self.capacity = capacity
        self.free = capacity
        self.starved = False
        self._notifier = notifier

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` slots; return how many were reserved (marks starvation if short)."""
        taken = min(self.free, wanted)
        self.free -= taken
        if taken < wanted:
            self.starved = True
        return taken

    def give_back(self, count: int) -> None:
        """Return reserved slots that were not used (a claim found less work than reserved)."""
        self.free += count

    def release(self) -> None:
        """A step finished: its slot is free, and whoever waited for one is woken."""
        self.free += 1
        if self.starved:
            self.starved = False
            self._notifier.notify("work")
