"""The store's SQL, shared by SQLite and PostgreSQL.

Each public function here is the body of one transaction, written against :class:`DB`: a
cursor-like object whose ``execute`` takes ``?`` placeholders (the PostgreSQL store rewrites
them), plus the dialect's row-locking clauses. Functions never read the clock: ``now`` comes
from the caller, so tests can drive virtual time. ``db.note(topic)`` queues an in-process
wake-up (and a NOTIFY on PostgreSQL) sent after the transaction commits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._core.codec import ENCRYPTED_TAG, JSON_TAG, encode
from .._core.commands import (
    CancelChild,
    CancelWait,
    CloseStream,
    CreateHook,
    DisposeHook,
    MarkPatch,
    ScheduleStep,
    SetValue,
    StartChild,
    StartWait,
    WriteChunk,
)
from .._core.errorinfo import decode_error, encode_error
from .._core.errors import ForkError, HookNotFound, RunConflict, RunNotFound, StreamClosedError
from .._core.events import REPLAY_KINDS, Event, EventKind
from .._core.queues import QueueSpec, QueueState
from ._base import (
    ACTIVE,
    TERMINAL,
    Chunk,
    ChunkPage,
    Collected,
    CommitResult,
    ForkRun,
    HookRecord,
    Invocation,
    NewRun,
    PublishedWorkflow,
    RunRecord,
    ScheduleDef,
    ScheduleRecord,
    StepClaim,
    StepRecord,
    TickRun,
    Versions,
)

Row = tuple[Any, ...]


_VALUES = re.compile(r"^(INSERT INTO .*? VALUES )(\([?,]+\))$", re.DOTALL)


@functools.lru_cache(maxsize=256)
def multirow_insert(statement: str, count: int) -> str | None:
    """``INSERT ... VALUES (?,?)`` for ``count`` rows as one multi-row INSERT (one statement
    instead of one per row, for a store's ``executemany``), or None if it is another shape."""
    match = _VALUES.match(statement.strip())
    if match is None:
        return None
    head, row = match.groups()
    return head + ",".join([row] * count)


class DB(Protocol):
    for_update: str  # " FOR UPDATE" or ""
    for_share: str  # " FOR SHARE" or ""
    skip_locked: str  # " FOR UPDATE SKIP LOCKED" or ""

    # Whether ``execute_count`` is free (SQLite: the connection counts the rows a statement
    # changed); where it costs a round trip (PostgreSQL, pipelined), RETURNING is the cheaper way.
    counts_rows: bool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int: ...  # rows an UPDATE/INSERT/DELETE changed
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def note(self, *topic: str) -> None: ...


def _marks(n: int) -> str:
    return ",".join("?" * n)


_ALIVE = "(SELECT worker_id FROM workers WHERE alive_until > ?)"
_RUN_COLUMNS = (
    "run_id, workflow_name, status, input, seed, created_at, updated_at, started_at, completed_at, "
    "output, error, idempotency_key, last_seq, trace_link, consumed_seq, parent_run_id, cancel_reason, deadline, "
    "queue, priority, queue_key, dedupe_id, admitted_at, schedule, scheduled_at, version, forked_from, forked_step"
)
_REPLAY_KIND_LIST = tuple(sorted(str(k) for k in REPLAY_KINDS))
# The kinds a step's commit compares with, as module constants: an enum member's lookup on its
# class costs ~100 ns, a dozen times per step.
# The kinds as the log holds them (plain str, as read back): the drivers bind a str as it is.
_RUN_STARTED, _STEP_CREATED, _STEP_STARTED = EventKind.RUN_STARTED.value, EventKind.STEP_CREATED.value, EventKind.STEP_STARTED.value
_STEP_COMPLETED, _STEP_FAILED = EventKind.STEP_COMPLETED.value, EventKind.STEP_FAILED.value
_STEP_CANCELLED, _STEP_RETRYING = EventKind.STEP_CANCELLED.value, EventKind.STEP_RETRYING.value


def _run(row: Row) -> RunRecord:
    return RunRecord(
        run_id=row[0], workflow_name=row[1], status=row[2], input=bytes(row[3]), seed=row[4], created_at=row[5],
        updated_at=row[6], started_at=row[7], completed_at=row[8],
        output=None if row[9] is None else bytes(row[9]), error=None if row[10] is None else bytes(row[10]),
        idempotency_key=row[11], last_seq=row[12], trace_link=row[13], consumed_seq=row[14],
        parent_run_id=row[15], cancel_reason=row[16], deadline=row[17], queue=row[18], priority=row[19], queue_key=row[20],
        dedupe_id=row[21], admitted_at=row[22], schedule=row[23], scheduled_at=row[24], version=row[25],
        forked_from=row[26], forked_step=row[27],
    )


# Event's own ``__new__`` is a Python function; a replay builds one per logged event, and
# building the tuple directly halves that cost. Both drivers return BLOB/bytea as bytes.
_new_event: Callable[[type[Event], tuple[Any, ...]], Event] = tuple.__new__


class _Appender:
    """Appends events to one locked run, numbering them from the run's ``last_seq``."""

    def __init__(self, db: DB, run_id: str, last_seq: int) -> None:
        self.db = db
        self.run_id = run_id
        self.seq = last_seq
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self, kind: str, corr: str | None, now: float, *, name: str | None = None, data: bytes | None = None,
        attempt: int | None = None, max_attempts: int | None = None,
    ) -> int:
        self.seq += 1
        self.rows.append((self.run_id, self.seq, kind, corr, name, data, attempt, now, max_attempts))
        return self.seq

    def flush(self) -> None:
        if self.rows:
            self.db.executemany(
                "INSERT INTO events (run_id, seq, kind, corr_id, name, data, attempt, created_at, max_attempts) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                self.rows,
            )
            self.rows = []
            self.db.note("run", self.run_id)


# What _lock_run reads of a run: its parent's id and child_started position (indexes 8, 9) too,
# so that a run ending delivers to its parent without reading its row again; and its inline step
# (indexes 10-13, see _INLINE_CHANGES), which the commit finishing it writes the row of.
_LOCKED = (
    "status, last_seq, owner, workflow_name, started_at, deadline, queue, scheduled_at, parent_run_id, parent_corr, "
    "inline_step, inline_seq, inline_max_attempts, inline_owner"
)
_INLINE = 10  # where the inline step's columns start in a _LOCKED row


def _lock_run(db: DB, run_id: str) -> Row | None:
    """A run's row as _LOCKED reads it (status, last_seq, owner, ..., parent_corr, its inline step), locked."""
    rows = db.execute(f"SELECT {_LOCKED} FROM runs WHERE run_id = ?{db.for_update}", (run_id,))
    return rows[0] if rows else None


# -- a run's inline step (schemas 7 and 8) ------------------------------------------------------------
#
# The step a run's commit claimed for its own worker (the first it may: one per run) is kept on the
# run's row, not in steps, until it finishes. If it completes (the common case) it never gets a steps
# row: its step_created event (name, input, max_attempts, creation) and step_completed event (result,
# completion) are all there is to it, and list_steps reads it from them -- one write of the log per
# step instead of a log write and a row (schema 8; a schema 7 store's completed inline steps kept
# rows, which stay). Any other end (failed, retrying) inserts its steps row from its step_created event;
# whatever needs it as a row first (a dead worker's step reclaimed, the run ending with it unfinished)
# materializes it: the same row, running, as if inserted when claimed. Every path holds the run's
# lock, so a step is inline, completed without a row, or has its row: only one of the three.

_INLINE_ROW = (
    "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, output, error, created_at, "
    "started_at, attempt_started_at, completed_at, ready_at, owner) "
    "SELECT run_id, corr_id, name, ?, 1, ?, data, ?, ?, created_at, created_at, created_at, ?, ?, ? "
    "FROM events WHERE run_id = ? AND seq = ?"
)
_NO_INLINE = "inline_step = NULL, inline_seq = NULL, inline_max_attempts = NULL, inline_owner = NULL"


def _is_inline(locked: Row, step_id: str | None) -> bool:
    return step_id is not None and locked[_INLINE] == step_id


def _inline_accepts(kind: str, attempt: int | None) -> bool:
    """Whether the inline step takes this outcome (as _step_accepts): it runs its first attempt."""
    return kind == _STEP_COMPLETED or attempt is None or attempt == 1


def _finish_inline(db: DB, run_id: str, locked: Row, kind: str, data: bytes | None, now: float,
                   retry_at: float | None) -> None:
    """The run's inline step ends with ``kind`` (an EventKind of a step's end): completed, it keeps no
    row (its events are its record); otherwise it gets its row. Its run's inline columns are the
    caller's to clear, and the outcome's event the caller's to append."""
    if kind == _STEP_COMPLETED:
        db.note("stream", run_id)  # a stream its attempt closed is final now: readers may end
    else:
        _write_inline_row(db, run_id, locked, kind, data, now, retry_at)


def _write_inline_row(db: DB, run_id: str, locked: Row, kind: str, data: bytes | None, now: float,
                      retry_at: float | None) -> None:
    """The steps row of the run's inline step, with the outcome ``kind`` (step_failed, step_retrying,
    step_cancelled, or _STEP_STARTED: still running, on its worker)."""
    max_attempts, seq, owner = locked[_INLINE + 2], locked[_INLINE + 1], locked[_INLINE + 3]
    values: tuple[Any, ...]
    if kind == _STEP_STARTED:
        values = ("running", max_attempts, None, None, None, None, owner)
    elif kind == _STEP_RETRYING:
        values = ("pending", max_attempts, None, data, None, retry_at if retry_at is not None else now, None)
    else:
        values = ("failed" if kind == _STEP_FAILED else "cancelled", max_attempts, None, data, now, None, None)
    db.execute(_INLINE_ROW, (*values, run_id, seq))
    if kind not in (_STEP_STARTED, _STEP_RETRYING):
        db.note("stream", run_id)  # a stream its attempt closed is final now: readers may end (as _finish_step_row)


def _materialize_inline(db: DB, run_id: str, locked: Row) -> None:
    """Give the locked run's inline step (if it has one) its steps row, running on its worker."""
    if locked[_INLINE] is not None:
        _write_inline_row(db, run_id, locked, _STEP_STARTED, None, 0.0, None)
        db.execute(f"UPDATE runs SET {_NO_INLINE} WHERE run_id = ?", (run_id,))


def _lock_ending(db: DB, run_id: str) -> tuple[Row | None, Row | None]:
    """A run about to end and its parent (each as :func:`_lock_run` reads it; None: no such run, or
    no parent), locked in one statement, the parent first.

    The lock order is a parent before its child (see "child runs" below): PostgreSQL sorts the rows
    before it locks them, one by one, in that order. SQLite has one writer: the order is moot there.
    """
    rows = db.execute(
        f"SELECT {_LOCKED} FROM runs WHERE run_id = ? OR run_id = (SELECT parent_run_id FROM runs WHERE run_id = ?) "
        f"ORDER BY run_id = ?{db.for_update}",
        (run_id, run_id, run_id),
    )
    if not rows:
        return None, None
    # Two rows: the parent, then the run; one: the run (it has no parent, or its parent is gone).
    return rows[-1], rows[0] if len(rows) == 2 else None


def _until(wake_at: float | None, deadline: float | None) -> float | None:
    """When a suspended run must be invoked next: its next timer, or its deadline if that comes first."""
    if deadline is None:
        return wake_at
    return deadline if wake_at is None or deadline < wake_at else wake_at


# -- schema -----------------------------------------------------------------------------------------

# migration: h-web (2 -> 3: published_workflows); migration: h-compose (3 -> 4); migration: h-verify (4 -> 5: versions, forks)
# migration: h-retain (5 -> 6: the finished-runs index); migration: rowless-step (7 -> 8);
# migration: started-with-created (8 -> 9)
SCHEMA_VERSION = 9
# The tables, written once for both dialects: {blob}, {real}, {bigint} and {norowid} are filled in
# by each store (BLOB/REAL/INTEGER/" WITHOUT ROWID" for SQLite, BYTEA/DOUBLE PRECISION/BIGINT/""
# for PostgreSQL), so the two schemas cannot drift apart.
_SCHEMA_TEMPLATE = [
    "CREATE TABLE durable_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT NOT NULL,
        started_at {real} NOT NULL, alive_until {real} NOT NULL)""",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, workflow_name TEXT NOT NULL, status TEXT NOT NULL, input {blob} NOT NULL,
        seed TEXT NOT NULL, idempotency_key TEXT UNIQUE, output {blob}, error {blob},
        created_at {real} NOT NULL, updated_at {real} NOT NULL, started_at {real}, completed_at {real},
        last_seq {bigint} NOT NULL, wake_at {real}, owner TEXT, trace_link TEXT, consumed_seq {bigint} NOT NULL DEFAULT 0,
        version TEXT, forked_from TEXT, forked_step TEXT)""",
    "CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL",
    "CREATE INDEX runs_created ON runs (created_at, run_id)",
    "CREATE INDEX runs_status ON runs (status, created_at)",
    # No unique index on events: the entity rows written in the same transaction (step, hook,
    # wait, chunk primary keys) and the conditional status updates already make every creation
    # and every outcome happen once, and an extra index costs a page write on every step.
    """CREATE TABLE events (
        run_id TEXT NOT NULL, seq {bigint} NOT NULL, kind TEXT NOT NULL, corr_id TEXT, name TEXT, data {blob},
        attempt INTEGER, created_at {real} NOT NULL, PRIMARY KEY (run_id, seq)){norowid}""",
    """CREATE TABLE steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
        attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL, input {blob} NOT NULL, output {blob}, error {blob},
        created_at {real} NOT NULL, started_at {real}, attempt_started_at {real}, completed_at {real},
        ready_at {real}, owner TEXT, PRIMARY KEY (run_id, step_id)){norowid}""",
    "CREATE INDEX steps_ready ON steps (ready_at) WHERE status = 'pending'",
    "CREATE INDEX steps_running ON steps (owner) WHERE status = 'running'",
    """CREATE TABLE hooks (
        run_id TEXT NOT NULL, hook_id TEXT NOT NULL, token TEXT NOT NULL, status TEXT NOT NULL, metadata {blob},
        created_at {real} NOT NULL, PRIMARY KEY (run_id, hook_id)){norowid}""",
    "CREATE UNIQUE INDEX hooks_live_token ON hooks (token) WHERE status = 'active'",
    """CREATE TABLE waits (
        run_id TEXT NOT NULL, wait_id TEXT NOT NULL, resume_at {real} NOT NULL, status TEXT NOT NULL,
        PRIMARY KEY (run_id, wait_id)){norowid}""",
    "CREATE INDEX waits_due ON waits (run_id, resume_at) WHERE status = 'waiting'",
    """CREATE TABLE streams (
        run_id TEXT NOT NULL, namespace TEXT NOT NULL, next_index INTEGER NOT NULL, closed INTEGER NOT NULL,
        error TEXT, closed_by TEXT, PRIMARY KEY (run_id, namespace)){norowid}""",
    """CREATE TABLE chunks (
        run_id TEXT NOT NULL, namespace TEXT NOT NULL, idx INTEGER NOT NULL, data {blob} NOT NULL, step_id TEXT,
        attempt INTEGER, created_at {real} NOT NULL, PRIMARY KEY (run_id, namespace, idx)){norowid}""",
]

