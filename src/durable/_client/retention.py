"""Retention: delete finished runs older than a cut-off, in bounded batches (``Client.gc``, ``durable gc``,
``Runtime(retention=...)``).

Each batch is one store transaction (:meth:`Store.collect_runs`): at most ``batch_size`` runs, and
no more of them than bring ``max_rows`` events and chunks, so a batch never holds locks for long.
A deleted run's idempotency key (and its dedupe id) no longer names anything: a later start with
that key starts a new run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio

from .._core.durations import Duration, parse_duration
from ..stores._base import TERMINAL, Store

DEFAULT_BATCH = 100
DEFAULT_MAX_ROWS = 10_000
_TABLES = ("runs", "events", "steps", "hooks", "waits", "streams", "chunks", "run_values", "queue_admissions")


@dataclass(frozen=True, slots=True)
class GCReport:
    """What a collection removed: rows per table, the batches (transactions) it took, and the bytes
    the database file shrank by (None where the database reclaims space itself, as PostgreSQL does)."""

    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    reclaimed_bytes: int | None = None

    @property
    def runs(self) -> int:
        """How many runs were deleted."""
        return self.counts.get("runs", 0)

    def __str__(self) -> str:
        parts = [f"{self.counts.get(t, 0)} {t.replace('_', ' ')}" for t in _TABLES]
        text = f"deleted {', '.join(parts)} in {self.batches} batch(es)"
        if self.reclaimed_bytes is not None:
            text += f"; the database file shrank by {self.reclaimed_bytes} bytes"
        return text


def check_statuses(status: str | Iterable[str] | None) -> list[str]:
    """``"completed,failed"`` or a list of statuses, all of them finished ones; None: all three."""
    if status is None:
        return sorted(TERMINAL)
    names = [s.strip() for s in status.split(",")] if isinstance(status, str) else [str(s).strip() for s in status]
    names = [s for s in names if s]
    wrong = [s for s in names if s not in TERMINAL]
    if wrong or not names:
        raise ValueError(
            f"status must name finished runs among completed, failed, cancelled (unfinished runs are never deleted), "
            f"got {status!r}"
        )
    return sorted(set(names))


async def collect_garbage(
    store: Store,
    older_than: Duration,
    *,
    status: str | Iterable[str] | None = None,
    batch_size: int = DEFAULT_BATCH,
    max_rows: int = DEFAULT_MAX_ROWS,
    pause: float = 0.0,
    max_batches: int | None = None,
    vacuum: bool = False,
    clock: Callable[[], float] = time.time,
) -> GCReport:
    """Delete the finished runs that completed more than ``older_than`` ago, batch after batch
    (``pause`` seconds between batches), then give the space back where the store can. ``clock``
    gives the time (the runtime's: a test's virtual clock moves the cut-off too)."""
    age = parse_duration(older_than, what="older_than")
    if batch_size < 1 or max_rows < 1:
        raise ValueError(f"batch_size and max_rows must be at least 1, got {batch_size} and {max_rows}")
    statuses = check_statuses(status)
    before = clock() - age
    counts = dict.fromkeys(_TABLES, 0)
    batches = 0
    while max_batches is None or batches < max_batches:
        batch = await store.collect_runs(before, statuses, limit=batch_size, max_rows=max_rows, now=clock())
        if not batch.run_ids:
            break
        batches += 1
        for table, n in batch.counts.items():
            counts[table] = counts.get(table, 0) + n
        if not batch.more:
            break
        if pause > 0:
            await anyio.sleep(pause)
    reclaimed = await store.reclaim_space(vacuum=vacuum) if counts["runs"] or vacuum else None
    return GCReport(counts, batches, reclaimed)
