"""Waiting for the store to reach a state: check, and re-check when a notification (or a poll) says it may have."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .._core.durations import Duration, parse_duration
from .._core.errors import StoreUnavailable
from ..stores._base import Store

T = TypeVar("T")

# Seconds between re-checks while ``held`` says this process will write what is awaited: the
# notification wakes the waiter; the re-check only covers the work moving to another process.
_HELD_RECHECK = 1.0


async def wait_until(
    store: Store, topic: tuple[str, ...], check: Callable[[], Awaitable[T | None]], timeout: Duration | None,
    describe: Callable[[], str], *, held: Callable[[], bool] | None = None,
) -> T:
    """Return what ``check`` finds as soon as it finds something (not None).

    The listener on ``topic`` is armed before each check, so a write landing between the check
    and the wait is not missed; where other processes write without notifying this one (SQLite
    files), it re-checks after a back-off capped at a second -- or, while ``held()`` is true (a
    runtime in this process holds the run live, so the write awaited is normally its own and
    notifies ``topic``), once a second from the start. TimeoutError (``describe()``) after
    ``timeout`` (seconds, ``"5m"``, a timedelta; None waits as long as it takes).

    A store out of reach for longer than its own reconnect budget does not end the wait: the
    caller asked to wait ``timeout``, so the check is tried again (at most once a second) until
    then, and the last StoreUnavailable is raised only if the deadline passes with the store away.
    """
    deadline = math.inf if timeout is None else time.monotonic() + parse_duration(timeout, what="timeout")
    notifier = store.notifier
    poll = store.cross_process and not store.notifies_across_processes
    idle = 0.01
    while True:
        listener = notifier.listen(*topic)
        try:
            found = await check()
        except StoreUnavailable:
            if time.monotonic() >= deadline:
                raise
            await anyio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            continue
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(describe())
        if not poll:
            wait = math.inf
        elif held is not None and held():
            wait = _HELD_RECHECK
        else:
            wait, idle = idle, min(1.0, idle * 2)
        await notifier.wait(listener, min(remaining, wait))
