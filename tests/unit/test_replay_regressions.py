"""Minimal reproductions of bugs found by the property tests (tests/property/), one test per bug.

Each test drives the smallest piece that shows the bug -- the pure engine, the codec, a store,
or a runtime -- with the input the property shrank to, so the bug stays pinned down even if the
generators change. A bug not fixed yet is a strict xfail: it reports XPASS(strict) once fixed,
as a reminder to drop the marker (and the matching guard in tests/property, if any).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import durable
from durable._core import codec as _codec
from durable._core.events import Event, EventKind
from durable._workflow.workflow import Workflow
from durable.testing import replay_events

INPUT = _codec.encode({"args": [], "kwargs": {}})


def _log(*entries: tuple[str, str | None, str | None, bytes | None]) -> list[Event]:
    events = [Event("run_r", 1, EventKind.RUN_CREATED, None, 1.0, "wf", INPUT), Event("run_r", 2, EventKind.RUN_STARTED, None, 1.0)]
    for kind, corr, name, data in entries:
        events.append(Event("run_r", len(events) + 1, kind, corr, 2.0, name, data))
    return events


def _workflow(fn: Any) -> Workflow[Any, Any]:
    return Workflow(fn, name="wf", serializer="json")


@durable.step(name="regressions.echo")
async def echo(value: Any) -> Any:
    return value


def test_finishing_before_a_recorded_command_is_non_determinism() -> None:
    """Code that returns where its log holds a further command (here a hook) raises NonDeterminismError, not a result.

    Found by test_nondeterminism: a program ``create_hook(token="h1")`` whose mutant dropped the
    call replayed the original log to completion with a different result.
    """

    async def removed_the_hook() -> list[Any]:
        return []

    log = _log((EventKind.HOOK_CREATED, "hook_1", "h1", None))
    with pytest.raises(durable.NonDeterminismError, match="#1"):
        replay_events(_workflow(removed_the_hook), log)


def test_failing_before_a_recorded_command_is_non_determinism() -> None:
    """A replay that raises before reaching a recorded step reports the divergence, not the unrelated error."""

    async def crashes_early() -> None:
        raise KeyError("h1")

    args = _codec.encode({"args": [1], "kwargs": {}})
    log = _log((EventKind.STEP_CREATED, "step_1", "regressions.echo", args))
    with pytest.raises(durable.NonDeterminismError):
        replay_events(_workflow(crashes_early), log)


def test_finishing_after_every_recorded_command_is_fine() -> None:
    """The control: a workflow that reached every recorded command completes normally."""

    async def one_step() -> Any:
        return await asyncio.gather(echo(1))

    args = _codec.encode({"args": [1], "kwargs": {}})
    log = _log(
        (EventKind.STEP_CREATED, "step_1", "regressions.echo", args),
        (EventKind.STEP_COMPLETED, "step_1", None, _codec.encode(1)),
    )
    assert replay_events(_workflow(one_step), log).result == [1]


# -- codec (found by tests/property/test_codec_roundtrip.py) ---------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "time(0, 0, fold=1)",
        "datetime(2024, 10, 27, 2, 30, fold=1)",
        "datetime(2020, 1, 1, tzinfo=timezone(timedelta(microseconds=7)))",
        "time(1, 2, tzinfo=timezone(timedelta(microseconds=7)))",
        "datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-8), 'PST'))",
    ],
)
def test_datetimes_keep_fold_zone_names_and_sub_second_offsets(value: str) -> None:
    """fold, a fixed zone's name and a sub-second UTC offset survive a round trip (isoformat() drops them)."""
    from datetime import datetime, time, timedelta, timezone

    original = eval(value, {"datetime": datetime, "time": time, "timedelta": timedelta, "timezone": timezone})
    decoded = _codec.decode(_codec.encode(original))
    assert decoded == original
    assert decoded.fold == original.fold
    assert decoded.utcoffset() == original.utcoffset()
    assert decoded.tzname() == original.tzname()


