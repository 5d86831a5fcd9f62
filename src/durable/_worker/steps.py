"""The step executor: runs claimed steps on the runtime's loop and records their outcomes.

A sequential workflow runs step after step in one task: recording step N (in the fast path,
through :meth:`Invocations.advance`) commits step N+1 as started and claimed here, and the
executor's loop runs it next without creating a task. Where the store answers without
yielding (SQLite ``synchronous=normal``, ``memory://``) and the steps never await anything,
that loop would never give the event loop back: it yields once per ``_TURN`` of such work, so
heartbeats, HTTP requests and other runs get through a chain of any length. An outcome the store cannot take yet
(unreachable, disk full) is kept and retried by the heartbeat: the step stays this worker's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from .._client.telemetry import Telemetry
from .._core.codec import DEFAULT_MAX_VALUE_SIZE
from .._core.errorinfo import encode_error
from .._core.errors import SerializationError, StepFailed
from .._core.events import EventKind
from .._workflow.step import Step
from .._workflow.step import steps as registered_steps
from ..stores._base import StepClaim, Store
from .attempt import StepOutcome, run_step
from .invocations import Invocations
from .slots import StepSlots

log = logging.getLogger("durable")
_STEP_RETRYING = EventKind.STEP_RETRYING

Spawn = Callable[..., None]
# Seconds a chain of steps may run before it yields to the event loop (a yield costs ~10 µs:
# at most one per 5 ms is noise, and nothing else waits longer than that behind a chain).
_TURN = 0.005
# Successors in a row a chain of steps hands its slot to (see StepExecutor._execute): enough that a
# chain of any usual length never loses its successor's claim, few enough that a chain without end
# lets steps queued for a slot through.
_HANDOFFS = 100


class StepExecutor:
    """Runs this worker's claimed steps; cancels them when their run is cancelled or ends."""

    def __init__(
        self, store: Store, *, slots: StepSlots, invocations: Invocations, spawn: Spawn, base_url: str | None,
        tracing: Telemetry | None = None,
        now: Callable[[], float] = time.time,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        self.store = store
        self._tracing = tracing
        if tracing is not None:
            tracing.count_queued(self)  # durable.steps.queued reads len(self.running) when collected
        self.max_value_size = max_value_size
        self.slots = slots
        self.invocations = invocations
        self._spawn = spawn
        self._base_url = base_url
        self.running: dict[tuple[str, str], anyio.CancelScope] = {}  # (run_id, step_id) -> its attempt's scope
        self._unrecorded: list[tuple[StepClaim, StepOutcome]] = []  # outcomes the store refused to take yet
        self._now = now
        # Bodies that replace steps' own for this runtime, by step name (TestRuntime.replace_step).
        self.bodies: dict[str, Callable[..., Any]] = {}

    def launch(self, claims: list[StepClaim]) -> None:
        """Start each claimed step in its own task (each holds one slot, taken by its claimer)."""
        for claim in claims:
            scope = anyio.CancelScope()
            self.running[(claim.run_id, claim.step_id)] = scope
            self._spawn(self._execute, claim, scope)

    def cancel_run(self, run_id: str) -> None:
        """Cancel the attempts of ``run_id``'s steps running here."""
        for (rid, _), scope in list(self.running.items()):
            if rid == run_id:
                scope.cancel()

    async def cancel_ended(self) -> None:
        """Cancel running steps whose run ended meanwhile (cancelled from another process, say)."""
        if self.running:
            ended = await self.store.terminal_runs(sorted({rid for rid, _ in self.running}))
            for run_id in ended:
                self.cancel_run(run_id)

    async def _execute(self, claim: StepClaim, scope: anyio.CancelScope) -> None:
        next_claim: StepClaim | None = claim
        new_scope = type(scope)  # the running backend's scope class: anyio.CancelScope() looks it up on every call
        turn_started = time.perf_counter()
        handoffs = 0  # in a row: the slot this chain passed from step to successor
        while next_claim is not None:
            claim, next_claim = next_claim, None
            carried = False  # this step's slot went to its successor (claimed in the commit): not released
            if log.isEnabledFor(logging.DEBUG):  # the hot path: no formatting unless asked for
                log.debug("running step %s %s of run %s (attempt %d/%d)", claim.step_id, claim.name, claim.run_id,
                          claim.attempt, claim.max_attempts)
            key = (claim.run_id, claim.step_id)
            self.running[key] = scope  # before yielding: a cancel meanwhile reaches this attempt
            outcome: StepOutcome | None = None
            try:
                if time.perf_counter() - turn_started > _TURN:
                    await asyncio.sleep(0)  # the chain has kept the loop for a turn: let everyone else run
                    turn_started = time.perf_counter()
                if claim.attempt > claim.max_attempts:
                    step = None
                else:  # the live instance's step when it is here (no coroutine), else the slower ways
                    step = self._live_step(claim) or await self._step_for(claim)
                if claim.attempt > claim.max_attempts:
                    # Attempts lost to crashes count: a step that keeps killing its worker must end.
                    outcome = StepOutcome(EventKind.STEP_FAILED, _exhausted(claim))
                elif step is None:  # not defined here (or a closure this worker cannot rebuild): retry elsewhere
                    outcome = StepOutcome(EventKind.STEP_RETRYING, _missing_step(claim.name), retry_at=self._now() + 1.0)
                elif self._tracing is None:
                    outcome = await run_step(
                        step, claim, store=self.store, base_url=self._base_url, spawn=self._spawn, cancel_scope=scope,
                        now=self._now, body=self.bodies.get(step.name) if self.bodies else None,
                        max_value_size=self.max_value_size,
                    )
                else:
                    outcome = await self._traced(step, claim, scope, self._tracing)
                # The slot goes to the successor, except once every _HANDOFFS steps: then the
                # successor is claimed only from a free slot, so steps waiting for one get their
                # turn even behind chains that never end.
                hand_off = handoffs < _HANDOFFS
                try:
                    claims = await self._record(claim, outcome, held_slot=hand_off)
                except SerializationError as exc:
                    claims = await self._record_too_big(claim, exc, held_slot=hand_off)
                handoffs = handoffs + 1 if hand_off else 0
                if claims:
                    carried = hand_off
                    next_claim = claims[0]
                    scope = new_scope()
                    if len(claims) > 1:
                        self.launch(claims[1:])
            except Exception:
                # The outcome could not be stored (store unreachable, disk full, ...). The step
                # stays ours, so keep the outcome and let the heartbeat retry until it lands.
                log.exception("recording step %s of run %s failed; retrying in the background", claim.step_id, claim.run_id)
                if outcome is not None:
                    self._unrecorded.append((claim, outcome))
            finally:
                self.running.pop(key, None)
                if not carried:
                    self.slots.release()

    async def _traced(self, step: Step[Any, Any], claim: StepClaim, scope: anyio.CancelScope, tracing: Telemetry) -> StepOutcome:
        """One attempt inside its span (a child of the run span, wherever the run's span is emitted)."""
        started = time.monotonic()
        with tracing.step_attempt(claim.run_id, claim.workflow_name, claim.name, claim.step_id, claim.attempt) as span:
            outcome = await run_step(
                step, claim, store=self.store, base_url=self._base_url, spawn=self._spawn, cancel_scope=scope,
                now=self._now, body=self.bodies.get(step.name) if self.bodies else None,
                max_value_size=self.max_value_size,
            )
            outcome_name = outcome.kind.removeprefix("step_")  # completed | failed | retrying | cancelled
            tracing.step_finished(span, claim.name, outcome_name, time.monotonic() - started, outcome.error)
        return outcome

    def _live_step(self, claim: StepClaim) -> Step[Any, Any] | None:
        """The code a claimed step runs: the step object its run's workflow called at that
        position, when the run's instance is live here."""
        step = self.invocations.issued_step(claim.run_id, claim.step_id)
        return step if step is not None and step.matches(claim.name) else None

    async def _step_for(self, claim: StepClaim) -> Step[Any, Any] | None:
        """The code a claimed step runs when its run is not live here (see :meth:`_live_step`): the
        definition of that name, else (for a step defined inside a workflow body, whose closure only
        its own run can make) a cold replay."""
        defined = registered_steps.resolve(claim.name)
        if defined is not None and "<locals>" not in defined.__qualname__:
            return defined
        step = await self.invocations.replayed_step(claim.run_id, claim.step_id)
        return step if step is not None and step.matches(claim.name) else None

    async def _record_too_big(self, claim: StepClaim, exc: SerializationError, *, held_slot: bool) -> list[StepClaim]:
        """An outcome the store itself refused as too big (its own limit is below ``max_value_size``)
        fails the step with that error instead: a retry would be refused again, and kept for the
        heartbeat it would be retried forever."""
        log.warning("step %s of run %s: the store cannot hold its outcome (%s); the step fails", claim.step_id,
                    claim.run_id, exc)
        return await self._record(claim, StepOutcome(EventKind.STEP_FAILED, encode_error(exc)), held_slot=held_slot)

    async def _record(self, claim: StepClaim, outcome: StepOutcome, *, held_slot: bool = False) -> list[StepClaim]:
        """Record a step's outcome; in the fast path also advance its run and return the steps claimed.

        ``held_slot``: the step's slot is handed to the first step claimed (see :meth:`Invocations.advance`).
        """
        run_id = claim.run_id
        cache = self.invocations.cache
        if outcome.kind != _STEP_RETRYING and not outcome.cancelled:
            entry = cache.get(run_id)
            if entry is not None and entry.store_seq is not None:
                async with cache.lock(run_id):
                    entry = cache.get(run_id)
                    if entry is not None and entry.instance.status == "running" and entry.store_seq is not None:
                        claims = await self.invocations.advance(
                            entry, outcome.kind, claim.step_id, outcome.data, claim.attempt, held_slot=held_slot,
                            finished=claim if claim.inline else None,
                        )
                        if claims is not None:
                            cache.release_if_uncached(run_id)
                            return claims
                        self.invocations.stats["fallbacks"] += 1
        await self.store.finish_step(
            run_id, claim.step_id, outcome.kind, outcome.data, claim.attempt, self._now(), outcome.retry_at
        )
        return []

    async def retry_unrecorded(self) -> None:
        """Store the outcomes that could not be stored when their step finished, oldest first.

        The heartbeat calls this after renewing the leases, so an outcome that keeps failing never
        costs this worker its leases; one the store refuses as too big fails its step instead.
        """
        while self._unrecorded:
            claim, outcome = self._unrecorded[0]
            try:
                await self.store.finish_step(
                    claim.run_id, claim.step_id, outcome.kind, outcome.data, claim.attempt, self._now(), outcome.retry_at
                )
            except SerializationError as exc:
                if outcome.kind == EventKind.STEP_FAILED:
                    raise
                self._unrecorded[0] = (claim, StepOutcome(EventKind.STEP_FAILED, encode_error(exc)))
                continue
            self._unrecorded.pop(0)


def _exhausted(claim: StepClaim) -> bytes:
    message = f"step {claim.name!r} exceeded its {claim.max_attempts} attempt(s) (its worker stopped during the last one)"
    return encode_error(StepFailed(claim.name, "durable.StepFailed", message))


def _missing_step(name: str) -> bytes:
    return encode_error(LookupError(
        f"step {name!r} is not defined in this process (or, defined inside its workflow, only a worker "
        "that runs that workflow can run it)"
    ))

