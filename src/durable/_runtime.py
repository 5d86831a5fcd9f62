"""The runtime: the only part that talks to the store and runs user steps.

::

     start() ──create_run──► store ◄──────────────────────────────┐
        │                      ▲                                  │ commit (one transaction):
        ▼                      │ claim runs / steps (leases)       │   events + new steps/hooks/waits
     invoke ──► WorkflowInstance.advance(events) ──► commands ─────┘   + claims of the new steps
        ▲           (sticky cache: live between events)
        │                                        step finished here and its run is cached here:
     run step ──► outcome ──────────────────────► advance speculatively, then commit
                                                  "step N completed + step N+1 started" at once

A run is invoked by one worker at a time: either under a lease taken by ``claim_runs`` (cold
start, timers, hook payloads, work from other processes), or in a single speculative commit
that only succeeds if nobody else appended to the run or holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextvars import Token
from typing import Any

import anyio
import anyio.lowlevel

from ._context import current_instance, current_runtime
from ._core import codec as _codec
from ._core.commands import ScheduleStep
from ._core.errors import (
    HookNotFound,
    HookSchemaUnknown,
    RunNotFound,
    SideEffectInWorkflowError,
    WorkflowNotFound,
)
from ._core.events import Event, EventKind
from ._core.ids import is_text, new_run_id
from ._hooks import ResumeResult, hook_definitions, hook_metadata, validate_payload
from ._replay import Outcome, WorkflowInstance
from ._run import Run, RunInfo
from ._step import steps as registered_steps
from ._step_runner import StepOutcome, run_step
from ._workflow import Workflow
from ._workflow import workflows as registered_workflows
from .stores import store_from_url
from .stores._base import Invocation, NewEvent, NewRun, RunRecord, StepClaim, Store

log = logging.getLogger("durable")


class Runtime:
    """Executes workflows and steps against a store; use it as ``async with Runtime(...) as rt:``.

    Inside the block, module-level ``durable.start``/``get_run``/``list_runs``/``resume_hook``
    act on this runtime.

    ``workflows``: the workflows it executes (default: every registered one; ``[]`` makes a
    step-only worker). ``execute_steps=False``: run no steps either (a pure client).
    ``max_concurrent_steps`` bounds the steps running at once; ``sticky_cache_size`` the live
    workflow instances kept between events. ``lease_ttl``: how long a worker that stops
    heart-beating keeps its leases (on one machine a dead process is detected at once); a step
    that blocks the event loop longer than this looks dead to other processes -- use
    ``asyncio.to_thread`` for long synchronous work in steps.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        workflows: Iterable[Workflow[Any, Any]] | None = None,
        max_concurrent_steps: int = 64,
        base_url: str | None = None,
        sticky_cache_size: int = 1024,
        poll_interval: float = 0.5,
        lease_ttl: float = 10.0,
        heartbeat_interval: float = 0.5,
        worker_id: str | None = None,
        execute_steps: bool = True,
    ) -> None:
        if max_concurrent_steps < 1:
            raise ValueError(f"max_concurrent_steps must be at least 1, got {max_concurrent_steps}")
        self.store: Store = store if isinstance(store, Store) else store_from_url(store)
        self._explicit = {wf.name: wf for wf in workflows} if workflows is not None else None
        self.max_concurrent_steps = max_concurrent_steps
        self.execute_steps = execute_steps
        self.base_url = base_url or os.environ.get("DURABLE_BASE_URL") or None
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        self.worker_id = worker_id or f"w-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._host = socket.gethostname()
        self._cache: OrderedDict[str, WorkflowInstance] = OrderedDict()
        self._cache_size = sticky_cache_size
        self._run_locks: dict[str, asyncio.Lock] = {}
        self._running_steps: dict[tuple[str, str], anyio.CancelScope] = {}
        self._free_slots = max_concurrent_steps
        self._starved = False  # work may be waiting for a free step slot
        self._unrecorded: list[tuple[StepClaim, StepOutcome]] = []  # outcomes the store refused to take yet
        self._invoke_failures: dict[str, int] = {}  # consecutive failed invocations per run (back-off)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._context_token: Token[Runtime | None] | None = None
        self._warned_unknown: set[str] = set()
        self._closing = False
        self.stats = {"cold_replays": 0, "sticky_resumes": 0, "speculative_commits": 0, "fallbacks": 0}

    def __repr__(self) -> str:
        return f"<durable.Runtime {self.store.url} worker={self.worker_id}>"

    # ------------------------------------------------------------------------------------
    # lifecycle

    async def __aenter__(self) -> Runtime:
        await self.open()
        self._context_token = current_runtime.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._context_token is not None:
            # Leaving from another context (a task torn down at exit) cannot reset the variable.
            with contextlib.suppress(ValueError):
                current_runtime.reset(self._context_token)
            self._context_token = None
        await self.aclose()

    async def open(self) -> None:
        """Open the store and start executing (``async with`` does this for you)."""
        await self.store.open()
        now = time.time()
        await self.store.register_worker(self.worker_id, self._host, os.getpid(), _process_start(os.getpid()), self.lease_ttl, now)
        await self._reap_dead_local_workers(now)
        await self._warn_about_unknown_workflows()
        self._task_context = contextvars.copy_context()
        self._task_context.run(current_runtime.set, self)
        self._running = True
        self._spawn(self._dispatch_loop)
        self._spawn(self._heartbeat_loop)

    async def aclose(self) -> None:
        """Stop executing: cancel background work (unfinished steps re-run elsewhere), close the store."""
        if not self._running:
            return
        self._running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        try:
            with anyio.CancelScope(shield=True):
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for run_id in list(self._cache):
                self._evict(run_id)
            with anyio.CancelScope(shield=True):
                try:
                    await self.store.unregister_worker(self.worker_id)
                finally:
                    await self.store.aclose()

    def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task owned by the runtime (cancelled by :meth:`aclose`).

        Plain asyncio tasks rather than an anyio task group: a step is one task, and creating
        it is on the hot path of every step; structured shutdown is done by :meth:`aclose`.
        """
        if not self._running:
            raise RuntimeError("the runtime is not running (use `async with durable.Runtime() as rt:`)")
        # Tasks run in a context where current_runtime is this runtime: module-level
        # durable.start/resume_hook/get_run called from a step reach the runtime executing it.
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            fn(*args), context=self._task_context.copy()  # type: ignore[arg-type]
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("durable background task failed", exc_info=task.exception())

    # ------------------------------------------------------------------------------------
    # registry

    def workflow_names(self) -> list[str]:
        return sorted(self._explicit if self._explicit is not None else registered_workflows)

    def get_workflow(self, name: str) -> Workflow[Any, Any] | None:
        if self._explicit is not None:
            return self._explicit.get(name)
        return registered_workflows.get(name)

    def _step_names(self) -> list[str]:
        # Steps of any registered name run here (a step-only worker is Runtime(workflows=[]));
        # execute_steps=False makes a pure client that starts runs and resumes hooks only.
        return sorted(registered_steps) if self.execute_steps else []

    # ------------------------------------------------------------------------------------
    # public operations

    async def start(
        self,
        workflow: Workflow[Any, Any] | str,
        /,
        *args: Any,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start a run and return its :class:`Run` at once. The same ``idempotency_key`` returns the same run.

        ``run_id`` and ``idempotency_key`` are options of the start, not workflow arguments: a
        workflow parameter with one of these names is passed positionally.
        """
        return await self.start_run(self._resolve(workflow), args, kwargs, run_id=run_id, idempotency_key=idempotency_key)

    async def start_run(
        self,
        wf: Workflow[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """:meth:`start` with the workflow's arguments as a list and a dict (any keyword names)."""
        refuse_in_workflow("start")
        data = _codec.encode({"args": list(args), "kwargs": kwargs}, serializer=wf.serializer, root=f"arguments of {wf.name}")
        new = NewRun(
            run_id=_check_run_id(run_id) if run_id is not None else new_run_id(),
            workflow_name=wf.name,
            input=data,
            seed=secrets.token_hex(16),
            idempotency_key=_check_idempotency_key(idempotency_key) if idempotency_key is not None else None,
            now=time.time(),
            owner=self.worker_id if self._running and self.get_workflow(wf.name) is wf else None,
        )
        record, created = await self.store.create_run(new)
        if created and new.owner is not None:
            self._spawn(self._start_fresh, record)
        elif created and self._running and self.workflow_names() and self.get_workflow(wf.name) is None:
            log.warning(
                "run %s of workflow %r waits for a runtime that executes it: this one runs only %s",
                record.run_id, wf.name, ", ".join(self.workflow_names()),
            )
        return Run(record.run_id, self)

    def _resolve(self, workflow: Workflow[Any, Any] | str) -> Workflow[Any, Any]:
        if isinstance(workflow, Workflow):
            return workflow
        if isinstance(workflow, str):
            # Starting needs the definition (its serializer); executing is up to whichever
            # runtime has it in its set. A client runtime (workflows=[]) can still start runs.
            found = self.get_workflow(workflow) or registered_workflows.get(workflow)
            if found is None:
                raise WorkflowNotFound(workflow, self.workflow_names())
            return found
        raise TypeError(f"expected a @durable.workflow function or its name, got {workflow!r}")

    async def get_run(self, run_id: str) -> Run:
        """A handle on an existing run; RunNotFound if there is none."""
        refuse_in_workflow("get_run")
        if await self.store.get_run(run_id) is None:
            raise RunNotFound(run_id)
        return Run(run_id, self)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[RunInfo]:
        refuse_in_workflow("list_runs")
        records = await self.store.list_runs(status=status, workflow=workflow, limit=limit, before=before)
        return [RunInfo.from_record(r) for r in records]

    async def resume_hook(self, token: str, payload: Any, *, validate: bool = True) -> ResumeResult:
        """Deliver ``payload`` to the live hook holding ``token``.

        A hook created from ``define_hook`` is validated against its schema when its definition
        is known in this process; ``validate=False`` is for callers that already did it.
        """
        refuse_in_workflow("resume_hook")
        hook = await self.store.get_hook(token) if is_text(token) else None
        if hook is None:
            raise HookNotFound(token)
        schema_name = hook_metadata(hook).get("schema")
        if schema_name and validate:
            definition = hook_definitions.get(schema_name)
            if definition is None:
                # Appending it unchecked would hand the workflow a payload its schema never saw.
                raise HookSchemaUnknown(token, schema_name)
            payload = validate_payload(definition.schema, payload)
        data = _codec.encode(payload, root="hook payload")
        # Only to the hook validated above: a token re-bound meanwhile is not this hook.
        record = await self.store.resume_hook(token, data, time.time(), expect=(hook.run_id, hook.hook_id))
        return ResumeResult(record.run_id, record.hook_id, token)

    async def resume_webhook(self, token: str, request: Any, *, timeout: float = 30.0) -> Any:
        from ._webhooks import resume_webhook

        refuse_in_workflow("resume_webhook")
        return await resume_webhook(self, token, request, timeout=timeout)

    async def cancel(self, run_id: str) -> str:
        refuse_in_workflow("cancel")
        record = await self.store.cancel_run(run_id, time.time())
        if record is None:
            raise RunNotFound(run_id)
        self._evict(run_id)
        for (rid, _), scope in list(self._running_steps.items()):
            if rid == run_id:
                scope.cancel()
        return record.status

    # ------------------------------------------------------------------------------------
    # invocations

    def _lock(self, run_id: str) -> asyncio.Lock:
        # asyncio's lock does not yield when it is free; anyio's always checkpoints, which
        # costs a loop iteration on every step.
        lock = self._run_locks.get(run_id)
        if lock is None:
            lock = self._run_locks[run_id] = asyncio.Lock()
        return lock

    def _new_instance(self, wf: Workflow[Any, Any], record: RunRecord) -> WorkflowInstance:
        return WorkflowInstance(wf, run_id=record.run_id, input=record.input, seed=record.seed, base_url=self.base_url)

    def _cache_put(self, run_id: str, instance: WorkflowInstance) -> None:
        """Keep ``instance`` live for the run's next event, evicting the least recently used others."""
        self._cache[run_id] = instance
        self._cache.move_to_end(run_id)
        while len(self._cache) > max(1, self._cache_size):
            self._evict(next(iter(self._cache)))

    def _release_if_uncached(self, run_id: str) -> None:
        """With ``sticky_cache_size=0`` every invocation replays cold: drop the instance once it is committed."""
        if self._cache_size == 0:
            self._evict(run_id)

    def _evict(self, run_id: str) -> None:
        instance = self._cache.pop(run_id, None)
        if instance is not None:
            try:
                instance.close()
            except Exception:
                log.exception("closing the workflow instance of run %s", run_id)

    async def _start_fresh(self, record: RunRecord) -> None:
        """Run a just-created run's first slice here, committed with its ``run_started``."""
        wf = self.get_workflow(record.workflow_name)
        if wf is None:
            return
        async with self._lock(record.run_id):
            if record.run_id in self._cache:
                return
            instance = self._new_instance(wf, record)
            instance.store_seq = record.last_seq
            instance.seen_seq = record.last_seq
            self._cache_put(record.run_id, instance)
            try:
                claims = await self._advance_speculatively(instance, EventKind.RUN_STARTED, None, None, None, holds_lease=True)
                if claims is None:  # refused: give the lease back so the run can be claimed again
                    await self.store.release_run(record.run_id, self.worker_id, time.time())
                self._release_if_uncached(record.run_id)
                self._launch_steps(claims or [])
            except Exception:
                log.exception("first invocation of run %s failed; it will be retried", record.run_id)
                with anyio.CancelScope(shield=True):
                    await self.store.release_run(record.run_id, self.worker_id, time.time())

    async def _advance_speculatively(
        self, instance: WorkflowInstance, kind: str, corr: str | None, data: bytes | None, attempt: int | None,
        *, holds_lease: bool = False,
    ) -> list[StepClaim] | None:
        """Feed an event not yet stored and commit it with the commands it led to, atomically.

        Returns the steps claimed for this worker, or None if the commit was refused.
        """
        run_id = instance.run_id
        known = instance.store_seq
        assert known is not None
        now = time.time()
        event = Event(run_id, known + 1, kind, corr, now, None, data, attempt)
        outcome = instance.advance([event])
        new = NewEvent(kind, corr, now, data, attempt)
        claims = await self._commit(instance, outcome, known, [new], holds_lease=holds_lease)
        if claims is not None:
            self.stats["speculative_commits"] += 1
        return claims

    async def _commit(
        self, instance: WorkflowInstance, outcome: Outcome, known_seq: int, speculative: list[NewEvent], *, holds_lease: bool
    ) -> list[StepClaim] | None:
        """Commit an advanced instance; return the steps claimed here (not yet launched), None if refused."""
        run_id = instance.run_id
        new_steps = sum(1 for c in outcome.commands if isinstance(c, ScheduleStep))
        claim_now = min(self._free_slots, new_steps)
        self._free_slots -= claim_now
        try:
            result = await self.store.commit(
                Invocation(
                    run_id=run_id, worker_id=self.worker_id, known_seq=known_seq, now=time.time(),
                    commands=outcome.commands, status=outcome.status, result=outcome.result, error=outcome.error,
                    speculative=speculative, holds_lease=holds_lease, claim_steps=claim_now,
                    next_wake=outcome.next_wake,
                )
            )
        except BaseException:
            self._free_slots += claim_now
            self._evict(run_id)
            raise
        self._free_slots += claim_now - len(result.claimed)
        if claim_now < new_steps:
            self._starved = True
        if not result.ok:
            log.debug("commit of run %s refused: %s", run_id, result.reason)
            self._evict(run_id)
            return None
        if outcome.status != "suspended" or result.run_status in ("completed", "failed", "cancelled") or result.conflicts:
            # Finished, or the store answered a hook with hook_conflict: a conflict is a delivery
            # the instance has not seen, and a cold replay is the simple way to show it.
            self._evict(run_id)
            if outcome.status != "suspended" or result.run_status != "running":
                self._run_locks.pop(run_id, None)
        elif self._cache.get(run_id) is instance:
            if result.clean:
                instance.seen_seq = result.last_seq
                instance.store_seq = result.last_seq
            else:
                instance.store_seq = None
        return result.claimed

    async def _invoke_claimed(self, record: RunRecord) -> None:
        """Invoke a run this worker holds the lease of (cold replay, or the sticky instance)."""
        run_id = record.run_id
        try:
            async with self._lock(run_id):
                wf = self.get_workflow(record.workflow_name)
                if wf is None:
                    await self.store.release_run(run_id, self.worker_id, time.time())
                    return
                instance = self._cache.get(run_id)
                if instance is None:
                    instance = self._new_instance(wf, record)
                    self._cache_put(run_id, instance)
                    self.stats["cold_replays"] += 1
                else:
                    self._cache.move_to_end(run_id)
                    self.stats["sticky_resumes"] += 1
                events, last_seq = await self.store.read_log(run_id, instance.seen_seq)
                if instance.status == "closed":  # evicted while we read (the cache was full): start over
                    instance = self._new_instance(wf, record)
                    self._cache_put(run_id, instance)
                    events, last_seq = await self.store.read_log(run_id, 0)
                speculative: list[NewEvent] = []
                if record.status == "pending" and instance.status == "new":
                    now = time.time()
                    start = Event(run_id, last_seq + 1, EventKind.RUN_STARTED, None, now)
                    events = [*events, start]
                    speculative = [NewEvent(EventKind.RUN_STARTED, None, now)]
                outcome = instance.advance(events)
                if not speculative:
                    instance.seen_seq = max(instance.seen_seq, last_seq)
                claims = await self._commit(instance, outcome, last_seq, speculative, holds_lease=True)
                if claims is None:  # refused (log moved under a first start, run ended): free the lease
                    await self.store.release_run(run_id, self.worker_id, time.time())
                self._release_if_uncached(run_id)
                self._launch_steps(claims or [])
        except Exception:
            # Back off exponentially (50 ms .. 60 s) so a persistent failure is not a hot loop.
            failures = self._invoke_failures[run_id] = self._invoke_failures.get(run_id, 0) + 1
            delay = min(60.0, 0.05 * 2 ** (failures - 1))
            log.exception("invocation of run %s failed (%d in a row); retrying in %.2fs", run_id, failures, delay)
            self._evict(run_id)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.store.release_run(run_id, self.worker_id, time.time(), retry_at=time.time() + delay)
        else:
            self._invoke_failures.pop(run_id, None)

    # ------------------------------------------------------------------------------------
    # steps

    def _launch_steps(self, claims: list[StepClaim]) -> None:
        for claim in claims:
            scope = anyio.CancelScope()
            self._running_steps[(claim.run_id, claim.step_id)] = scope
            self._spawn(self._execute_step, claim, scope)

    async def _execute_step(self, claim: StepClaim, scope: anyio.CancelScope) -> None:
        """Run a claimed step, record it, and run the next step it led to in this same task.

        A sequential workflow thus runs step after step in one task: recording step N commits
        step N+1 as started (claimed here), and the loop picks it up without a new task.
        """
        next_claim: StepClaim | None = claim
        while next_claim is not None:
            claim, next_claim = next_claim, None
            key = (claim.run_id, claim.step_id)
            self._running_steps[key] = scope
            outcome: StepOutcome | None = None
            try:
                step = registered_steps.get(claim.name)
                if step is None:  # unregistered since it was claimed (a notebook cell re-run): retry elsewhere
                    outcome = StepOutcome(EventKind.STEP_RETRYING, _encode_missing_step(claim.name), retry_at=time.time() + 1.0)
                else:
                    outcome = await run_step(
                        step, claim, store=self.store, base_url=self.base_url, spawn=self._spawn, cancel_scope=scope
                    )
                claims = await self._record_step(claim, outcome)
                if claims:
                    next_claim = claims[0]
                    scope = anyio.CancelScope()
                    self._launch_steps(claims[1:])
            except Exception:
                # The outcome could not be stored (store unreachable, disk full, ...). The step
                # stays ours, so keep the outcome and let the heartbeat retry until it lands.
                log.exception("recording step %s of run %s failed; retrying in the background", claim.step_id, claim.run_id)
                if outcome is not None:
                    self._unrecorded.append((claim, outcome))
            finally:
                self._running_steps.pop(key, None)
                self._free_slots += 1
                if self._starved:  # steps may be waiting for this slot
                    self._starved = False
                    self.store.notifier.notify("work")

    async def _record_step(self, claim: StepClaim, outcome: StepOutcome) -> list[StepClaim]:
        """Record a step's outcome; in the fast path also advance its run and return the steps claimed."""
        run_id = claim.run_id
        if outcome.kind != EventKind.STEP_RETRYING and not outcome.cancelled:
            instance = self._cache.get(run_id)
            if instance is not None and instance.store_seq is not None:
                async with self._lock(run_id):
                    instance = self._cache.get(run_id)
                    if instance is not None and instance.status == "running" and instance.store_seq is not None:
                        claims = await self._advance_speculatively(
                            instance, outcome.kind, claim.step_id, outcome.data, claim.attempt
                        )
                        if claims is not None:
                            self._release_if_uncached(run_id)
                            return claims
                        self.stats["fallbacks"] += 1
        await self.store.finish_step(
            run_id, claim.step_id, outcome.kind, outcome.data, claim.attempt, time.time(), outcome.retry_at
        )
        return []

    # ------------------------------------------------------------------------------------
    # background loops

    async def _dispatch_loop(self) -> None:
        wait = 0.01
        while True:
            # Store calls may complete without yielding (inline SQLite): never spin without a checkpoint.
            await anyio.lowlevel.checkpoint()
            try:
                busy = await self._dispatch_once()
            except Exception:
                log.exception("durable dispatcher: store error; retrying")
                busy = False
                await anyio.sleep(min(1.0, wait * 4))
            if busy:
                wait = 0.01
                continue
            listener = self.store.notifier.listen("work")
            timeout = self._poll_timeout(wait)
            # Due steps matter only with a free slot; a step finishing while work waits for a
            # slot notifies "work" (see _starved).
            step_names = self._step_names() if self._free_slots > 0 else []
            if not step_names:
                self._starved = True
            try:
                due = await self.store.next_wake(self.workflow_names(), step_names, time.time())
            except Exception:
                due = None
            if due is not None:
                # At least a millisecond: something due that could not be claimed (held by a
                # live worker) must not turn this loop into a spin.
                timeout = min(timeout, max(0.001, due - time.time()))
            if not await self.store.notifier.wait(listener, timeout):
                wait = min(self.poll_interval, wait * 2)
            else:
                wait = 0.01

    def _poll_timeout(self, wait: float) -> float:
        if self.store.cross_process and not self.store.notifies_across_processes:
            return wait
        return self.poll_interval * 4

    async def _dispatch_once(self) -> bool:
        now = time.time()
        busy = False
        names = [n for n in self.workflow_names()]
        for record in await self.store.claim_runs(self.worker_id, names, now, limit=16):
            busy = True
            self._spawn(self._invoke_claimed, record)
        free = self._free_slots
        if free > 0:
            # Reserve the slots before awaiting: an invocation committing meanwhile must not
            # claim the same ones (max_concurrent_steps is a hard bound).
            self._free_slots -= free
            claims: list[StepClaim] = []
            try:
                claims = await self.store.claim_steps(self.worker_id, self._step_names(), now, free)
            finally:
                self._free_slots += free - len(claims)
            self._starved = len(claims) == free
            busy = busy or bool(claims)
            self._launch_steps(claims)
        return busy

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_interval)
            try:
                now = time.time()
                await self._retry_unrecorded()
                others = await self.store.heartbeat(self.worker_id, self.lease_ttl, now)
                await self._mark_dead([w for w, pid, start in others if not _process_alive(pid, start)])
                if self._running_steps:
                    ended = await self.store.terminal_runs(sorted({rid for rid, _ in self._running_steps}))
                    for (rid, _), scope in list(self._running_steps.items()):
                        if rid in ended:
                            scope.cancel()
            except Exception:
                log.exception("durable heartbeat failed; retrying")

    async def _retry_unrecorded(self) -> None:
        while self._unrecorded:
            claim, outcome = self._unrecorded[0]
            await self.store.finish_step(
                claim.run_id, claim.step_id, outcome.kind, outcome.data, claim.attempt, time.time(), outcome.retry_at
            )
            self._unrecorded.pop(0)

    async def _warn_about_unknown_workflows(self) -> None:
        known = set(self.workflow_names())
        if not known:
            return  # a client (workflows=[]): executing runs is other runtimes' business
        for name, count in sorted((await self.store.active_workflows()).items()):
            if name not in known:
                log.warning(
                    "%d unfinished run(s) of workflow %r are not executed by this runtime "
                    "(it does not know that workflow): another runtime that registers it must run them", count, name,
                )

    async def _reap_dead_local_workers(self, now: float) -> None:
        others = await self.store.heartbeat(self.worker_id, self.lease_ttl, now)
        await self._mark_dead([w for w, pid, start in others if not _process_alive(pid, start)])

    async def _mark_dead(self, worker_ids: list[str]) -> None:
        if worker_ids:
            log.info("workers %s are gone; their leases are free", ", ".join(worker_ids))
            await self.store.mark_workers_dead(worker_ids)

    # ------------------------------------------------------------------------------------

    def run(self, run_id: str) -> Run:
        return Run(run_id, self)

    async def follow_runs(self) -> AsyncIterator[None]:
        """Yield whenever the set or status of runs may have changed (for live views)."""
        while True:
            listener = self.store.notifier.listen("runs")
            yield None
            await self.store.notifier.wait(listener, self.poll_interval if self.store.cross_process else float("inf"))


def _check_run_id(run_id: str) -> str:
    if (
        not isinstance(run_id, str) or not run_id or len(run_id) > 200 or not run_id.isprintable() or "/" in run_id
        or run_id in (".", "..")  # a URL path segment that clients normalise away
    ):
        raise ValueError(f"run_id must be a printable string of 1-200 characters without '/' (and not . or ..), got {run_id!r}")
    return run_id


def refuse_in_workflow(api: str) -> None:
    """Workflow code must not act on the world: only steps' effects are recorded, once."""
    if current_instance.get() is not None:
        raise SideEffectInWorkflowError(api)


def _check_idempotency_key(key: str) -> str:
    if not is_text(key) or len(key) > 512:
        raise ValueError(f"idempotency_key must be non-empty text of at most 512 characters, got {key!r}")
    return key


def _encode_missing_step(name: str) -> bytes:
    from ._core.errorinfo import encode_error

    return encode_error(LookupError(f"step {name!r} is not registered in this process"))


def _process_start(pid: int) -> str:
    """The process's start time from /proc, to tell a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _process_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _process_start(pid) == start

