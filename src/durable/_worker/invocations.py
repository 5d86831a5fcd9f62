"""Invocations: advance a run's workflow instance and commit what it produced, one run at a time.

A run is invoked by one worker at a time: either under a lease taken by ``claim_runs`` (a cold
start, a timer, a hook payload, work left by another process) -- :meth:`Invocations.invoke_claimed`
-- or in a single speculative commit that only succeeds if nobody else appended to the run or
holds it -- :meth:`Invocations.advance`, used for a new run's first slice and for a step that
finished in the process that holds its run's live instance::

    step N finished ──► feed "step N completed" to the live instance ──► commands
                        ──► commit: step N completed + step N+1 created and started   (one transaction)
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio

from .._client.telemetry import Telemetry, emit_run_span
from .._core import codec as _codec
from .._core.codec import DEFAULT_MAX_VALUE_SIZE
from .._core.commands import ScheduleStep, WriteChunk
from .._core.errorinfo import decode_error, encode_error
from .._core.errors import EncryptedValueError, SerializationError, StreamClosedError
from .._core.events import Event, EventKind
from .._engine.instance import Outcome, WorkflowInstance
from .._workflow.step import Step
from .._workflow.workflow import Workflow
from ..stores._base import TERMINAL, CommitResult, Invocation, RunRecord, StepClaim, Store
from .slots import StepSlots
from .sticky import Sticky, StickyCache

log = logging.getLogger("durable")
_RUN_STARTED = EventKind.RUN_STARTED


class Invocations:
    """Runs invocations for one worker: cold replays, sticky resumes and speculative commits.

    ``workflow(name)`` finds the code this worker executes; ``launch(claims)`` starts the steps
    a commit claimed for this worker (none unless ``runs_steps``). ``stats`` counts cold replays, sticky resumes,
    speculative commits, fallbacks (a step result that had to be stored alone) and unclaimed successors
    (steps a finished step's commit created but could not claim for want of a free slot: each costs the
    dispatcher a claim transaction and a new task).
    """

    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        cache: StickyCache,
        slots: StepSlots,
        workflow: Callable[[str], Workflow[Any, Any] | None],
        launch: Callable[[list[StepClaim]], None],
        base_url: str | None,
        runs_steps: bool = True,
        tracing: Telemetry | None = None,
        now: Callable[[], float] = time.time,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        strict: bool = False,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.cache = cache
        self.slots = slots
        self._workflow = workflow
        self._launch = launch
        self._base_url = base_url
        self.max_value_size = max_value_size
        self.strict = strict  # wall-clock and global-random calls in workflow code fail the run
        self._runs_steps = runs_steps  # False: a commit never claims the steps it creates (execute_steps=False)
        self._tracing = tracing
        self._now = now
        self._failures: dict[str, int] = {}  # consecutive failed invocations per run (back-off)
        self.stats = {
            "cold_replays": 0, "sticky_resumes": 0, "speculative_commits": 0, "fallbacks": 0, "unclaimed_successors": 0,
        }

    def _new_instance(self, wf: Workflow[Any, Any], record: RunRecord, *, replay_until: float | None = None) -> WorkflowInstance:
        if record.input[:4] == _codec.ENCRYPTED_TAG:
            # Arguments this process cannot decrypt (no key, or not that key): the invocation fails
            # and is retried with a back-off -- failing the run would lose it for the process that can.
            raise EncryptedValueError(_codec.encrypted_key_id(record.input), f"the arguments of run {record.run_id}")
        return WorkflowInstance(
            wf, run_id=record.run_id, input=record.input, seed=record.seed, base_url=self._base_url,
            replay_until=record.consumed_seq if replay_until is None else replay_until, scheduled_at=record.scheduled_at,
            max_value_size=self.max_value_size, strict=self.strict,
        )

    # -- a new run's first slice ----------------------------------------------------------------

    async def start_fresh(self, record: RunRecord) -> None:
        """Run a just-created run's first slice here (this worker owns it from creation),
        committed with its ``run_started``."""
        wf = self._workflow(record.workflow_name)
        if wf is None:
            return
        async with self.cache.lock(record.run_id):
            if record.run_id in self.cache:
                return
            instance = self._new_instance(wf, record)
            instance.seen_seq = record.last_seq
            entry = self.cache.put(record.run_id, instance, store_seq=record.last_seq)
            try:
                claims = await self.advance(entry, EventKind.RUN_STARTED, None, None, None, holds_lease=True)
                if claims is None:  # refused: give the lease back so the run can be claimed again
                    await self.store.release_run(record.run_id, self.worker_id, self._now())
                self.cache.release_if_uncached(record.run_id)
                self._launch(claims or [])
            except Exception:
                log.exception("first invocation of run %s failed; it will be retried", record.run_id)
                with anyio.CancelScope(shield=True):
                    await self.store.release_run(record.run_id, self.worker_id, self._now())

    # -- speculative: an event fed before it is stored -------------------------------------------

    async def advance(
        self, entry: Sticky, kind: str, corr: str | None, data: bytes | None, attempt: int | None,
        *, holds_lease: bool = False, held_slot: bool = False, finished: StepClaim | None = None,
    ) -> list[StepClaim] | None:
        """Feed an event not yet stored to a live instance and commit it with the commands it
        led to, atomically. The caller holds the run's lock and ``entry.store_seq`` is known.

        ``held_slot``: the caller (a finished step) hands its own step slot to the first step the
        commit creates. If the commit claims any step, that slot is now the claims'; if it claims
        none (or is refused, or raises), the slot is still the caller's to release. ``finished``: the
        claim of the inline step whose result ``kind`` is (see ``Invocation.finished``).

        Returns the steps claimed for this worker, or None if the commit was refused.
        """
        instance = entry.instance
        known = entry.store_seq
        assert known is not None
        # One event, built once: the instance consumes it, the store appends it (numbering it
        # itself; ``known + 1`` is the seq it gets if the commit goes through).
        event = Event(instance.run_id, known + 1, kind, corr, self._now(), None, data, attempt)
        outcome = instance.advance([event])
        claims = await self._commit(
            instance, outcome, known, [event], holds_lease=holds_lease, successors=kind != _RUN_STARTED,
            held=1 if held_slot else 0, finished=finished,
        )
        if claims is not None:
            self.stats["speculative_commits"] += 1
        return claims

    async def _commit(
        self, instance: WorkflowInstance, outcome: Outcome, known_seq: int, speculative: list[Event], *, holds_lease: bool,
        successors: bool = False, held: int = 0, finished: StepClaim | None = None,
    ) -> list[StepClaim] | None:
        """Commit an advanced instance; return the steps claimed here (not yet launched), None if refused.

        ``successors``: the commit records a finished step's outcome (the steps it creates are its
        successors). ``held``: slots the caller hands to the steps created (see :meth:`advance`).
        """
        run_id = instance.run_id
        new_steps = sum(1 for c in outcome.commands if isinstance(c, ScheduleStep))
        # The caller's slot claims first, the free ones after it: a finished step that still holds
        # its slot must not leave its own successor unclaimed when the pool is empty.
        handed = min(held, new_steps) if self._runs_steps else 0
        claim_now = handed + self.slots.take(new_steps - handed) if self._runs_steps else 0
        if successors and claim_now < new_steps and self._runs_steps:
            self.stats["unclaimed_successors"] += new_steps - claim_now
        invocation = Invocation(
            run_id=run_id, worker_id=self.worker_id, known_seq=known_seq, now=self._now(),
            commands=outcome.commands, status=outcome.status, result=outcome.result, error=outcome.error,
            speculative=speculative, holds_lease=holds_lease, claim_steps=claim_now, next_wake=outcome.next_wake,
            consumed_seq=known_seq + len(speculative), finished=finished,
        )
        try:
            result = await self._commit_failing_lost_writes(invocation)
        except BaseException:
            self.slots.give_back(claim_now - handed)  # the handed slot stays the caller's
            self.cache.evict(run_id)
            raise
        # A claim uses the handed slot first; claiming nothing, the commit leaves it to the caller.
        self.slots.give_back(claim_now - len(result.claimed) - (0 if result.claimed else handed))
        if result.ok and result.run_status in ("completed", "failed") and self._tracing is not None:
            # This commit ended the run (a terminal run refuses commits): its span is emitted here, once.
            record = await self.store.get_run(run_id)
            if record is not None:
                await emit_run_span(self._tracing, self.store, record)
        if not result.ok:
            log.debug("commit of run %s refused: %s", run_id, result.reason)
            self.cache.evict(run_id)
            return None
        if outcome.status == "failed":
            error = decode_error(outcome.error) if outcome.error else None
            log.info("run %s (%s) failed: %s: %s", run_id, instance.workflow.name, error.type if error else "?",
                        (error.message if error else "").replace("\n", "\\n"))
        elif outcome.status == "completed":
            log.debug("run %s (%s) completed", run_id, instance.workflow.name)
        if outcome.status != "suspended" or result.run_status in TERMINAL or result.conflicts:
            # Finished, or the store answered a hook with hook_conflict: a conflict is a delivery
            # the instance has not seen, and a cold replay is the simple way to show it.
            self.cache.evict(run_id)
            if outcome.status != "suspended" or result.run_status != "running":
                self.cache.forget_lock(run_id)
        else:
            entry = self.cache.get(run_id)
            if entry is not None and entry.instance is instance:
                if result.clean:
                    instance.seen_seq = result.last_seq
                    entry.store_seq = result.last_seq
                else:
                    entry.store_seq = None
        return result.claimed

    async def _commit_failing_lost_writes(self, invocation: Invocation) -> CommitResult:
        """Commit; a workflow write (a yield) to a stream a step already closed fails the run.

        The store refuses such a commit whole (StreamClosedError). The write cannot be delivered
        and the workflow has moved past it, so the run fails with that error rather than lose the
        write silently: everything else is committed, without the writes to that stream.
        """
        lost: StreamClosedError | None = None
        while True:
            try:
                return await self.store.commit(invocation)
            except SerializationError as exc:
                # A value the store itself refuses as too big (its own limit is below max_value_size):
                # committing it again would fail forever, so the run fails with that error. A step
                # result fed speculatively is the step's to fail (see StepExecutor._record_too_big).
                if invocation.status == "failed" or any(
                    e.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED) for e in invocation.speculative
                ):
                    raise
                log.warning("run %s: the store cannot hold what it produced (%s); the run fails", invocation.run_id, exc)
                invocation = replace(
                    invocation, commands=[], status="failed", result=None, error=encode_error(exc), claim_steps=0,
                )
            except StreamClosedError as exc:
                if exc.run_id != invocation.run_id:
                    raise
                lost = lost or exc
                invocation = replace(
                    invocation,
                    commands=[
                        c for c in invocation.commands if not (isinstance(c, WriteChunk) and c.namespace == exc.namespace)
                    ],
                    status="failed", result=None, error=encode_error(lost), claim_steps=0,
                )

    # -- which code a step runs -------------------------------------------------------------------

    def issued_step(self, run_id: str, step_id: str) -> Step[Any, Any] | None:
        """The step object the run's live instance called at ``step_id``, if it is live here."""
        entry = self.cache.get(run_id)
        return entry.instance.issued_steps.get(step_id) if entry is not None else None

    async def replayed_step(self, run_id: str, step_id: str) -> Step[Any, Any] | None:
        """The step object the run calls at ``step_id``, found by replaying its log cold.

        For steps defined inside a workflow body: each run makes its own closure, and only that
        run's code knows which one a position called. None if this worker cannot replay the run.
        """
        record = await self.store.get_run(run_id)
        wf = self._workflow(record.workflow_name) if record is not None else None
        if record is None or wf is None:
            return None
        instance = self._new_instance(wf, record, replay_until=math.inf)  # a lookup: nothing is done for real
        try:
            events, _ = await self.store.read_log(run_id, 0)
            instance.advance(events)
            return instance.issued_steps.get(step_id)
        finally:
            instance.close()

    # -- under a lease ----------------------------------------------------------------------------

    async def invoke_claimed(self, record: RunRecord) -> None:
        """Invoke a run this worker holds the lease of (cold replay, or the sticky instance)."""
        run_id = record.run_id
        try:
            async with self.cache.lock(run_id):
                wf = self._workflow(record.workflow_name)
                if wf is None:
                    await self.store.release_run(run_id, self.worker_id, self._now())
                    return
                entry = self.cache.get(run_id)
                if entry is None:
                    entry = self.cache.put(run_id, self._new_instance(wf, record))
                    self.stats["cold_replays"] += 1
                else:
                    self.cache.touch(run_id)
                    self.stats["sticky_resumes"] += 1
                instance = entry.instance
                events, last_seq = await self.store.read_log(run_id, instance.seen_seq)
                if instance.status == "closed":  # evicted while we read (the cache was full): start over
                    entry = self.cache.put(run_id, self._new_instance(wf, record))
                    instance = entry.instance
                    events, last_seq = await self.store.read_log(run_id, 0)
                speculative: list[Event] = []
                if record.status == "pending" and instance.status == "new":
                    start = Event(run_id, last_seq + 1, EventKind.RUN_STARTED, None, self._now())
                    events = [*events, start]
                    speculative = [start]
                if self._tracing is None or not events:
                    outcome = instance.advance(events)
                else:
                    started = time.perf_counter()
                    outcome = instance.advance(events)
                    self._tracing.replay_cost.record((time.perf_counter() - started) / len(events))
                if not speculative:
                    instance.seen_seq = max(instance.seen_seq, last_seq)
                claims = await self._commit(instance, outcome, last_seq, speculative, holds_lease=True)
                if claims is None:  # refused (log moved under a first start, run ended): free the lease
                    await self.store.release_run(run_id, self.worker_id, self._now())
                self.cache.release_if_uncached(run_id)
                self._launch(claims or [])
        except Exception:
            # Back off exponentially (50 ms .. 60 s) so a persistent failure is not a hot loop.
            failures = self._failures[run_id] = self._failures.get(run_id, 0) + 1
            delay = min(60.0, 0.05 * 2 ** (failures - 1))
            log.exception("invocation of run %s failed (%d in a row); retrying in %.2fs", run_id, failures, delay)
            self.cache.evict(run_id)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.store.release_run(run_id, self.worker_id, self._now(), retry_at=self._now() + delay)
        else:
            self._failures.pop(run_id, None)
