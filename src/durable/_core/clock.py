"""Where durable reads the time: the system clock, or a test's virtual clock (``durable.testing.TestRuntime``).

Every timestamp the runtime records (events, deadlines, retry times, leases) comes from
``clock.time()``, and the dispatcher waits for the next due run or step through
``clock.sleep_until``, so a virtual clock can jump over a three-day sleep instead of waiting.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""

    async def sleep_until(self, wake: anyio.Event, due: float | None, poll: float) -> bool:
        """Wait until ``wake`` is set (True), the clock reaches ``due``, or ``poll`` real seconds pass (False)."""


class SystemClock:
    """The wall clock; ``time`` is ``time.time`` itself (it is read on every step)."""

    time = staticmethod(time.time)

    async def sleep_until(self, wake: anyio.Event, due: float | None, poll: float) -> bool:
        timeout = poll if due is None else min(poll, max(0.001, due - time.time()))
        if math.isinf(timeout):
            await wake.wait()
            return True
        with anyio.move_on_after(timeout):
            await wake.wait()
            return True
        return wake.is_set()


SYSTEM_CLOCK = SystemClock()
