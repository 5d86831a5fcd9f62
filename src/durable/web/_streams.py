"""Chunk logs and run changes, followed live and sent as Server-Sent Events or NDJSON.

A stream response, from writer to browser::

    step ──write()──► chunk log ──notify("stream", run, ns)──► follow_pages() ──► one body message
                        (store)     (or a poll with back-off         reads a page     per page:
                                     when another process writes)    from `index`     "id: 7\\ndata: {...}\\n\\n" x n

    EventSourceResponse races four tasks; the first to finish cancels the others:
      body (follow_pages)  ── ends after `event: end` (stream closed) ──┐
      ping (every `ping` s, a comment line)                              ├─► response done,
      client disconnect (http.disconnect)                                │   follow_pages cancelled
      server shutdown                                                   ──┘   at its await: nothing leaks

Event ids are chunk indices, so a client that reconnects with ``Last-Event-ID: 7`` resumes at
chunk 8: no gap, no duplicate. A page of chunks goes out as one body message: a burst of
writes costs one store read and one socket write per client, not one per chunk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..stores._base import TERMINAL, ChunkPage, Store
from ._present import dumps, plain_value

log = logging.getLogger("durable.web")
PAGE = 512
NDJSON = "application/x-ndjson"
_RETRY_MS = 1000  # how soon a browser reconnects after a dropped connection


async def follow_pages(
    store: Store, run_id: str, namespace: str, start: int, *, poll_interval: float
) -> AsyncIterator[ChunkPage]:
    """Pages of chunks from ``start`` (negative: from the end), then live ones; the last page is ``closed``.

    The listener is taken *before* each read, so a write landing between the read and the
    wait is never missed.
    """
    index = start
    idle = 0.01
    notifier = store.notifier
    by_poll = store.cross_process and not store.notifies_across_processes
    listener = notifier.listen("stream", run_id, namespace)
    while True:
        page = await store.read_chunks(run_id, namespace, index, PAGE)
        if page.chunks:
            index = page.chunks[-1].index + 1
        elif index < 0:
            index = 0  # "the last n" of an empty stream: follow from its start
        if page.chunks or page.closed:
            yield page
        if page.closed:
            return
        if len(page.chunks) == PAGE:
            listener = notifier.listen("stream", run_id, namespace)
            continue  # more is stored already
        if await notifier.wait(listener, idle if by_poll else math.inf):
            idle = 0.01
        else:
            idle = min(poll_interval, idle * 2)
        listener = notifier.listen("stream", run_id, namespace)


def sse_page(page: ChunkPage) -> bytes:
    parts = [f"id: {c.index}\ndata: {dumps(plain_value(c.data))}\n\n" for c in page.chunks]
    if page.closed:
        parts.append(f"event: end\ndata: {dumps({'error': page.error})}\n\n")
    return "".join(parts).encode()


def ndjson_page(page: ChunkPage) -> bytes:
    lines = [dumps({"index": c.index, "data": plain_value(c.data)}) + "\n" for c in page.chunks]
    if page.closed:
        lines.append(dumps({"end": True, "error": page.error}) + "\n")
    return "".join(lines).encode()


async def _encoded(
    pages: AsyncIterator[ChunkPage], encode: Callable[[ChunkPage], bytes], first: bytes = b""
) -> AsyncIterator[bytes]:
    """Encoded pages. A server-side failure ends the body without an end marker, so the
    client reconnects and resumes instead of taking the stream for finished."""
    if first:
        yield first
    try:
        async for page in pages:
            yield encode(page)
    except Exception:
        log.exception("following a stream failed; the client will reconnect")


def sse_response(pages: AsyncIterator[ChunkPage], *, ping: float) -> EventSourceResponse:
    return EventSourceResponse(_encoded(pages, sse_page, f"retry: {_RETRY_MS}\n\n".encode()), ping=ping, sep="\n")


def ndjson_response(pages: AsyncIterator[ChunkPage]) -> StreamingResponse:
    return FollowingResponse(_encoded(pages, ndjson_page), media_type=NDJSON, headers={"Cache-Control": "no-store"})


class FollowingResponse(StreamingResponse):
    """A streaming response that always watches for the client leaving.

    Starlette skips the watch on ASGI 2.4 servers and notices a gone client only when a
    write fails; a follower waiting for the next chunk would then outlive its client.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def first_wins(fn: Callable[[], Awaitable[None]]) -> None:
                await fn()
                tg.cancel_scope.cancel()

            tg.start_soon(first_wins, partial(self.stream_response, send))
            await first_wins(partial(self.listen_for_disconnect, receive))


# -- run changes ---------------------------------------------------------------------------------


async def changes(store: Store, topic: tuple[str, ...], *, poll_interval: float, settle: float) -> AsyncIterator[None]:
    """Yield now, then whenever ``topic`` is notified (or, across processes, every ``poll_interval``).

    ``settle`` coalesces bursts: a busy runtime notifies thousands of times a second, a page
    needs a few updates a second.
    """
    by_poll = store.cross_process and not store.notifies_across_processes
    while True:
        listener = store.notifier.listen(*topic)
        yield
        await store.notifier.wait(listener, poll_interval if by_poll else math.inf)
        await anyio.sleep(settle)


async def snapshots(
    updates: AsyncIterator[None], read: Callable[[], Awaitable[tuple[str, Any, bool]]]
) -> AsyncIterator[bytes]:
    """SSE events ``read()`` produces on each update, skipping repeats; ``event: end`` after a final one."""
    last = None
    yield f"retry: {_RETRY_MS}\n\n".encode()
    try:
        async for _ in updates:
            event, value, final = await read()
            text = dumps(value)
            if text != last:
                last = text
                yield f"event: {event}\ndata: {text}\n\n".encode()
            if final:
                yield b"event: end\ndata: {}\n\n"
                return
    except Exception:
        log.exception("following run changes failed; the client will reconnect")


def is_final(status: str) -> bool:
    return status in TERMINAL
