"""Stream writers: what ``durable.get_writable()`` returns in a step -- flushable and back-pressured.

::

    step code ──write()──► memory channel (bounded) ──► flusher task ──append_chunks()──► chunk log
                 (waits when full)                       (one transaction per batch)

A batch is whatever queued up while the previous append was being written (plus
``max_delay`` of waiting, if set), so a slow store gets bigger batches instead of more memory.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, NoReturn

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core import codec as _codec
from .._core.errors import StreamClosedError
from .._workflow.streams import StreamHandle
from ..stores._base import Store

_MAX_BUFFER = 256
_BATCH = 512


class _Flush:
    __slots__ = ("close", "done", "error")

    def __init__(self, close: bool = False) -> None:
        self.close = close
        self.done = anyio.Event()
        self.error: BaseException | None = None


class StreamWriter:
    """Writes chunks from a step to a run's stream; ``async with`` closes the stream on a clean exit.

    ``write`` encodes at once (a bad chunk raises ``SerializationError`` there and nothing else
    is lost) and waits only when ``max_buffer`` chunks are already queued.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        namespace: str,
        *,
        step_id: str | None,
        attempt: int | None,
        spawn: Any,
        max_buffer: int = _MAX_BUFFER,
        max_delay: float = 0.0,
        max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        self.run_id = run_id
        self.namespace = namespace
        self._store = store
        self._step_id = step_id
        self._attempt = attempt
        self._max_delay = max_delay
        self._max_value_size = max_value_size
        send, receive = anyio.create_memory_object_stream[Any](max_buffer)
        self._send: MemoryObjectSendStream[Any] = send
        self._receive: MemoryObjectReceiveStream[Any] = receive
        self._closed = False
        self._closing = False  # set when close/aclose starts: later writes are refused, not lost
        self._error: BaseException | None = None
        self._error_seen = False  # the step was told (it may have handled it)
        self._written = 0
        # Keep the coroutine: if its task is cancelled before it ever runs (the runtime is
        # closing), its body -- and the ``async with`` that closes the channel -- never runs;
        # the writer then sees it CLOSED and does the cleanup itself instead of waiting forever.
        self._flusher_coro = self._flusher()
        spawn(lambda: self._flusher_coro)

    def __repr__(self) -> str:
        return f"<StreamWriter run={self.run_id} namespace={self.namespace!r} written={self._written}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def _raise(self, error: BaseException) -> NoReturn:
        self._error_seen = True
        raise error

    async def write(self, value: Any) -> None:
        if self._error is not None:
            self._raise(self._error)
        if self._closed or self._closing:
            raise StreamClosedError(self.run_id, self.namespace)
        root = f"chunk #{self._written} of stream {self.namespace!r}"
        data = _codec.check_size(_codec.encode(value, root=root), self._max_value_size, root)
        try:
            # Not a checkpoint while there is room: a writer in a tight loop fills the buffer
            # and the flusher takes it in one batch; a paced writer yields on its own awaits,
            # and the flusher sends what it has at once -- batching without added latency.
            self._send.send_nowait(data)
        except anyio.WouldBlock:
            await self._send.send(data)  # the buffer is full: back-pressure
        self._written += 1

    async def flush(self) -> None:
        """Return once every chunk written so far is in the log."""
        if self._closed:
            if self._error is not None:
                self._raise(self._error)
            return
        await self._request(_Flush())

    async def close(self) -> None:
        """Flush and mark the stream closed: readers end after the last chunk."""
        if self._closed:
            return
        self._closing = True
        try:
            await self._request(_Flush(close=True))
        finally:
            self._release()

    def _flusher_gone(self) -> bool:
        return inspect.getcoroutinestate(self._flusher_coro) == inspect.CORO_CLOSED

    async def _request(self, marker: _Flush) -> None:
        if self._error is not None:
            self._raise(self._error)
        if self._flusher_gone():
            raise StreamClosedError(self.run_id, self.namespace)
        await self._send.send(marker)
        while not marker.done.is_set():
            if self._flusher_gone():  # cancelled (the runtime is closing): nobody will answer
                raise StreamClosedError(self.run_id, self.namespace)
            with anyio.move_on_after(0.05):
                await marker.done.wait()
        if marker.error is not None:
            self._raise(marker.error)

    def _release(self) -> None:
        self._closed = True
        self._send.close()
        if self._flusher_gone():
            self._receive.close()  # its flusher never ran, so its ``async with`` never will

    async def end_attempt(self) -> None:
        """The attempt is over: flush what is queued and stop the flusher, leaving the stream open
        (the step's next attempt, or another step, may write on). An error the step was already
        told about is not raised again: it may have handled it."""
        told = self._error is not None and self._error_seen
        self._closing = True
        try:
            if not self._closed:
                await self._request(_Flush())
        except Exception as exc:
            if not (told and exc is self._error):
                raise
        finally:
            self._release()

    def abandon(self) -> None:
        """Drop what is still queued and release the channel (the attempt is being cancelled)."""
        self._release()

    async def __aenter__(self) -> StreamWriter:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            # A failing step may be retried: keep the stream open for the next attempt.
            await self.flush()

    def __durable_serialize__(self) -> dict[str, str]:
        return {"run_id": self.run_id, "namespace": self.namespace}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, str]) -> StreamHandle:
        return StreamHandle(data["run_id"], data["namespace"])

    async def _flusher(self) -> None:
        receive = self._receive
        async with receive:
            async for first in receive:
                batch: list[bytes] = []
                markers: list[_Flush] = []
                item: Any = first
                deadline = time.monotonic() + self._max_delay
                while True:
                    if isinstance(item, _Flush):
                        markers.append(item)
                        break
                    batch.append(item)
                    if len(batch) >= _BATCH:
                        break
                    try:
                        item = receive.receive_nowait()
                    except anyio.WouldBlock:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        with anyio.move_on_after(remaining):
                            item = await receive.receive()
                            continue
                        break
                    except anyio.EndOfStream:
                        break
                close = any(m.close for m in markers)
                error: BaseException | None = None
                if batch or close:
                    try:
                        await self._store.append_chunks(
                            self.run_id, self.namespace, batch, self._step_id, self._attempt, time.time(), close=close
                        )
                    except Exception as exc:
                        error = exc
                        self._error = exc
                for marker in markers:
                    marker.error = error
                    marker.done.set()
                if close and error is None:
                    return
