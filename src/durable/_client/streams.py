"""Durable streams: flushable, back-pressured writers and catch-up-then-follow readers.

::

    step code ──write()──► memory channel (bounded) ──► flusher task ──append_chunks()──► chunk log
                 (waits when full)                       (one transaction per batch)       │
                                                                                           ▼
    reader ◄── decode ◄── read_chunks(from index) ◄── woken by the store's notifier (in process)
                                                      or a short poll with back-off (other processes)

This module is the reading end (the writers are the worker's, ``_worker/writers.py``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.lowlevel

from .._core import codec as _codec
from .._core.checks import check_int
from .._core.errors import StreamFailed
from .._core.ids import DEFAULT_NAMESPACE
from ..stores._base import MAX_INDEX, Store
from .telemetry import telemetry

#: Chunks read from the store per page.
PAGE = 512


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A chunk as stored: its index, value, and the step attempt that wrote it (``None`` for the workflow)."""

    index: int
    value: Any
    step_id: str | None
    attempt: int | None
    created_at: float


async def read_stream(
    store: Store,
    run_id: str,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    start_index: int = 0,
    poll_interval: float = 0.5,
    with_metadata: bool = False,
    allow_pickle: bool = False,
) -> AsyncIterator[Any]:
    """Replay the stored chunks from ``start_index`` (negative: from the end), then follow live
    until the stream is closed. Raises :class:`StreamFailed` after the last chunk if the run failed."""
    index = check_int("start_index", start_index, minimum=-MAX_INDEX, maximum=MAX_INDEX)
    idle_wait = 0.01
    notifier = store.notifier
    tracing = telemetry()
    live = False  # past the backlog: chunks read now were written just before (write -> read latency)
    follow_by_poll = store.cross_process and not store.notifies_across_processes
    while True:
        listener = notifier.listen("stream", run_id)  # one topic per run: any chunk, close or run end
        page = await store.read_chunks(run_id, namespace, index, PAGE)
        index = page.start  # a negative start_index counts from the end once, at the first read
        if live and tracing is not None and page.chunks:
            read_at = time.time()
            for chunk in page.chunks:
                tracing.chunk_latency.record(max(0.0, read_at - chunk.created_at))
        for chunk in page.chunks:
            value = _codec.decode(chunk.data, allow_pickle=allow_pickle, root=f"chunk #{chunk.index}")
            index = chunk.index + 1
            if with_metadata:
                yield StreamChunk(chunk.index, value, chunk.step_id, chunk.attempt, chunk.created_at)
            else:
                yield value
        if page.closed:
            if page.error is not None:
                raise StreamFailed(run_id, namespace, page.error)
            return
        if page.chunks:
            idle_wait = 0.01
            await anyio.lowlevel.checkpoint()  # a long backlog must not starve the event loop
            continue
        timeout = idle_wait if follow_by_poll else float("inf")
        live = True
        notified = await notifier.wait(listener, timeout)
        idle_wait = 0.01 if notified else min(poll_interval, idle_wait * 2)
