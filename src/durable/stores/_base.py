"""The store interface: every state change is one method call and one transaction.

The runtime is the store's only writer of workflow state. Implementations: SQLite (the
embedded default, also used with ``:memory:`` for ``memory://``) and PostgreSQL. The shapes
here fit ``SELECT ... FOR UPDATE SKIP LOCKED`` claims and ``LISTEN/NOTIFY`` wake-ups: claims
return work that one worker now owns; :class:`Notifier` topics are what NOTIFY carries.
"""

from __future__ import annotations

import abc
import functools
import math
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio

from .._core.commands import Command
from .._core.events import Event
from .._core.queues import QueueSpec, QueueState

RunStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
ACTIVE: tuple[str, str] = ("pending", "running")
RUN_STATUSES: tuple[str, ...] = ("pending", "running", "completed", "failed", "cancelled")
#: list_runs returns at most this many runs per call (page through more with ``before=``).
MAX_LIST_LIMIT = 10_000
#: Stream indices (chunk positions, ``start_index``) lie within +-2**53: any int a JSON number holds exactly.
MAX_INDEX = 2**53


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    workflow_name: str
    status: str
    input: bytes
    seed: str
    created_at: float
    updated_at: float
    started_at: float | None = None
    completed_at: float | None = None
    output: bytes | None = None
    error: bytes | None = None
    idempotency_key: str | None = None
    last_seq: int = 0
    trace_link: str | None = None  # W3C traceparent of the span that started the run (tracing)
    consumed_seq: int = 0  # events up to here were consumed by a committed invocation: a replay re-lives them
    parent_run_id: str | None = None  # set on a child run: the run that started it
    cancel_reason: str | None = None  # why a cancelled run was cancelled ("timeout", "parent closed"; None: cancel())
    deadline: float | None = None  # when an unfinished run is cancelled for taking too long (timeout=)
    queue: str | None = None  # the queue the run waits in / was admitted by (start(queue=...))
    priority: int | None = None
    queue_key: str | None = None  # start(key=...): the key a per-key concurrency limit counts by
    dedupe_id: str | None = None
    admitted_at: float | None = None  # when its queue admitted it (None: waiting, or not queued)
    schedule: str | None = None  # the schedule that started it
    scheduled_at: float | None = None  # the tick it was started for

    version: str | None = None  # the version label of the code that started the run
    forked_from: str | None = None  # the run this one was forked from ...
    forked_step: str | None = None  # ... at this command (its history before it is the source's)


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """A schedule as a runtime registers it: what decides its ticks (``spec``), how they become
    runs (``options``, JSON), and its first tick from now (used when the store has none, or the
    spec changed)."""

    name: str
    workflow_name: str
    input: bytes
    spec: str
    options: str
    first_at: float


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    name: str
    workflow_name: str
    spec: str
    options: str
    paused: bool
    next_at: float  # the next tick not yet processed
    buffered_at: float | None  # a tick waiting for the unfinished run before it (overlap="buffer_one")
    skipped: int  # ticks that started no run (too old to catch up, or overlapping)
    last_tick: float | None
    last_run_id: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class TickRun:
    """One tick to start: its time, its run's id (derived from schedule and tick) and when that run is due."""

    tick: float
    run_id: str
    wake_at: float

#: Which versions of a workflow a worker executes, by stored workflow name (``None``: runs started
#: by code without a version); workflows not in the mapping run whatever their version.
Versions = Mapping[str, Collection[str | None]]


@dataclass(frozen=True, slots=True)
class StepRecord:
    run_id: str
    step_id: str
    name: str
    status: str
    attempt: int
    max_attempts: int
    created_at: float
    started_at: float | None
    completed_at: float | None
    output: bytes | None
    error: bytes | None
    ready_at: float | None
    input: bytes | None = None  # the recorded arguments


@dataclass(slots=True)  # not frozen: made on every step, and a frozen __init__ costs ~1.4 µs more
class StepClaim:
    """A step attempt this worker now owns and must run (never changed once made)."""

    run_id: str
    step_id: str
    name: str
    input: bytes
    attempt: int
    max_attempts: int
    first_started_at: float
    workflow_name: str
    run_started_at: float  # when the step's run started (get_workflow_metadata().started_at in a step)
    run_scheduled_at: float | None = None  # the tick a schedule started the step's run for
    inline: bool = False  # its run's inline step: claimed by its run's own commit, it has no steps row while it runs


@dataclass(frozen=True, slots=True)
class HookRecord:
    run_id: str
    hook_id: str
    token: str
    status: str
    metadata: bytes | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    data: bytes
    step_id: str | None
    attempt: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class ChunkPage:
    chunks: list[Chunk]
    closed: bool  # no chunk will follow the last one returned
    error: str | None  # set when the stream ended because its run failed
    start: int = 0  # the index the read started at (a negative start resolved against the end)


