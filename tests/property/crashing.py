"""Crashes on purpose: a SQLite store that dies at a chosen operation, and the checks after recovery.

:class:`CrashingStore` is the real SQLite store on a file. At the chosen point it "dies": the
operation that triggers the crash (and every one after it, from every task of the runtime)
raises :class:`SimulatedCrash` without touching the database, so the file is left exactly as a
``kill -9`` at that instant would leave it. The points:

- ``after-append``: once the run's log plus its streams hold ``n`` entries, right after the
  operation that got them there;
- ``before-outcome``: when the ``n``-th step attempt's outcome is about to be recorded -- its
  side effects are done, its completion is not;
- ``mid-flush``: when the ``n``-th batch of stream chunks is about to be appended (a step that
  writes flushes at least twice, so earlier batches of the same attempt are in).

A crash is held back while a step runs its last allowed attempt: losing that attempt
legitimately fails the step ("exceeded its attempts"), which is not what these tests are about.

:func:`check_recovered` compares a recovered run with what the program must produce
(:mod:`oracle`, same seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from durable._core.codec import decode
from durable._core.errors import StoreError
from durable._core.events import EventKind
from durable.stores._base import CommitResult, Invocation, NewRun, RunRecord, StepClaim
from durable.stores._sqlite import SQLiteStore

from .harness import check_chunk_indices, observe
from .oracle import expected, oracle_differences
from .programs import Program, plan_attempt
from .sim import History
from .values import strict_eq


class SimulatedCrash(StoreError):
    """The store "process" is dead: nothing more reaches the database."""


@dataclass(frozen=True)
class CrashPlan:
    mode: str  # after-append | before-outcome | mid-flush
    n: int

    def __str__(self) -> str:
        return f"crash {self.mode} #{self.n}"


_READS = (
    "get_run", "list_runs", "load_events", "read_log", "next_wake", "active_workflows", "active_versions", "terminal_runs", "list_steps",
    "get_hook", "list_hooks", "read_chunks", "list_streams",
)
_WRITES = (
    "register_worker", "heartbeat", "mark_workers_dead", "unregister_worker", "create_run", "claim_runs", "release_run",
    "commit", "cancel_run", "claim_steps", "finish_step", "resume_hook", "append_chunks", "close_stream",
)


class CrashingStore(SQLiteStore):
    """The SQLite store on a file, dying at the operation ``plan`` names (see the module docstring)."""

    def __init__(self, path: str, plan: CrashPlan) -> None:
        super().__init__(path, synchronous="normal")
        self.plan = plan
        self.dead = False
        self.crashed = anyio.Event()
        self.run_id: str | None = None
        self.outcomes = 0
        self.flushes = 0
        self.running: dict[tuple[str, str], StepClaim] = {}
        self.pending_crash = False
        self.crash_point = ""

    # -- dying -------------------------------------------------------------------------------

    def _die(self, where: str) -> None:
        self.dead = True
        self.crash_point = where
        self.crashed.set()

    def _check_alive(self, op: str) -> None:
        if self.dead:
            raise SimulatedCrash(f"the store died {self.crash_point}; {op} never happened")

    def _in_last_attempt(self) -> bool:
        return any(c.attempt >= c.max_attempts for c in self.running.values())

    def _settled(self, run_id: str, step_id: str) -> None:
        self.running.pop((run_id, step_id), None)

    async def _after_write(self, op: str) -> None:
        """after-append: die right after the write that brought the run to ``n`` entries."""
        if self.plan.mode != "after-append" or self.run_id is None or self.dead:
            return
        record = await super().get_run(self.run_id)
        chunks = sum(count for _, count, _ in await super().list_streams(self.run_id))
        if record is not None and record.last_seq + chunks >= self.plan.n:
            self.pending_crash = True
        if self.pending_crash and not self._in_last_attempt():
            self._die(f"after {op} (log {record.last_seq if record else '?'} + {chunks} chunks)")

    def _before_outcome(self, op: str, step_id: str, attempt: int) -> None:
        if self.plan.mode != "before-outcome" or self.dead:
            return
        claim = self.running.get((self.run_id or "", step_id))
        if claim is not None and claim.attempt >= claim.max_attempts:
            return  # never lose a last attempt
        self.outcomes += 1
        if self.outcomes >= self.plan.n:
            self._die(f"before {op} of {step_id} attempt {attempt}")
            raise SimulatedCrash(self.crash_point)

    def _track(self, claims: list[StepClaim]) -> None:
        for claim in claims:
            self.running[(claim.run_id, claim.step_id)] = claim

    # -- the operations ---------------------------------------------------------------------------

    async def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        self._check_alive("create_run")
        record, created = await super().create_run(new)
        self.run_id = record.run_id
        await self._after_write("create_run")
        return record, created

    async def commit(self, invocation: Invocation) -> CommitResult:
        self._check_alive("commit")
        for ev in invocation.speculative:
            if ev.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED) and ev.correlation_id:
                self._before_outcome("commit", ev.correlation_id, ev.attempt or 0)
        result = await super().commit(invocation)
        if result.ok:
            for ev in invocation.speculative:
                self._settled(invocation.run_id, ev.correlation_id or "")
            self._track(result.claimed)
        await self._after_write("commit")
        return result

    async def claim_steps(self, worker_id: str, step_names: Any, now: float, limit: int) -> list[StepClaim]:
        self._check_alive("claim_steps")
        claims = await super().claim_steps(worker_id, step_names, now, limit)
        self._track(claims)
        await self._after_write("claim_steps")
        return claims

    async def finish_step(
        self, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float, retry_at: float | None = None
    ) -> bool:
        self._check_alive("finish_step")
        self._before_outcome("finish_step", step_id, attempt)
        done = await super().finish_step(run_id, step_id, kind, data, attempt, now, retry_at)
        self._settled(run_id, step_id)
        await self._after_write("finish_step")
        return done

    async def append_chunks(self, run_id: str, namespace: str, chunks: Any, step_id: str | None, attempt: int | None,
                            now: float, *, close: bool = False) -> int:
        self._check_alive("append_chunks")
        if self.plan.mode == "mid-flush" and chunks and not self._in_last_attempt():
            self.flushes += 1
            if self.flushes >= self.plan.n:
                self._die(f"before appending {len(chunks)} chunk(s) to {namespace!r} (batch #{self.flushes})")
                raise SimulatedCrash(self.crash_point)
        index = await super().append_chunks(run_id, namespace, chunks, step_id, attempt, now, close=close)
        await self._after_write("append_chunks")
        return index


def _guard(name: str, write: bool) -> Any:
    base = getattr(SQLiteStore, name)

    async def guarded(self: CrashingStore, *args: Any, **kwargs: Any) -> Any:
        self._check_alive(name)
        result = await base(self, *args, **kwargs)
        if write:
            await self._after_write(name)
        return result

    guarded.__name__ = name
    return guarded


for _name in _READS + _WRITES:
    if _name not in CrashingStore.__dict__:
        setattr(CrashingStore, _name, _guard(_name, _name in _WRITES))


# -- after recovery ---------------------------------------------------------------------------------------


def check_recovered(program: Program, recovered: History) -> None:
    """The recovered run ends as an uninterrupted one must (the oracle, same seed): result, payloads,
    workflow streams, each step's outcome -- recorded exactly once; step streams hold whole
    attempts in order (crashed ones may stop early, the last one is complete), with no gaps."""
    check_chunk_indices(recovered)
    got = observe(recovered)
    problems = oracle_differences(expected(program, recovered.seed), got, step_streams=False)
    assert not problems, "\n".join(problems)
    for key, (_, kinds, _) in got.steps.items():
        finals = [k for k in kinds if k in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED)]
        assert len(finals) == 1, f"step {key} recorded {finals}"
    steps = program.steps()
    # Streams steps wrote: attempts in order, each a prefix of its plan, the last one whole.
    for namespace, chunks in recovered.chunks.items():
        if not namespace.startswith("s"):
            continue
        step = steps[int(namespace[1:])]
        groups: list[tuple[int, list[Any]]] = []
        for chunk in chunks:
            if not groups or groups[-1][0] != chunk.attempt:
                groups.append((chunk.attempt or 0, []))
            groups[-1][1].append(decode(chunk.data))
        attempts = [a for a, _ in groups]
        assert attempts == sorted(set(attempts)), f"{namespace}: attempts interleaved or repeated: {attempts}"
        for attempt, values in groups:
            planned = plan_attempt(step.key, step.arg, step.fails, step.fatal, step.chunks, attempt).chunks
            assert strict_eq(values, planned[: len(values)]), f"{namespace} attempt {attempt}: {values} is not a prefix of {planned}"
        last_attempt, last_values = groups[-1]
        planned = plan_attempt(step.key, step.arg, step.fails, step.fatal, step.chunks, last_attempt).chunks
        assert strict_eq(last_values, planned), f"{namespace}: the last attempt wrote {last_values}, planned {planned}"