# migration: h-web -- schema 2 -> 3: the workflows that workers publish when they open (name,
# signature as JSON, serializer, version label), so that a process without the workflow code
# (a store-only `durable serve`, `durable start`) can list and start them.
_PUBLISHED_WORKFLOWS = """CREATE TABLE published_workflows (
        name TEXT PRIMARY KEY, parameters TEXT NOT NULL, serializer TEXT NOT NULL, version TEXT,
        worker_id TEXT NOT NULL, published_at {real} NOT NULL)"""
_SCHEMA_TEMPLATE.append(_PUBLISHED_WORKFLOWS)
# end of migration: h-web


# migration: h-compose (schema 3 -> 4) -- child runs, run timeouts, queues, schedules, live values.
# These statements both finish a new schema and migrate a version-3 store (_MIGRATION_TEMPLATES[3]),
# so the two cannot differ.
_COMPOSE_CHANGES = [
    "ALTER TABLE runs ADD COLUMN parent_run_id TEXT",  # the run that started this one as its child
    "ALTER TABLE runs ADD COLUMN parent_corr TEXT",  # the child_started position in the parent's log
    "ALTER TABLE runs ADD COLUMN on_parent_close TEXT",  # cancel | abandon
    "ALTER TABLE runs ADD COLUMN cancel_reason TEXT",  # why a cancelled run was cancelled (None: cancel())
    "CREATE INDEX runs_parent ON runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL",
    # Run timeouts: a run still unfinished at its deadline is cancelled with reason "timeout".
    "ALTER TABLE runs ADD COLUMN deadline {real}",
    "CREATE INDEX runs_deadline ON runs (deadline) WHERE deadline IS NOT NULL",
    # Queues: a queued run waits unadmitted (admitted_at NULL) until its queue has room; a queued
    # step waits pending. The limits are rows of `queues`; rate windows count `queue_admissions`.
    "ALTER TABLE runs ADD COLUMN queue TEXT",
    "ALTER TABLE runs ADD COLUMN priority INTEGER",
    "ALTER TABLE runs ADD COLUMN queue_key TEXT",
    "ALTER TABLE runs ADD COLUMN dedupe_id TEXT",
    "ALTER TABLE runs ADD COLUMN admitted_at {real}",
    "CREATE INDEX runs_queued ON runs (queue, priority, created_at) WHERE queue IS NOT NULL AND admitted_at IS NULL "
    "AND status = 'pending'",
    "CREATE INDEX runs_queue_active ON runs (queue, queue_key) WHERE queue IS NOT NULL AND admitted_at IS NOT NULL "
    "AND status IN ('pending', 'running')",
    "CREATE UNIQUE INDEX runs_dedupe ON runs (queue, dedupe_id) WHERE dedupe_id IS NOT NULL AND status IN ('pending', 'running')",
    "ALTER TABLE steps ADD COLUMN queue TEXT",
    "CREATE INDEX steps_queued ON steps (queue, ready_at) WHERE queue IS NOT NULL AND status = 'pending'",
    "CREATE INDEX steps_queue_running ON steps (queue) WHERE queue IS NOT NULL AND status = 'running'",
    """CREATE TABLE queues (
        name TEXT PRIMARY KEY, concurrency INTEGER, per_key INTEGER, rate_count INTEGER, rate_period {real},
        priority_levels INTEGER NOT NULL, updated_at {real} NOT NULL)""",
    "CREATE TABLE queue_admissions (queue TEXT NOT NULL, admitted_at {real} NOT NULL, entry TEXT NOT NULL)",
    "CREATE INDEX queue_admissions_window ON queue_admissions (queue, admitted_at)",
    # Schedules: their next tick lives here, so ticks survive restarts and one runtime fires each.
    "ALTER TABLE runs ADD COLUMN schedule TEXT",
    "ALTER TABLE runs ADD COLUMN scheduled_at {real}",
    "CREATE INDEX runs_schedule_live ON runs (schedule) WHERE schedule IS NOT NULL AND status IN ('pending', 'running')",
    """CREATE TABLE schedules (
        name TEXT PRIMARY KEY, workflow_name TEXT NOT NULL, input {blob} NOT NULL, spec TEXT NOT NULL, options TEXT NOT NULL,
        paused INTEGER NOT NULL, next_at {real} NOT NULL, buffered_at {real}, skipped {bigint} NOT NULL,
        last_tick {real}, last_run_id TEXT, updated_at {real} NOT NULL)""",
    # Live values (durable.set_event): each run's current value per key.
    """CREATE TABLE run_values (
        run_id TEXT NOT NULL, key TEXT NOT NULL, data {blob} NOT NULL, seq {bigint} NOT NULL, updated_at {real} NOT NULL,
        PRIMARY KEY (run_id, key)){norowid}""",
]
_SCHEMA_TEMPLATE += _COMPOSE_CHANGES
COMPOSE_MIGRATION_FROM = 3  # the schema version _COMPOSE_CHANGES upgrades from


# migration: h-retain (schema 5 -> 6) -- retention (`durable gc`, Runtime(retention=...)) deletes
# the finished runs that completed longest ago first: this index finds them without a scan.
# IF NOT EXISTS: an older store rebuilt by hand (tests take stores back to earlier versions by
# undoing the later migrations) may still hold it.
_RETAIN_CHANGES = [
    "CREATE INDEX IF NOT EXISTS runs_finished ON runs (completed_at, run_id) WHERE completed_at IS NOT NULL",
]
_SCHEMA_TEMPLATE += _RETAIN_CHANGES
VERSIONS_MIGRATION_FROM = COMPOSE_MIGRATION_FROM + 1  # the schema version before runs had versions
RETAIN_MIGRATION_FROM = 5  # the schema version _RETAIN_CHANGES upgrades from
# end of migration: h-retain


# migration: inline-step (schema 6 -> 7) -- a step claimed by its run's own commit (a chain of steps
# on one worker) has no steps row while it runs: its run's row says which step it is, so that the
# row is written once, when the step has finished -- one write of the steps table instead of an
# insert and an update, and no entry in the running-steps index (2 of a step's 6 WAL pages).
# inline_seq is its step_created event (its name, input and creation time); inline_owner, the worker
# running it, is indexed for finding a dead worker's steps, and a chain on one worker never rewrites it.
INLINE_COLUMNS = ("inline_step", "inline_seq", "inline_max_attempts", "inline_owner")
_INLINE_CHANGES = [
    "ALTER TABLE runs ADD COLUMN inline_step TEXT",
    "ALTER TABLE runs ADD COLUMN inline_seq {bigint}",
    "ALTER TABLE runs ADD COLUMN inline_max_attempts INTEGER",
    "ALTER TABLE runs ADD COLUMN inline_owner TEXT",
    "CREATE INDEX runs_inline_owner ON runs (inline_owner) WHERE inline_owner IS NOT NULL",
]
_SCHEMA_TEMPLATE += _INLINE_CHANGES
INLINE_MIGRATION_FROM = 6  # the schema version _INLINE_CHANGES upgrades from
# end of migration: inline-step


# migration: rowless-step (schema 7 -> 8) -- an inline step that completes gets no steps row: its
# step_created event carries its max_attempts (NULL on every other event and on older step_created
# events, whose steps all have rows), so that its two events hold everything its row would have.
_ROWLESS_CHANGES = [
    "ALTER TABLE events ADD COLUMN max_attempts INTEGER",
    # An inline step left unfinished by a schema 7 store's worker may yet complete without a row.
    "UPDATE events SET max_attempts = (SELECT r.inline_max_attempts FROM runs r WHERE r.run_id = events.run_id "
    "AND r.inline_seq = events.seq) WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = events.run_id "
    "AND r.inline_seq = events.seq)",
]
_SCHEMA_TEMPLATE += _ROWLESS_CHANGES
ROWLESS_MIGRATION_FROM = 7  # the schema version _ROWLESS_CHANGES upgrades from
# end of migration: rowless-step


# migration: started-with-created (schema 8 -> 9) -- a step claimed by the commit that creates it (a
# chain's next step, the first steps of a gather) starts its first attempt in that commit: its
# step_created event says so with attempt 1, and no step_started event follows -- one event of three
# a step fewer. A step claimed later still gets its step_started. Nothing in the tables changes; the
# version keeps workers of the older durable (which would read such a step as never started) off it.
_STARTED_WITH_CREATED_CHANGES: list[str] = []
STARTED_WITH_CREATED_MIGRATION_FROM = 8  # the schema version _STARTED_WITH_CREATED_CHANGES upgrades from
# end of migration: started-with-created
LIVE_WORKERS = "SELECT worker_id, host, pid FROM workers WHERE alive_until > ?"


def upgrade_refusal(version: int, live_workers: Sequence[Row]) -> str | None:
    """Why a store at schema ``version`` must not be upgraded now (None: it may be), given its live
    workers (LIVE_WORKERS). A worker of the older durable still running on it would misread what this
    version writes: before schema 9, a step started by its step_created event as never started (its
    attempts miscounted in timelines and forks); before schema 8, a completed inline step (it has no
    row) as missing from its run; before schema 7, an inline step at all (it would leave a running one
    on a run it ends). All of a store's workers are of its version, so any live one is in the way."""
    if version > STARTED_WITH_CREATED_MIGRATION_FROM or not live_workers:
        return None
    named = ", ".join(f"{w} (host {h}, pid {p})" for w, h, p in live_workers[:3])
    more = f" and {len(live_workers) - 3} more" if len(live_workers) > 3 else ""
    return (
        f"is at schema {version} and workers of an older durable are running on it: {named}{more}. Stop them "
        f"before this version upgrades it to schema {SCHEMA_VERSION} (a worker that crashed counts until its "
        "lease runs out)"
    )


def schema(*, blob: str, real: str, bigint: str, norowid: str) -> list[str]:
    """The CREATE statements of the current schema in one dialect's types."""
    return [t.format(blob=blob, real=real, bigint=bigint, norowid=norowid) for t in _SCHEMA_TEMPLATE]


# Upgrades, in the same template language: _MIGRATION_TEMPLATES[N] turns a version-N store into N+1.
_MIGRATION_TEMPLATES: dict[int, list[str]] = {
    # migration: main (tracing, replay-aware logging) -- the W3C trace context of the caller that
    # started the run; the last seq a committed invocation had consumed (what a replay re-lives)
    1: [
        "ALTER TABLE runs ADD COLUMN trace_link TEXT",
        "ALTER TABLE runs ADD COLUMN consumed_seq {bigint} NOT NULL DEFAULT 0",
    ],
    2: [_PUBLISHED_WORKFLOWS],  # migration: h-web
    COMPOSE_MIGRATION_FROM: _COMPOSE_CHANGES,  # migration: h-compose
    # migration: h-verify -- the version label of the code that started a run; where a fork came from
    VERSIONS_MIGRATION_FROM: [
        "ALTER TABLE runs ADD COLUMN version TEXT",
        "ALTER TABLE runs ADD COLUMN forked_from TEXT",
        "ALTER TABLE runs ADD COLUMN forked_step TEXT",
    ],
    RETAIN_MIGRATION_FROM: _RETAIN_CHANGES,  # migration: h-retain
    INLINE_MIGRATION_FROM: _INLINE_CHANGES,  # migration: inline-step
    ROWLESS_MIGRATION_FROM: _ROWLESS_CHANGES,  # migration: rowless-step
    STARTED_WITH_CREATED_MIGRATION_FROM: _STARTED_WITH_CREATED_CHANGES,  # migration: started-with-created
}


def migrations(*, blob: str, real: str, bigint: str, norowid: str) -> dict[int, list[str]]:
    """The upgrade statements from each older version, in one dialect's types."""
    return {
        version: [t.format(blob=blob, real=real, bigint=bigint, norowid=norowid) for t in statements]
        for version, statements in _MIGRATION_TEMPLATES.items()
    }

# -- workers ----------------------------------------------------------------------------------


def register_worker(db: DB, worker_id: str, host: str, pid: int, pid_start: str, ttl: float, now: float) -> None:
    db.execute(
        "INSERT INTO workers (worker_id, host, pid, pid_start, started_at, alive_until) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT (worker_id) DO UPDATE SET alive_until = excluded.alive_until",
        (worker_id, host, pid, pid_start, now, now + ttl),
    )


def heartbeat(db: DB, worker_id: str, host: str, ttl: float, now: float) -> list[tuple[str, int, str]]:
    db.execute("UPDATE workers SET alive_until = ? WHERE worker_id = ?", (now + ttl, worker_id))
    rows = db.execute(
        "SELECT worker_id, pid, pid_start FROM workers WHERE host = ? AND worker_id <> ? AND alive_until > ?",
        (host, worker_id, now),
    )
    return [(r[0], r[1], r[2]) for r in rows]


def mark_workers_dead(db: DB, worker_ids: Sequence[str]) -> None:
    if worker_ids:
        db.execute(f"UPDATE workers SET alive_until = 0 WHERE worker_id IN ({_marks(len(worker_ids))})", tuple(worker_ids))
        db.note("work")


def unregister_worker(db: DB, worker_id: str) -> None:
    db.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
    db.note("work")


# -- published workflows ------------------------------------------------------------------------


def publish_workflows(db: DB, published: Sequence[PublishedWorkflow]) -> None:
    """Upsert each definition by name: the latest worker to open says what a name takes."""
    db.executemany(
        "INSERT INTO published_workflows (name, parameters, serializer, version, worker_id, published_at) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET parameters = excluded.parameters, "
        "serializer = excluded.serializer, version = excluded.version, worker_id = excluded.worker_id, "
        "published_at = excluded.published_at",
        [(p.name, p.parameters, p.serializer, p.version, p.worker_id, p.published_at) for p in published],
    )


