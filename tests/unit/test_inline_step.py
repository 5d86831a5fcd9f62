"""A step claimed by its run's own commit (a chain of steps on one worker) keeps no steps row while it
runs: its run's row names it. If it completes, it never gets one (its step_created and step_completed
events are its record); any other end writes its row. Everything that needs it as a row first -- a dead
worker's step claimed again, the run ending with it unfinished -- gives it one, and a fork or a listing
sees the same step either way. On every store."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

import durable
from durable._core.codec import encode
from durable._core.commands import ScheduleStep
from durable._core.errors import StoreError
from durable._core.events import Event, EventKind
from durable.stores import _sql, store_from_url
from durable.stores._base import CommitResult, ForkRun, Invocation, NewRun, StepClaim, Store
from durable.stores._sqlstore import SQLStore
from tests.helpers import encode_args, fresh_store_url, undo_inline_step, undo_rowless_step, wait_for_hook
from tests.unit.test_retention import rows

pytestmark = pytest.mark.anyio

RUN, STEP = "run_inline", "inline.step"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with store_from_url(store_url) as opened:
        for worker in ("w1", "w2", "w3"):
            await opened.register_worker(worker, "host-a", 1, "start", 60.0, 1.0)
        yield opened


async def _chain_claim(store: Store, run_id: str, deadline: float | None = None) -> StepClaim:
    """``run_id`` started by w1, whose commit claims step_1 inline; that claim."""
    await store.create_run(NewRun(run_id, "wf", encode_args(), "seed", None, 1.0, deadline=deadline))
    result = await store.commit(Invocation(
        run_id=run_id, worker_id="w1", known_seq=1, now=2.0, status="suspended", claim_steps=1,
        commands=[ScheduleStep("step_1", STEP, encode_args(1), 3)],
        speculative=[Event(run_id, 2, EventKind.RUN_STARTED, None, 2.0)],
    ))
    [claim] = result.claimed
    assert claim.inline
    return claim


async def _start_chain(store: Store, deadline: float | None = None) -> None:
    """RUN started by w1, whose commit claims step_1 (input 1) for itself."""
    claim = await _chain_claim(store, RUN, deadline)
    assert (claim.step_id, claim.attempt) == ("step_1", 1)


async def _complete_step_1_and_chain(store: Store, now: float) -> CommitResult:
    """w1's commit of step_1's result (10), claiming step_2 as it goes."""
    run = await store.get_run(RUN)
    assert run is not None
    return await store.commit(Invocation(
        run_id=RUN, worker_id="w1", known_seq=run.last_seq, now=now, status="suspended", claim_steps=1,
        commands=[ScheduleStep("step_2", STEP, encode_args(2), 1)],
        speculative=[Event(RUN, run.last_seq + 1, EventKind.STEP_COMPLETED, "step_1", now, data=encode(10), attempt=1)],
    ))


async def _rows_of_steps(store: Store) -> list[tuple[Any, ...]]:
    return await rows(store, "SELECT step_id, status, attempt, owner FROM steps WHERE run_id = ? ORDER BY step_id", RUN)


async def _inline(store: Store) -> list[tuple[Any, ...]]:
    return await rows(store, "SELECT inline_step, inline_owner FROM runs WHERE run_id = ?", RUN)


async def test_a_chained_step_that_completes_never_has_a_row_and_is_listed_from_its_events(store: Store) -> None:
    """While step_1 runs it is listed running (attempt 1, its input and attempts) without a steps row; the
    commit of its result claims step_2 the same way and writes no row: step_1 is listed completed, with
    everything its row would have held, from its events."""
    await _start_chain(store)
    assert await _rows_of_steps(store) == [] and await _inline(store) == [("step_1", "w1")]
    [listed] = await store.list_steps(RUN)
    assert (listed.step_id, listed.name, listed.status, listed.attempt, listed.max_attempts, listed.input,
            listed.started_at, listed.completed_at) == ("step_1", STEP, "running", 1, 3, encode_args(1), 2.0, None)

    result = await _complete_step_1_and_chain(store, 3.0)
    assert result.ok and [c.step_id for c in result.claimed] == ["step_2"]
    assert await _rows_of_steps(store) == []
    assert await _inline(store) == [("step_2", "w1")]
    first, second = await store.list_steps(RUN)
    assert (first.step_id, first.name, first.status, first.attempt, first.output, first.error, first.input,
            first.max_attempts, first.created_at, first.started_at, first.completed_at, first.ready_at) == (
        "step_1", STEP, "completed", 1, encode(10), None, encode_args(1), 3, 2.0, 2.0, 3.0, None
    )
    assert (second.step_id, second.status, second.max_attempts) == ("step_2", "running", 1)


async def test_a_step_completed_without_a_row_takes_no_second_outcome(store: Store) -> None:
    """Its late duplicates (a result, a failure, a retry, of its attempt or another) are refused and
    append nothing; its listing does not change."""
    await _start_chain(store)
    assert (await _complete_step_1_and_chain(store, 3.0)).ok
    run = await store.get_run(RUN)
    assert run is not None
    for kind, attempt in [(EventKind.STEP_COMPLETED, 1), (EventKind.STEP_FAILED, 1), (EventKind.STEP_RETRYING, 1),
                          (EventKind.STEP_COMPLETED, 2)]:
        assert not await store.finish_step(RUN, "step_1", kind, encode("late"), attempt, 4.0, 5.0)
    refused = await store.commit(Invocation(
        run_id=RUN, worker_id="w1", known_seq=run.last_seq, now=4.0, status="suspended", commands=[],
        speculative=[Event(RUN, run.last_seq + 1, EventKind.STEP_COMPLETED, "step_1", 4.0, data=encode(11), attempt=1)],
    ))
    assert not refused.ok
    after = await store.get_run(RUN)
    assert after is not None and after.last_seq == run.last_seq
    assert [(s.step_id, s.status, s.output) for s in await store.list_steps(RUN)] == [
        ("step_1", "completed", encode(10)), ("step_2", "running", None)
    ]


async def test_a_fork_after_a_step_completed_without_a_row_keeps_its_result_and_attempts(store: Store) -> None:
    """Forked after step_1's result, the fork has step_1 completed (a row now, as every forked step) with its
    result, input and max_attempts, and step_2 pending with its own."""
    await _start_chain(store)
    assert (await _complete_step_1_and_chain(store, 3.0)).ok
    source = await store.get_run(RUN)
    assert source is not None
    await store.fork_run(ForkRun(RUN, "run_fork", source.last_seq + 1, "end", None, None, 5.0))
    assert [(s.step_id, s.status, s.output, s.input, s.max_attempts) for s in await store.list_steps("run_fork")] == [
        ("step_1", "completed", encode(10), encode_args(1), 3), ("step_2", "pending", None, encode_args(2), 1),
    ]


async def test_a_dead_workers_inline_step_is_claimed_again_by_a_worker_serving_it(store: Store) -> None:
    """w1 dies while step_1 runs: a worker serving other steps does not see it, a worker serving it claims
    attempt 2 with the same input; the late attempt 1 may still complete it but no longer fail it."""
    await _start_chain(store)
    await store.mark_workers_dead(["w1"])
    assert await store.claim_steps("w3", ["other.step"], 5.0, 1) == []
    assert await _rows_of_steps(store) == [] and await _inline(store) == [("step_1", "w1")]
    [claim] = await store.claim_steps("w2", [STEP], 5.0, 1)
    assert (claim.step_id, claim.attempt, claim.input, claim.max_attempts) == ("step_1", 2, encode_args(1), 3)
    assert await _rows_of_steps(store) == [("step_1", "running", 2, "w2")] and await _inline(store) == [(None, None)]
    assert not await store.finish_step(RUN, "step_1", EventKind.STEP_FAILED, encode("late"), 1, 6.0, None)
    assert await store.finish_step(RUN, "step_1", EventKind.STEP_COMPLETED, encode(10), 1, 6.0, None)
    [listed] = await store.list_steps(RUN)
    assert (listed.status, listed.attempt, listed.output) == ("completed", 2, encode(10))


async def test_an_inline_step_still_running_when_its_run_is_cancelled_keeps_running_as_a_row(store: Store) -> None:
    """Cancelling the run gives its running inline step its row; the attempt's late result is still recorded."""
    await _start_chain(store)
    cancelled = await store.cancel_run(RUN, 4.0)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert await _rows_of_steps(store) == [("step_1", "running", 1, "w1")] and await _inline(store) == [(None, None)]
    assert await store.finish_step(RUN, "step_1", EventKind.STEP_COMPLETED, encode(10), 1, 5.0, None)
    assert [(s.status, s.output) for s in await store.list_steps(RUN)] == [("completed", encode(10))]