@dataclass(frozen=True, slots=True)
class NewRun:
    run_id: str
    workflow_name: str
    input: bytes
    seed: str
    idempotency_key: str | None
    now: float
    owner: str | None = None  # the worker that will run the first invocation itself (holds the lease)
    trace_link: str | None = None  # W3C traceparent of the caller's span, when tracing
    deadline: float | None = None  # cancel the run (reason "timeout") if it has not finished by then
    queue: QueueSpec | None = None  # wait for this queue's admission (its definition, kept if the store has none)
    priority: int | None = None
    queue_key: str | None = None
    dedupe_id: str | None = None  # refuse a second live run of the queue with this id (RunConflict)
    version: str | None = None


@dataclass(frozen=True, slots=True)
class PublishedWorkflow:
    """A workflow a worker executes, as it published it for processes without its code."""

    name: str
    parameters: str  # JSON: [{"name", "kind", "default"? | "default_repr"?, "annotation"?}, ...]
    serializer: str
    version: str | None
    worker_id: str
    published_at: float


@dataclass(frozen=True, slots=True)
class ForkRun:
    """A new run whose history is the source run's before ``before_seq``, continued by the code
    deployed now (``run.fork``, ``durable.rerun``). The source is only read."""

    source_id: str
    run_id: str
    before_seq: int  # the source's events with a smaller seq are the new run's history
    forked_step: str  # the command the new run resumes at (its correlation id), or "end"
    input: bytes | None  # new arguments; None: the source's
    version: str | None  # the version label of the code that forks
    now: float


@dataclass(slots=True)
class Invocation:
    """The result of advancing a workflow instance, to commit atomically.

    ``speculative`` events were consumed before being stored; they commit only if nothing
    replay reads was appended after ``known_seq`` and nobody else holds the run, which makes
    "step N completed" plus "step N+1 scheduled and started" a single transaction. The store
    appends them first, numbering them itself (their own ``seq`` is the one they are expected
    to get).
    """

    run_id: str
    worker_id: str
    known_seq: int
    now: float
    commands: Sequence[Command]
    status: Literal["suspended", "completed", "failed"]
    result: bytes | None = None
    error: bytes | None = None
    speculative: Sequence[Event] = ()
    holds_lease: bool = False
    claim_steps: int = 0
    next_wake: float | None = None  # earliest pending timer of the instance (it has seen every wait)
    consumed_seq: int = 0  # the last event the instance consumed (known_seq plus the speculative ones)
    # The claim of the inline step whose result is the lone speculative event, as this worker ran it:
    # the store may take the run's unchanging facts from it (workflow, start, schedule) and check the
    # rest in the commit's one update of the run, instead of reading the run's row first.
    finished: StepClaim | None = None


@dataclass(frozen=True, slots=True)
class Collected:
    """One batch of retention: the runs deleted (oldest first), the rows removed per table
    (``runs``, ``events``, ``steps``, ``hooks``, ``waits``, ``streams``, ``chunks``, ``run_values``,
    ``queue_admissions``), and whether more runs may be due (the batch was full)."""

    run_ids: list[str]
    counts: dict[str, int]
    more: bool


@dataclass(slots=True)
class CommitResult:
    ok: bool
    reason: str = ""
    last_seq: int = 0
    clean: bool = True  # nothing replay reads was appended by others after known_seq
    claimed: list[StepClaim] = field(default_factory=list)
    run_status: str = ""
    conflicts: bool = False  # a hook_conflict was appended: the instance must see it (replay again)


