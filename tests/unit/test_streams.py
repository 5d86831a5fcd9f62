"""Durable streams on every store: chunk log, readers, run-end closing, flushing, back-pressure, retries."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

import durable
from durable._client.streams import read_stream
from durable._core.events import EventKind
from durable.stores import store_from_url
from durable.stores._base import NewRun, Store
from durable.testing import check_replay

pytestmark = pytest.mark.anyio


@durable.step
async def tokens(n: int) -> str:
    writer = durable.get_writable()
    async with writer:
        for i in range(n):
            await writer.write({"token": i})
    return "done"


@durable.workflow
async def generate(n: int) -> str:
    return await tokens(n)


async def test_reader_replays_then_follows_and_resumes_without_gaps(runtime: durable.Runtime) -> None:
    """Chunks get contiguous indices; a reader can start anywhere, and a resumed reader sees no gap or duplicate."""
    run = await runtime.start(generate, 50)
    seen: list[Any] = []
    async for chunk in run.stream(with_metadata=True):
        seen.append(chunk)
        if len(seen) == 20:
            break  # the client disconnects after index 19 ...
    async for chunk in run.stream(start_index=seen[-1].index + 1, with_metadata=True):
        seen.append(chunk)  # ... and resumes after it
    assert [c.index for c in seen] == list(range(50))
    assert [c.value["token"] for c in seen] == list(range(50))
    assert await run.result(timeout=20) == "done"
    assert [c async for c in run.stream(start_index=-3)] == [{"token": 47}, {"token": 48}, {"token": 49}]


@durable.workflow
async def progress(n: int) -> AsyncIterator[dict[str, int]]:
    for i in range(n):
        yield {"done": i + 1, "of": n}
        await durable.sleep(0.01)


async def test_generator_workflow_yields_once_each_even_when_replayed_cold(store_url: str) -> None:
    """Async-generator yields become chunks exactly once, with the sticky cache disabled so every wake-up replays."""
    async with durable.Runtime(store_url, sticky_cache_size=0) as runtime:
        run = await runtime.start(progress, 5)
        chunks = [c async for c in run.stream()]
        assert chunks == [{"done": i + 1, "of": 5} for i in range(5)]
        assert await run.result(timeout=20) is None
        assert runtime.stats["cold_replays"] >= 5
        assert (await check_replay(run)).status == "completed"
        assert await run.streams() == [("default", 5, True)]


@durable.workflow
async def quiet() -> int:
    await durable.sleep(0.1)
    return 1


@durable.step
async def write_then_fail(n: int) -> None:
    writer = durable.get_writable("partial")
    for i in range(n):
        await writer.write(i)
    raise durable.FatalError("gave up")


@durable.workflow
async def failing_stream() -> None:
    await write_then_fail(3)


async def test_run_end_closes_every_stream_and_failures_reach_readers(runtime: durable.Runtime) -> None:
    """A reader of a never-written stream ends with the run; a failed run's stream ends with StreamFailed after its chunks."""
    ok = await runtime.start(quiet)
    assert [c async for c in ok.stream("never-written")] == []
    assert await ok.result(timeout=10) == 1
    bad = await runtime.start(failing_stream)
    got: list[int] = []
    with pytest.raises(durable.StreamFailed, match="gave up"):
        async for chunk in bad.stream("partial"):
            got.append(chunk)
    assert got == [0, 1, 2]


@durable.step
async def unflushed(n: int) -> str:
    writer = durable.get_writable("bulk")
    for i in range(n):
        await writer.write(i)  # never flushed nor closed by the step itself
    return "returned"


@durable.workflow
async def bulk(n: int) -> str:
    return await unflushed(n)


async def test_a_steps_chunks_are_flushed_before_its_completion_is_recorded(runtime: durable.Runtime) -> None:
    """Every chunk of a step is in the log no later than its step_completed event."""
    run = await runtime.start(bulk, 3000)
    assert await run.result(timeout=30) == "returned"
    chunks = [c async for c in run.stream("bulk", with_metadata=True)]
    assert [c.value for c in chunks] == list(range(3000))
    completed = next(e for e in await run.events() if e.kind == "step_completed")
    assert max(c.created_at for c in chunks) <= completed.created_at


@durable.step
async def misuse() -> list[str]:
    writer = durable.get_writable("misuse")
    await writer.write("kept")
    problems = []
    with socket.socket() as sock:
        try:
            await writer.write({"sock": sock})
        except durable.SerializationError as exc:
            problems.append(f"serialization: {exc.path}")
    await writer.close()
    try:
        await writer.write("after close")
    except durable.StreamClosedError:
        problems.append("closed")
    return problems


@durable.workflow
async def misuse_workflow() -> list[str]:
    return await misuse()