async def test_a_run_that_ends_while_its_inline_step_runs_leaves_the_step_running_as_a_row(store: Store) -> None:
    """The run's final commit (its workflow returned without awaiting step_1) gives the step its row, running
    on its worker, and clears the run's inline step; the late result is recorded."""
    await _start_chain(store)
    run = await store.get_run(RUN)
    assert run is not None
    result = await store.commit(Invocation(
        run_id=RUN, worker_id="w1", known_seq=run.last_seq, now=3.0, status="completed", result=encode(0), commands=[],
    ))
    assert result.ok and result.run_status == "completed"
    assert await _rows_of_steps(store) == [("step_1", "running", 1, "w1")] and await _inline(store) == [(None, None)]
    assert await store.finish_step(RUN, "step_1", EventKind.STEP_COMPLETED, encode(10), 1, 4.0, None)
    assert [(s.status, s.output) for s in await store.list_steps(RUN)] == [("completed", encode(10))]


async def test_a_commit_past_the_deadline_cancels_the_run_and_keeps_its_inline_step_as_a_row(store: Store) -> None:
    """step_1's result comes after the run's deadline: the run is cancelled ("timeout"), the result is not
    recorded, and step_1 is left running as a row."""
    await _start_chain(store, deadline=5.0)
    result = await _complete_step_1_and_chain(store, 6.0)
    assert not result.ok and result.run_status == "cancelled"
    assert await _rows_of_steps(store) == [("step_1", "running", 1, "w1")] and await _inline(store) == [(None, None)]


