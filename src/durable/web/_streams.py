"""Chunk logs and run changes, followed live and sent as Server-Sent Events or NDJSON.

A stream response, from writer to browser::

    step ──write()──► chunk log ──notify("stream", run)──────► follow_pages() ──► one body message
                        (store)     (or a poll with back-off         reads a page     per page:
                                     when another process writes)    from `index`     "id: 7\\ndata: {...}\\n\\n" x n

    EventSourceResponse races four tasks; the first to finish cancels the others:
      body (follow_pages)  ── ends after `event: end` (stream closed) ──┐
      ping (every `ping` s, a comment line)                              ├─► response done,
      client disconnect (http.disconnect)                                │   follow_pages cancelled
      server shutdown                                                   ──┘   at its await: nothing leaks

Event ids are chunk indices, so a client that reconnects with ``Last-Event-ID: 7`` resumes at
chunk 8: no gap, no duplicate. A page of chunks goes out as one body message, so a burst of
writes costs one socket write per client, not one per chunk; and live followers of one stream
share each page's store read and encoding (:class:`SharedReads`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from functools import partial
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .._client.present import dumps, plain_value
from ..stores._base import ChunkPage, Store

log = logging.getLogger("durable.web")
PAGE = 512
NDJSON = "application/x-ndjson"
# How soon a browser reconnects after a dropped connection: a field of the first event (a
# block of its own would be dispatched as an empty event by some clients, e.g. httpx-sse).
_RETRY = b"retry: 1000\n"


class PageRead:
    """One store read of a page of chunks, shared by the followers that asked for it together,
    with its encodings: a hundred clients of one stream cost one read and one encoding per page."""

    __slots__ = ("_encoded", "done", "index", "page", "since")

    def __init__(self, index: int, since: anyio.Event) -> None:
        self.index = index
        self.since = since  # the topic's listener, taken before the read began
        self.done = anyio.Event()
        self.page: ChunkPage | None = None
        self._encoded: dict[Callable[[ChunkPage], bytes], bytes] = {}

    def encoded(self, encode: Callable[[ChunkPage], bytes]) -> bytes:
        assert self.page is not None
        data = self._encoded.get(encode)
        if data is None:
            data = self._encoded[encode] = encode(self.page)
        return data


class SharedReads:
    """Live followers of a stream wake on the same notification and ask for the same page.

    The latest read of each followed stream is kept, and reused by a follower asking for the
    same index as long as the stream's topic has not been notified since that read began:
    any write the read may have missed notifies later, and wakes the follower again. (Once
    notified, a follower reads for itself, since it may have missed the write.) Whether the
    store answers at once or in a thread, a wake-up of N followers costs one read.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._latest: dict[tuple[str, str], PageRead] = {}
        self._followers: dict[tuple[str, str], int] = {}

    @contextmanager
    def following(self, run_id: str, namespace: str) -> Iterator[None]:
        """Count a follower of the stream while it follows; the last one out drops the kept page."""
        key = (run_id, namespace)
        self._followers[key] = self._followers.get(key, 0) + 1
        try:
            yield
        finally:
            self._followers[key] -= 1
            if not self._followers[key]:
                del self._followers[key]
                self._latest.pop(key, None)

    async def read(self, run_id: str, namespace: str, index: int, listener: anyio.Event) -> PageRead:
        key = (run_id, namespace)
        latest = self._latest.get(key)
        if latest is not None and latest.index == index and not latest.since.is_set():
            await latest.done.wait()
            if latest.page is not None:
                return latest
        mine = PageRead(index, listener)
        if index >= 0 and key in self._followers:  # "the last n" depends on when it is asked: not shared
            self._latest[key] = mine
        try:
            mine.page = await self.store.read_chunks(run_id, namespace, index, PAGE)
        finally:
            mine.done.set()  # a failed or cancelled read wakes its joiners, who then read for themselves
            if mine.page is None and self._latest.get(key) is mine:
                del self._latest[key]
        return mine


async def follow_pages(
    reads: SharedReads, run_id: str, namespace: str, start: int, *, poll_interval: float
) -> AsyncGenerator[PageRead, None]:
    """Pages of chunks from ``start`` (negative: from the end), then live ones; the last page is ``closed``.

    The listener is taken *before* each read, so a write landing between the read and the
    wait is never missed.
    """
    index = start
    idle = 0.01
    store = reads.store
    notifier = store.notifier
    by_poll = store.cross_process and not store.notifies_across_processes
    with reads.following(run_id, namespace):
        listener = notifier.listen("stream", run_id)
        while True:
            read = await reads.read(run_id, namespace, index, listener)
            page = read.page
            assert page is not None
            if page.chunks:
                index = page.chunks[-1].index + 1
                idle = 0.01  # a writer is active: look again soon (matters when polling another process)
            elif index < 0:
                index = 0  # "the last n" of an empty stream: follow from its start
            if page.chunks or page.closed:
                yield read
            if page.closed:
                return
            if len(page.chunks) == PAGE:
                listener = notifier.listen("stream", run_id)
                continue  # more is stored already
            if await notifier.wait(listener, idle if by_poll else math.inf):
                idle = 0.01
            else:
                idle = min(poll_interval, idle * 2)
            listener = notifier.listen("stream", run_id)


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
    pages: AsyncGenerator[PageRead, None], encode: Callable[[ChunkPage], bytes], first: bytes = b""
) -> AsyncGenerator[bytes, None]:
    """Encoded pages, ``first`` prefixed to the first one. A server-side failure ends the body
    without an end marker, so the client reconnects and resumes instead of taking the stream
    for finished."""
    try:
        async with aclosing(pages):
            async for read in pages:
                yield first + read.encoded(encode)
                first = b""
    except Exception:
        log.exception("following a stream failed; the client will reconnect")


def sse_response(pages: AsyncGenerator[PageRead, None], *, ping: float) -> EventSourceResponse:
    return EventSourceResponse(_encoded(pages, sse_page, _RETRY), ping=ping, sep="\n")


def ndjson_response(pages: AsyncGenerator[PageRead, None]) -> StreamingResponse:
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


async def changes(store: Store, topic: tuple[str, ...], *, poll_interval: float, settle: float) -> AsyncGenerator[None, None]:
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
    updates: AsyncGenerator[None, None], read: Callable[[], Awaitable[tuple[str, Any, bool]]]
) -> AsyncGenerator[bytes, None]:
    """SSE events ``read()`` produces on each update, skipping repeats; ``event: end`` after a final one."""
    last = None
    first = _RETRY
    try:
        async with aclosing(updates):
            async for _ in updates:
                event, value, final = await read()
                text = dumps(value)
                if text != last:
                    last = text
                    yield first + f"event: {event}\ndata: {text}\n\n".encode()
                    first = b""
                if final:
                    yield first + b"event: end\ndata: {}\n\n"
                    return
    except Exception:
        log.exception("following run changes failed; the client will reconnect")