async def test_bad_chunks_and_writes_after_close_raise_in_the_writer(runtime: durable.Runtime) -> None:
    """A non-serializable chunk and a write after close raise clear errors; what was written stays."""
    run = await runtime.start(misuse_workflow)
    assert await run.result(timeout=20) == ["serialization: chunk #1 of stream 'misuse'['sock']", "closed"]
    assert [c async for c in run.stream("misuse")] == ["kept"]


@durable.step(max_retries=2, retry_delay="10ms")
async def flaky_writer(tag: str) -> int:
    attempt = durable.get_step_metadata().attempt
    writer = durable.get_writable("attempts")
    await writer.write(f"{tag} attempt {attempt} chunk 0")
    if attempt < 3:
        raise ConnectionError("retry me")
    await writer.write(f"{tag} attempt {attempt} chunk 1")
    return attempt


@durable.workflow
async def retried_stream() -> int:
    return await flaky_writer("x")


async def test_chunks_of_failed_attempts_stay_marked_with_their_attempt(runtime: durable.Runtime) -> None:
    """The documented rule: a retried step's earlier chunks stay in the log, each marked with its attempt."""
    run = await runtime.start(retried_stream)
    assert await run.result(timeout=20) == 3
    chunks = [c async for c in run.stream("attempts", with_metadata=True)]
    assert [(c.attempt, c.value) for c in chunks] == [
        (1, "x attempt 1 chunk 0"), (2, "x attempt 2 chunk 0"), (3, "x attempt 3 chunk 0"), (3, "x attempt 3 chunk 1"),
    ]
    assert {c.step_id for c in chunks} == {"step_1"}


@durable.step
async def log_lines(writer: durable.StreamHandle, lines: list[str]) -> int:
    for line in lines:
        await writer.write(line)
    await writer.flush()
    return len(lines)


@durable.workflow
async def passes_writer() -> int:
    logs = durable.get_writable("logs")
    await logs.write("from the workflow")
    n = await log_lines(logs, ["from", "the", "step"])
    await logs.close()
    return n


async def test_a_writer_passed_from_workflow_to_step_writes_to_the_same_stream(runtime: durable.Runtime) -> None:
    """get_writable() in a workflow gives a handle that serializes by reference; a step writes through it."""
    run = await runtime.start(passes_writer)
    assert await run.result(timeout=20) == 3
    assert [c async for c in run.stream("logs")] == ["from the workflow", "from", "the", "step"]
    assert (await check_replay(run)).status == "completed"


