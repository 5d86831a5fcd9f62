"""The store's SQL, shared by SQLite and PostgreSQL.

Each public function here is the body of one transaction, written against :class:`DB`: a
cursor-like object whose ``execute`` takes ``?`` placeholders (the PostgreSQL store rewrites
them), plus the dialect's row-locking clauses. Functions never read the clock: ``now`` comes
from the caller, so tests can drive virtual time. ``db.note(topic)`` queues an in-process
wake-up (and a NOTIFY on PostgreSQL) sent after the transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._core.codec import JSON_TAG, encode
from .._core.commands import (
    CancelWait,
    CloseStream,
    CreateHook,
    DisposeHook,
    MarkPatch,
    ScheduleStep,
    StartWait,
    WriteChunk,
)
from .._core.errorinfo import decode_error
from .._core.errors import ForkError, HookNotFound, RunConflict, RunNotFound, StreamClosedError
from .._core.events import REPLAY_KINDS, Event, EventKind
from ._base import (
    ACTIVE,
    TERMINAL,
    Chunk,
    ChunkPage,
    CommitResult,
    ForkRun,
    HookRecord,
    Invocation,
    NewRun,
    PublishedWorkflow,
    RunRecord,
    StepClaim,
    StepRecord,
    Versions,
)

Row = tuple[Any, ...]


class DB(Protocol):
    for_update: str  # " FOR UPDATE" or ""
    skip_locked: str  # " FOR UPDATE SKIP LOCKED" or ""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def note(self, *topic: str) -> None: ...


def _marks(n: int) -> str:
    return ",".join("?" * n)


_ALIVE = "(SELECT worker_id FROM workers WHERE alive_until > ?)"
_RUN_COLUMNS = (
    "run_id, workflow_name, status, input, seed, created_at, updated_at, started_at, completed_at, "
    "output, error, idempotency_key, last_seq, trace_link, consumed_seq, version, forked_from, forked_step"
)
_REPLAY_KIND_LIST = tuple(sorted(str(k) for k in REPLAY_KINDS))


def _run(row: Row) -> RunRecord:
    return RunRecord(
        run_id=row[0], workflow_name=row[1], status=row[2], input=bytes(row[3]), seed=row[4], created_at=row[5],
        updated_at=row[6], started_at=row[7], completed_at=row[8],
        output=None if row[9] is None else bytes(row[9]), error=None if row[10] is None else bytes(row[10]),
        idempotency_key=row[11], last_seq=row[12], trace_link=row[13], consumed_seq=row[14], version=row[15],
        forked_from=row[16], forked_step=row[17],
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
        attempt: int | None = None,
    ) -> int:
        self.seq += 1
        self.rows.append((self.run_id, self.seq, kind, corr, name, data, attempt, now))
        return self.seq

    def flush(self) -> None:
        if self.rows:
            self.db.executemany(
                "INSERT INTO events (run_id, seq, kind, corr_id, name, data, attempt, created_at) VALUES (?,?,?,?,?,?,?,?)",
                self.rows,
            )
            self.rows = []
            self.db.note("run", self.run_id)


def _lock_run(db: DB, run_id: str) -> Row | None:
    rows = db.execute(
        f"SELECT status, last_seq, owner, workflow_name, started_at FROM runs WHERE run_id = ?{db.for_update}", (run_id,)
    )
    return rows[0] if rows else None


# -- schema -----------------------------------------------------------------------------------------

SCHEMA_VERSION = 4  # migration: h-web (2 -> 3: published_workflows); migration: h-verify (3 -> 4: versions, forks)
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
    # migration: h-verify -- the version label of the code that started a run; where a fork came from
    3: [
        "ALTER TABLE runs ADD COLUMN version TEXT",
        "ALTER TABLE runs ADD COLUMN forked_from TEXT",
        "ALTER TABLE runs ADD COLUMN forked_step TEXT",
    ],
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
        "last_seq, wake_at, owner, trace_link, version) VALUES (?,?,?,?,?,?,?,?,1,?,?,?,?) ON CONFLICT DO NOTHING "
        "RETURNING run_id",
        (new.run_id, new.workflow_name, "pending", new.input, new.seed, new.idempotency_key, new.now, new.now, new.now,
         new.owner, new.trace_link, new.version),
    )
    if not inserted:
        where, key = ("idempotency_key", new.idempotency_key) if new.idempotency_key else ("run_id", new.run_id)
        rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} = ?", (key,))
        if not rows:  # the other unique column clashed
            rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (new.run_id,))
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
    db.note("work")
    db.note("runs")
    db.note("run", new.run_id)
    return RunRecord(
        run_id=new.run_id, workflow_name=new.workflow_name, status="pending", input=new.input, seed=new.seed,
        created_at=new.now, updated_at=new.now, idempotency_key=new.idempotency_key, last_seq=1,
        trace_link=new.trace_link, version=new.version,
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
    db: DB, status: str | None, workflow: str | None, limit: int, before: str | None, version: str | None = None
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
    if not names:
        return []
    served, served_params = _served(names, versions)
    rows = db.execute(
        f"SELECT run_id FROM runs WHERE wake_at <= ? AND status IN ('pending', 'running') "
        f"AND {served} AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE})) "
        f"ORDER BY wake_at LIMIT ?{db.skip_locked}",
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
            "UPDATE runs SET owner = NULL, wake_at = ? WHERE run_id = ? AND owner = ? AND wake_at IS NOT NULL",
            (retry_at, run_id, worker_id),
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
            f"AND {served} AND (owner IS NULL OR owner NOT IN {_ALIVE})",
            (*served_params, now),
        )
        times.append(rows[0][0])
    if step_names:
        rows = db.execute(
            f"SELECT MIN(ready_at) FROM steps WHERE status = 'pending' AND name IN ({_marks(len(step_names))})",
            tuple(step_names),
        )
        times.append(rows[0][0])
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
    locked = _lock_run(db, inv.run_id)
    if locked is None:
        return CommitResult(False, "no such run")
    status, last_seq, owner, run_started_at = locked[0], locked[1], locked[2], locked[4]
    if status in TERMINAL:
        return CommitResult(False, "run is " + status, run_status=status)
    if inv.holds_lease and owner != inv.worker_id:
        return CommitResult(False, "lease lost", run_status=status)
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
        refusal = _check_speculative(db, inv, status)
        if refusal:  # checked before any write: a refused commit changes nothing
            return CommitResult(False, refusal, run_status=status)
    now = inv.now
    out = _Appender(db, inv.run_id, last_seq)

    for ev in inv.speculative:  # all checked by _check_speculative above
        if ev.kind == EventKind.RUN_STARTED:
            db.execute("UPDATE runs SET status = 'running', started_at = ? WHERE run_id = ?", (ev.created_at, inv.run_id))
            status = "running"
            run_started_at = ev.created_at
            db.note("runs")
        elif ev.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
            if not _finish_step_row(db, inv.run_id, ev.correlation_id or "", ev.kind, ev.data, ev.created_at, None, ev.attempt):
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

    commands = _Commands(db, inv, out, workflow_name=locked[3], run_started_at=run_started_at or now)
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
            wake_at = inv.next_wake
            if wake_at is not None:
                db.note("work")
        out.flush()
        db.execute(
            "UPDATE runs SET last_seq = ?, owner = NULL, wake_at = ?, updated_at = ?, "
            "consumed_seq = CASE WHEN consumed_seq > ? THEN consumed_seq ELSE ? END WHERE run_id = ?",
            (out.seq, wake_at, now, inv.consumed_seq, inv.consumed_seq, inv.run_id),
        )
        run_status = status
    else:
        kind = EventKind.RUN_COMPLETED if inv.status == "completed" else EventKind.RUN_FAILED
        run_status = "completed" if inv.status == "completed" else "failed"
        _finalize(db, out, inv.run_id, None if run_status == "completed" else _error_text(inv.error), now)
        out.add(kind, None, now, data=inv.result if inv.status == "completed" else inv.error)
        out.flush()
        db.execute(
            "UPDATE runs SET status = ?, output = ?, error = ?, completed_at = ?, last_seq = ?, owner = NULL, "
            "wake_at = NULL, updated_at = ? WHERE run_id = ?",
            (run_status, inv.result, inv.error, now, out.seq, now, inv.run_id),
        )
    return CommitResult(
        True, last_seq=out.seq, clean=clean, claimed=claimed, run_status=run_status, conflicts=conflicts
    )


class _Commands:
    """An invocation's commands applied to its locked run, one method per command kind.

    Each turns its command into the entity row and the creation event, in the same transaction
    as the rest of the commit. ``claimed`` collects the new steps inserted already running on the
    committing worker (the first ``claim_steps`` of them: it saves a pending -> running round
    trip); ``conflicts`` says a hook token was taken, which the instance must be shown.
    """

    def __init__(self, db: DB, inv: Invocation, out: _Appender, *, workflow_name: str, run_started_at: float) -> None:
        self.db = db
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
        self.out.add(EventKind.STEP_CREATED, corr, now, name=cmd.name, data=cmd.input)
        if self.claim_left > 0:
            self.claim_left -= 1
            self.db.execute(
                "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, created_at, "
                "started_at, attempt_started_at, owner) VALUES (?,?,?,'running',1,?,?,?,?,?,?)",
                (inv.run_id, corr, cmd.name, cmd.max_attempts, cmd.input, now, now, now, inv.worker_id),
            )
            self.out.add(EventKind.STEP_STARTED, corr, now, attempt=1)
            self.claimed.append(StepClaim(
                inv.run_id, corr, cmd.name, cmd.input, 1, cmd.max_attempts, now, self.workflow_name, self.run_started_at
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
    MarkPatch: _Commands.mark_patch,
}


def _check_speculative(db: DB, inv: Invocation, status: str) -> str:
    """Why the speculative events cannot be appended now ("" if they can), read-only.

    Each event is checked against the state the ones before it leave (two run_started, or two
    results for one step, in one list are refused too).
    """
    seen: set[tuple[str, str | None]] = set()
    for ev in inv.speculative:
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
            if not _step_accepts(db, inv.run_id, ev.correlation_id or "", ev.kind, ev.attempt):
                return "step not running"
        elif ev.kind == EventKind.WAIT_COMPLETED:
            if not db.execute(
                "SELECT 1 FROM waits WHERE run_id = ? AND wait_id = ? AND status = 'waiting'", (inv.run_id, ev.correlation_id)
            ):
                return "wait not pending"
        else:
            raise ValueError(f"cannot commit a speculative {ev.kind} event")
    return ""


def _error_text(error: bytes | None) -> str:
    if not error:
        return "failed"
    info = decode_error(error)
    return f"{info.type}: {info.message}"


def _finalize(db: DB, out: _Appender, run_id: str, stream_error: str | None, now: float) -> None:
    """A run is ending: free its hook tokens, cancel its waits and pending steps, close its streams.

    Each hook disposed, wait cancelled and stream closed here is an event too (before the run's
    terminal event, which stays the last), in a fixed order: hooks, then waits, by position; then
    streams, by namespace. They carry no command position: replay skips them.
    """
    hooks = db.execute(
        "SELECT hook_id, token FROM hooks WHERE run_id = ? AND status = 'active' ORDER BY length(hook_id), hook_id",
        (run_id,),
    )
    waits = db.execute(
        "SELECT wait_id FROM waits WHERE run_id = ? AND status = 'waiting' ORDER BY length(wait_id), wait_id", (run_id,)
    )
    streams = db.execute("SELECT namespace FROM streams WHERE run_id = ? AND closed = 0 ORDER BY namespace", (run_id,))
    for hook_id, token in hooks:
        out.add(EventKind.HOOK_DISPOSED, hook_id, now, name=token)
    for (wait_id,) in waits:
        out.add(EventKind.WAIT_CANCELLED, wait_id, now)
    for (namespace,) in streams:
        out.add(EventKind.STREAM_CLOSED, None, now, name=namespace)
    db.execute("UPDATE hooks SET status = 'disposed' WHERE run_id = ? AND status = 'active'", (run_id,))
    db.execute("UPDATE waits SET status = 'cancelled' WHERE run_id = ? AND status = 'waiting'", (run_id,))
    db.execute("UPDATE steps SET status = 'cancelled', owner = NULL WHERE run_id = ? AND status = 'pending'", (run_id,))
    db.execute("UPDATE streams SET closed = 1, error = ? WHERE run_id = ? AND closed = 0", (stream_error, run_id))
    db.note("stream", run_id)  # also wakes readers of streams never written, which end with the run
    db.note("runs")
    db.note("run", run_id)
    db.note("run-end", run_id)


def cancel_run(db: DB, run_id: str, now: float) -> RunRecord | None:
    locked = _lock_run(db, run_id)
    if locked is None:
        return None
    if locked[0] not in TERMINAL:
        out = _Appender(db, run_id, locked[1])
        _finalize(db, out, run_id, "run cancelled", now)
        out.add(EventKind.RUN_CANCELLED, None, now)
        out.flush()
        db.execute(
            "UPDATE runs SET status = 'cancelled', completed_at = ?, last_seq = ?, owner = NULL, wake_at = NULL, "
            "updated_at = ? WHERE run_id = ?",
            (now, out.seq, now, run_id),
        )
    return get_run(db, run_id)


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
    kept = [e for e in events if not (e.kind in _UNFINISHED_STEP_HISTORY and e.correlation_id not in finished)]
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
        r[0]: r[1] for r in db.execute("SELECT step_id, max_attempts FROM steps WHERE run_id = ?", (fork.source_id,))
    }
    starts: dict[str | None, list[Event]] = {}
    for e in kept:
        if e.kind == EventKind.STEP_STARTED:
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
    candidates = db.execute(
        f"SELECT run_id, step_id FROM steps WHERE status = 'pending' AND ready_at <= ? AND name IN ({marks}) "
        "ORDER BY ready_at LIMIT ?",
        (now, *names, limit),
    )
    if len(candidates) < limit:
        candidates += db.execute(
            f"SELECT run_id, step_id FROM steps WHERE status = 'running' AND name IN ({marks}) "
            f"AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE})) LIMIT ?",
            (*names, worker_id, now, limit - len(candidates)),
        )
    claims = []
    for run_id, step_id in candidates:
        # Lock order everywhere: run, then its steps/hooks/streams. A run another worker holds
        # is skipped, not waited for.
        runs = db.execute(
            f"SELECT status, last_seq, owner, workflow_name, started_at FROM runs WHERE run_id = ?{db.skip_locked}", (run_id,)
        )
        if not runs:
            continue
        run = runs[0]
        rows = db.execute(
            "SELECT name, input, attempt, max_attempts, started_at FROM steps WHERE run_id = ? AND step_id = ? "
            f"AND ((status = 'pending' AND ready_at <= ?) OR "
            f"(status = 'running' AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE}))))"
            f"{db.for_update}",
            (run_id, step_id, now, worker_id, now),
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
        claims.append(StepClaim(run_id, step_id, name, data, attempt, max_attempts, started_at or now, run[3], run[4] or now))
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
    if kind == EventKind.STEP_COMPLETED:
        sql = "UPDATE steps SET status = 'completed', output = ?, completed_at = ?, owner = NULL"
        params: tuple[Any, ...] = (data, now)
    elif kind == EventKind.STEP_FAILED:
        sql = "UPDATE steps SET status = 'failed', error = ?, completed_at = ?, owner = NULL"
        params = (data, now)
    elif kind == EventKind.STEP_CANCELLED:
        sql = "UPDATE steps SET status = 'cancelled', error = ?, completed_at = ?, owner = NULL"
        params = (data, now)
    else:
        sql = "UPDATE steps SET status = 'pending', error = ?, ready_at = ?, owner = NULL"
        params = (data, retry_at if retry_at is not None else now)
    if kind != EventKind.STEP_COMPLETED and attempt is not None:
        done = db.execute(
            f"{sql} WHERE run_id = ? AND step_id = ? AND status = 'running' AND attempt = ? RETURNING step_id",
            (*params, run_id, step_id, attempt),
        )
    else:
        done = db.execute(
            f"{sql} WHERE run_id = ? AND step_id = ? AND status = 'running' RETURNING step_id", (*params, run_id, step_id)
        )
    if done and kind != EventKind.STEP_RETRYING:
        db.note("stream", run_id)  # a stream its attempt closed is final now: readers may end
    return bool(done)


def finish_step(
    db: DB, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float, retry_at: float | None
) -> bool:
    run = _lock_run(db, run_id)
    if run is None or not _finish_step_row(db, run_id, step_id, kind, data, now, retry_at, attempt):
        return False
    out = _Appender(db, run_id, run[1])
    out.add(kind, step_id, now, data=data, attempt=attempt)
    out.flush()
    if run[0] in ACTIVE and kind not in (EventKind.STEP_RETRYING, EventKind.STEP_CANCELLED):
        db.execute(
            "UPDATE runs SET last_seq = ?, wake_at = ?, updated_at = ? WHERE run_id = ?", (out.seq, now, now, run_id)
        )
    else:
        db.execute("UPDATE runs SET last_seq = ?, updated_at = ? WHERE run_id = ?", (out.seq, now, run_id))
    db.note("work")
    return True


def list_steps(db: DB, run_id: str) -> list[StepRecord]:
    rows = db.execute(
        "SELECT run_id, step_id, name, status, attempt, max_attempts, created_at, started_at, completed_at, output, "
        "error, ready_at, input FROM steps WHERE run_id = ? ORDER BY created_at, length(step_id), step_id",
        (run_id,),
    )
    return [
        StepRecord(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
            None if r[9] is None else bytes(r[9]), None if r[10] is None else bytes(r[10]), r[11], bytes(r[12]),
        )
        for r in rows
    ]


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
    run = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,))
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
        "SELECT r.status, s.status FROM runs r LEFT JOIN steps s ON s.run_id = r.run_id AND s.step_id = ? "
        "WHERE r.run_id = ?",
        (step_id, run_id),
    )
    if not rows:
        return True
    run_status, step_status = rows[0]
    return run_status in TERMINAL or step_status in (None, "completed", "failed", "cancelled")


def list_streams(db: DB, run_id: str) -> list[tuple[str, int, bool]]:
    rows = db.execute(
        "SELECT namespace, next_index, closed FROM streams WHERE run_id = ? ORDER BY namespace", (run_id,)
    )
    return [(r[0], r[1], bool(r[2])) for r in rows]
