"""``Client``: what outside callers use -- start runs, find them, steer them, follow them.

A client talks to the store only; it executes nothing. The web app, the CLI's read and steer
commands and the notebook's views use one where they do not run workflows; a
:class:`~durable.Runtime` *is* a client that also executes (it adds the worker on top).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .._core import codec as _codec
from .._core.checks import check_int, check_number
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.durations import Duration
from .._core.errors import RunNotFound, ScheduleNotFound, WorkflowNotFound
from .._core.ids import check_idempotency_key, check_run_id, is_text, new_run_id
from .._core.queues import Queue, QueueState, resolve_queue
from .._workflow.context import refuse_in_workflow
from .._workflow.http import Request, Response
from .._workflow.workflow import Workflow, check_timeout
from .._workflow.workflow import workflows as registered_workflows
from ..stores import store_from_url
from ..stores._base import RUN_STATUSES, NewRun, RunRecord, Store
from ..stores._encrypted import Encryption, encrypted
from .projection import ResumeResult, RunInfo, ScheduleInfo
from .published import Published, find
from .resume import resume_hook, resume_webhook
from .retention import GCReport, collect_garbage
from .run import Run
from .telemetry import emit_run_span, telemetry


class Client:
    """Starts, reads, cancels and resumes runs in ``store`` (a URL or a :class:`Store`).

    ``async with Client(url) as client:`` opens and closes the store; a client over a store
    someone else opens (a web app's lifespan, a runtime) needs no opening of its own.
    ``poll_interval`` caps how long followers (``run.wait()``, stream readers) wait between
    re-reads when other processes write to the store and cannot wake this one. ``clock`` is where
    the times it records come from (tests pass a virtual one).
    ``encryption`` (a :class:`~durable.Encryption`) encrypts the payloads this client writes and
    decrypts those it reads; without it, encrypted values read as ``"<encrypted>"``.
    ``max_value_size`` bounds one encoded value -- a run's arguments or result, a step's, a hook
    payload, a stream chunk -- in bytes (default 16 MiB, at most 256 MiB): a bigger one is a
    SerializationError naming its size, raised before anything is written.
    """

    def __init__(
        self, store: str | Store | None = None, *, poll_interval: float = 0.5, clock: Clock | None = None,
        max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE, encryption: Encryption | None = None,
    ) -> None:
        # Checked before the store is built: a bad option must not leave a store half made.
        self.poll_interval = check_number("poll_interval", poll_interval, minimum=0.001, maximum=3600.0, unit=" s")
        self.max_value_size = check_int(
            "max_value_size", max_value_size, minimum=64 * 1024, maximum=_codec.MAX_VALUE_SIZE_LIMIT
        )
        raw = store if isinstance(store, Store) else store_from_url(store)
        self.store: Store = encrypted(raw, encryption)  # the store itself without encryption: no cost
        self.encryption = encryption
        self.clock: Clock = clock or SYSTEM_CLOCK

    def __repr__(self) -> str:
        return f"<durable.Client {self.store.url}>"

    async def open(self) -> None:
        """Open the store (``async with`` does this for you)."""
        await self.store.open()

    async def aclose(self) -> None:
        await self.store.aclose()

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- workflows -------------------------------------------------------------------------

    def workflow_names(self) -> list[str]:
        """The workflows this client can start by name (every one defined in this process)."""
        return registered_workflows.names()

    def get_workflow(self, name: str) -> Workflow[Any, Any] | None:
        """The workflow ``name`` names (``module:qualname``, an explicit name, or an unambiguous bare qualname)."""
        return registered_workflows.resolve(name)

    def holds_run(self, run_id: str) -> bool:
        """Whether a runtime in this process holds ``run_id`` live (its end is written and notified
        here, so waiting for it need not poll). A client runs nothing: False."""
        return False

    def stored_name(self, workflow: str | None) -> str | None:
        """The name runs of ``workflow`` are stored under: a bare qualname (``checkout``) that names
        one defined workflow is its ``module:qualname``; anything else is taken as written."""
        if workflow is None:
            return None
        found = self.get_workflow(workflow) or registered_workflows.resolve(workflow)
        return found.name if found is not None else workflow

    def _resolve(self, workflow: Workflow[Any, Any] | str) -> Workflow[Any, Any]:
        if isinstance(workflow, Workflow):
            return workflow
        if isinstance(workflow, str):
            # Starting needs the definition (its serializer); executing is up to whichever
            # runtime has it in its set, so any definition in this process will do.
            found = self.get_workflow(workflow) or registered_workflows.resolve(workflow)
            if found is None:
                raise WorkflowNotFound(workflow, self.workflow_names())
            return found
        raise TypeError(f"expected a @durable.workflow function or its name, got {workflow!r}")

    # -- starting --------------------------------------------------------------------------

    async def start(
        self,
        workflow: Workflow[Any, Any] | str,
        /,
        *args: Any,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        timeout: Duration | None = None,
        queue: str | Queue | None = None,
        priority: int | None = None,
        key: str | None = None,
        dedupe_id: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start a run and return its :class:`Run` at once. The same ``idempotency_key`` returns the same run.

        ``timeout`` (``"30m"``, seconds, a timedelta; default: the workflow's own ``timeout``)
        cancels the run, with reason ``"timeout"``, if it has not finished that long after now.
        ``queue`` (a :class:`~durable.Queue` or its name) makes the run wait in the store until
        the queue admits it; ``priority`` (1 first), ``key`` (what ``per_key_concurrency``
        counts by) and ``dedupe_id`` (a second live run of the queue with the same id is
        refused with RunConflict) need a queue.
        ``run_id``, ``idempotency_key``, ``timeout``, ``queue``, ``priority``, ``key`` and
        ``dedupe_id`` are options of the start, not workflow arguments: a workflow parameter with
        one of these names is passed positionally (or use :meth:`start_run`).
        """
        return await self.start_run(
            self._resolve(workflow), args, kwargs, run_id=run_id, idempotency_key=idempotency_key, timeout=timeout,
            queue=queue, priority=priority, key=key, dedupe_id=dedupe_id,
        )

    async def start_run(
        self,
        wf: Workflow[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        timeout: Duration | None = None,
        queue: str | Queue | None = None,
        priority: int | None = None,
        key: str | None = None,
        dedupe_id: str | None = None,
    ) -> Run:
        """:meth:`start` with the workflow's arguments as a list and a dict (any keyword names)."""
        refuse_in_workflow("start")
        limit = check_timeout(timeout) if timeout is not None else wf.timeout
        found = resolve_queue(queue)
        if found is None and (priority is not None or key is not None or dedupe_id is not None):
            raise ValueError("priority=, key= and dedupe_id= are options of a queued start: pass queue= too")
        rank = found.check_priority(priority) if found is not None else None
        for what, value in (("key", key), ("dedupe_id", dedupe_id)):
            if value is not None and (not is_text(value) or len(value) > 512):
                raise ValueError(f"{what} must be non-empty text of at most 512 characters, got {value!r}")
        # A call that does not fit the workflow raises TypeError here, before anything is recorded;
        # one that fits is recorded bound (greet("ann") and greet(name="ann") are the same run).
        bound_args, bound_kwargs = wf.binder.bind(tuple(args), dict(kwargs))
        data = wf.binder.encode(bound_args, bound_kwargs, serializer=wf.serializer, root=f"arguments of {wf.name}")
        _codec.check_size(data, self.max_value_size, f"arguments of {wf.name}")
        now = self.clock.time()
        run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        tracing = telemetry()
        new = NewRun(
            run_id=run_id,
            workflow_name=wf.name,
            input=data,
            seed=secrets.token_hex(16),
            idempotency_key=check_idempotency_key(idempotency_key) if idempotency_key is not None else None,
            now=now,
            owner=self._first_invocation_owner(wf) if found is None else None,  # a queued run waits for admission
            trace_link=tracing.run_started(wf.name, run_id) if tracing is not None else None,
            deadline=None if limit is None else now + limit,
            queue=None if found is None else found.spec(),
            priority=rank,
            queue_key=key,
            dedupe_id=dedupe_id,
            version=wf.version,
        )
        record, created = await self.store.create_run(new)
        if created:
            if tracing is not None:
                tracing.run_created(wf.name)
            self._run_created(record, wf, new.owner)
        return Run(record.run_id, self)

    async def published_workflows(self) -> list[Published]:
        """The workflows workers published in the store (each publishes what it executes when it opens)."""
        return [Published.from_record(r) for r in await self.store.list_workflows()]

    async def start_published(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run of a workflow this process does not define, by the signature a worker published.

        For JSON arguments (the serializer must be ``"json"``): a call that does not fit the
        published signature raises ``TypeError`` before anything is recorded; an unknown name is
        ``WorkflowNotFound``. A worker that executes the workflow runs it.
        """
        refuse_in_workflow("start")
        published = await self.published_workflows()
        found = find(published, name)
        if found is None:
            raise WorkflowNotFound(name, [p.name for p in published if p.startable], where="published in this store")
        new = NewRun(
            run_id=check_run_id(run_id) if run_id is not None else new_run_id(),
            workflow_name=found.name,
            input=found.encode(list(args), dict(kwargs or {})),
            seed=secrets.token_hex(16),
            idempotency_key=check_idempotency_key(idempotency_key) if idempotency_key is not None else None,
            now=self.clock.time(),
            version=found.record.version,  # the code a worker published: the one that will run it
        )
        record, _ = await self.store.create_run(new)
        return Run(record.run_id, self)

    def _first_invocation_owner(self, wf: Workflow[Any, Any]) -> str | None:
        """The worker that runs a new run's first slice itself (it holds the lease from the start): none here."""
        return None

    def _run_created(self, record: RunRecord, wf: Workflow[Any, Any], owner: str | None) -> None:
        """Called once a new run is stored; a runtime starts executing it here."""

    # -- reading ---------------------------------------------------------------------------

    def run(self, run_id: str) -> Run:
        """A handle on ``run_id`` without checking that it exists."""
        return Run(run_id, self)

    async def get_run(self, run_id: str) -> Run:
        """A handle on an existing run; RunNotFound if there is none."""
        refuse_in_workflow("get_run")
        if await self.store.get_run(run_id) is None:
            raise RunNotFound(run_id)
        return Run(run_id, self)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 100, before: str | None = None,
        queue: str | None = None,
        version: str | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first; ``status``, ``workflow`` and ``version`` (the label its code had) filter them."""
        refuse_in_workflow("list_runs")
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)} (or None), got {status!r}")
        records = await self.store.list_runs(
            status=status, workflow=self.stored_name(workflow), limit=limit, before=before, queue=queue, version=version
        )
        return [RunInfo.from_record(r) for r in records]

    async def queue_states(self, names: Sequence[str] | None = None) -> list[QueueState]:
        """What each queue (every one the store knows, or ``names``) holds: entries active and
        waiting, its rate window, and why it admits nothing now (``blocked_by``)."""
        refuse_in_workflow("queue_states")
        return await self.store.queue_states(names, self.clock.time())

    async def follow_runs(self) -> AsyncIterator[None]:
        """Yield whenever the set or status of runs may have changed (for live views)."""
        while True:
            listener = self.store.notifier.listen("runs")
            yield None
            await self.store.notifier.wait(listener, self.poll_interval if self.store.cross_process else float("inf"))

    # -- retention -------------------------------------------------------------------------

    async def gc(
        self,
        older_than: Duration,
        *,
        status: str | Sequence[str] | None = None,
        batch_size: int = 100,
        max_rows: int = 10_000,
        vacuum: bool = False,
    ) -> GCReport:
        """Delete finished runs that completed more than ``older_than`` ago (``"30d"``) with their
        events, steps, hooks, waits, streams, chunks and values, in batches of one transaction each;
        return what was removed.

        ``status``: which finished runs (``"completed,failed"``; default all of completed, failed,
        cancelled). Unfinished runs are never deleted, nor a child whose parent is unfinished, nor a
        run with an unfinished child. A deleted run's idempotency key starts a new run next time.
        ``batch_size`` runs at most per batch, and no more than bring ``max_rows`` events and chunks.
        ``vacuum`` (SQLite): also rebuild the file, which shrinks one created before incremental
        vacuum (newer files give pages back after every collection by themselves).
        """
        refuse_in_workflow("gc")
        return await collect_garbage(
            self.store, older_than, status=status, batch_size=batch_size, max_rows=max_rows, vacuum=vacuum,
            clock=self.clock.time,
        )

    # -- schedules -------------------------------------------------------------------------

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule the store keeps (registered by some runtime), by name."""
        refuse_in_workflow("list_schedules")
        return [ScheduleInfo.from_record(r) for r in await self.store.list_schedules()]

    async def get_schedule(self, name: str) -> ScheduleInfo:
        """One schedule; LookupError naming it if the store has none of that name."""
        refuse_in_workflow("get_schedule")
        found = await self.store.list_schedules([name])
        if not found:
            raise ScheduleNotFound(name)
        return ScheduleInfo.from_record(found[0])

    async def pause_schedule(self, name: str) -> None:
        """Stop a schedule's ticks from starting runs (ticks while paused are not caught up later)."""
        if not await self.store.set_schedule_paused(name, True, self.clock.time()):
            raise ScheduleNotFound(name)

    async def resume_schedule(self, name: str) -> None:
        if not await self.store.set_schedule_paused(name, False, self.clock.time()):
            raise ScheduleNotFound(name)

    async def trigger_schedule(self, name: str) -> Run:
        """Start a run of the schedule now, outside its ticks and whatever its overlap policy."""
        refuse_in_workflow("trigger_schedule")
        now = self.clock.time()
        run_id = f"sched-{name}-manual-{new_run_id()[4:]}"
        started = await self.store.trigger_schedule(name, run_id, now)
        if started is None:
            raise ScheduleNotFound(name)
        return Run(started, self)

    async def delete_schedule(self, name: str) -> None:
        """Forget a schedule (its runs stay). A runtime still given it registers it again when it opens."""
        if not await self.store.delete_schedule(name):
            raise ScheduleNotFound(name)

    # -- steering --------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> str:
        """Cancel a run: the worker running its steps cancels them, its streams close, its hooks are disposed."""
        refuse_in_workflow("cancel")
        now = self.clock.time()
        record = await self.store.cancel_run(run_id, now)
        if record is None:
            raise RunNotFound(run_id)
        tracing = telemetry()
        if tracing is not None and record.completed_at == now:  # this call ended it: its span is ours to emit
            await emit_run_span(tracing, self.store, record)
        return record.status

    async def resume_hook(
        self, token: str, payload: Any, *, validate: bool = True, wait: Duration | None = None
    ) -> ResumeResult:
        """Deliver ``payload`` to the live hook holding ``token``.

        A hook created from ``define_hook`` is validated against its schema when its definition
        is known in this process; ``validate=False`` is for callers that already did it.
        ``wait`` (e.g. ``"10s"``) waits for the hook to be created first, for a run just started.
        """
        refuse_in_workflow("resume_hook")
        return await resume_hook(
            self.store, token, payload, validate=validate, wait=wait, now=self.clock.time,
            max_value_size=self.max_value_size,
        )

    async def resume_webhook(self, token: str, request: Request, *, timeout: float = 30.0) -> Response:
        """Deliver an HTTP request to the webhook holding ``token``; return the response to send back."""
        refuse_in_workflow("resume_webhook")
        return await resume_webhook(
            self.store, token, request, timeout=timeout, now=self.clock.time, max_value_size=self.max_value_size
        )