class GatedStore:
    """Wraps a store so that appending chunks waits on a gate: a slow store, for back-pressure."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.gate = anyio.Event()
        self.appends: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_chunks(self, run_id: str, namespace: str, chunks: Sequence[bytes], *args: Any, **kw: Any) -> int:
        await self.gate.wait()
        self.appends.append(len(chunks))
        return int(await self._inner.append_chunks(run_id, namespace, chunks, *args, **kw))


async def test_a_slow_store_applies_back_pressure_and_loses_nothing(tmp_path: Any) -> None:
    """With the store stalled, write() blocks once the bounded buffer is full; after it resumes, all chunks land in order."""
    async with store_from_url("memory://") as inner:
        await inner.create_run(NewRun("r1", "w", b"DJ1:{}", "seed", None, time.time()))
        store = GatedStore(inner)
        async with anyio.create_task_group() as tg:
            gated = cast(Store, store)  # a Store by delegation
            writer = durable.StreamWriter(gated, "r1", "bp", step_id=None, attempt=None, spawn=tg.start_soon, max_buffer=4)
            accepted = 0
            while True:  # the store is stalled: writes are accepted until the bounded buffer is full
                with anyio.move_on_after(0.2) as scope:
                    await writer.write(accepted)
                if scope.cancelled_caught:
                    break
                accepted += 1
            # At most one batch held by the stalled flusher plus a full buffer: memory does not grow.
            assert 4 <= accepted <= 9  # (a sender blocked on a full buffer hands its chunk over too)
            store.gate.set()
            for i in range(accepted + 1, 100):
                await writer.write(i)
            await writer.close()
        values = [c async for c in read_stream(inner, "r1", "bp")]
        assert values == [i for i in range(100) if i != accepted]  # the blocked write was cancelled, nothing else lost
        assert sum(store.appends) == 99 and len(store.appends) < 99  # batched


async def test_a_reader_in_another_store_object_follows_by_polling(sqlite_url: str) -> None:
    """A reader with its own connection (as in another process) sees chunks written live by the runtime."""
    async with durable.Runtime(sqlite_url) as runtime, store_from_url(sqlite_url) as other:
        run = await runtime.start(generate, 20)
        values = [c async for c in read_stream(other, run.run_id, poll_interval=0.05)]
        assert values == [{"token": i} for i in range(20)]


@durable.workflow
async def slow_writer() -> None:
    stream = durable.get_writable("late")
    await durable.sleep(0.2)
    for i in range(5):
        await stream.write(i)


async def test_a_negative_start_on_an_empty_stream_then_follows_from_the_beginning(runtime: durable.Runtime) -> None:
    """start_index=-2 on a stream still empty resolves once, at the first read: no later chunk is skipped."""
    run = await runtime.start(slow_writer)
    assert [c async for c in run.stream("late", start_index=-2)] == [0, 1, 2, 3, 4]


# -- found by a review of the writers: nothing accepted is lost, nothing handled fails later ---------

race_log: list[Any] = []


@durable.step(name="streams.write_races_close", max_retries=0)
async def write_races_close() -> str:
    writer = durable.get_writable("race")
    await writer.write("a")
    await anyio.lowlevel.checkpoint()  # the flusher is storing "a"
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.close)
        await anyio.lowlevel.checkpoint()  # close() has begun
        try:
            await writer.write("b")
            race_log.append("accepted")
        except durable.StreamClosedError:
            race_log.append("refused")
    return "ok"


@durable.workflow(name="streams.races_close")
async def races_close() -> str:
    return await write_races_close()


async def test_a_write_racing_close_is_refused_not_lost(runtime: durable.Runtime) -> None:
    race_log.clear()
    run = await runtime.start(races_close)
    assert await run.result(timeout=20) == "ok"
    stored = [c async for c in run.stream("race")]
    assert (race_log, stored) == (["refused"], ["a"])  # close() begins at once: later writes are refused


@durable.step(name="streams.handles_closed", max_retries=0)
async def handles_closed() -> str:
    writer = durable.get_writable("handled")
    try:
        await writer.write("late")
        await writer.flush()
    except durable.StreamClosedError:
        return "handled"
    return "wrote"


@durable.workflow(name="streams.closes_then_calls")
async def closes_then_calls() -> str:
    await durable.get_writable("handled").close()
    return await handles_closed()


async def test_a_stream_error_the_step_handled_does_not_fail_it_afterwards(runtime: durable.Runtime) -> None:
    run = await runtime.start(closes_then_calls)
    assert await run.result(timeout=20) == "handled"


@durable.step(name="streams.close_then_fail_once", max_retries=1, retry_delay=0.3)
async def close_then_fail_once() -> str:
    attempt = durable.get_step_metadata().attempt
    async with durable.get_writable("reopened") as writer:
        await writer.write(f"attempt {attempt}")
    if attempt == 1:
        raise RuntimeError("fails after closing its stream")
    return "ok"


@durable.workflow(name="streams.reopens")
async def reopens() -> str:
    return await close_then_fail_once()


async def test_a_live_reader_follows_a_stream_a_retry_reopens(runtime: durable.Runtime) -> None:
    """A close by an attempt is final only once its step finished: a reader that saw it keeps following."""
    run = await runtime.start(reopens)
    with anyio.fail_after(20):
        live = [c async for c in run.stream("reopened")]
    assert live == ["attempt 1", "attempt 2"]
    assert await run.result(timeout=20) == "ok"


# -- found by a review of the core: a workflow-side write to a closed stream was dropped silently --


@durable.step(name="review.closes_default_stream")
async def closes_default_stream() -> int:
    async with durable.get_writable() as writer:  # closes the run's default stream on exit
        await writer.write("from the step")
    return 1


@durable.workflow(name="review.yields_after_close")
async def yields_after_close() -> AsyncIterator[str]:
    yield "first"
    await closes_default_stream()
    yield "after the close"


async def test_a_yield_to_a_closed_stream_is_not_lost_silently(runtime: durable.Runtime) -> None:
    """A yield after the default stream was closed either reaches the stream or fails the run; it never vanishes."""
    run = await runtime.start(yields_after_close)
    with contextlib.suppress(durable.RunFailed):
        await run.result(timeout=10)
    chunks = [c async for c in run.stream()] if await run.status() == "completed" else []
    assert await run.status() == "failed" or "after the close" in chunks


# -- found by the crash property (tests/property/test_crash_anywhere.py), pinned as strict xfails until
# fixed in 760b79f and 62ebbc2 ------------------------------------------------------------------------


@durable.step(name="regressions.stream_then_close", retry_delay=0.001)
async def stream_then_close() -> str:
    async with durable.get_writable("tokens") as writer:  # closes the stream on a clean exit
        await writer.write({"token": 1})
    return "done"


@durable.workflow(name="regressions.streaming")
async def streaming() -> str:
    return await stream_then_close()


async def test_a_step_that_closed_its_stream_completes_after_a_crash(tmp_path: Any) -> None:
    """A worker dying after a step closed its stream but before its completion was recorded must not doom the step.

    Found by test_crash_anywhere (simulated crash ``before-outcome``, and a real SIGKILL): the
    re-run attempt (same step_id, attempt 2) writes to the stream attempt 1 closed, gets
    StreamClosedError -- which fails a step at once -- and the run fails. At-least-once steps
    that close their stream (the documented ``async with writer:`` pattern) could not survive a
    crash in that window. Fixed by letting a later attempt of the step that closed a stream
    reopen it.
    """
    from durable.stores._sqlite import SQLiteStore

    class DiesBeforeTheOutcome(SQLiteStore):
        dead = False

        async def finish_step(self, *args: Any, **kwargs: Any) -> bool:
            self.dead = True
            raise durable.StoreError("the process died here")

        async def commit(self, invocation: Any) -> Any:
            if any(e.kind == EventKind.STEP_COMPLETED for e in invocation.speculative):
                self.dead = True
                raise durable.StoreError("the process died here")
            return await super().commit(invocation)

    path = str(tmp_path / "closed.db")
    dying = DiesBeforeTheOutcome(path)
    first = durable.Runtime(dying, workflows=[streaming], poll_interval=0.02)
    async with first:
        run = await first.start(streaming)
        for _ in range(500):
            if dying.dead:
                break
            await asyncio.sleep(0.01)
    second_store = SQLiteStore(path)
    await second_store.open()
    await second_store.mark_workers_dead([first.worker_id])
    async with durable.Runtime(second_store, workflows=[streaming], poll_interval=0.02) as second:
        assert await second.run(run.run_id).result(timeout=10) == "done"


async def test_a_writer_whose_flush_fails_still_releases_its_channel() -> None:
    """StreamWriter.end_attempt() closes its memory channel even when flushing raised (else: ResourceWarning at GC).

    Found by test_crash_anywhere: after a store error, ``aclose`` re-raised the flush error
    from ``try/finally`` with ``self._send.close()`` after that block, so it never ran (and the
    flusher task waited forever).
    """
    import gc
    import warnings

    from durable._worker.writers import StreamWriter
    from durable.stores._sqlite import SQLiteStore

    class Broken(SQLiteStore):
        async def append_chunks(self, *args: Any, **kwargs: Any) -> int:
            raise durable.StoreError("disk gone")

    store = Broken(":memory:")
    await store.open()
    tasks: list[asyncio.Task[Any]] = []
    writer = StreamWriter(store, "run_x", "default", step_id="step_1", attempt=1,
                          spawn=lambda fn, *a: tasks.append(asyncio.ensure_future(fn(*a))))
    await writer.write({"a": 1})
    with pytest.raises(durable.StoreError):
        await writer.end_attempt()
    # With the channel left open the flusher waits for more chunks forever: bound the wait.
    _, pending = await asyncio.wait(tasks, timeout=1.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del writer
        gc.collect()
    await store.aclose()
    assert not pending, "the flusher task did not end after aclose()"
    assert not [w for w in caught if "Unclosed" in str(w.message)], [str(w.message) for w in caught]


async def test_a_writer_whose_flusher_never_ran_releases_its_channel() -> None:
    """Closing a writer whose flusher task was cancelled before its first step leaves no channel open.

    Found by test_crash_anywhere (a runtime closed right after a step created a writer): the
    flusher closes the receive end with ``async with receive:``, which never runs if the task
    is cancelled before it starts; nothing else closes it (ResourceWarning: Unclosed
    MemoryObjectReceiveStream when collected). Worse, ``flush()``/``aclose()`` then wait forever
    for a flusher that is gone. The writer could notice its flusher ended (a done callback
    failing pending markers) and ``aclose()`` could close both ends.
    """
    import gc
    import warnings

    from durable._worker.writers import StreamWriter
    from durable.stores._sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    await store.open()

    async def writer_whose_flusher_never_ran() -> bool:
        """True if aclose() returned (rather than waiting for the missing flusher)."""
        tasks: list[asyncio.Task[Any]] = []

        def spawn(fn: Any, *args: Any) -> None:
            task = asyncio.ensure_future(fn(*args))
            task.cancel()  # the runtime is closing: its tasks are cancelled before they ever run
            tasks.append(task)

        writer = StreamWriter(store, "run_x", "default", step_id="step_1", attempt=1, spawn=spawn)
        await asyncio.gather(*tasks, return_exceptions=True)
        with anyio.move_on_after(1.0) as waited, contextlib.suppress(Exception):
            await writer.end_attempt()
        return not waited.cancelled_caught

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        returned = await writer_whose_flusher_never_ran()
        await anyio.lowlevel.checkpoint()
        gc.collect()
    await store.aclose()
    assert returned, "aclose() waited for a flusher that never ran"
    assert not [w for w in caught if "MemoryObject" in str(w.message)], [str(w.message) for w in caught]