def list_workflows(db: DB) -> list[PublishedWorkflow]:
    rows = db.execute(
        "SELECT name, parameters, serializer, version, worker_id, published_at FROM published_workflows ORDER BY name"
    )
    return [PublishedWorkflow(*row) for row in rows]


# -- runs ---------------------------------------------------------------------------------------


def create_run(db: DB, new: NewRun) -> tuple[RunRecord, bool]:
    inserted = db.execute(
        "INSERT INTO runs (run_id, workflow_name, status, input, seed, idempotency_key, created_at, updated_at, "
        "last_seq, wake_at, owner, trace_link, deadline, queue, priority, queue_key, dedupe_id, version) "
        "VALUES (?,?,?,?,?,?,?,?,1,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING RETURNING run_id",
        (new.run_id, new.workflow_name, "pending", new.input, new.seed, new.idempotency_key, new.now, new.now, new.now,
         None if new.queue is not None else new.owner, new.trace_link, new.deadline,
         None if new.queue is None else new.queue.name, new.priority, new.queue_key, new.dedupe_id, new.version),
    )
    if not inserted:
        where, key = ("idempotency_key", new.idempotency_key) if new.idempotency_key else ("run_id", new.run_id)
        rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} = ?", (key,))
        if not rows:  # the other unique column clashed
            rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (new.run_id,))
        if not rows and new.queue is not None and new.dedupe_id is not None:  # a live entry of the queue has the dedupe id
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE queue = ? AND dedupe_id = ? AND status IN ('pending', 'running')",
                (new.queue.name, new.dedupe_id),
            )
            if rows:
                taken = _run(rows[0])
                raise RunConflict(taken.run_id, "dedupe_id", new.dedupe_id, taken.workflow_name, new.workflow_name)
        existing = _run(rows[0])
        if existing.workflow_name != new.workflow_name:
            raise RunConflict(existing.run_id, where, key or "", existing.workflow_name, new.workflow_name)
        if not same_input(existing.input, new.input):
            raise RunConflict(
                existing.run_id, where, key or "", existing.workflow_name, new.workflow_name, other_arguments=True
            )
        return existing, False
    db.execute(
        "INSERT INTO events (run_id, seq, kind, corr_id, name, data, attempt, created_at) VALUES (?,1,?,NULL,?,?,NULL,?)",
        (new.run_id, EventKind.RUN_CREATED.value, new.workflow_name, new.input, new.now),
    )
    if new.queue is not None:
        _ensure_queue(db, new.queue, new.now)
    db.note("work")
    db.note("runs")
    db.note("run", new.run_id)
    return RunRecord(
        run_id=new.run_id, workflow_name=new.workflow_name, status="pending", input=new.input, seed=new.seed,
        created_at=new.now, updated_at=new.now, idempotency_key=new.idempotency_key, last_seq=1,
        trace_link=new.trace_link, deadline=new.deadline, queue=None if new.queue is None else new.queue.name,
        priority=new.priority, queue_key=new.queue_key, dedupe_id=new.dedupe_id, version=new.version,
    ), True


def same_input(stored: bytes, new: bytes) -> bool:
    """Whether a start repeats the stored call's arguments. JSON-codec bytes are canonical (equal
    values, equal bytes); pickled ones are not, so those cannot be told apart and count as equal."""
    if stored[:4] == JSON_TAG and new[:4] == JSON_TAG:
        return bytes(stored) == bytes(new)
    return True


def get_run(db: DB, run_id: str) -> RunRecord | None:
    rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
    return _run(rows[0]) if rows else None


def list_runs(
    db: DB, status: str | None, workflow: str | None, limit: int, before: str | None, queue: str | None = None,
    version: str | None = None,
) -> list[RunRecord]:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if before and not db.execute("SELECT 1 FROM runs WHERE run_id = ?", (before,)):
        raise RunNotFound(before)  # a cursor names the last run of the previous page
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if workflow:
        where.append("workflow_name = ?")
        params.append(workflow)
    if queue:
        where.append("queue = ?")
        params.append(queue)
    if version:
        where.append("version = ?")
        params.append(version)
    if before:
        where.append("(created_at, run_id) < (SELECT created_at, run_id FROM runs WHERE run_id = ?)")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = db.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, run_id DESC LIMIT ?", (*params, limit)
    )
    return [_run(r) for r in rows]


