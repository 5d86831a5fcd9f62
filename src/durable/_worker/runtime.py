"""``Runtime``: a :class:`~durable.Client` that also executes workflows and steps.

::

     start() ──create_run──► store ◄──────────────────────────────┐
        │                      ▲                                  │ commit (one transaction):
        ▼                      │ claim runs / steps (leases)       │   events + new steps/hooks/waits
     invoke ──► WorkflowInstance.advance(events) ──► commands ─────┘   + claims of the new steps
        ▲           (sticky cache: live between events)
        │                                        step finished here and its run is cached here:
     run step ──► outcome ──────────────────────► advance speculatively, then commit
                                                  "step N completed + step N+1 started" at once

The runtime wires its collaborators and owns their tasks: the :class:`Dispatcher` claims work,
:class:`Invocations` advance and commit runs (with the :class:`StickyCache` of live
instances), the :class:`StepExecutor` runs steps within the :class:`StepSlots`, and
:class:`Liveness` keeps this worker's leases alive.
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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any
from urllib.parse import urlsplit

import anyio

from .._client.client import Client
from .._client.published import describe
from .._client.telemetry import telemetry
from .._core.checks import check_int, check_number
from .._core.clock import Clock
from .._core.codec import DEFAULT_MAX_VALUE_SIZE
from .._core.durations import Duration
from .._core.ids import check_label
from .._core.queues import queues as registered_queues
from .._core.registry import Registry, short_name
from .._workflow.schedules import Schedule
from .._workflow.step import steps as registered_steps
from .._workflow.workflow import Workflow
from .._workflow.workflow import workflows as registered_workflows
from ..stores._base import RunRecord, Store, Versions
from ..stores._encrypted import CHECK_PREFIX, Encryption
from .dispatch import Dispatcher
from .invocations import Invocations
from .liveness import Liveness
from .retention import Collector
from .scheduler import Scheduler
from .slots import StepSlots
from .steps import StepExecutor
from .sticky import StickyCache

log = logging.getLogger("durable")

# Set inside ``async with Runtime(...)`` and in the runtime's own tasks: the module-level API acts on it.
current_runtime: ContextVar[Runtime | None] = ContextVar("durable_runtime", default=None)


def _check_base_url(url: str | None, what: str = "base_url") -> str | None:
    """The public URL webhook URLs start with: absolute (a third party must be able to call it)."""
    if url is None:
        return None
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{what} must be an absolute http(s) URL without query or fragment, such as "
                         f"'https://example.com/app', got {url!r}")
    return url.rstrip("/")


class Runtime(Client):
    """Executes workflows and steps against a store; use it as ``async with Runtime(...) as rt:``.

    Inside the block, module-level ``durable.start``/``get_run``/``list_runs``/``resume_hook``
    act on this runtime. A runtime is a :class:`~durable.Client` too (start, read, cancel, resume).

    Options:

    - ``store``: a store URL (``sqlite:///path.db``, ``memory://``, ``postgresql://...``) or a
      Store; default ``$DURABLE_STORE``, else ``sqlite:///.durable/durable.db``.
    - ``workflows``: the workflows it executes (default: every one defined in this process;
      ``[]`` makes a step-only worker).
    - ``execute_steps``: ``False`` runs no steps either -- a client that starts runs and resumes
      hooks while other runtimes execute them.
    - ``max_concurrent_steps``: the bound on steps running at once in this runtime (default 64).
    - ``sticky_cache_size``: how many suspended runs stay live in memory between events (default
      1024; 0 replays every invocation cold).
    - ``base_url``: the public URL where this deployment's webhook route is served (``durable
      serve``, ``create_app``), an absolute ``http(s)://`` URL; ``webhook.url`` is absolute with
      it, a path without; default ``$DURABLE_BASE_URL``.
    - ``poll_interval``: the longest wait between re-reads where other processes write without
      notifying this one (SQLite files), in seconds (default 0.5).
    - ``lease_ttl``: how long a worker that stops heart-beating keeps its leases (default 10 s; on
      one machine a dead process is detected at once). A step that blocks the event loop longer
      than this looks dead to other processes -- use ``asyncio.to_thread`` for long synchronous work.
    - ``heartbeat_interval``: how often the worker renews its leases (default 0.5 s).
    - ``worker_id``: this worker's name in the store (default: host, pid and a random suffix).
    - ``schedules``: schedules (``durable.schedule(...)``) this runtime fires: their ticks are kept
      in the store, and a tick starts one run however many runtimes serve the schedule.
    - ``versions``: ``{"checkout": {"1", "2"}}`` makes it claim runs of ``checkout`` only when the
      code that started them had one of those version labels (``None`` in the set: runs started by
      code without one); other workflows run whatever their version. Old and new workers can so run
      side by side during a rolling deploy; a run whose version nobody serves stays pending, with a
      warning naming it.
    - ``clock``: where recorded times come from and how the dispatcher waits (default: the system
      clock; tests pass a virtual one, see ``durable.testing.TestRuntime``).
    - ``retention``: delete finished runs that completed longer ago than this (``"30d"``), with
      everything that belongs to them, in the background (see :meth:`~durable.Client.gc`).
    - ``encryption``: a :class:`~durable.Encryption`: arguments, results, errors, hook payloads,
      values and stream chunks are stored encrypted (AES-256-GCM, a key per run).
    - ``max_value_size``: the bound on one encoded value (arguments, a result, a hook payload, a
      chunk), in bytes (default 16 MiB, at most 256 MiB): a bigger one is a SerializationError
      naming its size, raised where it is made, before anything is written -- a step returning one
      fails, a workflow returning or yielding one fails its run.
    - ``strict``: workflow code that reads the wall clock or the global random generators
      (``time.time()``, ``datetime.now()``, ``random.random()``, ``uuid.uuid4()``) gets a
      :class:`~durable.NonDeterministicCallWarning` once per workflow and call; ``True`` raises
      :class:`~durable.NonDeterministicCallError` there instead, failing the run (default False).
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
        schedules: Iterable[Schedule] = (),
        versions: Mapping[str, Iterable[str | None]] | None = None,
        clock: Clock | None = None,
        retention: Duration | None = None,
        encryption: Encryption | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        strict: bool = False,
    ) -> None:
        # Every option is checked before anything is built, each error naming its parameter and range.
        check_int("max_concurrent_steps", max_concurrent_steps, minimum=1, maximum=100_000)
        check_int("sticky_cache_size", sticky_cache_size, minimum=0, maximum=10_000_000)
        lease_ttl = check_number("lease_ttl", lease_ttl, minimum=0.1, maximum=86_400.0, unit=" s")
        heartbeat_interval = check_number(
            "heartbeat_interval", heartbeat_interval, minimum=0.01, maximum=86_400.0, unit=" s"
        )
        if heartbeat_interval >= lease_ttl:
            raise ValueError(
                f"heartbeat_interval must be shorter than lease_ttl ({lease_ttl:g} s): a worker renews its leases "
                f"every heartbeat_interval, so they would lapse while it is alive; got {heartbeat_interval:g} s"
            )
        for flag, value in (("execute_steps", execute_steps), ("strict", strict)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r}")
        super().__init__(
            store, poll_interval=poll_interval, clock=clock, max_value_size=max_value_size, encryption=encryption
        )
        self._versions_wanted = _check_versions(versions)
        self._versions: dict[str, frozenset[str | None]] = {}  # by stored name, resolved at open()
        self._unserved_warned: set[tuple[str, str | None]] = set()
        self._beats = 0  # heartbeats since versions nobody serves were last looked for
        self._explicit: Registry[Workflow[Any, Any]] | None = None
        if workflows is not None:
            self._explicit = Registry("workflow")
            for wf in workflows:
                self._explicit[wf.name] = wf
        self.max_concurrent_steps = max_concurrent_steps
        self.execute_steps = execute_steps
        self.base_url = _check_base_url(base_url) if base_url else _check_base_url(os.environ.get("DURABLE_BASE_URL") or None, "DURABLE_BASE_URL")
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        self.worker_id = worker_id or f"w-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        tracing = telemetry()  # OpenTelemetry, when installed and a provider is set; else None (free)
        self.slots = StepSlots(max_concurrent_steps, self.store.notifier)
        self.cache = StickyCache(sticky_cache_size, on_size=tracing.sticky.add if tracing is not None else None)
        self.invocations = Invocations(
            self.store, self.worker_id, cache=self.cache, slots=self.slots, workflow=self.get_workflow,
            launch=lambda claims: self.steps.launch(claims), base_url=self.base_url, runs_steps=execute_steps,
            tracing=tracing, now=self.clock.time, max_value_size=self.max_value_size, strict=strict,
        )
        self.steps = StepExecutor(
            self.store, slots=self.slots, invocations=self.invocations, spawn=self._spawn, base_url=self.base_url,
            tracing=tracing, now=self.clock.time, max_value_size=self.max_value_size,
        )
        self.dispatcher = Dispatcher(
            self.store, self.worker_id, slots=self.slots, workflow_names=self._claimable_workflows,
            step_names=self._step_names, invoke=lambda record: self._spawn(self.invocations.invoke_claimed, record),
            launch=self.steps.launch, poll_interval=poll_interval, versions=self._claimed_versions, clock=self.clock,
        )
        self.liveness = Liveness(self.store, self.worker_id, lease_ttl, now=self.clock.time)
        listed = list(schedules)
        self.scheduler = Scheduler(self.store, listed, poll_interval=poll_interval) if listed else None
        self.collector = Collector(self.store, retention, clock=self.clock.time) if retention is not None else None
        self.stats = self.invocations.stats
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._context_token: Token[Runtime | None] | None = None

    def __repr__(self) -> str:
        return f"<durable.Runtime {self.store.url} worker={self.worker_id}>"

    # -- lifecycle ---------------------------------------------------------------------------

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
        self._versions = self._resolve_versions()
        await self.store.open()
        await self.liveness.register()
        await self._publish_workflows()
        if registered_queues:  # the limits of every queue defined here, for every worker of the store
            await self.store.define_queues([q.spec() for q in registered_queues.values()], time.time())
        await self._warn_about_unknown_workflows()
        await self._warn_about_unserved_versions()
        await self._warn_about_encrypted_runs()
        self._task_context = contextvars.copy_context()
        self._task_context.run(current_runtime.set, self)
        self._running = True
        self._spawn(self.dispatcher.run)
        self._spawn(self._heartbeat_loop)
        if self.scheduler is not None:
            await self.scheduler.register()
            self._spawn(self.scheduler.run)
        if self.collector is not None:
            self._spawn(self.collector.run)

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
            self.cache.clear()
            with anyio.CancelScope(shield=True):
                try:
                    await self.liveness.unregister()
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

    async def _heartbeat_loop(self) -> None:
        # Renewing the leases comes first and fails on its own: an outcome that cannot be recorded
        # (or a cancel check that fails) must never cost a live worker its leases.
        chores = (self.liveness.beat, self.steps.retry_unrecorded, self.steps.cancel_ended, self._check_unserved)
        while True:
            await anyio.sleep(self.heartbeat_interval)
            for chore in chores:
                try:
                    await chore()
                except Exception:
                    log.exception("durable heartbeat: %s failed; retrying", chore.__name__)

    async def _check_unserved(self) -> None:
        self._beats += 1
        if self._versions and self._beats * self.heartbeat_interval >= _UNSERVED_CHECK_EVERY:
            self._beats = 0
            await self._warn_about_unserved_versions()

    async def _publish_workflows(self) -> None:
        """Say in the store which workflows this worker executes and how they are called, so that
        processes without their code (a store-only ``durable serve``) can start them."""
        now = time.time()
        executed = self._executed()
        try:
            published = [describe(executed[name], self.worker_id, now) for name in executed.names()]
        except Exception:  # a signature that cannot be described must not stop a worker from working
            log.exception("durable: describing this worker's workflows failed; it executes them all the same")
            return
        # Restarts publish what is there already: write only what changed (a write is a WAL
        # append and, at close, a checkpoint -- paid by every runtime that opens).
        stored = {(p.name, p.parameters, p.serializer, p.version) for p in await self.store.list_workflows()}
        await self.store.publish_workflows([p for p in published if (p.name, p.parameters, p.serializer, p.version) not in stored])

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

    async def _warn_about_unserved_versions(self) -> None:
        """Name each (workflow, version) with unfinished runs that this runtime's versions= leaves out, once."""
        if not self._versions:
            return
        for (name, version), count in sorted((await self.store.active_versions()).items(), key=str):
            if self._serves(name, version) or self.get_workflow(name) is None or (name, version) in self._unserved_warned:
                continue
            self._unserved_warned.add((name, version))
            log.warning(
                "%d unfinished run(s) of workflow %r %s wait for a runtime that serves that version: this one "
                "serves %s (they stay pending, they do not fail)", count, name, _version_text(version),
                ", ".join(sorted(map(_version_text, self._versions[name]))) or "no version of it",
            )

    async def _warn_about_encrypted_runs(self) -> None:
        """A runtime without ``encryption=`` on a store that holds encrypted runs cannot execute them
        (it retries them with a back-off, and fails nothing): say so once, naming the keys."""
        if self.encryption is not None or not (self.workflow_names() or self.execute_steps):
            return
        keys = sorted(k[len(CHECK_PREFIX):] for k in await self.store.read_meta(CHECK_PREFIX))
        if keys:
            log.warning(
                "durable: %s holds runs encrypted with key(s) %s, and this runtime has no encryption=: it cannot "
                "execute them (pass encryption=durable.Encryption(...) holding those keys)", self.store.url, ", ".join(keys),
            )

    # -- what it executes ----------------------------------------------------------------------

    def _executed(self) -> Registry[Workflow[Any, Any]]:
        return self._explicit if self._explicit is not None else registered_workflows

    def workflow_names(self) -> list[str]:
        """The workflows this runtime executes."""
        return self._executed().names()

    def get_workflow(self, name: str) -> Workflow[Any, Any] | None:
        """The workflow a stored name names, among those this runtime executes (bare legacy names too)."""
        return self._executed().resolve(name)

    def holds_run(self, run_id: str) -> bool:
        """Whether this runtime holds ``run_id``'s live instance: its next writes, its end among
        them, are normally this process's own (another process may still take it over, so a
        waiter keeps a slow re-check)."""
        return self._running and run_id in self.cache

    def _claimable_workflows(self) -> list[str]:
        return self._executed().claimable()

    def _resolve_versions(self) -> dict[str, frozenset[str | None]]:
        """``versions=`` by every name a stored run of each workflow may carry (bare legacy names too)."""
        resolved: dict[str, frozenset[str | None]] = {}
        claimable = set(self._claimable_workflows())
        for name, labels in self._versions_wanted.items():
            wf = self.get_workflow(name)
            if wf is None:
                known = ", ".join(self.workflow_names()) or "none"
                raise ValueError(f"versions= names workflow {name!r}, which this runtime does not execute (it runs: {known})")
            resolved[wf.name] = labels
            short = short_name(wf.name)
            if short is not None and short in claimable:
                resolved[short] = labels
        return resolved

    def _claimed_versions(self) -> Versions | None:
        return self._versions or None

    def _serves(self, name: str, version: str | None) -> bool:
        """Whether this runtime claims runs of workflow ``name`` (a stored name) started by code of ``version``."""
        allowed = self._versions.get(name)
        return allowed is None or version in allowed

    def _step_names(self) -> list[str]:
        # Steps of any registered name run here (a step-only worker is Runtime(workflows=[]));
        # execute_steps=False makes a pure client that starts runs and resumes hooks only.
        return registered_steps.claimable() if self.execute_steps else []

    # -- the client, executing -----------------------------------------------------------------

    def _first_invocation_owner(self, wf: Workflow[Any, Any]) -> str | None:
        executes = self._running and self._executed().get(wf.name) is wf and self._serves(wf.name, wf.version)
        return self.worker_id if executes else None

    def _run_created(self, record: RunRecord, wf: Workflow[Any, Any], owner: str | None) -> None:
        if owner is not None:
            self._spawn(self.invocations.start_fresh, record)
        elif self._running and self.workflow_names() and self.get_workflow(wf.name) is None:
            log.warning(
                "run %s of workflow %r waits for a runtime that executes it: this one runs only %s",
                record.run_id, wf.name, ", ".join(self.workflow_names()),
            )
        elif self._running and not self._serves(wf.name, record.version):
            log.warning(
                "run %s of workflow %r %s waits for a runtime that serves that version: this one serves %s",
                record.run_id, wf.name, _version_text(record.version),
                ", ".join(sorted(map(_version_text, self._versions[wf.name]))) or "no version of it",
            )

    async def cancel(self, run_id: str) -> str:
        status = await super().cancel(run_id)
        self.cache.evict(run_id)
        self.steps.cancel_run(run_id)
        await self.steps.cancel_ended()  # its children ended with it: their steps running here stop now too
        return status


_UNSERVED_CHECK_EVERY = 30.0  # seconds between looks for runs of versions this runtime leaves out


def _check_versions(versions: Mapping[str, Iterable[str | None]] | None) -> dict[str, frozenset[str | None]]:
    if versions is None:
        return {}
    if not isinstance(versions, Mapping):
        raise TypeError(f'versions must map workflow names to sets of version labels, e.g. {{"checkout": {{"1", "2"}}}}, got {versions!r}')
    checked: dict[str, frozenset[str | None]] = {}
    for name, labels in versions.items():
        if isinstance(labels, str) or not isinstance(labels, Iterable):
            raise TypeError(f"versions[{name!r}] must be a set of version labels (e.g. {{{labels!r}}}), got {labels!r}")
        checked[name] = frozenset(None if v is None else check_label(v, f"a version of {name!r}") for v in labels)
    return checked


def _version_text(version: str | None) -> str:
    return "without a version" if version is None else f"version {version!r}"
