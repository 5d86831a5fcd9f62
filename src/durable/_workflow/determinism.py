"""The deterministic replacements workflow code uses: durable ``sleep``, ``now``, ``random`` and ``uuid4``.

Each is the same on every replay of a run: time is the timestamp of the last event the
workflow consumed, randomness is seeded by the run.
"""

from __future__ import annotations

import asyncio
import random as _random
import uuid as _uuid
from datetime import UTC, datetime
from typing import Any

from .._core.durations import DurationOrDeadline, deadline_from
from .context import workflow_host


async def sleep(duration: DurationOrDeadline) -> None:
    """Sleep durably: ``"10s"``, ``"1 day"``, ``"2h30m"``, a ``timedelta``, seconds, or an aware ``datetime``.

    The run suspends and survives restarts; ``asyncio.sleep`` inside a workflow does the same.
    """
    inst = workflow_host("sleep")
    loop = inst.loop
    deadline = deadline_from(duration, loop.time(), what="sleep duration")
    future: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(deadline, _resolve, future)
    try:
        await future
    finally:
        handle.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def now() -> datetime:
    """Workflow time: the timestamp of the last event the workflow consumed (same on every replay)."""
    return datetime.fromtimestamp(workflow_host("now").loop.time(), UTC)


class _DeterministicRandom:
    """``durable.random()`` is a float in [0, 1); ``durable.random.randint(1, 6)`` and the other
    ``random.Random`` methods work too. Seeded per run, apart from the ids of steps and hooks."""

    def __call__(self) -> float:
        return workflow_host("random").user_random.random()

    def __getattr__(self, name: str) -> Any:
        return getattr(workflow_host("random").user_random, name)

    def __repr__(self) -> str:
        return "<durable.random: deterministic random.Random of the current workflow run>"


random = _DeterministicRandom()


def uuid4() -> _uuid.UUID:
    """A random-looking UUID4 that is the same on every replay."""
    rng: _random.Random = workflow_host("uuid4").user_random
    return _uuid.UUID(int=rng.getrandbits(128), version=4)