def test_plain_datetimes_keep_their_iso_encoding() -> None:
    """The fix above leaves the bytes of ordinary datetimes unchanged, so existing logs still replay."""
    from datetime import datetime

    assert _codec.encode(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == b'DJ1:{"$datetime":"2024-01-02T03:04:05+00:00"}'


def test_strings_with_lone_surrogates_round_trip() -> None:
    """A str holding a lone surrogate encodes (it used to raise UnicodeEncodeError, not even SerializationError)."""
    value = {"\ud800": ["a\udfffb"]}
    assert _codec.decode(_codec.encode(value)) == value
    assert _codec.encode("é") == "DJ1:\"é\"".encode()  # valid text: same bytes as before


def test_builtin_exceptions_keep_state_their_init_sets() -> None:
    """A decoded UnicodeDecodeError has its reason and message, not an empty str()."""
    original = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    decoded = _codec.decode(_codec.encode(original))
    assert type(decoded) is UnicodeDecodeError
    assert decoded.reason == "invalid start byte"
    assert str(decoded) == str(original)


# -- runtime, streams and stores (found by the crash and store-model properties; fixed by the lead
# in _streams.py, _step_runner.py and stores/ -- 760b79f and 62ebbc2 -- after these tests pinned
# them as strict xfails) -----------------------------------------------------------------------------


@durable.step(name="regressions.stream_then_close", retry_delay=0.001)
async def stream_then_close() -> str:
    async with durable.get_writable("tokens") as writer:  # closes the stream on a clean exit
        await writer.write({"token": 1})
    return "done"


@durable.workflow(name="regressions.streaming")
async def streaming() -> str:
    return await stream_then_close()


@pytest.mark.anyio
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
    first = durable.Runtime(DiesBeforeTheOutcome(path), workflows=[streaming], poll_interval=0.02)
    async with first:
        run = await first.start(streaming)
        for _ in range(500):
            if first.store.dead:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
    second_store = SQLiteStore(path)
    await second_store.open()
    await second_store.mark_workers_dead([first.worker_id])
    async with durable.Runtime(second_store, workflows=[streaming], poll_interval=0.02) as second:
        assert await second.run(run.run_id).result(timeout=10) == "done"


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_a_refused_commit_changes_nothing() -> None:
    """A commit refused on its second speculative event leaves the run exactly as it was.

    Found by test_store_model: ``speculative=[run_started, run_started]`` returns ok=False
    ("run already started") yet the first one's ``UPDATE runs SET status = 'running'`` stays
    committed -- a running run with no ``run_started`` event, which no invocation would ever
    start. Fixed by checking every speculative event before writing anything.
    """
    from durable.stores._base import Invocation, NewRun
    from durable.stores._sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    await store.open()
    try:
        await store.create_run(NewRun("run_a", "wf", INPUT, "seed", None, 1.0))
        result = await store.commit(
            Invocation(
                run_id="run_a", worker_id="w", known_seq=1, now=2.0, commands=[], status="suspended",
                speculative=[Event("run_a", 2, EventKind.RUN_STARTED, None, 2.0), Event("run_a", 3, EventKind.RUN_STARTED, None, 2.0)],
            )
        )
        record = await store.get_run("run_a")
    finally:
        await store.aclose()
    assert not result.ok
    assert record is not None and (record.status, record.started_at, record.last_seq) == ("pending", None, 1)


@durable.step(name="regressions.writes_then_waits")
async def writes_then_waits(started: str) -> str:
    writer = durable.get_writable("progress")
    await writer.write({"step": "started"})
    Path(started).touch()
    await anyio.sleep(30)
    return "never"


@durable.workflow(name="regressions.long_step")
async def long_step(started: str) -> str:
    return await writes_then_waits(started)


@pytest.mark.anyio
async def test_closing_the_runtime_mid_step_releases_the_steps_writers(tmp_path: Path) -> None:
    """Closing a runtime while a step that writes a stream is running leaves no writer channel open.

    Found by test_crash_anywhere (its crashed runtime is closed with steps in flight): in
    _step_runner.run_step a real cancellation re-raises before ``context.settle_writers()``, so
    the attempt's StreamWriter is never closed (ResourceWarning: Unclosed MemoryObjectSendStream
    when it is collected). Settling the writers in a ``finally`` (shielded, or just closing the
    channels when the task is being cancelled) fixes it.
    """
    import gc
    import warnings

    started = tmp_path / "started"

    async def close_mid_step() -> None:
        async with durable.Runtime("memory://", workflows=[long_step], poll_interval=0.02) as rt:
            await rt.start(long_step, str(started))
            for _ in range(500):
                if started.exists():
                    break
                await anyio.sleep(0.01)
            assert started.exists()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await close_mid_step()
        await anyio.lowlevel.checkpoint()  # let the cancelled tasks be dropped
        gc.collect()
    assert not [w for w in caught if "MemoryObjectSendStream" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.anyio
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