async def test_an_inline_step_that_fails_and_retries_waits_pending_then_runs_its_second_attempt(store: Store) -> None:
    """A retry of the inline step's first attempt gets its row pending until its retry time; a retry from
    an attempt that is not running is refused."""
    await _start_chain(store)
    assert not await store.finish_step(RUN, "step_1", EventKind.STEP_RETRYING, encode("boom"), 2, 3.0, 9.0)
    assert await store.finish_step(RUN, "step_1", EventKind.STEP_RETRYING, encode("boom"), 1, 3.0, 9.0)
    assert await _rows_of_steps(store) == [("step_1", "pending", 1, None)] and await _inline(store) == [(None, None)]
    assert await store.claim_steps("w2", [STEP], 8.0, 10) == []
    [claim] = await store.claim_steps("w2", [STEP], 9.0, 10)
    assert (claim.step_id, claim.attempt) == ("step_1", 2)


async def test_a_fork_of_a_run_whose_inline_step_runs_reruns_it_with_its_attempts(store: Store) -> None:
    """Forked at its end, a run whose step_1 was running inline gets step_1 pending, with the same attempts
    and input; the source keeps its inline step."""
    await _start_chain(store)
    source = await store.get_run(RUN)
    assert source is not None
    await store.fork_run(ForkRun(RUN, "run_fork", source.last_seq + 1, "end", None, None, 5.0))
    [forked] = await store.list_steps("run_fork")
    assert (forked.step_id, forked.status, forked.max_attempts, forked.input) == ("step_1", "pending", 3, encode_args(1))
    assert await _inline(store) == [("step_1", "w1")]


# -- a chain's commit without reading the run row first (Invocation.finished) ---------------------------


def _finish_step_1(claim: StepClaim, *, finished: bool) -> Invocation:
    """w1's commit at 3.0 of step_1's result (10), creating step_2 and step_3 and claiming both (step_2
    takes the inline slot)."""
    now = 3.0
    return Invocation(
        run_id=claim.run_id, worker_id="w1", known_seq=3, now=now, status="suspended", claim_steps=2, next_wake=9.0,
        commands=[ScheduleStep("step_2", STEP, encode_args(2), 1), ScheduleStep("step_3", STEP, encode_args(3), 2)],
        speculative=[Event(claim.run_id, 4, EventKind.STEP_COMPLETED, "step_1", now, data=encode(10), attempt=1)],
        consumed_seq=4, finished=claim if finished else None,
    )


async def _state(store: Store, run_id: str) -> tuple[Any, ...]:
    """Everything a commit writes of a run, as rows."""
    return (
        await rows(store, "SELECT seq, kind, corr_id, name, data, attempt, created_at, max_attempts FROM events "
                          "WHERE run_id = ? ORDER BY seq", run_id),
        await rows(store, "SELECT status, last_seq, owner, wake_at, updated_at, consumed_seq, inline_step, inline_seq, "
                          "inline_max_attempts, inline_owner FROM runs WHERE run_id = ?", run_id),
        await rows(store, "SELECT step_id, name, status, attempt, max_attempts, input, output, created_at, started_at, "
                          "owner FROM steps WHERE run_id = ? ORDER BY step_id", run_id),
    )