def load_events(db: DB, run_id: str, after_seq: int, replay_only: bool) -> list[Event]:
    columns = "seq, kind, corr_id, created_at, name, data, attempt"
    if replay_only:
        rows = db.execute(
            f"SELECT {columns} FROM events WHERE run_id = ? AND seq > ? AND kind IN ({_marks(len(_REPLAY_KIND_LIST))}) "
            "ORDER BY seq",
            (run_id, after_seq, *_REPLAY_KIND_LIST),
        )
    else:
        rows = db.execute(f"SELECT {columns} FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after_seq))
    return [_new_event(Event, (run_id, *r)) for r in rows]


def read_log(db: DB, run_id: str, after_seq: int) -> tuple[list[Event], int]:
    rows = db.execute("SELECT last_seq FROM runs WHERE run_id = ?", (run_id,))
    if not rows:
        raise RunNotFound(run_id)
    return load_events(db, run_id, after_seq, True), int(rows[0][0])


def _served(names: Sequence[str], versions: Versions | None) -> tuple[str, list[Any]]:
    """The condition on a run's workflow (and version) for a worker executing ``names``, of which
    those in ``versions`` only in the versions listed there (``None``: runs started without one)."""
    versions = versions or {}
    free = [n for n in names if n not in versions]
    parts, params = [], []
    if free:
        parts.append(f"workflow_name IN ({_marks(len(free))})")
        params.extend(free)
    for name in names:
        if name not in versions:
            continue
        labels = sorted(v for v in versions[name] if v is not None)
        either = ([f"version IN ({_marks(len(labels))})"] if labels else []) + (
            ["version IS NULL"] if None in versions[name] else []
        )
        if either:
            parts.append(f"(workflow_name = ? AND ({' OR '.join(either)}))")
            params.extend([name, *labels])
    return ("(" + " OR ".join(parts) + ")" if parts else "0 = 1"), params


def claim_runs(
    db: DB, worker_id: str, names: Sequence[str], now: float, limit: int, versions: Versions | None = None
) -> list[RunRecord]:
    _time_out_runs(db, worker_id, now)
    if not names:
        return []
    _admit_runs(db, names, now)
    served, served_params = _served(names, versions)
    rows = db.execute(
        f"SELECT run_id FROM runs WHERE wake_at <= ? AND status IN ('pending', 'running') "
        f"AND {served} AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE})) "
        f"AND (queue IS NULL OR admitted_at IS NOT NULL) ORDER BY wake_at LIMIT ?{db.skip_locked}",
        (now, *served_params, worker_id, now, limit),
    )
    claimed = []
    for (run_id,) in rows:
        locked = _lock_run(db, run_id)
        if locked is None:
            continue
        _fire_due_waits(db, run_id, locked[1], now)
        db.execute("UPDATE runs SET owner = ? WHERE run_id = ?", (worker_id, run_id))
        record = get_run(db, run_id)
        if record is not None:
            claimed.append(record)
    return claimed


def _time_out_runs(db: DB, worker_id: str, now: float, limit: int = 16) -> None:
    """Cancel unfinished runs past their deadline that nobody alive holds (reason "timeout").

    Any worker does it, whatever workflows it runs: cancelling needs no workflow code. A run a
    live worker holds is timed out by its own next commit instead.
    """
    rows = db.execute(
        f"SELECT run_id FROM runs WHERE deadline <= ? AND status IN ('pending', 'running') "
        f"AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE})) ORDER BY deadline, run_id LIMIT ?",
        (now, worker_id, now, limit),
    )
    for (run_id,) in rows:  # not locked by the query: cancel_run locks a parent before its child
        cancel_run(db, run_id, now, "timeout")


def _fire_due_waits(db: DB, run_id: str, last_seq: int, now: float) -> None:
    due = db.execute(
        "SELECT wait_id FROM waits WHERE run_id = ? AND status = 'waiting' AND resume_at <= ? ORDER BY resume_at, wait_id",
        (run_id, now),
    )
    if not due:
        return
    appender = _Appender(db, run_id, last_seq)
    for (wait_id,) in due:
        appender.add(EventKind.WAIT_COMPLETED, wait_id, now)
    db.executemany(
        "UPDATE waits SET status = 'completed' WHERE run_id = ? AND wait_id = ?", [(run_id, w) for (w,) in due]
    )
    appender.flush()
    db.execute("UPDATE runs SET last_seq = ?, updated_at = ? WHERE run_id = ?", (appender.seq, now, run_id))


def release_run(db: DB, run_id: str, worker_id: str, now: float, retry_at: float | None = None) -> None:
    """Give up a lease; with ``retry_at``, nobody claims the run again before then (a back-off)."""
    if retry_at is None:
        db.execute("UPDATE runs SET owner = NULL WHERE run_id = ? AND owner = ?", (run_id, worker_id))
    else:
        db.execute(
            "UPDATE runs SET owner = NULL, wake_at = CASE WHEN deadline < ? THEN deadline ELSE ? END "
            "WHERE run_id = ? AND owner = ? AND wake_at IS NOT NULL",
            (retry_at, retry_at, run_id, worker_id),
        )
        db.note("work")


def next_wake(
    db: DB, names: Sequence[str], step_names: Sequence[str], now: float, versions: Versions | None = None
) -> float | None:
    times = []
    if names:
        served, served_params = _served(names, versions)
        rows = db.execute(
            f"SELECT MIN(wake_at) FROM runs WHERE wake_at IS NOT NULL AND status IN ('pending', 'running') "
            f"AND {served} AND (owner IS NULL OR owner NOT IN {_ALIVE}) "
            "AND (queue IS NULL OR admitted_at IS NOT NULL)",
            (*served_params, now),
        )
        times.append(rows[0][0])
        times += _queued_run_wakes(db, names, now)
    if step_names:
        rows = db.execute(
            f"SELECT MIN(ready_at) FROM steps WHERE status = 'pending' AND queue IS NULL AND name IN ({_marks(len(step_names))})",
            tuple(step_names),
        )
        times.append(rows[0][0])
        times += _queued_step_wakes(db, step_names, now)
    known = [t for t in times if t is not None]
    return min(known) if known else None


def active_workflows(db: DB) -> dict[str, int]:
    rows = db.execute(
        "SELECT workflow_name, count(*) FROM runs WHERE status IN ('pending', 'running') GROUP BY workflow_name"
    )
    return {r[0]: int(r[1]) for r in rows}


def active_versions(db: DB) -> dict[tuple[str, str | None], int]:
    rows = db.execute(
        "SELECT workflow_name, version, count(*) FROM runs WHERE status IN ('pending', 'running') "
        "GROUP BY workflow_name, version"
    )
    return {(r[0], r[1]): int(r[2]) for r in rows}


def terminal_runs(db: DB, run_ids: Sequence[str]) -> list[str]:
    if not run_ids:
        return []
    rows = db.execute(
        f"SELECT run_id FROM runs WHERE run_id IN ({_marks(len(run_ids))}) AND status IN ('completed', 'failed', 'cancelled')",
        tuple(run_ids),
    )
    return [r[0] for r in rows]


# -- the invocation commit ------------------------------------------------------------------------


def commit(db: DB, inv: Invocation) -> CommitResult:
    if inv.finished is not None:
        done = _commit_inline_result(db, inv, inv.finished)
        if done is not None:
            return done
    ending = inv.status != "suspended"
    if ending:  # its parent gets the delivery: it is locked too (first)
        locked, parent = _lock_ending(db, inv.run_id)
    else:
        locked, parent = _lock_run(db, inv.run_id), None
    if locked is None:
        return CommitResult(False, "no such run")
    status, last_seq, owner, run_started_at, deadline = locked[0], locked[1], locked[2], locked[4], locked[5]
    if status in TERMINAL:
        return CommitResult(False, "run is " + status, run_status=status)
    if inv.holds_lease and owner != inv.worker_id:
        return CommitResult(False, "lease lost", run_status=status)
    if deadline is not None and deadline <= inv.now:
        # Past its deadline: whatever the invocation computed, the run ends here, cancelled.
        _cancel_locked(db, inv.run_id, locked, inv.now, "timeout")
        if not ending and locked[8] is not None:
            parent = _lock_run(db, locked[8])
        _deliver_to_parent(db, inv.run_id, locked, parent, "cancelled", encode({"reason": "timeout"}), inv.now)
        return CommitResult(False, "run timed out", run_status="cancelled")
    # Only events replay reads can invalidate what the instance computed; step_started and
    # step_retrying appended meanwhile (by parallel steps) do not.
    clean = last_seq == inv.known_seq or not db.execute(
        f"SELECT 1 FROM events WHERE run_id = ? AND seq > ? AND kind IN ({_marks(len(_REPLAY_KIND_LIST))}) LIMIT 1",
        (inv.run_id, inv.known_seq, *_REPLAY_KIND_LIST),
    )
    if inv.speculative:
        if not clean:
            return CommitResult(False, "log moved", run_status=status)
        if owner is not None and owner != inv.worker_id and db.execute(
            "SELECT 1 FROM workers WHERE worker_id = ? AND alive_until > ?", (owner, inv.now)
        ):
            return CommitResult(False, "run is leased", run_status=status)
        refusal = _check_speculative(db, inv, status, locked)
        if refusal:  # checked before any write: a refused commit changes nothing
            return CommitResult(False, refusal, run_status=status)
    now = inv.now
    out = _Appender(db, inv.run_id, last_seq)
    inline = locked[_INLINE]  # the run's inline step while this commit runs (None: its slot is free)

    for ev in inv.speculative:  # all checked by _check_speculative above
        if ev.kind == _RUN_STARTED:
            db.execute("UPDATE runs SET status = 'running', started_at = ? WHERE run_id = ?", (ev.created_at, inv.run_id))
            status = "running"
            run_started_at = ev.created_at
            db.note("runs")
        elif ev.kind in (_STEP_COMPLETED, _STEP_FAILED):
            if inline is not None and ev.correlation_id == inline and _inline_accepts(ev.kind, ev.attempt):
                _finish_inline(db, inv.run_id, locked, ev.kind, ev.data, ev.created_at, None)
                inline = None
            elif not _finish_step_row(db, inv.run_id, ev.correlation_id or "", ev.kind, ev.data, ev.created_at, None, ev.attempt):
                # Only a lone speculative event gets here unchecked (see _check_speculative), and
                # its update is the commit's first write: refusing now still changes nothing.
                assert len(inv.speculative) == 1
                return CommitResult(False, "step not running", run_status=status)
        else:
            db.execute(
                "UPDATE waits SET status = 'completed' WHERE run_id = ? AND wait_id = ? AND status = 'waiting'",
                (inv.run_id, ev.correlation_id),
            )
        out.add(ev.kind, ev.correlation_id, ev.created_at, data=ev.data, attempt=ev.attempt)

    commands = _Commands(db, inv, out, workflow_name=locked[3], run_started_at=run_started_at or now,
                         run_scheduled_at=locked[7], inline_free=inline is None)
    for cmd in inv.commands:
        _APPLY[type(cmd)](commands, cmd)
    wake_now = not clean or commands.conflicts
    claimed, conflicts = commands.claimed, commands.conflicts
    new_steps = commands.new_steps

    if new_steps > len(claimed):
        db.note("work")

    if inv.status == "suspended":
        if wake_now:
            wake_at: float | None = now
            db.note("work")
        else:
            # The instance consumed every event and knows its pending timers: no query needed.
            wake_at = _until(inv.next_wake, deadline)
            if wake_at is not None:
                db.note("work")
        out.flush()
        inline_sql, inline_params = _inline_changes(locked, inline, commands.new_inline, inv.worker_id)
        db.execute(
            f"{_SUSPEND}{inline_sql} WHERE run_id = ?",
            (out.seq, wake_at, now, inv.consumed_seq, inv.consumed_seq, *inline_params, inv.run_id),
        )
        run_status = status
    else:
        kind = EventKind.RUN_COMPLETED if inv.status == "completed" else EventKind.RUN_FAILED
        run_status = "completed" if inv.status == "completed" else "failed"
        _finalize(db, out, inv.run_id, None if run_status == "completed" else _error_text(inv.error), now,
                  locked if inline is not None else None)
        out.add(kind, None, now, data=inv.result if inv.status == "completed" else inv.error)
        out.flush()
        db.execute(
            "UPDATE runs SET status = ?, output = ?, error = ?, completed_at = ?, last_seq = ?, owner = NULL, "
            f"wake_at = NULL, updated_at = ?, {_NO_INLINE} WHERE run_id = ?",
            (run_status, inv.result, inv.error, now, out.seq, now, inv.run_id),
        )
        _deliver_to_parent(db, inv.run_id, locked, parent, run_status, inv.result if run_status == "completed" else inv.error, now)
        if locked[6] is not None:
            db.note("work")  # a queued run ended: its queue has room again, for any worker
    return CommitResult(
        True, last_seq=out.seq, clean=clean, claimed=claimed, run_status=run_status, conflicts=conflicts
    )


# A suspending commit's update of its run (last_seq, wake_at, updated_at, consumed_seq twice), then
# its inline step's columns (_SET_INLINE: step, seq, max_attempts) and its WHERE.
_SUSPEND = (
    "UPDATE runs SET last_seq = ?, owner = NULL, wake_at = ?, updated_at = ?, "
    "consumed_seq = CASE WHEN consumed_seq > ? THEN consumed_seq ELSE ? END"
)
_SET_INLINE = ", inline_step = ?, inline_seq = ?, inline_max_attempts = ?"
# The chain commit's update of its run (see _commit_inline_result): checks what commit() would read.
_CHAIN_WHERE = (
    " WHERE run_id = ? AND last_seq = ? AND status = 'running' AND (owner IS NULL OR owner = ?) AND deadline IS NULL "
    "AND inline_step = ? AND inline_owner = ?"
)
_CHAIN_UPDATE_CLAIMING = _SUSPEND + _SET_INLINE + _CHAIN_WHERE  # its successor takes the inline slot
_CHAIN_UPDATE = _SUSPEND + ", " + _NO_INLINE + _CHAIN_WHERE  # nothing claimed: the slot is left free


def _commit_inline_result(db: DB, inv: Invocation, finished: StepClaim) -> CommitResult | None:
    """A chain's step (the hot path): ``inv`` records the result of the run's inline step ``finished``
    and creates steps outside any queue. Instead of reading the run's row first, the commit's one
    update of the run checks what :func:`commit` would read there: the run running, its log where the
    worker left it (``known_seq``), no lease on it but this worker's, no deadline, and this step its
    inline step, on this worker. Its other facts (workflow, start, schedule) are the claim's: a run never
    changes them. That update comes first, so it must say what the rest writes (the run's last seq and
    its next inline step); the rest then is :func:`commit`'s own code.

    None (nothing written) when the run is not as the worker left it, or the invocation is not of
    that shape: :func:`commit` decides then.
    """
    [event] = inv.speculative
    steps = [c for c in inv.commands if isinstance(c, ScheduleStep) and c.queue is None]
    if (inv.status != "suspended" or inv.holds_lease or event.kind != _STEP_COMPLETED
            or event.correlation_id != finished.step_id or len(steps) != len(inv.commands)):
        return None
    claimed = min(inv.claim_steps, len(steps))
    last_seq = inv.known_seq + 1 + len(steps)  # its result, then each step created (a claimed one started with it)
    # The first step claimed takes the inline slot this step frees; its step_created comes right after the result.
    new_inline = (steps[0].correlation_id, inv.known_seq + 2, steps[0].max_attempts) if claimed else None
    sql = _CHAIN_UPDATE_CLAIMING if new_inline is not None else _CHAIN_UPDATE
    params = (last_seq, inv.next_wake, inv.now, inv.consumed_seq, inv.consumed_seq, *(new_inline or ()), inv.run_id,
              inv.known_seq, inv.worker_id, finished.step_id, inv.worker_id)
    if not (db.execute_count(sql, params) if db.counts_rows else db.execute(sql + " RETURNING 1", params)):
        return None
    db.note("stream", inv.run_id)  # as _finish_inline: a stream its attempt closed is final now
    out = _Appender(db, inv.run_id, inv.known_seq)
    out.add(event.kind, event.correlation_id, event.created_at, data=event.data, attempt=event.attempt)
    commands = _Commands(db, inv, out, workflow_name=finished.workflow_name, run_started_at=finished.run_started_at,
                         run_scheduled_at=finished.run_scheduled_at, inline_free=True)
    for step in steps:
        commands.schedule_step(step)
    out.flush()
    assert out.seq == last_seq and commands.new_inline == new_inline, "the run's update must say what was written"
    if commands.new_steps > len(commands.claimed) or inv.next_wake is not None:
        db.note("work")
    return CommitResult(True, last_seq=last_seq, clean=True, claimed=commands.claimed, run_status="running")


def _inline_changes(
    locked: Row, left: str | None, new: tuple[str, int, int] | None, worker_id: str
) -> tuple[str, tuple[Any, ...]]:
    """The SET clause (and its values) that leaves a suspended run's inline step as the commit left it:
    ``left`` is the one it had, if still running; ``new``, (step, seq, max_attempts) of the step this
    commit claimed into the free slot. Nothing if unchanged; the owner only if it changed, so that a
    chain of steps on one worker never touches the owner's index."""
    if new is None:
        if left is not None:
            return "", ()  # unchanged (still running)
        if locked[_INLINE] is None:
            return "", ()  # none before, none now
        return ", " + _NO_INLINE, ()
    if locked[_INLINE + 3] == worker_id:
        return _SET_INLINE, new
    return _SET_INLINE + ", inline_owner = ?", (*new, worker_id)


class _Commands:
    """An invocation's commands applied to its locked run, one method per command kind.

    Each turns its command into the entity row and the creation event, in the same transaction
    as the rest of the commit. ``claimed`` collects the new steps inserted already running on the
    committing worker (the first ``claim_steps`` of them: it saves a pending -> running round
    trip); the first of those takes the run's inline slot if it is free (``new_inline``: it gets no
    steps row until it finishes). ``conflicts`` says a hook token was taken, which the instance must be shown.
    """

    def __init__(
        self, db: DB, inv: Invocation, out: _Appender, *, workflow_name: str, run_started_at: float,
        run_scheduled_at: float | None = None, inline_free: bool = False,
    ) -> None:
        self.db = db
        self.inline_free = inline_free
        self.new_inline: tuple[str, int, int] | None = None
        self.run_scheduled_at = run_scheduled_at
        self.inv = inv
        self.out = out
        self.now = inv.now
        self.workflow_name = workflow_name
        self.run_started_at = run_started_at
        self.claim_left = inv.claim_steps if inv.status == "suspended" else 0
        self.new_steps = 0
        self.claimed: list[StepClaim] = []
        self.conflicts = False

    def schedule_step(self, cmd: ScheduleStep) -> None:
        inv, now, corr = self.inv, self.now, cmd.correlation_id
        self.new_steps += 1
        claim = cmd.queue is None and self.claim_left > 0
        # A step claimed here starts its first attempt now: its step_created says so (attempt 1), and
        # no step_started follows it (schema 9).
        created = self.out.add(_STEP_CREATED, corr, now, name=cmd.name, data=cmd.input, attempt=1 if claim else None,
                               max_attempts=cmd.max_attempts)
        if cmd.queue is not None:  # admitted by claim_steps, under its queue's limits
            self.db.execute(
                "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, created_at, ready_at, queue) "
                "VALUES (?,?,?,'pending',0,?,?,?,?,?)",
                (inv.run_id, corr, cmd.name, cmd.max_attempts, cmd.input, now, now, cmd.queue.name),
            )
            _ensure_queue(self.db, cmd.queue, now)
        elif claim:
            self.claim_left -= 1
            inline = self.inline_free
            if inline:
                self.inline_free = False
                self.new_inline = (corr, created, cmd.max_attempts)
            else:
                self.db.execute(
                    "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, created_at, "
                    "started_at, attempt_started_at, owner) VALUES (?,?,?,'running',1,?,?,?,?,?,?)",
                    (inv.run_id, corr, cmd.name, cmd.max_attempts, cmd.input, now, now, now, inv.worker_id),
                )
            self.claimed.append(StepClaim(
                inv.run_id, corr, cmd.name, cmd.input, 1, cmd.max_attempts, now, self.workflow_name, self.run_started_at,
                self.run_scheduled_at, inline,
            ))
        else:
            self.db.execute(
                "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, created_at, ready_at) "
                "VALUES (?,?,?,'pending',0,?,?,?,?)",
                (inv.run_id, corr, cmd.name, cmd.max_attempts, cmd.input, now, now),
            )

    def create_hook(self, cmd: CreateHook) -> None:
        created = self.db.execute(
            "INSERT INTO hooks (run_id, hook_id, token, status, metadata, created_at) VALUES (?,?,?,'active',?,?) "
            "ON CONFLICT DO NOTHING RETURNING hook_id",
            (self.inv.run_id, cmd.correlation_id, cmd.token, cmd.metadata, self.now),
        )
        kind = EventKind.HOOK_CREATED if created else EventKind.HOOK_CONFLICT
        self.out.add(kind, cmd.correlation_id, self.now, name=cmd.token, data=cmd.metadata)
        self.conflicts = self.conflicts or not created
        if created:
            self.db.note("hooks")  # resume_hook(..., wait=...) waits for a token to appear

    def start_wait(self, cmd: StartWait) -> None:
        self.db.execute(
            "INSERT INTO waits (run_id, wait_id, resume_at, status) VALUES (?,?,?,'waiting')",
            (self.inv.run_id, cmd.correlation_id, cmd.resume_at),
        )
        self.out.add(EventKind.WAIT_CREATED, cmd.correlation_id, self.now, data=encode(cmd.resume_at))

    def cancel_wait(self, cmd: CancelWait) -> None:
        self.db.execute(
            "UPDATE waits SET status = 'cancelled' WHERE run_id = ? AND wait_id = ? AND status = 'waiting'",
            (self.inv.run_id, cmd.correlation_id),
        )
        self.out.add(EventKind.WAIT_CANCELLED, cmd.correlation_id, self.now)

    def dispose_hook(self, cmd: DisposeHook) -> None:
        self.db.execute(
            "UPDATE hooks SET status = 'disposed' WHERE run_id = ? AND hook_id = ? AND status = 'active'",
            (self.inv.run_id, cmd.correlation_id),
        )
        self.out.add(EventKind.HOOK_DISPOSED, cmd.correlation_id, self.now)

    def write_chunk(self, cmd: WriteChunk) -> None:
        # Refused on a closed stream: the whole commit is rolled back, and what becomes of the run
        # is the runtime's call (it fails it), not the store's.
        _append_chunks(self.db, self.inv.run_id, cmd.namespace, [cmd.data], None, None, self.now, close=False, strict=True)
        self.out.add(EventKind.STREAM_WRITTEN, cmd.correlation_id, self.now, name=cmd.namespace, data=cmd.digest)

    def close_stream(self, cmd: CloseStream) -> None:
        _close_stream(self.db, self.inv.run_id, cmd.namespace, None)
        self.out.add(EventKind.STREAM_CLOSED, cmd.correlation_id, self.now, name=cmd.namespace)

    def start_child(self, cmd: StartChild) -> None:
        db, now, corr = self.db, self.now, cmd.correlation_id
        created = db.execute(
            "INSERT INTO runs (run_id, workflow_name, status, input, seed, created_at, updated_at, last_seq, wake_at, "
            "parent_run_id, parent_corr, on_parent_close, deadline, queue, priority) VALUES (?,?,'pending',?,?,?,?,1,?,?,?,?,?,?,?) "
            "ON CONFLICT DO NOTHING RETURNING run_id",
            (cmd.run_id, cmd.workflow_name, cmd.input, cmd.seed, now, now, now, self.inv.run_id, corr, cmd.on_parent_close,
             None if cmd.timeout is None else now + cmd.timeout, None if cmd.queue is None else cmd.queue.name,
             None if cmd.queue is None else (cmd.queue.priority_levels + 1) // 2),
        )
        if created and cmd.queue is not None:
            _ensure_queue(db, cmd.queue, now)
        self.out.add(EventKind.CHILD_STARTED, corr, now, name=cmd.workflow_name, data=cmd.input)
        if created:
            db.execute(
                "INSERT INTO events (run_id, seq, kind, corr_id, name, data, attempt, created_at) VALUES (?,1,?,NULL,?,?,NULL,?)",
                (cmd.run_id, EventKind.RUN_CREATED.value, cmd.workflow_name, cmd.input, now),
            )
            db.note("work")
            db.note("runs")
            db.note("run", cmd.run_id)
            return
        # An explicit run id that names another run: the child fails at once, and the parent sees it.
        existing = db.execute("SELECT workflow_name FROM runs WHERE run_id = ?", (cmd.run_id,))
        other = existing[0][0] if existing else cmd.workflow_name
        error = RunConflict(cmd.run_id, "run_id", cmd.run_id, other, cmd.workflow_name, other_arguments=other == cmd.workflow_name)
        self.out.add(EventKind.CHILD_FAILED, corr, now, name=cmd.run_id, data=encode_error(error))
        self.conflicts = True

    def set_value(self, cmd: SetValue) -> None:
        seq = self.out.add(EventKind.VALUE_SET, cmd.correlation_id, self.now, name=cmd.key, data=cmd.data)
        self.db.execute(
            "INSERT INTO run_values (run_id, key, data, seq, updated_at) VALUES (?,?,?,?,?) ON CONFLICT (run_id, key) "
            "DO UPDATE SET data = excluded.data, seq = excluded.seq, updated_at = excluded.updated_at",
            (self.inv.run_id, cmd.key, cmd.data, seq, self.now),
        )
        self.db.note("value", self.inv.run_id)

    def cancel_child(self, cmd: CancelChild) -> None:
        rows = self.db.execute(
            "SELECT run_id FROM runs WHERE parent_run_id = ? AND parent_corr = ?", (self.inv.run_id, cmd.correlation_id)
        )
        if not rows:
            return
        locked = _lock_run(self.db, rows[0][0])
        if locked is None or locked[0] in TERMINAL:
            return  # it ended first: its end is already in this run's log
        _cancel_locked(self.db, rows[0][0], locked, self.now, None)
        self.out.add(EventKind.CHILD_CANCELLED, cmd.correlation_id, self.now, name=rows[0][0])
        self.conflicts = True  # a delivery the instance has not seen
    def mark_patch(self, cmd: MarkPatch) -> None:
        # Only the event: a marker is something replay checks, not something to run or wait for.
        self.out.add(EventKind.PATCH_MARKED, cmd.correlation_id, self.now, name=cmd.patch_id)


_APPLY: dict[type, Callable[[_Commands, Any], None]] = {
    ScheduleStep: _Commands.schedule_step,
    CreateHook: _Commands.create_hook,
    StartWait: _Commands.start_wait,
    CancelWait: _Commands.cancel_wait,
    DisposeHook: _Commands.dispose_hook,
    WriteChunk: _Commands.write_chunk,
    CloseStream: _Commands.close_stream,
    StartChild: _Commands.start_child,
    CancelChild: _Commands.cancel_child,
    SetValue: _Commands.set_value,
    MarkPatch: _Commands.mark_patch,
}


def _check_speculative(db: DB, inv: Invocation, status: str, locked: Row) -> str:
    """Why the speculative events cannot be appended now ("" if they can), read-only.

    Each event is checked against the state the ones before it leave (two run_started, or two
    results for one step, in one list are refused too).
    """
    speculative = inv.speculative
    if len(speculative) == 1 and speculative[0].kind in (_STEP_COMPLETED, _STEP_FAILED):
        return ""  # a finished step, alone (the hot path): the commit's first write, a conditional update, checks it
    seen: set[tuple[str, str | None]] = set()
    for ev in speculative:
        key = (str(ev.kind), ev.correlation_id)
        if key in seen:
            return f"{ev.kind} twice"
        seen.add(key)
        if ev.kind == EventKind.RUN_STARTED:
            if status != "pending":
                return "run already started"
        elif ev.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
            if (EventKind.STEP_COMPLETED.value, ev.correlation_id) in seen and (EventKind.STEP_FAILED.value, ev.correlation_id) in seen:
                return "step finished twice"
            if len(inv.speculative) == 1:
                continue  # the commit's first write, a conditional update, checks it (one query less per step)
            if _is_inline(locked, ev.correlation_id):
                if not _inline_accepts(ev.kind, ev.attempt):
                    return "step not running"
            elif not _step_accepts(db, inv.run_id, ev.correlation_id or "", ev.kind, ev.attempt):
                return "step not running"
        elif ev.kind == EventKind.WAIT_COMPLETED:
            if not db.execute(
                "SELECT 1 FROM waits WHERE run_id = ? AND wait_id = ? AND status = 'waiting'", (inv.run_id, ev.correlation_id)
            ):
                return "wait not pending"
        else:
            raise ValueError(f"cannot commit a speculative {ev.kind} event")
    return ""


# What a stream of a failed run says when the run's error is encrypted: the streams table keeps
# plain text, so it must not hold the message; the encrypting store wrapper puts it back on reads.
ENCRYPTED_ERROR_TEXT = "failed (its error is encrypted)"


def _error_text(error: bytes | None) -> str:
    if not error:
        return "failed"
    if error[:4] == ENCRYPTED_TAG:
        return ENCRYPTED_ERROR_TEXT
    info = decode_error(error)
    return f"{info.type}: {info.message}"


def _finalize(db: DB, out: _Appender, run_id: str, stream_error: str | None, now: float, inline: Row | None) -> None:
    """A run is ending: free its hook tokens, cancel its waits and pending steps, close its streams,
    cancel its unfinished children (those started with ``on_parent_close="cancel"``), and give its
    inline step, if one is still running (``inline``: the run's locked row), its steps row: the
    caller's update of the run clears its inline columns.

    Each hook disposed, wait cancelled and stream closed here is an event too (before the run's
    terminal event, which stays the last), in a fixed order: hooks, then waits, by position; then
    streams, by namespace. They carry no command position: replay skips them.
    """
    # One query finds all five kinds (most runs end with none of them), each with its own order:
    # (kind, id, length(id) or 0, token, created_at) sorted by kind, created_at, length, id.
    # Only the kinds found are updated. The run's lock keeps them as read until the commit:
    # every writer of its hooks, waits, steps and children locks the run (or, for a child's
    # status, its parent) first.
    # The children come first in the text: PostgreSQL types a UNION's columns pair by pair from
    # the left, and two NULLs first would make created_at's column text.
    found = db.execute(
        "SELECT 4, run_id, length(run_id), NULL, created_at FROM runs WHERE parent_run_id = ? "
        "AND on_parent_close = 'cancel' AND status IN ('pending', 'running') "
        "UNION ALL SELECT 0, hook_id, length(hook_id), token, NULL FROM hooks WHERE run_id = ? AND status = 'active' "
        "UNION ALL SELECT 1, wait_id, length(wait_id), NULL, NULL FROM waits WHERE run_id = ? AND status = 'waiting' "
        "UNION ALL SELECT 2, namespace, 0, NULL, NULL FROM streams WHERE run_id = ? AND closed = 0 "
        "UNION ALL SELECT 3, NULL, 0, NULL, NULL WHERE EXISTS "
        "(SELECT 1 FROM steps WHERE run_id = ? AND status = 'pending') "
        "ORDER BY 1, 5, 3, 2",
        (run_id, run_id, run_id, run_id, run_id),
    )
    if inline is not None:
        _write_inline_row(db, run_id, inline, _STEP_STARTED, None, now, None)
    kinds = {row[0] for row in found}
    for kind, corr, _, token, _ in found:
        if kind == 0:
            out.add(EventKind.HOOK_DISPOSED, corr, now, name=token)
        elif kind == 1:
            out.add(EventKind.WAIT_CANCELLED, corr, now)
        elif kind == 2:
            out.add(EventKind.STREAM_CLOSED, None, now, name=corr)
    if 0 in kinds:
        db.execute("UPDATE hooks SET status = 'disposed' WHERE run_id = ? AND status = 'active'", (run_id,))
    if 1 in kinds:
        db.execute("UPDATE waits SET status = 'cancelled' WHERE run_id = ? AND status = 'waiting'", (run_id,))
    if 3 in kinds:
        db.execute("UPDATE steps SET status = 'cancelled', owner = NULL WHERE run_id = ? AND status = 'pending'", (run_id,))
    if 2 in kinds:
        db.execute("UPDATE streams SET closed = 1, error = ? WHERE run_id = ? AND closed = 0", (stream_error, run_id))
    # Its unfinished children whose policy says so are cancelled (and theirs, recursively).
    for kind, child, *_ in found:
        if kind == 4:
            locked = _lock_run(db, child)
            if locked is not None and locked[0] not in TERMINAL:
                _cancel_locked(db, child, locked, now, "parent closed")
    db.note("stream", run_id)  # also wakes readers of streams never written, which end with the run
    db.note("runs")
    db.note("run", run_id)
    db.note("run-end", run_id)


def cancel_run(db: DB, run_id: str, now: float, reason: str | None = None) -> RunRecord | None:
    locked, parent = _lock_ending(db, run_id)
    if locked is None:
        return None
    if locked[0] not in TERMINAL:
        _cancel_locked(db, run_id, locked, now, reason)
        _deliver_to_parent(db, run_id, locked, parent, "cancelled", encode({"reason": reason}) if reason else None, now)
    return get_run(db, run_id)


def _cancel_locked(db: DB, run_id: str, locked: Row, now: float, reason: str | None) -> None:
    """End a locked, unfinished run as cancelled (``reason`` in its run_cancelled event and its row);
    ``locked`` is its row as _lock_run read it."""
    db.note("work")  # (if it was queued, its queue has room again)
    out = _Appender(db, run_id, locked[1])
    _finalize(db, out, run_id, "run cancelled", now, locked if locked[_INLINE] is not None else None)
    out.add(EventKind.RUN_CANCELLED, None, now, data=encode({"reason": reason}) if reason else None)
    out.flush()
    db.execute(
        "UPDATE runs SET status = 'cancelled', cancel_reason = ?, completed_at = ?, last_seq = ?, owner = NULL, "
        f"wake_at = NULL, updated_at = ?, {_NO_INLINE} WHERE run_id = ?",
        (reason, now, out.seq, now, run_id),
    )


# -- child runs -----------------------------------------------------------------------------------
#
# Lock order: a parent before its child, everywhere (a run ending locks its parent first; a
# parent ending or cancelling a child locks it after itself), so PostgreSQL never deadlocks here.

_CHILD_END = {
    "completed": EventKind.CHILD_COMPLETED.value, "failed": EventKind.CHILD_FAILED.value,
    "cancelled": EventKind.CHILD_CANCELLED.value,
}


def _deliver_to_parent(db: DB, run_id: str, run: Row, parent: Row | None, status: str, data: bytes | None, now: float) -> None:
    """A child run ended: append its end to its parent's log (if the parent still runs) and wake the parent.

    ``run`` and ``parent`` are the child's and its parent's rows as :func:`_lock_run` read them,
    both locked (``parent`` None: the run has no parent, or its parent is gone).
    """
    if parent is None or parent[0] in TERMINAL:
        return  # (or an abandoned child outlived its parent: nobody waits for it)
    parent_id, corr = run[8], run[9]
    out = _Appender(db, parent_id, parent[1])
    out.add(_CHILD_END[status], corr, now, name=run_id, data=data)
    out.flush()
    db.execute("UPDATE runs SET last_seq = ?, wake_at = ?, updated_at = ? WHERE run_id = ?", (out.seq, now, now, parent_id))
    db.note("work")


def list_children(db: DB, run_id: str) -> list[RunRecord]:
    rows = db.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE parent_run_id = ? ORDER BY created_at, length(run_id), run_id", (run_id,)
    )
    return [_run(r) for r in rows]


# -- schedules ------------------------------------------------------------------------------------

_SCHEDULE_COLUMNS = "name, workflow_name, spec, options, paused, next_at, buffered_at, skipped, last_tick, last_run_id, updated_at"


def _schedule(r: Row) -> ScheduleRecord:
    return ScheduleRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], int(r[7]), r[8], r[9], r[10])