class Notifier:
    """In-process wake-ups by topic; stores that see other processes' writes (NOTIFY) call it too.

    Listen *before* reading, then wait: a notification that lands between the read and the
    wait is not lost, because :meth:`listen` hands out the event that the next
    :meth:`notify` sets.

    The notifier holds its events weakly: a topic's entry lives exactly as long as someone
    holds the event :meth:`listen` returned. A waiter that ends (a run read after it finished,
    a stream read to its end) leaves nothing behind, so a long-lived server reading many runs
    does not grow.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, ...], weakref.ref[anyio.Event]] = {}

    def __len__(self) -> int:
        """How many topics someone is listening on now."""
        return len(self._events)

    def notify(self, *topic: str) -> None:
        ref = self._events.pop(topic, None)
        if ref is not None:
            event = ref()
            if event is not None:
                event.set()

    def notify_all(self) -> None:
        """Wake every listener, whatever its topic: a cross-process feed had a gap (a reconnected
        LISTEN), so anything may have changed; each listener re-reads once."""
        refs, self._events = self._events, {}
        for ref in refs.values():
            event = ref()
            if event is not None:
                event.set()

    def listen(self, *topic: str) -> anyio.Event:
        ref = self._events.get(topic)
        event = ref() if ref is not None else None
        if event is None:
            event = anyio.Event()
            self._events[topic] = weakref.ref(event, functools.partial(self._forget, topic))
        return event

    def _forget(self, topic: tuple[str, ...], ref: weakref.ref[anyio.Event]) -> None:
        # The last holder of the event let go: drop the entry, unless the topic has a newer one.
        if self._events.get(topic) is ref:
            del self._events[topic]

    @staticmethod
    async def wait(event: anyio.Event, timeout: float) -> bool:
        """Wait for ``event`` or ``timeout`` seconds; True if it was set."""
        if math.isinf(timeout):
            await event.wait()
            return True
        with anyio.move_on_after(timeout):
            await event.wait()
            return True
        return event.is_set()


class Store(abc.ABC):
    """What the runtime needs from storage; each method is one transaction.

    :attr:`notifier` wakes followers in this process. ``cross_process`` is true when other
    processes may write too; followers then also poll (SQLite) unless the store feeds the
    notifier from the database itself (PostgreSQL LISTEN, ``notifies_across_processes``).
    """

    url: str
    notifier: Notifier
    cross_process: bool = True
    notifies_across_processes: bool = False

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def open(self) -> None: ...
    @abc.abstractmethod
    async def aclose(self) -> None: ...

    # -- workers ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def register_worker(self, worker_id: str, host: str, pid: int, pid_start: str, ttl: float, now: float) -> None: ...
    @abc.abstractmethod
    async def heartbeat(self, worker_id: str, ttl: float, now: float) -> list[tuple[str, int, str]]:
        """Renew this worker; return (worker_id, pid, pid_start) of other live workers on this host."""
    @abc.abstractmethod
    async def mark_workers_dead(self, worker_ids: Sequence[str]) -> None: ...
    @abc.abstractmethod
    async def unregister_worker(self, worker_id: str) -> None: ...

    # -- published workflows ---------------------------------------------------------------
    @abc.abstractmethod
    async def publish_workflows(self, published: Sequence[PublishedWorkflow]) -> None:
        """Record the workflows a worker executes (replacing earlier definitions of the same names)."""
    @abc.abstractmethod
    async def list_workflows(self) -> list[PublishedWorkflow]:
        """Every published workflow, by name."""

    # -- runs ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        """Create the run (``run_created``), or return the existing one for its idempotency key / id."""
    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None: ...
    @abc.abstractmethod
    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 100, before: str | None = None,
        queue: str | None = None,
        version: str | None = None,
    ) -> list[RunRecord]: ...
    @abc.abstractmethod
    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Every event of the run after ``after_seq``, for people and tools."""
    @abc.abstractmethod
    async def read_log(self, run_id: str, after_seq: int) -> tuple[list[Event], int]:
        """The events replay needs after ``after_seq``, and the run's last seq, in one range read."""
    @abc.abstractmethod
    async def claim_runs(
        self, worker_id: str, workflow_names: Sequence[str], now: float, limit: int, versions: Versions | None = None
    ) -> list[RunRecord]:
        """Lease runs due for an invocation (fires their due waits in the same transaction); with
        ``versions``, runs of the workflows it names only in the versions it lists."""
    @abc.abstractmethod
    async def release_run(self, run_id: str, worker_id: str, now: float, retry_at: float | None = None) -> None:
        """Give up a lease without committing; with ``retry_at``, the run is not due before then."""
    @abc.abstractmethod
    async def commit(self, invocation: Invocation) -> CommitResult: ...
    @abc.abstractmethod
    async def cancel_run(self, run_id: str, now: float) -> RunRecord | None: ...
    @abc.abstractmethod
    async def fork_run(self, fork: ForkRun) -> RunRecord:
        """Create the forked run with its copied history and the steps, hooks, waits and stream
        chunks that history holds (RunNotFound, ForkError if a hook token it holds is live elsewhere)."""
    @abc.abstractmethod
    async def next_wake(
        self, workflow_names: Sequence[str], step_names: Sequence[str], now: float, versions: Versions | None = None
    ) -> float | None:
        """The earliest time at which a run (not leased by a live worker; of these versions) or a step of these names becomes due."""
    @abc.abstractmethod
    async def active_workflows(self) -> dict[str, int]:
        """Unfinished runs per workflow name (to warn about runs no runtime here can execute)."""
    @abc.abstractmethod
    async def active_versions(self) -> dict[tuple[str, str | None], int]:
        """Unfinished runs per (workflow name, version) (to warn about runs of versions no runtime here serves)."""
    @abc.abstractmethod
    async def terminal_runs(self, run_ids: Sequence[str]) -> list[str]: ...
    @abc.abstractmethod
    async def list_children(self, run_id: str) -> list[RunRecord]:
        """The child runs ``run_id`` started, oldest first."""

    # -- retention -------------------------------------------------------------------------
    @abc.abstractmethod
    async def collect_runs(
        self, before: float, statuses: Sequence[str], *, limit: int, max_rows: int, now: float
    ) -> Collected:
        """Delete one batch of finished runs that completed at or before ``before`` with everything
        that belongs to them, in one transaction (never an unfinished run, a child whose parent is
        unfinished, or a run with an unfinished child)."""

    async def reclaim_space(self, *, vacuum: bool = False) -> int | None:
        """Give the space deleted rows held back to the file system where the store can (SQLite);
        the bytes freed, or None where the database does it itself (PostgreSQL's autovacuum)."""
        return None

    # -- store settings ----------------------------------------------------------------------
    @abc.abstractmethod
    async def read_meta(self, prefix: str) -> dict[str, str]:
        """The store's settings whose keys start with ``prefix`` (e.g. the encryption key checks)."""
    @abc.abstractmethod
    async def add_meta(self, key: str, value: str) -> str:
        """Keep ``value`` under ``key`` unless the key has a value already; return the value kept."""

    # -- live values -----------------------------------------------------------------------
    @abc.abstractmethod
    async def list_values(self, run_id: str, key: str | None = None) -> list[tuple[str, bytes, int, float]]:
        """(key, encoded value, seq of its value_set event, updated_at) of a run's current values."""

    # -- schedules -------------------------------------------------------------------------
    @abc.abstractmethod
    async def define_schedules(self, defs: Sequence[ScheduleDef], now: float) -> None:
        """Write schedule definitions; a new one (or one whose spec changed) starts at its ``first_at``."""
    @abc.abstractmethod
    async def list_schedules(self, names: Sequence[str] | None = None) -> list[ScheduleRecord]: ...
    @abc.abstractmethod
    async def fire_schedule(
        self, name: str, expected_next_at: float, ticks: Sequence[TickRun], skipped: int, next_at: float, now: float
    ) -> list[str]:
        """Process a schedule's due ticks in one transaction, if its next tick is still ``expected_next_at``
        (else another runtime did): start runs as its overlap policy allows, count the rest as skipped,
        move on to ``next_at``. Returns the run ids started."""
    @abc.abstractmethod
    async def set_schedule_paused(self, name: str, paused: bool, now: float) -> bool: ...
    @abc.abstractmethod
    async def delete_schedule(self, name: str) -> bool: ...
    @abc.abstractmethod
    async def trigger_schedule(self, name: str, run_id: str, now: float) -> str | None:
        """Start a run of the schedule now, whatever its ticks and overlap policy; its id (None: no such schedule)."""

    # -- queues ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def define_queues(self, specs: Sequence[QueueSpec], now: float) -> None:
        """Write these queue definitions (their limits then hold for every worker of the store)."""
    @abc.abstractmethod
    async def queue_states(self, names: Sequence[str] | None, now: float) -> list[QueueState]:
        """Occupancy and rate window of these queues (None: every queue the store knows)."""

    # -- steps -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def claim_steps(self, worker_id: str, step_names: Sequence[str], now: float, limit: int) -> list[StepClaim]: ...
    @abc.abstractmethod
    async def finish_step(
        self, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float, retry_at: float | None = None
    ) -> bool:
        """Record ``step_completed``/``step_failed``/``step_retrying`` for a running step and wake its run."""
    @abc.abstractmethod
    async def list_steps(self, run_id: str) -> list[StepRecord]: ...

    # -- hooks -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def get_hook(self, token: str) -> HookRecord | None: ...
    @abc.abstractmethod
    async def list_hooks(self, run_id: str, *, active_only: bool = True) -> list[HookRecord]: ...
    @abc.abstractmethod
    async def resume_hook(
        self, token: str, payload: bytes, now: float, *, expect: tuple[str, str] | None = None
    ) -> HookRecord:
        """Append ``hook_received`` to the run of the live hook holding ``token``; HookNotFound if none.

        ``expect=(run_id, hook_id)``: only if the token still belongs to that hook, the one the
        caller looked up and validated the payload for (a token is re-bound when its run ends).
        """

    # -- streams ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def append_chunks(
        self, run_id: str, namespace: str, chunks: Sequence[bytes], step_id: str | None, attempt: int | None,
        now: float, *, close: bool = False,
    ) -> int:
        """Append chunks with contiguous indices; return the index after the last. StreamClosedError if closed."""
    @abc.abstractmethod
    async def close_stream(self, run_id: str, namespace: str, error: str | None, now: float) -> None: ...
    @abc.abstractmethod
    async def read_chunks(self, run_id: str, namespace: str, start: int, limit: int) -> ChunkPage: ...
    @abc.abstractmethod
    async def list_streams(self, run_id: str) -> list[tuple[str, int, bool]]: ...