async def test_a_chains_commit_does_not_read_the_run_row_and_writes_what_the_general_commit_writes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs in the same state: step_1's result committed with its claim (no read of the run row) and
    without (the general commit) leave the same events, run row and step rows, and claim the same steps."""
    fast, general = await _chain_claim(store, "run_fast"), await _chain_claim(store, "run_general")
    reads: list[str] = []
    lock_run = _sql._lock_run

    def counted(db: _sql.DB, run_id: str) -> Any:
        reads.append(run_id)
        return lock_run(db, run_id)

    monkeypatch.setattr(_sql, "_lock_run", counted)
    by_claim = await store.commit(_finish_step_1(fast, finished=True))
    assert reads == []
    by_row = await store.commit(_finish_step_1(general, finished=False))
    assert reads == ["run_general"]
    assert by_claim.ok and by_row.ok and (by_claim.last_seq, by_claim.clean, by_claim.run_status) == (6, True, "running")
    assert [(c.step_id, c.inline, c.max_attempts) for c in by_claim.claimed] == [("step_2", True, 1), ("step_3", False, 2)]
    assert [replace(c, run_id="") for c in by_claim.claimed] == [replace(c, run_id="") for c in by_row.claimed]
    assert await _state(store, "run_fast") == await _state(store, "run_general")


async def _cancelled(store: Store, claim: StepClaim) -> None:
    await store.cancel_run(claim.run_id, 2.5)


async def _reclaimed(store: Store, claim: StepClaim) -> None:
    await store.mark_workers_dead(["w1"])
    assert [c.attempt for c in await store.claim_steps("w2", [STEP], 2.5, 1)] == [2]


async def _leased(store: Store, claim: StepClaim) -> None:
    def lease(db: _sql.DB) -> None:  # as claim_runs leaves it (w2 is alive)
        db.execute("UPDATE runs SET owner = 'w2' WHERE run_id = ?", (claim.run_id,))

    await cast(SQLStore, store)._run(lease)


@pytest.mark.parametrize("change", [_cancelled, _reclaimed, _leased])
async def test_a_chains_commit_of_a_run_changed_meanwhile_is_the_general_commits(store: Store, change: Any) -> None:
    """Cancelled, its step claimed again by another worker after w1 was marked dead, or leased by another
    worker: the commit with the claim ends as the general commit of the same invocation does (compared on
    two runs in the same state)."""
    fast, general = await _chain_claim(store, "run_fast"), await _chain_claim(store, "run_general")
    await change(store, fast)
    await change(store, general)
    by_claim = await store.commit(_finish_step_1(fast, finished=True))
    by_row = await store.commit(_finish_step_1(general, finished=False))
    assert (by_claim.ok, by_claim.reason, by_claim.run_status) == (by_row.ok, by_row.reason, by_row.run_status)
    assert await _state(store, "run_fast") == await _state(store, "run_general")


async def test_a_chains_commit_past_its_runs_deadline_times_the_run_out(store: Store) -> None:
    """A run with a deadline takes the general commit, which cancels it once the deadline has passed."""
    claim = await _chain_claim(store, "run_deadline", deadline=2.5)
    result = await store.commit(_finish_step_1(claim, finished=True))
    assert not result.ok and result.run_status == "cancelled"


# -- the migration (schema 6 -> 7) ------------------------------------------------------------------


@durable.step(name="inline.double")
async def double(x: int) -> int:
    return 2 * x


@durable.workflow(name="inline.chain")
async def chain(x: int) -> list[int]:
    first = await double(x)
    await durable.create_hook(token="inline:go")
    return [first, await double(first), await double(first + 1)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_run_in_flight_in_a_schema_6_store_goes_on_after_the_upgrade(backend: str, tmp_path: Path) -> None:
    """A store from before inline steps, holding a run between two steps, is upgraded on open; the run
    resumes, its later steps run (inline), and its earlier step keeps its row."""
    if backend == "postgres" and not os.environ.get("DURABLE_TEST_POSTGRES"):
        pytest.skip("needs DURABLE_TEST_POSTGRES")
    url = fresh_store_url(backend, tmp_path)
    async with durable.Runtime(url, workflows=[chain]) as rt:
        run = await rt.start(chain, 3)
        await wait_for_hook(rt, "inline:go")
    _run_sql(backend, url, tmp_path, [*undo_inline_step(), f"UPDATE durable_meta SET value = '{_sql.INLINE_MIGRATION_FROM}' "
                                      "WHERE key = 'schema_version'"])
    async with durable.Runtime(url, workflows=[chain]) as rt:
        assert await rows(rt.store, "SELECT value FROM durable_meta WHERE key = 'schema_version'") == [
            (str(_sql.SCHEMA_VERSION),)
        ]
        await rt.resume_hook("inline:go", None)
        assert await rt.run(run.run_id).result() == [6, 12, 14]
        steps = await rt.store.list_steps(run.run_id)
        assert [(s.step_id, s.status, s.attempt) for s in steps] == [
            ("step_1", "completed", 1), ("step_3", "completed", 1), ("step_4", "completed", 1)
        ]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    "version", [_sql.INLINE_MIGRATION_FROM, _sql.ROWLESS_MIGRATION_FROM, _sql.STARTED_WITH_CREATED_MIGRATION_FROM]
)
async def test_a_schema_6_7_or_8_store_is_not_upgraded_while_workers_of_the_older_durable_run_on_it(
    backend: str, version: int, tmp_path: Path
) -> None:
    """They would not see steps kept inline, or completed without a row, or see steps started by their
    step_created as never started: opening the store names the live worker and changes nothing; once it
    has stopped, the store is upgraded."""
    if backend == "postgres" and not os.environ.get("DURABLE_TEST_POSTGRES"):
        pytest.skip("needs DURABLE_TEST_POSTGRES")
    url = fresh_store_url(backend, tmp_path)
    async with store_from_url(url) as store:
        await store.register_worker("old-worker", "host-a", 4242, "start", 60.0, time.time())
    # (schema 9 changed no table: a schema 8 store differs only in its version)
    undo = {_sql.INLINE_MIGRATION_FROM: undo_inline_step(), _sql.ROWLESS_MIGRATION_FROM: undo_rowless_step()}.get(version, [])
    _run_sql(backend, url, tmp_path, [*undo, f"UPDATE durable_meta SET value = '{version}' WHERE key = 'schema_version'"])
    with pytest.raises(StoreError, match=rf"is at schema {version} and workers of an older durable are running on it: "
                                         r"old-worker \(host host-a, pid 4242\)\. Stop them"):
        async with store_from_url(url):
            pass
    _run_sql(backend, url, tmp_path, ["DELETE FROM workers WHERE worker_id = 'old-worker'"])  # it stopped
    async with store_from_url(url) as store:
        assert await rows(store, "SELECT value FROM durable_meta WHERE key = 'schema_version'") == [(str(_sql.SCHEMA_VERSION),)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_schema_7_store_keeps_its_step_rows_and_its_running_inline_step_completes_without_one(
    backend: str, tmp_path: Path
) -> None:
    """A store from before completed inline steps went rowless, its run between step_1 (completed, with its
    row) and step_2 (running inline), is upgraded on open: step_1 keeps its row, and step_2 completes
    without one, listed with the max_attempts its run's row held."""
    if backend == "postgres" and not os.environ.get("DURABLE_TEST_POSTGRES"):
        pytest.skip("needs DURABLE_TEST_POSTGRES")
    url = fresh_store_url(backend, tmp_path)
    async with store_from_url(url) as store:
        await _start_chain(store)
        assert (await _complete_step_1_and_chain(store, 3.0)).ok
    _run_sql(backend, url, tmp_path, [*undo_rowless_step(), f"UPDATE durable_meta SET value = '{_sql.ROWLESS_MIGRATION_FROM}' "
                                      "WHERE key = 'schema_version'"])
    async with store_from_url(url) as store:
        assert await rows(store, "SELECT value FROM durable_meta WHERE key = 'schema_version'") == [(str(_sql.SCHEMA_VERSION),)]
        assert await _rows_of_steps(store) == [("step_1", "completed", 1, None)]
        run = await store.get_run(RUN)
        assert run is not None
        result = await store.commit(Invocation(
            run_id=RUN, worker_id="w1", known_seq=run.last_seq, now=4.0, status="completed", result=encode(0), commands=[],
            speculative=[Event(RUN, run.last_seq + 1, EventKind.STEP_COMPLETED, "step_2", 4.0, data=encode(20), attempt=1)],
        ))
        assert result.ok and await _rows_of_steps(store) == [("step_1", "completed", 1, None)]
        assert [(s.step_id, s.status, s.output, s.max_attempts, s.completed_at) for s in await store.list_steps(RUN)] == [
            ("step_1", "completed", encode(10), 3, 3.0), ("step_2", "completed", encode(20), 1, 4.0)
        ]


def _run_sql(backend: str, url: str, tmp_path: Path, statements: list[str]) -> None:
    """Statements run on the store's database directly, as another program would."""
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "durable.db") as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        from tests import pg

        with pg.connect(url) as conn:
            for statement in statements:
                conn.execute(statement)