def define_schedules(db: DB, defs: Sequence[ScheduleDef], now: float) -> None:
    for d in defs:
        rows = db.execute(f"SELECT spec FROM schedules WHERE name = ?{db.for_update}", (d.name,))
        if not rows:
            db.execute(
                "INSERT INTO schedules (name, workflow_name, input, spec, options, paused, next_at, skipped, updated_at) "
                "VALUES (?,?,?,?,?,0,?,0,?) ON CONFLICT (name) DO NOTHING",
                (d.name, d.workflow_name, d.input, d.spec, d.options, d.first_at, now),
            )
        elif rows[0][0] != d.spec:  # other ticks (or another workflow, other arguments): start afresh from now
            db.execute(
                "UPDATE schedules SET workflow_name = ?, input = ?, spec = ?, options = ?, next_at = ?, buffered_at = NULL, "
                "updated_at = ? WHERE name = ?",
                (d.workflow_name, d.input, d.spec, d.options, d.first_at, now, d.name),
            )
        else:
            db.execute("UPDATE schedules SET options = ?, updated_at = ? WHERE name = ?", (d.options, now, d.name))
    if defs:
        db.note("schedules")


def list_schedules(db: DB, names: Sequence[str] | None) -> list[ScheduleRecord]:
    if names is None:
        rows = db.execute(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules ORDER BY name")
    elif names:
        rows = db.execute(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE name IN ({_marks(len(names))}) ORDER BY name", tuple(names)
        )
    else:
        rows = []
    return [_schedule(r) for r in rows]


def _start_scheduled(db: DB, name: str, workflow_name: str, data: bytes, tick: float, run_id: str, wake_at: float,
                     now: float) -> bool:
    """Create the run of one tick (a run that already exists -- the same tick -- is left as it is)."""
    seed = hashlib.blake2b(run_id.encode(), digest_size=16).hexdigest()  # the same whoever creates the tick's run
    created = db.execute(
        "INSERT INTO runs (run_id, workflow_name, status, input, seed, created_at, updated_at, last_seq, wake_at, "
        "schedule, scheduled_at) VALUES (?,?,'pending',?,?,?,?,1,?,?,?) ON CONFLICT DO NOTHING RETURNING run_id",
        (run_id, workflow_name, data, seed, now, now, max(now, wake_at), name, tick),
    )
    if created:
        db.execute(
            "INSERT INTO events (run_id, seq, kind, corr_id, name, data, attempt, created_at) VALUES (?,1,?,NULL,?,?,NULL,?)",
            (run_id, EventKind.RUN_CREATED.value, workflow_name, data, now),
        )
        db.note("work")
        db.note("runs")
    return bool(created)


def fire_schedule(
    db: DB, name: str, expected_next_at: float, ticks: Sequence[TickRun], skipped: int, next_at: float, now: float
) -> list[str]:
    rows = db.execute(
        f"SELECT next_at, buffered_at, paused, workflow_name, input, options FROM schedules WHERE name = ?{db.for_update}",
        (name,),
    )
    if not rows or rows[0][0] != expected_next_at:
        return []  # deleted, or another runtime processed these ticks first
    _, buffered, paused, workflow_name, data, options = rows[0]
    overlap = json.loads(options).get("overlap", "skip")
    live = bool(db.execute(
        "SELECT 1 FROM runs WHERE schedule = ? AND status IN ('pending', 'running') LIMIT 1", (name,)
    ))
    started: list[str] = []
    new_buffer = None
    last_tick = None
    for t in ([] if paused else ticks):
        if overlap == "allow_all" or not live:
            if _start_scheduled(db, name, workflow_name, bytes(data), t.tick, t.run_id, t.wake_at, now):
                started.append(t.run_id)
            live = True
        elif overlap == "buffer_one" and new_buffer is None:
            new_buffer = t.tick
        else:
            skipped += 1
        last_tick = t.tick
    if buffered is not None and new_buffer is None and (paused or buffered not in [t.tick for t in ticks]):
        new_buffer = buffered  # still waiting for the run before it
    db.execute(
        "UPDATE schedules SET next_at = ?, buffered_at = ?, skipped = skipped + ?, last_tick = COALESCE(?, last_tick), "
        "last_run_id = COALESCE(?, last_run_id), updated_at = ? WHERE name = ?",
        (next_at, new_buffer, 0 if paused else skipped, last_tick, started[-1] if started else None, now, name),
    )
    return started


def set_schedule_paused(db: DB, name: str, paused: bool, now: float) -> bool:
    done = db.execute(
        "UPDATE schedules SET paused = ?, updated_at = ? WHERE name = ? RETURNING name", (1 if paused else 0, now, name)
    )
    db.note("schedules")
    return bool(done)


def delete_schedule(db: DB, name: str) -> bool:
    return bool(db.execute("DELETE FROM schedules WHERE name = ? RETURNING name", (name,)))


def trigger_schedule(db: DB, name: str, run_id: str, now: float) -> str | None:
    rows = db.execute("SELECT workflow_name, input FROM schedules WHERE name = ?", (name,))
    if not rows:
        return None
    _start_scheduled(db, name, rows[0][0], bytes(rows[0][1]), now, run_id, now, now)
    db.execute("UPDATE schedules SET last_run_id = ?, updated_at = ? WHERE name = ?", (run_id, now, name))
    return run_id


# -- queues ---------------------------------------------------------------------------------------
#
# A queue's "active" entries are its admitted, unfinished runs plus its running steps. Every
# admission happens under the queue's row lock (FOR UPDATE SKIP LOCKED on PostgreSQL: a worker
# finding another admitting for that queue leaves it to that worker), and entries only leave
# without it, so the counts read under the lock bound what the queue may admit.

_NO_LIMIT = 1 << 30


def define_queues(db: DB, specs: Sequence[QueueSpec], now: float) -> None:
    """Write queue definitions (a runtime's, at open): the limits every worker then enforces."""
    for spec in specs:
        db.execute(
            "INSERT INTO queues (name, concurrency, per_key, rate_count, rate_period, priority_levels, updated_at) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, "
            "per_key = excluded.per_key, rate_count = excluded.rate_count, rate_period = excluded.rate_period, "
            "priority_levels = excluded.priority_levels, updated_at = excluded.updated_at",
            (spec.name, spec.concurrency, spec.per_key_concurrency, spec.rate_count, spec.rate_period,
             spec.priority_levels, now),
        )
    if specs:
        db.note("work")  # limits may have grown


def _ensure_queue(db: DB, spec: QueueSpec, now: float) -> None:
    """A start names a queue the store may not know yet: keep its definition unless one is there."""
    db.execute(
        "INSERT INTO queues (name, concurrency, per_key, rate_count, rate_period, priority_levels, updated_at) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT (name) DO NOTHING",
        (spec.name, spec.concurrency, spec.per_key_concurrency, spec.rate_count, spec.rate_period, spec.priority_levels, now),
    )


def _active(db: DB, queue: str) -> int:
    runs = db.execute(
        "SELECT count(*) FROM runs WHERE queue = ? AND admitted_at IS NOT NULL AND status IN ('pending', 'running')", (queue,)
    )
    steps = db.execute("SELECT count(*) FROM steps WHERE queue = ? AND status = 'running'", (queue,))
    return int(runs[0][0]) + int(steps[0][0])


def _window(db: DB, queue: str, period: float, now: float) -> tuple[int, float | None]:
    """Admissions within the last ``period`` seconds, and the oldest of them."""
    rows = db.execute(
        "SELECT count(*), MIN(admitted_at) FROM queue_admissions WHERE queue = ? AND admitted_at > ?", (queue, now - period)
    )
    return int(rows[0][0]), rows[0][1]


def _room(db: DB, queue: str, now: float, *, lock: bool) -> tuple[int, Row] | None:
    """How many entries ``queue`` may admit now, and its limits; None if it is unknown (or, with
    ``lock``, another worker is admitting for it right now)."""
    limits = db.execute(
        f"SELECT concurrency, per_key, rate_count, rate_period FROM queues WHERE name = ?{db.skip_locked if lock else ''}",
        (queue,),
    )
    if not limits:
        return None
    concurrency, _, rate_count, rate_period = limits[0]
    room = _NO_LIMIT if concurrency is None else concurrency - _active(db, queue)
    if rate_count is not None and room > 0:
        room = min(room, rate_count - _window(db, queue, rate_period, now)[0])
    return max(0, room), limits[0]


def _record_admissions(db: DB, queue: str, limits: Row, entries: Sequence[str], now: float) -> None:
    """Count admissions in the rate window (only for a rate-limited queue), forgetting those out of it."""
    rate_period = limits[3]
    if rate_period is None or not entries:
        return
    db.execute("DELETE FROM queue_admissions WHERE queue = ? AND admitted_at <= ?", (queue, now - rate_period))
    db.executemany(
        "INSERT INTO queue_admissions (queue, admitted_at, entry) VALUES (?,?,?)", [(queue, now, e) for e in entries]
    )


def _key_counts(db: DB, queue: str, keys: Sequence[str]) -> dict[str, int]:
    if not keys:
        return {}
    rows = db.execute(
        f"SELECT queue_key, count(*) FROM runs WHERE queue = ? AND queue_key IN ({_marks(len(keys))}) "
        "AND admitted_at IS NOT NULL AND status IN ('pending', 'running') GROUP BY queue_key",
        (queue, *keys),
    )
    return {r[0]: int(r[1]) for r in rows}


def _admit_runs(db: DB, names: Sequence[str], now: float) -> None:
    """Admit the waiting queued runs of these workflows that their queues have room for (by priority, then age)."""
    marks = _marks(len(names))
    queues = db.execute(
        f"SELECT DISTINCT queue FROM runs WHERE queue IS NOT NULL AND admitted_at IS NULL AND status = 'pending' "
        f"AND wake_at <= ? AND workflow_name IN ({marks})",
        (now, *names),
    )
    for queue in sorted(q for (q,) in queues):
        found = _room(db, queue, now, lock=True)
        if found is None or found[0] <= 0:
            continue
        room, limits = found
        per_key = limits[1]
        scan = room if per_key is None else min(room * 4 + 16, 256)  # some candidates may wait for their key
        rows = db.execute(
            f"SELECT run_id, queue_key FROM runs WHERE queue = ? AND admitted_at IS NULL AND status = 'pending' "
            f"AND wake_at <= ? AND workflow_name IN ({marks}) ORDER BY priority, created_at, run_id LIMIT ?",
            (queue, now, *names, min(scan, _NO_LIMIT)),
        )
        counts = _key_counts(db, queue, sorted({k for _, k in rows if k is not None})) if per_key is not None else {}
        admitted: list[str] = []
        for run_id, key in rows:
            if len(admitted) >= room:
                break
            if per_key is not None and key is not None:
                if counts.get(key, 0) >= per_key:
                    continue
                counts[key] = counts.get(key, 0) + 1
            admitted.append(run_id)
        if admitted:
            db.execute(f"UPDATE runs SET admitted_at = ? WHERE run_id IN ({_marks(len(admitted))})", (now, *admitted))
            _record_admissions(db, queue, limits, admitted, now)


def _queued_step_candidates(
    db: DB, names: Sequence[str], now: float, limit: int
) -> tuple[list[Row], dict[str, tuple[int, Row]]]:
    """Due queued steps to try claiming, and each queue's room (its row locked until the claim commits)."""
    marks = _marks(len(names))
    queues = db.execute(
        f"SELECT DISTINCT queue FROM steps WHERE queue IS NOT NULL AND status = 'pending' AND ready_at <= ? AND name IN ({marks})",
        (now, *names),
    )
    candidates: list[Row] = []
    room: dict[str, tuple[int, Row]] = {}
    for queue in sorted(q for (q,) in queues):
        if len(candidates) >= limit:
            break
        found = _room(db, queue, now, lock=True)
        if found is None or found[0] <= 0:
            continue
        room[queue] = found
        rows = db.execute(
            f"SELECT run_id, step_id FROM steps WHERE queue = ? AND status = 'pending' AND ready_at <= ? AND name IN ({marks}) "
            "ORDER BY ready_at LIMIT ?",
            (queue, now, *names, min(found[0], limit - len(candidates))),
        )
        candidates += [(r, s, queue) for r, s in rows]
    return candidates, room


def _queue_wake(db: DB, queue: str, due: float | None, now: float, admissible: bool) -> float | None:
    """When waiting work of ``queue`` (earliest due at ``due``) can be admitted: at once if it has room,
    when its rate window frees a place, or None (woken when an entry ends) if it is full."""
    if due is None:
        return None
    found = _room(db, queue, now, lock=False)
    if found is None:
        return None
    room, (concurrency, _, rate_count, rate_period) = found
    if room > 0:
        return due if admissible else None
    if concurrency is not None and _active(db, queue) >= concurrency:
        return None
    if rate_count is not None:
        _, oldest = _window(db, queue, rate_period, now)
        return float(max(due, (oldest or now) + rate_period))
    return None


def _queued_run_wakes(db: DB, names: Sequence[str], now: float) -> list[float | None]:
    marks = _marks(len(names))
    rows = db.execute(
        f"SELECT queue, MIN(wake_at) FROM runs WHERE queue IS NOT NULL AND admitted_at IS NULL AND status = 'pending' "
        f"AND wake_at IS NOT NULL AND workflow_name IN ({marks}) GROUP BY queue",
        tuple(names),
    )
    out = []
    for queue, due in rows:
        # With a per-key limit, room in the queue may still admit none of them: look for one whose key has room.
        per_key = db.execute("SELECT per_key FROM queues WHERE name = ?", (queue,))
        admissible = True
        if per_key and per_key[0][0] is not None:
            admissible = bool(db.execute(
                f"SELECT 1 FROM runs r WHERE r.queue = ? AND r.admitted_at IS NULL AND r.status = 'pending' "
                f"AND r.workflow_name IN ({marks}) AND (r.queue_key IS NULL OR (SELECT count(*) FROM runs a "
                "WHERE a.queue = r.queue AND a.queue_key = r.queue_key AND a.admitted_at IS NOT NULL "
                "AND a.status IN ('pending', 'running')) < ?) LIMIT 1",
                (queue, *names, per_key[0][0]),
            ))
        out.append(_queue_wake(db, queue, due, now, admissible))
    return out


def _queued_step_wakes(db: DB, names: Sequence[str], now: float) -> list[float | None]:
    rows = db.execute(
        f"SELECT queue, MIN(ready_at) FROM steps WHERE queue IS NOT NULL AND status = 'pending' "
        f"AND name IN ({_marks(len(names))}) GROUP BY queue",
        tuple(names),
    )
    return [_queue_wake(db, queue, due, now, True) for queue, due in rows]


def queue_states(db: DB, names: Sequence[str] | None, now: float) -> list[QueueState]:
    """Each queue's occupancy, waiting work and rate window (every queue the store knows, or these)."""
    if names is None:
        rows = db.execute("SELECT name, concurrency, rate_count, rate_period FROM queues ORDER BY name")
    elif names:
        rows = db.execute(
            f"SELECT name, concurrency, rate_count, rate_period FROM queues WHERE name IN ({_marks(len(names))}) ORDER BY name",
            tuple(names),
        )
    else:
        rows = []
    states = []
    for name, concurrency, rate_count, rate_period in rows:
        waiting = int(db.execute(
            "SELECT count(*) FROM runs WHERE queue = ? AND admitted_at IS NULL AND status = 'pending'", (name,)
        )[0][0]) + int(db.execute("SELECT count(*) FROM steps WHERE queue = ? AND status = 'pending'", (name,))[0][0])
        used, oldest = (0, None) if rate_count is None else _window(db, name, rate_period, now)
        next_at = (oldest or now) + rate_period if rate_count is not None and used >= rate_count else None
        states.append(QueueState(name, concurrency, _active(db, name), waiting, rate_count, rate_period, used, next_at))
    return states
# -- forks ----------------------------------------------------------------------------------------

_UNFINISHED_STEP_HISTORY = (EventKind.STEP_STARTED.value, EventKind.STEP_RETRYING.value)


def fork_run(db: DB, fork: ForkRun) -> RunRecord:
    """A new run whose history is the source's before ``fork.before_seq``: the events (renumbered,
    without the attempts of steps that had not finished there), and what they hold -- finished
    steps with their results, steps still running then as pending (they run again), hooks with
    their tokens, waits with their deadlines, and the stream chunks written by then."""
    source = get_run(db, fork.source_id)
    if source is None:
        raise RunNotFound(fork.source_id)
    if not 3 <= fork.before_seq <= source.last_seq + 1:
        raise ForkError(fork.source_id, f"its history has no event {fork.before_seq} to fork before")
    events = load_events(db, fork.source_id, 0, False)[: fork.before_seq - 1]
    finished = {e.correlation_id: e for e in events if e.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED)}
    kept = [
        # a step the fork runs again was not started yet there, even if its step_created started it
        e._replace(attempt=None) if e.kind == EventKind.STEP_CREATED and e.attempt and e.correlation_id not in finished
        else e
        for e in events if not (e.kind in _UNFINISHED_STEP_HISTORY and e.correlation_id not in finished)
    ]
    started = next((e.created_at for e in kept if e.kind == EventKind.RUN_STARTED), None)
    run_id, now = fork.run_id, fork.now
    # What the source's committed invocations had consumed of that history was executed once
    # already: the fork's replay re-lives it (durable.logger stays quiet there).
    consumed = sum(1 for e in kept if e.seq <= source.consumed_seq)
    db.execute(
        "INSERT INTO runs (run_id, workflow_name, status, input, seed, created_at, updated_at, started_at, last_seq, "
        "wake_at, version, forked_from, forked_step, consumed_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, source.workflow_name, "pending" if started is None else "running", fork.input or source.input,
         source.seed, now, now, started, len(kept), now, fork.version, fork.source_id, fork.forked_step, consumed),
    )
    db.executemany(
        "INSERT INTO events (run_id, seq, kind, corr_id, name, data, attempt, created_at) VALUES (?,?,?,?,?,?,?,?)",
        [
            (run_id, seq, e.kind, e.correlation_id, e.name,
             fork.input if e.kind == EventKind.RUN_CREATED and fork.input is not None else e.data, e.attempt, e.created_at)
            for seq, e in enumerate(kept, 1)
        ],
    )
    _fork_steps(db, fork, kept, finished)
    _fork_hooks_and_waits(db, fork, kept)
    _fork_streams(db, fork, kept, finished)
    db.note("work")
    db.note("runs")
    db.note("run", run_id)
    record = get_run(db, run_id)
    assert record is not None
    return record


def _fork_steps(db: DB, fork: ForkRun, kept: list[Event], finished: dict[str | None, Event]) -> None:
    limits: dict[str, int] = {
        r[0]: r[1] for r in db.execute(
            "SELECT step_id, max_attempts FROM steps WHERE run_id = ? "
            "UNION ALL SELECT inline_step, inline_max_attempts FROM runs WHERE run_id = ? AND inline_step IS NOT NULL "
            "UNION ALL SELECT corr_id, max_attempts FROM events WHERE run_id = ? AND kind = ? AND max_attempts IS NOT NULL",
            (fork.source_id, fork.source_id, fork.source_id, _STEP_CREATED),
        )
    }
    starts: dict[str | None, list[Event]] = {}
    for e in kept:
        if e.starts_attempt:
            starts.setdefault(e.correlation_id, []).append(e)
    rows = []
    for e in kept:
        if e.kind != EventKind.STEP_CREATED:
            continue
        corr = e.correlation_id or ""
        end, tries = finished.get(corr), starts.get(corr, [])
        status = "pending" if end is None else "completed" if end.kind == EventKind.STEP_COMPLETED else "failed"
        rows.append((
            fork.run_id, corr, e.name or "", status, len(tries) if end is not None else 0, limits.get(corr, 1),
            e.data or b"", end.data if end is not None and status == "completed" else None,
            end.data if end is not None and status == "failed" else None, e.created_at,
            tries[0].created_at if tries and end is not None else None, end.created_at if end is not None else None,
            fork.now if end is None else None,
        ))
    db.executemany(
        "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, output, error, created_at, "
        "started_at, completed_at, ready_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )


def _fork_hooks_and_waits(db: DB, fork: ForkRun, kept: list[Event]) -> None:
    disposed = {e.correlation_id for e in kept if e.kind == EventKind.HOOK_DISPOSED}
    ended_waits = {e.correlation_id: e.kind for e in kept if e.kind in (EventKind.WAIT_COMPLETED, EventKind.WAIT_CANCELLED)}
    deadlines: dict[str, float] = {
        r[0]: r[1] for r in db.execute("SELECT wait_id, resume_at FROM waits WHERE run_id = ?", (fork.source_id,))
    }
    for e in kept:
        corr = e.correlation_id or ""
        if e.kind == EventKind.HOOK_CREATED:
            live = corr not in disposed
            if live:
                holder = db.execute("SELECT run_id FROM hooks WHERE token = ? AND status = 'active'", (e.name,))
                if holder:
                    raise ForkError(
                        fork.source_id,
                        f"its hook {corr} holds token {e.name!r} at that point, and run {holder[0][0]} holds that "
                        "token now (a token belongs to one live hook): end that run first, or fork from before the hook",
                    )
            db.execute(
                "INSERT INTO hooks (run_id, hook_id, token, status, metadata, created_at) VALUES (?,?,?,?,?,?)",
                (fork.run_id, corr, e.name, "active" if live else "disposed", e.data, e.created_at),
            )
            if live:
                db.note("hooks")
        elif e.kind == EventKind.WAIT_CREATED:
            ended = ended_waits.get(corr)
            status = "waiting" if ended is None else "completed" if ended == EventKind.WAIT_COMPLETED else "cancelled"
            db.execute(
                "INSERT INTO waits (run_id, wait_id, resume_at, status) VALUES (?,?,?,?)",
                (fork.run_id, corr, deadlines.get(corr, fork.now), status),
            )


def _fork_streams(db: DB, fork: ForkRun, kept: list[Event], finished: dict[str | None, Event]) -> None:
    """The chunks written by then: the workflow's own writes it recorded, and those of the steps that had finished."""
    written: dict[str, int] = {}
    closed_here: set[str] = set()
    for e in kept:
        if e.kind == EventKind.STREAM_WRITTEN:
            written[e.name or ""] = written.get(e.name or "", 0) + 1
        elif e.kind == EventKind.STREAM_CLOSED and e.correlation_id:
            closed_here.add(e.name or "")
    streams = db.execute("SELECT namespace, closed_by FROM streams WHERE run_id = ? ORDER BY namespace", (fork.source_id,))
    for namespace, closed_by in streams:
        rows = db.execute(
            "SELECT data, step_id, attempt, created_at FROM chunks WHERE run_id = ? AND namespace = ? ORDER BY idx",
            (fork.source_id, namespace),
        )
        own = written.get(namespace, 0)
        chunks = []
        for data, step_id, attempt, created_at in rows:
            if step_id is None:
                if own == 0:
                    continue
                own -= 1
            elif step_id not in finished:
                continue
            chunks.append((data, step_id, attempt, created_at))
        closer = closed_by.rpartition("#")[0] if closed_by else None
        closed = namespace in closed_here or (closer is not None and closer in finished)
        if not chunks and not closed:
            continue
        db.execute(
            "INSERT INTO streams (run_id, namespace, next_index, closed, error, closed_by) VALUES (?,?,?,?,NULL,?)",
            (fork.run_id, namespace, len(chunks), 1 if closed else 0, closed_by if closed and closer else None),
        )
        db.executemany(
            "INSERT INTO chunks (run_id, namespace, idx, data, step_id, attempt, created_at) VALUES (?,?,?,?,?,?,?)",
            [(fork.run_id, namespace, i, *chunk) for i, chunk in enumerate(chunks)],
        )


# -- steps ----------------------------------------------------------------------------------------


def claim_steps(db: DB, worker_id: str, names: Sequence[str], now: float, limit: int) -> list[StepClaim]:
    if not names or limit <= 0:
        return []
    marks = _marks(len(names))
    candidates: list[Row] = [(r, s, None) for r, s in db.execute(
        f"SELECT run_id, step_id FROM steps WHERE status = 'pending' AND queue IS NULL AND ready_at <= ? AND name IN ({marks}) "
        "ORDER BY ready_at LIMIT ?",
        (now, *names, limit),
    )]
    room: dict[str, tuple[int, Row]] = {}
    if limit > len(candidates):  # room left for queued steps (those of a queue with room, under its lock)
        queued, room = _queued_step_candidates(db, names, now, limit - len(candidates))
        candidates += queued
    if len(candidates) < limit:  # the steps of dead workers: their rows, then inline steps (see _INLINE_ROW)
        candidates += [(r, s, None) for r, s in db.execute(
            f"SELECT run_id, step_id FROM steps WHERE status = 'running' AND name IN ({marks}) "
            f"AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE})) LIMIT ?",
            (*names, worker_id, now, limit - len(candidates)),
        )]
        left = limit - len(candidates)
        if left > 0:  # (its name is its step_created event's)
            candidates += [(r, s, None) for r, s in db.execute(
                "SELECT r.run_id, r.inline_step FROM runs r JOIN events e ON e.run_id = r.run_id AND e.seq = r.inline_seq "
                f"WHERE r.inline_owner IS NOT NULL AND r.inline_owner <> ? AND r.inline_owner NOT IN {_ALIVE} "
                f"AND e.name IN ({marks}) LIMIT ?",
                (worker_id, now, *names, left),
            )]
    claims = []
    for run_id, step_id, queue in candidates:
        if queue is not None and room[queue][0] <= 0:
            continue  # its queue admitted as many as it has room for in this claim
        # Lock order everywhere: run, then its steps/hooks/streams. A run another worker holds
        # is skipped, not waited for.
        runs = db.execute(f"SELECT {_LOCKED} FROM runs WHERE run_id = ?{db.skip_locked}", (run_id,))
        if not runs:
            continue
        run = runs[0]
        if _is_inline(run, step_id):
            _materialize_inline(db, run_id, run)  # then claimed (or not) as any running step
        rows = db.execute(
            "SELECT name, input, attempt, max_attempts, started_at FROM steps WHERE run_id = ? AND step_id = ? "
            f"AND name IN ({marks}) AND ((status = 'pending' AND ready_at <= ?) OR "
            f"(status = 'running' AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE}))))"
            f"{db.for_update}",
            (run_id, step_id, *names, now, worker_id, now),
        )
        if not rows:
            continue  # claimed or finished meanwhile
        if run[0] in TERMINAL:
            db.execute("UPDATE steps SET status = 'cancelled', owner = NULL WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            continue
        name, data, attempt, max_attempts, started_at = rows[0][0], bytes(rows[0][1]), rows[0][2] + 1, rows[0][3], rows[0][4]
        # Claimed even past max_attempts (a crashed attempt counts): whether it may run is the runtime's call.
        out = _Appender(db, run_id, run[1])
        out.add(EventKind.STEP_STARTED, step_id, now, attempt=attempt)
        db.execute(
            "UPDATE steps SET status = 'running', attempt = ?, owner = ?, started_at = COALESCE(started_at, ?), "
            "attempt_started_at = ?, ready_at = NULL WHERE run_id = ? AND step_id = ?",
            (attempt, worker_id, now, now, run_id, step_id),
        )
        out.flush()
        db.execute("UPDATE runs SET last_seq = ?, updated_at = ? WHERE run_id = ?", (out.seq, now, run_id))
        claims.append(StepClaim(
            run_id, step_id, name, data, attempt, max_attempts, started_at or now, run[3], run[4] or now, run[7]
        ))
        if queue is not None:
            left, limits = room[queue]
            room[queue] = (left - 1, limits)
            _record_admissions(db, queue, limits, [f"{run_id}/{step_id}#{attempt}"], now)
    return claims


def _step_accepts(db: DB, run_id: str, step_id: str, kind: str, attempt: int | None) -> bool:
    """Whether a running step takes this outcome: a result from any attempt (it is a valid result),
    a failure or retry only from the attempt now running (a late attempt whose lease lapsed must
    not fail or requeue the attempt that took over)."""
    if kind == EventKind.STEP_COMPLETED or attempt is None:
        return bool(db.execute(
            "SELECT 1 FROM steps WHERE run_id = ? AND step_id = ? AND status = 'running'", (run_id, step_id)
        ))
    return bool(db.execute(
        "SELECT 1 FROM steps WHERE run_id = ? AND step_id = ? AND status = 'running' AND attempt = ?",
        (run_id, step_id, attempt),
    ))


def _finish_step_row(
    db: DB, run_id: str, step_id: str, kind: str, data: bytes | None, now: float, retry_at: float | None,
    attempt: int | None = None,
) -> bool:
    if kind == _STEP_COMPLETED:
        sql = "UPDATE steps SET status = 'completed', output = ?, completed_at = ?, owner = NULL"
        params: tuple[Any, ...] = (data, now)
    elif kind == _STEP_FAILED:
        sql = "UPDATE steps SET status = 'failed', error = ?, completed_at = ?, owner = NULL"
        params = (data, now)
    elif kind == _STEP_CANCELLED:
        sql = "UPDATE steps SET status = 'cancelled', error = ?, completed_at = ?, owner = NULL"
        params = (data, now)
    else:
        sql = "UPDATE steps SET status = 'pending', error = ?, ready_at = ?, owner = NULL"
        params = (data, retry_at if retry_at is not None else now)
    if kind != _STEP_COMPLETED and attempt is not None:
        sql += " WHERE run_id = ? AND step_id = ? AND status = 'running' AND attempt = ?"
        params = (*params, run_id, step_id, attempt)
    else:
        sql += " WHERE run_id = ? AND step_id = ? AND status = 'running'"
        params = (*params, run_id, step_id)
    # SQLite builds a RETURNING statement's rows in a temporary table (~6 µs, half the update):
    # where the row count is free, a step outside any queue (the common case) is finished
    # without it, and only a queued step (or one not running, whose update changes nothing)
    # is asked again for its queue.
    if db.counts_rows and db.execute_count(sql + " AND queue IS NULL", params):
        done, queued = True, False
    else:
        rows = db.execute(sql + " RETURNING step_id, queue", params)
        done, queued = bool(rows), bool(rows) and rows[0][1] is not None
    if done and kind != _STEP_RETRYING:
        db.note("stream", run_id)  # a stream its attempt closed is final now: readers may end
    if queued:
        db.note("work")  # a queued step ended: its queue has room again, for any worker
    return done


def finish_step(
    db: DB, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float, retry_at: float | None
) -> bool:
    run = _lock_run(db, run_id)
    if run is None:
        return False
    inline = _is_inline(run, step_id) and _inline_accepts(kind, attempt)
    if inline:
        _finish_inline(db, run_id, run, kind, data, now, retry_at)
    elif not _finish_step_row(db, run_id, step_id, kind, data, now, retry_at, attempt):
        return False
    out = _Appender(db, run_id, run[1])
    out.add(kind, step_id, now, data=data, attempt=attempt)
    out.flush()
    cleared = f", {_NO_INLINE}" if inline else ""
    if run[0] in ACTIVE and kind not in (EventKind.STEP_RETRYING, EventKind.STEP_CANCELLED):
        db.execute(
            f"UPDATE runs SET last_seq = ?, wake_at = ?, updated_at = ?{cleared} WHERE run_id = ?", (out.seq, now, now, run_id)
        )
    else:
        db.execute(f"UPDATE runs SET last_seq = ?, updated_at = ?{cleared} WHERE run_id = ?", (out.seq, now, run_id))
    db.note("work")
    return True


def list_steps(db: DB, run_id: str) -> list[StepRecord]:
    """The run's steps in the order they were created: those with rows, its inline step (if it has one
    running) as the row it will get (running its first attempt), and its steps that completed inline,
    which have no row, from their step_created and step_completed events."""
    rows = db.execute(
        "SELECT * FROM (SELECT run_id, step_id, name, status, attempt, max_attempts, created_at, started_at, "
        "completed_at, output, error, ready_at, input FROM steps WHERE run_id = ? "
        "UNION ALL SELECT r.run_id, r.inline_step, e.name, 'running', 1, r.inline_max_attempts, e.created_at, "
        "e.created_at, NULL, NULL, NULL, NULL, e.data FROM runs r JOIN events e ON e.run_id = r.run_id AND e.seq = r.inline_seq "
        "WHERE r.run_id = ? AND r.inline_step IS NOT NULL) AS s",
        (run_id, run_id),
    )
    records = [
        StepRecord(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
            None if r[9] is None else bytes(r[9]), None if r[10] is None else bytes(r[10]), r[11], bytes(r[12]),
        )
        for r in rows
    ]
    with_rows = {r.step_id for r in records}
    created: dict[str, Row] = {}
    for kind, step_id, name, data, attempt, at, max_attempts in db.execute(
        "SELECT kind, corr_id, name, data, attempt, created_at, max_attempts FROM events WHERE run_id = ? "
        "AND kind IN (?, ?) ORDER BY seq",
        (run_id, _STEP_CREATED, _STEP_COMPLETED),
    ):
        if step_id in with_rows:
            continue
        if kind == _STEP_CREATED:
            created[step_id] = (name, data, at, max_attempts)
        elif step_id in created:  # claimed when created, so started then (as the row it would have had)
            name, step_input, created_at, limit = created[step_id]
            records.append(StepRecord(
                run_id, step_id, name, "completed", attempt or 1, limit, created_at, created_at, at, bytes(data), None,
                None, bytes(step_input),
            ))
    records.sort(key=lambda r: (r.created_at, len(r.step_id), r.step_id))
    return records


# -- hooks ----------------------------------------------------------------------------------------

_HOOK_COLUMNS = "run_id, hook_id, token, status, metadata, created_at"


def _hook(r: Row) -> HookRecord:
    return HookRecord(r[0], r[1], r[2], r[3], None if r[4] is None else bytes(r[4]), r[5])


def get_hook(db: DB, token: str) -> HookRecord | None:
    rows = db.execute(f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE token = ? AND status = 'active'", (token,))
    return _hook(rows[0]) if rows else None


def list_hooks(db: DB, run_id: str, active_only: bool) -> list[HookRecord]:
    extra = " AND status = 'active'" if active_only else ""
    rows = db.execute(
        f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE run_id = ?{extra} ORDER BY created_at, length(hook_id), hook_id",
        (run_id,),
    )
    return [_hook(r) for r in rows]


def resume_hook(db: DB, token: str, payload: bytes, now: float, expect: tuple[str, str] | None = None) -> HookRecord:
    found = db.execute("SELECT run_id FROM hooks WHERE token = ? AND status = 'active'", (token,))
    if not found:
        raise HookNotFound(token)
    run = _lock_run(db, found[0][0])
    rows = db.execute(f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE token = ? AND status = 'active'{db.for_update}", (token,))
    if run is None or run[0] in TERMINAL or not rows or rows[0][0] != found[0][0]:
        raise HookNotFound(token)
    hook = _hook(rows[0])
    if expect is not None and (hook.run_id, hook.hook_id) != expect:
        raise HookNotFound(token)  # the token moved to another hook since the caller looked it up
    out = _Appender(db, hook.run_id, run[1])
    out.add(EventKind.HOOK_RECEIVED, hook.hook_id, now, name=token, data=payload)
    out.flush()
    db.execute(
        "UPDATE runs SET last_seq = ?, wake_at = ?, updated_at = ? WHERE run_id = ?", (out.seq, now, now, hook.run_id)
    )
    db.note("work")
    return hook


# -- streams --------------------------------------------------------------------------------------


def _append_chunks(
    db: DB, run_id: str, namespace: str, chunks: Sequence[bytes], step_id: str | None, attempt: int | None,
    now: float, *, close: bool, strict: bool,
) -> bool:
    rows = db.execute(
        f"SELECT next_index, closed, closed_by FROM streams WHERE run_id = ? AND namespace = ?{db.for_update}",
        (run_id, namespace),
    )
    writer = f"{step_id}#{attempt}" if step_id is not None else None
    if rows:
        start, closed, closed_by = rows[0]
        # A new attempt of the step whose earlier attempt closed the stream (then crashed before
        # its completion was recorded) writes again, as the retry rule says; anyone else may not.
        reopen = closed and step_id is not None and closed_by is not None and closed_by.startswith(f"{step_id}#") \
            and closed_by != writer
        if closed and not reopen:
            if strict:
                raise StreamClosedError(run_id, namespace)
            return False
    else:
        start = 0
        db.execute("INSERT INTO streams (run_id, namespace, next_index, closed) VALUES (?,?,0,0)", (run_id, namespace))
    if chunks:
        db.executemany(
            "INSERT INTO chunks (run_id, namespace, idx, data, step_id, attempt, created_at) VALUES (?,?,?,?,?,?,?)",
            [(run_id, namespace, start + i, data, step_id, attempt, now) for i, data in enumerate(chunks)],
        )
    db.execute(
        "UPDATE streams SET next_index = ?, closed = ?, closed_by = ? WHERE run_id = ? AND namespace = ?",
        (start + len(chunks), 1 if close else 0, writer if close else None, run_id, namespace),
    )
    db.note("stream", run_id)
    return True


def append_chunks(
    db: DB, run_id: str, namespace: str, chunks: Sequence[bytes], step_id: str | None, attempt: int | None,
    now: float, close: bool,
) -> int:
    # A share lock on the run: appends go on side by side, but not beside the run's end, which
    # locks it for update. Either the end waits and then closes this stream too, or this waits
    # and then finds the run ended: never a stream left open by a run that has ended.
    run = db.execute(f"SELECT status FROM runs WHERE run_id = ?{db.for_share}", (run_id,))
    if not run:
        raise RunNotFound(run_id)
    if run[0][0] in TERMINAL:
        raise StreamClosedError(run_id, namespace)
    _append_chunks(db, run_id, namespace, chunks, step_id, attempt, now, close=close, strict=True)
    return int(db.execute("SELECT next_index FROM streams WHERE run_id = ? AND namespace = ?", (run_id, namespace))[0][0])


def _close_stream(db: DB, run_id: str, namespace: str, error: str | None) -> None:
    updated = db.execute(
        "UPDATE streams SET closed = 1, error = ? WHERE run_id = ? AND namespace = ? AND closed = 0 RETURNING namespace",
        (error, run_id, namespace),
    )
    if not updated and not db.execute("SELECT 1 FROM streams WHERE run_id = ? AND namespace = ?", (run_id, namespace)):
        db.execute(
            "INSERT INTO streams (run_id, namespace, next_index, closed, error) VALUES (?,?,0,1,?)",
            (run_id, namespace, error),
        )
    db.note("stream", run_id)


def close_stream(db: DB, run_id: str, namespace: str, error: str | None) -> None:
    if not db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)):
        raise RunNotFound(run_id)
    _close_stream(db, run_id, namespace, error)


def read_chunks(db: DB, run_id: str, namespace: str, start: int, limit: int) -> ChunkPage:
    stream = db.execute(
        "SELECT next_index, closed, error, closed_by FROM streams WHERE run_id = ? AND namespace = ?", (run_id, namespace)
    )
    if start < 0:
        start = max(0, (stream[0][0] if stream else 0) + start)
    rows = db.execute(
        "SELECT idx, data, step_id, attempt, created_at FROM chunks WHERE run_id = ? AND namespace = ? AND idx >= ? "
        "ORDER BY idx LIMIT ?",
        (run_id, namespace, start, limit),
    )
    chunks = [Chunk(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows]
    end = start + len(chunks)
    if stream:
        next_index, closed, error, closed_by = stream[0]
        if closed and closed_by is not None and not _close_is_final(db, run_id, closed_by):
            closed = False  # the attempt that closed it may yet fail, and its retry write on
        return ChunkPage(chunks, bool(closed) and end >= next_index, error if closed else None, start)
    run = db.execute("SELECT status, error FROM runs WHERE run_id = ?", (run_id,))
    if not run:
        raise RunNotFound(run_id)
    status = run[0][0]
    if status in TERMINAL:
        error = None if status == "completed" else ("run cancelled" if status == "cancelled" else _error_text(run[0][1]))
        return ChunkPage(chunks, True, error, start)
    return ChunkPage(chunks, False, None, start)


def _close_is_final(db: DB, run_id: str, closed_by: str) -> bool:
    """A step attempt's close holds once its step has finished (or its run has ended): until then
    the attempt may fail, and the next attempt reopens the stream (see ``_append_chunks``)."""
    step_id = closed_by.rpartition("#")[0]
    rows = db.execute(
        "SELECT r.status, s.status, r.inline_step FROM runs r LEFT JOIN steps s ON s.run_id = r.run_id AND s.step_id = ? "
        "WHERE r.run_id = ?",
        (step_id, run_id),
    )
    if not rows:
        return True
    run_status, step_status, inline = rows[0]
    if inline == step_id:
        step_status = "running"  # (it has no steps row while it runs)
    return run_status in TERMINAL or step_status in (None, "completed", "failed", "cancelled")


def list_streams(db: DB, run_id: str) -> list[tuple[str, int, bool]]:
    rows = db.execute(
        "SELECT namespace, next_index, closed FROM streams WHERE run_id = ? ORDER BY namespace", (run_id,)
    )
    return [(r[0], r[1], bool(r[2])) for r in rows]


# -- live values ----------------------------------------------------------------------------------


def list_values(db: DB, run_id: str, key: str | None) -> list[tuple[str, bytes, int, float]]:
    """(key, value, seq, updated_at) of the run's current values (one key, or all by key)."""
    if key is not None:
        rows = db.execute("SELECT key, data, seq, updated_at FROM run_values WHERE run_id = ? AND key = ?", (run_id, key))
    else:
        rows = db.execute("SELECT key, data, seq, updated_at FROM run_values WHERE run_id = ? ORDER BY key", (run_id,))
    return [(r[0], bytes(r[1]), int(r[2]), r[3]) for r in rows]


# -- retention (h-retain) -------------------------------------------------------------------------
#
# A finished run is deleted with everything that belongs to it, in one transaction per batch.
# Never a run that is not finished; never a child whose parent is still unfinished (the parent's
# views list it); never a run with an unfinished child (the child's end is delivered to it); never
# a run with a step attempt still running on a live worker (a step of a cancelled run, finishing).

_RUN_TABLES = ("events", "steps", "hooks", "waits", "streams", "chunks", "run_values")


def collect_runs(
    db: DB, before: float, statuses: Sequence[str], limit: int, max_rows: int, now: float
) -> Collected:
    """Delete up to ``limit`` finished runs (of ``statuses``) that completed at or before ``before``,
    oldest first, and stop early once their events and chunks reach ``max_rows`` (one run at least).
    Runs another transaction holds are skipped (PostgreSQL), not waited for."""
    if not statuses or limit < 1:
        return Collected([], {}, False)
    if any(s not in TERMINAL for s in statuses):
        raise ValueError(f"only finished runs can be deleted: statuses must be among {sorted(TERMINAL)}, got {list(statuses)}")
    rows = db.execute(
        f"SELECT r.run_id, r.last_seq FROM runs r WHERE r.completed_at <= ? AND r.status IN ({_marks(len(statuses))}) "
        "AND NOT (r.parent_run_id IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM runs p WHERE p.run_id = r.parent_run_id AND p.status IN ('pending', 'running'))) "
        "AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.run_id AND c.status IN ('pending', 'running')) "
        f"AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.run_id AND s.status = 'running' AND s.owner IN {_ALIVE}) "
        f"ORDER BY r.completed_at, r.run_id LIMIT ?{db.skip_locked}",
        (before, *statuses, now, limit + 1),
    )
    candidates = rows[:limit]
    more = len(rows) > limit
    if not candidates:
        return Collected([], {}, False)
    chunks: dict[str, int] = dict(db.execute(
        f"SELECT run_id, sum(next_index) FROM streams WHERE run_id IN ({_marks(len(candidates))}) GROUP BY run_id",
        tuple(r for r, _ in candidates),
    ))
    taken: list[str] = []
    budget = 0
    for run_id, last_seq in candidates:
        cost = int(last_seq) + int(chunks.get(run_id) or 0)
        if taken and budget + cost > max_rows:
            more = True
            break
        taken.append(run_id)
        budget += cost
    marks = _marks(len(taken))
    counts = {"runs": 0}
    for table in _RUN_TABLES:
        counts[table] = len(db.execute(f"DELETE FROM {table} WHERE run_id IN ({marks}) RETURNING 1", tuple(taken)))
    counts["runs"] = len(db.execute(f"DELETE FROM runs WHERE run_id IN ({marks}) RETURNING 1", tuple(taken)))
    # Rate-window rows past their queue's window count for nothing any more (inside it they still
    # count against the rate: deleting those would let a queue exceed its rate).
    counts["queue_admissions"] = len(db.execute(
        "DELETE FROM queue_admissions WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = queue_admissions.queue "
        "AND q.rate_period IS NOT NULL AND queue_admissions.admitted_at > ? - q.rate_period) RETURNING 1",
        (now,),
    ))
    db.note("runs")
    for run_id in taken:
        db.note("run", run_id)
    return Collected(taken, counts, more)


# -- store settings (durable_meta) ------------------------------------------------------------------


def read_meta(db: DB, prefix: str) -> dict[str, str]:
    rows = db.execute("SELECT key, value FROM durable_meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
    return {r[0]: r[1] for r in rows}


def add_meta(db: DB, key: str, value: str) -> str:
    """Keep ``value`` under ``key`` unless the key has one already; return the value it has."""
    db.execute("INSERT INTO durable_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
    return str(db.execute("SELECT value FROM durable_meta WHERE key = ?", (key,))[0][0])
