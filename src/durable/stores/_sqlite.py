"""The embedded default store: one SQLite file in WAL mode (or ``:memory:`` for ``memory://``).

All database work happens on one dedicated thread that owns the connection, so the event
loop never blocks on SQLite. That thread also *groups commits*: operations queued while a
transaction is being written run together in the next one (if one of them fails, they run
again each inside its own SAVEPOINT, so it does not undo the others), turning N fsyncs into one
under load. Writes
made inline on the event loop (``memory://``, ``synchronous=normal``) group the same way, per
loop iteration (see ``SQLiteStore._open_group``).

Durability: ``synchronous=FULL`` by default (a committed change survives power loss);
``?synchronous=normal`` survives process crashes but may lose the last commits on power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from .._core.checks import check_number
from .._core.errors import DurableError, SerializationError, StoreCorrupt, StoreError
from .._core.events import EventKind
from . import _sql
from ._base import Notifier
from ._sqlstore import SQLStore

log = logging.getLogger("durable.store")
T = TypeVar("T")
SCHEMA_VERSION = _sql.SCHEMA_VERSION
_BATCH = 64
# Checkpoints (copying the WAL into the database file, with an fsync) run on the database
# thread when it is idle or has run this many operations, never inline on the event loop.
_CHECKPOINT_EVERY = 0.2
_CHECKPOINT_AFTER_OPS = 500
_CHECKPOINT = object()  # queued by the store after many inline writes
_RECLAIM_PAGES = 4096  # pages given back per transaction by reclaim_space (16 MiB of 4 KiB pages)
# Past this size the WAL is started over by a RESTART checkpoint (see _DatabaseThread._checkpoint);
# it is also the size SQLite trims the file back to when it starts over (journal_size_limit).
WAL_LIMIT = 64 * 1024 * 1024
_RESTART_WAIT_MS = 1000
_WAL_CHECK_AFTER_OPS = 100  # inline writes between two looks at the WAL's size


def _bind_directly(kind: type, adapter: Callable[[Any], Any]) -> None:
    """Bind values of exactly ``kind`` through ``adapter``, an identity, unless an adapter is registered.

    The ``sqlite3`` module binds int, float and str as they are, but it puts None and bytes through
    its PEP 246 adaptation first: with no adapter registered for their type it asks the protocol
    type for ``__adapt__``, whose AttributeError (message formatted, then cleared) costs ~3,400
    instructions a value, 14 values in every step's commit (~6% of a ``memory://`` step). A
    registered adapter is found before that. Returning its argument, it binds exactly what
    was bound before, for every user of the module (adapters are per process); one the application
    registered is left alone.
    """
    if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(kind, adapter)


# C methods all three, so binding calls no Python function: an empty dict's get returns None for
# its one argument, None; bytes.__bytes__ returns the bytes object itself.
_bind_directly(type(None), {}.get)
_bind_directly(bytes, bytes.__bytes__)
# An EventKind is a str subclass, adapted too: str.__str__ (a C method) gives its plain value, as
# the module would have bound it, without the StrEnum's own __str__.
_bind_directly(EventKind, str.__str__)

_SCHEMA = _sql.schema(blob="BLOB", real="REAL", bigint="INTEGER", norowid=" WITHOUT ROWID")
# Migrations from version N to N+1, appended as the schema evolves: MIGRATIONS[N] runs on a version-N store.
MIGRATIONS: dict[int, list[str]] = _sql.migrations(blob="BLOB", real="REAL", bigint="INTEGER", norowid=" WITHOUT ROWID")
# (h-compose: schema 3 -> 4 is _sql._COMPOSE_CHANGES, one of those migrations)


class _Tx:
    """The :class:`_sql.DB` view of the connection inside one transaction."""

    for_update = ""
    for_share = ""
    skip_locked = ""
    counts_rows = True

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.topics: list[tuple[str, ...]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # A few rows (a step's commit appends two events) as one multi-row INSERT: one
        # statement instead of one per row.
        multi = _sql.multirow_insert(sql, len(rows)) if 1 < len(rows) <= _MULTIROW_MAX else None
        if multi is not None:
            self.conn.execute(multi, [value for row in rows for value in row])
        else:
            self.conn.executemany(sql, rows)

    def note(self, *topic: str) -> None:
        self.topics.append(topic)


_MULTIROW_MAX = 8


class _Op:
    __slots__ = ("fn", "future", "loop", "topics", "write")

    def __init__(self, fn: Callable[[_Tx], Any], write: bool, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future: asyncio.Future[Any] | None = loop.create_future() if loop is not None else None
        self.topics: list[tuple[str, ...]] = []


class _Group:
    """Inline writes made in one loop iteration, committed together at the start of the next."""

    __slots__ = ("loop", "opener", "ops")

    def __init__(self, loop: asyncio.AbstractEventLoop, opener: asyncio.Task[Any] | None) -> None:
        self.loop = loop
        self.opener = opener  # the task whose inline write opened it: its own writes never wait for it
        self.ops: list[_Op] = []


class _DatabaseThread:
    """Owns the connection; runs queued operations in grouped transactions, and checkpoints.

    It must outlive every failure of the operations it runs (a full disk, an I/O error): an
    operation that fails gets its error, and the thread goes on reading the queue -- a thread
    that died would leave every later write waiting forever.
    """

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], name: str, *, location: str, wal_limit: int, busy_timeout: float
    ) -> None:
        self._connect = connect
        self._location = location
        self._wal_path = f"{location}-wal"
        self._wal_limit = wal_limit
        self._busy_ms = int(busy_timeout * 1000)
        self._page_size = 4096
        self._since_checkpoint = 1  # check once at start
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    def submit(self, op: _Op) -> None:
        self._queue.put(op)

    def request_checkpoint(self) -> None:
        self._queue.put(_CHECKPOINT)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            try:
                self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            except sqlite3.Error:
                self._page_size = 4096
            while True:
                try:
                    op = self._queue.get(timeout=_CHECKPOINT_EVERY)
                except queue.Empty:
                    self._checkpoint(conn)
                    continue
                if op is None:
                    return
                if op is _CHECKPOINT:
                    self._since_checkpoint = 1
                    self._checkpoint(conn)
                    continue
                batch = [op]
                stop = False
                while len(batch) < _BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    if more is _CHECKPOINT:
                        self._since_checkpoint = _CHECKPOINT_AFTER_OPS
                        continue
                    batch.append(more)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        try:
            results = run_batch(conn, batch, location=self._location)
        except BaseException as exc:  # run_batch answers every failure itself; this is the last line
            log.exception("durable: SQLite database thread: a batch failed unexpectedly")
            _rollback(conn)
            error = exc if isinstance(exc, DurableError) else StoreError(f"SQLite {self._location}: {exc!r}")
            results = [(op, False, error) for op in batch]
        _resolve(results)
        self._since_checkpoint += len(batch)
        if self._since_checkpoint >= _CHECKPOINT_AFTER_OPS:
            self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database here, off the event loop (the inline connection never does).

        A PASSIVE checkpoint never waits, but under continuous writes it never catches up either,
        and the WAL only starts over from its beginning after a checkpoint that did. So once the
        WAL holds more than ``wal_limit`` bytes, a RESTART checkpoint waits (briefly) for the
        writers to pause and copies the rest, right after the PASSIVE one copied most of it; the
        next write starts the WAL over, and SQLite cuts its file back to ``wal_limit``
        (``journal_size_limit``). The WAL stays bounded under any load. (A TRUNCATE checkpoint would
        free the file's blocks every time: on this kind of machine it stalls the writers ~5x longer.)
        """
        if self._since_checkpoint:
            frames = 0
            with contextlib.suppress(sqlite3.Error):  # busy, or the disk is full: the next one will do it
                row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                frames = int(row[1]) if row else 0  # frames in the WAL since it last started over
            if frames * self._page_size > self._wal_limit:
                self._restart(conn)
        self._since_checkpoint = 0

    def _restart(self, conn: sqlite3.Connection) -> None:
        # Writers wait meanwhile (inline ones come to this thread's queue); waiting for a reader
        # in another process is bounded to a second, not the full busy timeout: we try again later.
        try:
            conn.execute(f"PRAGMA busy_timeout = {min(self._busy_ms, _RESTART_WAIT_MS)}")
            conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error:
            pass
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Busy(Exception):
    """The database is locked by another connection; try again on the database thread."""


def run_batch(
    conn: sqlite3.Connection, batch: list[_Op], *, fail_if_busy: bool = False, location: str = ""
) -> list[tuple[_Op, bool, Any]]:
    """Run operations in one transaction; return (op, ok, value) per op.

    Writes run one after the other with nothing in between. If one of them raises, the whole
    transaction is rolled back and the batch runs again with each op in its own savepoint, so the
    failing op undoes only itself. (Every op is a function of the database and its own arguments,
    which it never changes: running it again after a rollback computes the same thing. Two
    savepoint statements per op would cost about a fifth of a step's statements.)

    Never raises for a failed operation or commit: each op gets its own error. A write that fails
    mid-transaction (the disk is full, say) may already have made SQLite roll the whole transaction
    back; every rollback here checks first, so the connection is left usable whatever happened.
    """
    if len(batch) == 1:  # no savepoint for a lone operation
        op = batch[0]
        ok, value, op.topics = run_one(conn, op.fn, (), op.write, fail_if_busy=fail_if_busy, location=location)
        return [(op, ok, value)]
    writing = any(op.write for op in batch)
    refused = _begin(conn, writing, fail_if_busy=fail_if_busy, location=location)
    if refused is None and writing:
        together = _run_together(conn, batch)
        if together is not None:
            return _commit(conn, together, location)
        _rollback(conn)  # one of them raised: none of them happened; now each in its own savepoint
        refused = _begin(conn, writing, fail_if_busy=fail_if_busy, location=location)
    if refused is not None:
        return [(op, False, refused) for op in batch]
    results: list[tuple[_Op, bool, Any]] = []
    for i, op in enumerate(batch):
        tx = _Tx(conn)
        savepoint = f"op{i}"
        try:
            if writing:
                conn.execute(f"SAVEPOINT {savepoint}")
            value = op.fn(tx)
        except BaseException as exc:
            error = exc if isinstance(exc, DurableError) else _translate(exc, location)
            if writing and not _rollback_to(conn, savepoint):
                # The transaction is gone (rolled back by us, or by SQLite itself on SQLITE_FULL,
                # an I/O error, ...): nothing of this batch was committed.
                _rollback(conn)
                return [(o, False, error) for o in batch]
            results.append((op, False, error))
            continue
        if writing:
            try:
                conn.execute(f"RELEASE {savepoint}")
            except sqlite3.Error as exc:
                _rollback(conn)
                error = _translate(exc, location)
                return [(o, False, error) for o in batch]
        op.topics = tx.topics
        results.append((op, True, value))
    return _commit(conn, results, location)


def _begin(conn: sqlite3.Connection, write: bool, *, fail_if_busy: bool, location: str) -> BaseException | None:
    """Open a transaction; None, or why it could not be opened (Busy raised instead, with ``fail_if_busy``)."""
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.OperationalError as exc:
        if fail_if_busy and "locked" in str(exc):
            raise Busy() from exc
        return _translate(exc, location)
    except sqlite3.Error as exc:
        return _translate(exc, location)
    return None


def _run_together(conn: sqlite3.Connection, batch: list[_Op]) -> list[tuple[_Op, bool, Any]] | None:
    """Every op of the batch in the open transaction, without savepoints; None as soon as one raises."""
    results: list[tuple[_Op, bool, Any]] = []
    for op in batch:
        tx = _Tx(conn)
        try:
            value = op.fn(tx)
        except BaseException:
            for done, _, _ in results:
                done.topics = []  # rolled back: nothing of theirs to wake anyone for (yet)
            return None
        op.topics = tx.topics
        results.append((op, True, value))
    return results


def _commit(conn: sqlite3.Connection, results: list[tuple[_Op, bool, Any]], location: str) -> list[tuple[_Op, bool, Any]]:
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)  # SQLite may have rolled back already (SQLITE_FULL at COMMIT does)
        error = _translate(exc, location)
        return [(op, False, error) for op, _, _ in results]
    return results


def run_one(
    conn: sqlite3.Connection, fn: Callable[..., Any], args: tuple[Any, ...], write: bool, *, fail_if_busy: bool = False,
    location: str = "",
) -> tuple[bool, Any, list[tuple[str, ...]]]:
    """One operation ``fn(tx, *args)`` in its own transaction, without a batch's savepoints (the
    inline path, every step's commit, and a batch of one); returns (ok, value or error, topics).
    Never raises for a failed operation or commit (see :func:`run_batch`)."""
    refused = _begin(conn, write, fail_if_busy=fail_if_busy, location=location)
    if refused is not None:
        return False, refused, []
    tx = _Tx(conn)
    try:
        value = fn(tx, *args)
    except BaseException as exc:
        _rollback(conn)  # nothing of it was committed
        return False, exc if isinstance(exc, DurableError) else _translate(exc, location), []
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)  # SQLite may have rolled back already (SQLITE_FULL at COMMIT does)
        return False, _translate(exc, location), tx.topics
    return True, value, tx.topics


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if there still is one."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _rollback_to(conn: sqlite3.Connection, savepoint: str) -> bool:
    """Undo one op's savepoint; False if the transaction around it is gone (or cannot be kept)."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute(f"ROLLBACK TO {savepoint}")
        conn.execute(f"RELEASE {savepoint}")
    except sqlite3.Error:
        return False
    return True


# SQLite result codes (sqlite_errorcode & 0xff) that say what a person must do.
_FULL, _TOOBIG, _READONLY, _PERM, _CANTOPEN = 13, 18, 8, 3, 14


def _translate(exc: BaseException, location: str = "") -> BaseException:
    """A driver error as durable's own: StoreError naming the problem, the driver's as its cause."""
    where = f"SQLite {location}" if location else "SQLite"
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StoreCorrupt(location or "sqlite", "the file is not a SQLite database")
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    too_big = code == _TOOBIG or (isinstance(exc, OverflowError) and "longer than" in str(exc))
    if too_big:
        # Over SQLite's own limit (SQLITE_MAX_LENGTH, 1,000,000,000 bytes by default): durable's
        # size limit refuses such values before they get here, unless the build's limit is lower.
        error: BaseException = SerializationError("value", f"too big for {where} ({exc})")
    elif code == _FULL:
        error = StoreError(f"{where}: disk full: the write was not recorded (free some space; nothing recorded before is lost)")
    elif code in (_READONLY, _PERM):
        error = StoreError(f"{where}: read-only or permission denied: {exc}")
    elif isinstance(exc, sqlite3.Error):
        error = StoreError(f"{where} error: {exc}")
    else:
        return exc
    error.__cause__ = exc
    return error


def _resolve(results: list[tuple[_Op, bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, bool, Any]]] = {}
    for item in results:
        loop = item[0].loop
        if loop is not None:
            by_loop.setdefault(loop, []).append(item)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[_Op, bool, Any]]) -> None:
    for op, ok, value in items:
        if op.future is None or op.future.done():
            continue
        if ok:
            op.future.set_result(value)
        else:
            op.future.set_exception(value)


def _bound(fn: Callable[..., T], args: tuple[Any, ...]) -> Callable[[_Tx], T]:
    return lambda db: fn(db, *args)


class SQLiteStore(SQLStore):
    """SQLite store. ``path`` is a file path, or ``":memory:"`` for a private in-memory database.

    Short transactions run inline on the event loop through a second connection whose busy
    timeout is zero: on this kind of machine a thread hand-off costs ~100 µs, ten times a
    ``synchronous=NORMAL`` commit. Inline work never waits for a lock -- if another connection
    holds it, the operation goes to the database thread, which waits (and groups commits).
    With ``synchronous=FULL`` writes always go to the thread, so an fsync never stalls the loop.

    ``read_only=True`` (URL ``?mode=ro``) opens an existing store for reading only, never writing
    to it (no schema, no WAL, no checkpoint); ``None`` (the default) does so by itself when the
    file or its directory cannot be written (a backup, a snapshot, a read-only mount), so reads
    work there and writes fail saying why.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "full", busy_timeout: float = 30.0,
        read_only: bool | None = None, wal_limit: int = WAL_LIMIT,
    ) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.url = "memory://" if self.memory else f"sqlite:///{self.path}"
        if not isinstance(synchronous, str) or synchronous.lower() not in ("full", "normal", "off", "extra"):
            raise ValueError(f"synchronous must be full, normal, extra or off, got {synchronous!r}")
        synchronous = synchronous.lower()
        self.synchronous = synchronous
        self.busy_timeout = check_number("busy_timeout", busy_timeout, minimum=0.0, maximum=86_400.0)
        self.read_only = read_only
        self.wal_limit = int(check_number("wal_limit", wal_limit, minimum=64 * 1024, maximum=2**40, integer=True))
        self.notifier = Notifier()
        self.cross_process = not self.memory
        self._thread: _DatabaseThread | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_writes = 0
        # The WAL was twice wal_limit at the last look: the next write queues behind the checkpoint
        # asked for then (see _count_inline_write).
        self._wal_over = False
        self._opened_read_only = False
        self._read_only_reason = ""  # why it was opened read-only: asked for, or what was found
        self.inline_writes = self.memory or synchronous in ("normal", "off")
        self._group: _Group | None = None  # inline writes waiting to commit together (see _open_group)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.url} synchronous={self.synchronous}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._inline is not None:
            return
        if self.memory:
            self._inline = self._connect()
            return
        reason = await asyncio.to_thread(self._prepare)
        if reason is not None:
            self._inline = await asyncio.to_thread(self._connect_read_only)
            self._opened_read_only = True
            self._read_only_reason = reason
            return
        self._thread = await asyncio.to_thread(
            _DatabaseThread, self._connect, f"durable-sqlite {self.path}", location=self.path,
            wal_limit=self.wal_limit, busy_timeout=self.busy_timeout,
        )
        self._inline = await asyncio.to_thread(self._connect_inline)

    async def aclose(self) -> None:
        thread, self._thread = self._thread, None
        inline, self._inline = self._inline, None
        if thread is not None:
            await asyncio.to_thread(thread.stop)
        if inline is not None:
            inline.close()
        self._opened_read_only = False
        # Waiters (run.result(), stream readers) re-read and learn the store is closed, rather
        # than wait for a notification that can no longer come.
        self.notifier.notify_all()

    def _prepare(self) -> str | None:
        """Decide how to open the file: None to read and write (its directory made), else why read-only."""
        if self.read_only:
            return "opened with mode=ro"
        reason = _unwritable(self.path)
        if reason and self.read_only is None and os.path.exists(self.path):
            return reason
        if reason:
            what = "cannot be written" if os.path.exists(self.path) else "cannot create a store there"
            raise StoreError(f"SQLite {self.path}: {what}: {reason}")
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"SQLite {self.path}: cannot create its directory: {exc.strerror or exc}") from None
        return None

    def _connect_inline(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the database thread checkpoints
        except sqlite3.Error as exc:
            raise _open_error(exc, self.path) from None
        return conn

    def _count_inline_write(self) -> None:
        self._inline_writes += 1
        if self._inline_writes % _WAL_CHECK_AFTER_OPS or self._thread is None:
            return
        # Inline writes never checkpoint: ask the database thread to, every so many writes, and
        # sooner once the WAL has passed its limit (a stat every 100 writes costs ~15 ns a write).
        size = _size(f"{self.path}-wal")
        if self._inline_writes >= _CHECKPOINT_AFTER_OPS or size > self.wal_limit:
            self._inline_writes = 0
            self._thread.request_checkpoint()
            # Writes go on inline while the thread's PASSIVE checkpoint copies the WAL. But a chain of
            # inline writes holds the GIL and the write lock nearly all the time, and on a busy machine
            # the thread's RESTART could lose to it for thousands of writes (the WAL growing ~20 KB a
            # step): at twice the limit, the next write goes to the thread, behind that checkpoint,
            # and waits for it. That bounds the WAL near 2 x wal_limit under any load.
            self._wal_over = size > 2 * self.wal_limit

    def _connect(self) -> sqlite3.Connection:
        if not self.memory:
            # Read-only first: a file that is not a durable store (or is a newer one) is refused
            # before anything writes to it -- PRAGMA journal_mode=WAL below rewrites its header.
            _check_file(self.path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
            if not self.memory:
                # Only takes on a file with no tables yet (before journal_mode, which writes the
                # header): a new store can give deleted runs' pages back (reclaim_space). An older
                # file keeps its mode until `durable gc --vacuum` rebuilds it (h-retain).
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL" if not self.memory else "PRAGMA journal_mode=MEMORY")
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute(f"PRAGMA journal_size_limit={self.wal_limit}")
            _migrate(conn, self.path)
        except sqlite3.Error as exc:
            raise _open_error(exc, self.path) from None
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            raise StoreError(f"SQLite {self.path}: no store there (the file does not exist; mode=ro never creates one)")
        version = _check_file(self.path)
        if version is not None and version < SCHEMA_VERSION:
            raise StoreError(
                f"SQLite {self.path}: has schema {version}, this version reads {SCHEMA_VERSION}: it must be migrated "
                "(durable migrate) by a process that can write to it"
            )
        # Immutable only where nothing can change under it and nothing is left in a WAL to miss:
        # no -wal file, on a location we cannot write (a snapshot, a backup, a read-only mount).
        immutable = not os.path.exists(f"{self.path}-wal") and bool(_unwritable(self.path))
        try:
            conn = _read_only_connection(self.path, timeout=0, immutable=immutable)
            conn.execute("SELECT 1 FROM durable_meta LIMIT 1")  # fails now, not at the first read, if it cannot be read
        except sqlite3.Error as exc:
            raise _open_error(exc, self.path) from None
        return conn

    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        if self._inline is None:
            raise StoreError(f"{self!r} is not open (use it inside `async with`)")
        if write and self._opened_read_only:
            raise StoreError(
                f"SQLite {self.path} is open read-only ({self._read_only_reason}): {fn.__name__} cannot write to it"
            )
        if self._thread is None or not write or (self.inline_writes and not self._wal_over):
            if write:
                group = self._group
                if group is not None and group.opener is not asyncio.current_task() and group.loop is asyncio.get_running_loop():
                    op = _Op(_bound(fn, args), True, group.loop)
                    group.ops.append(op)
                    return await self._outcome(op)  # type: ignore[no-any-return]  # (typing.cast: a Python call per write)
            # No checkpoint here: an inline call completes without yielding, like a dict
            # lookup. Loops that call the store repeatedly checkpoint themselves.
            try:
                ok, value, topics = run_one(
                    self._inline, fn, args, write, fail_if_busy=self._thread is not None, location=self.path
                )
            except Busy:
                pass
            else:
                if write:
                    self._count_inline_write()
                    if self._group is None:
                        self._open_group(asyncio.current_task())
                for topic in topics:
                    self.notifier.notify(*topic)
                if not ok:
                    raise value
                return value  # type: ignore[no-any-return]
        assert self._thread is not None
        if write:
            self._wal_over = False  # this write queues behind the checkpoint: the ones after it go inline again
        op = _Op(_bound(fn, args), write, asyncio.get_running_loop())
        self._thread.submit(op)
        return await self._outcome(op)  # type: ignore[no-any-return]  # (typing.cast: a Python call per write)

    async def _outcome(self, op: _Op) -> Any:
        """Wait for a queued operation's result; then wake whoever waits on what it changed."""
        assert op.future is not None
        try:
            return await op.future
        finally:
            for topic in op.topics:
                self.notifier.notify(*topic)

    # -- group commit of inline writes ----------------------------------------------------------
    #
    # An inline write commits at once, and opens a group for the rest of this loop iteration:
    # writes that other tasks make before the loop comes round again join it, and commit
    # together in one transaction at the start of the next iteration (as on the database
    # thread: see run_batch). Under load -- a thousand runs each finishing a step
    # -- that is one BEGIN/COMMIT for all of them instead of one each; a lone chain of steps
    # (its own writes never join the group it opened) keeps committing inline without yielding.

    def _open_group(self, opener: asyncio.Task[Any] | None) -> None:
        loop = asyncio.get_running_loop()
        self._group = _Group(loop, opener)
        loop.call_soon(self._commit_group)

    def _commit_group(self) -> None:
        group, self._group = self._group, None
        if group is None or not group.ops:
            return  # nobody joined: the next write commits inline again
        if len(group.ops) > 1:
            self._open_group(None)  # still under load: the next iteration's writes (all of them) group too
        conn = self._inline
        if conn is None:
            _settle([(op, False, StoreError(f"{self!r} is closed")) for op in group.ops])
            return
        try:
            results = run_batch(conn, group.ops, fail_if_busy=self._thread is not None, location=self.path)
        except Busy:  # another connection holds the lock: the database thread waits for it
            assert self._thread is not None
            for op in group.ops:
                self._thread.submit(op)
            return
        for _ in group.ops:
            self._count_inline_write()
        _settle(results)


    # -- retention (h-retain) ----------------------------------------------------------------

    async def reclaim_space(self, *, vacuum: bool = False) -> int | None:
        """Give deleted runs' pages back to the file system; the bytes the database file shrank by.

        A store created with incremental auto-vacuum (every new file) frees its free pages at once.
        An older file (auto_vacuum NONE) reuses them for new data but keeps its size; ``vacuum``
        rebuilds it (VACUUM: it needs free disk space as large as the database and holds the write
        lock while it runs) and turns incremental auto-vacuum on for next time.
        """
        if self.memory:
            return None
        if self._opened_read_only:
            raise StoreError(f"SQLite {self.path} is open read-only ({self._read_only_reason}): it cannot reclaim space")
        return await asyncio.to_thread(self._reclaim, vacuum)

    def _reclaim(self, vacuum: bool) -> int:
        # Its own connection: VACUUM and incremental_vacuum cannot run inside the transactions the
        # store's connections open for each operation, and they run rarely.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        try:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            before = conn.execute("PRAGMA page_count").fetchone()[0]
            if vacuum:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("VACUUM")
            elif conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
                # A few thousand pages per transaction, so that writers get the lock in between;
                # executescript steps the pragma to the end (execute() would free a single page).
                for _ in range(10_000):  # (bounded: writers may free pages meanwhile)
                    if conn.execute("PRAGMA freelist_count").fetchone()[0] == 0:
                        break
                    conn.executescript(f"PRAGMA incremental_vacuum({_RECLAIM_PAGES});")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # in WAL mode the file shrinks at a checkpoint
            after = conn.execute("PRAGMA page_count").fetchone()[0]
            return max(0, int(before - after) * int(page_size))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            conn.close()
# -- opening: what is at the path, read without writing ------------------------------------------

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _unwritable(path: str) -> str:
    """Why a store at ``path`` cannot be written ("" if it can): a read-only file system, or permissions."""
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(directory):  # a store in a directory still to be created: its nearest parent
        directory = os.path.dirname(directory)
    target = path if os.path.exists(path) else directory
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    # SQLite writes the file and creates -wal/-shm beside it: both must be writable.
    for where in dict.fromkeys((target, directory)):
        if not os.access(where, os.W_OK):
            return f"permission denied: {where} is not writable"
    return ""


def _read_only_connection(path: str, *, timeout: float, immutable: bool) -> sqlite3.Connection:
    """A connection that cannot write. ``immutable``: no locks and no WAL, so it creates no file
    either; right only when there is no WAL to read (no -wal file beside the database)."""
    options = "mode=ro&immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(
        f"file:{quote(os.path.abspath(path))}?{options}", uri=True, isolation_level=None, check_same_thread=False,
        timeout=timeout,
    )


def _check_file(path: str) -> int | None:
    """Refuse what is not a durable store before anything touches it; return its schema version
    (None for a new or empty file). Reads only: the file stays byte for byte as it was."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise StoreError(f"SQLite {path}: permission denied (the file cannot be read)") from None
    except OSError as exc:
        raise StoreError(f"SQLite {path}: cannot be read: {exc.strerror or exc}") from None
    if not header:
        return None  # an empty file is a new database to SQLite
    if header != _SQLITE_MAGIC:
        raise StoreCorrupt(path, "the file is not a SQLite database")
    # Without a -wal file everything committed is in the file itself, and an immutable read of it
    # touches nothing. With one (someone has it open in WAL mode) the WAL must be read too.
    # Either way a surprise (another process began writing meanwhile) is read again the normal way.
    immutable = not os.path.exists(f"{path}-wal")
    try:
        try:
            tables, version = _schema_marker(path, immutable=immutable)
        except sqlite3.Error:
            if not immutable:
                raise
            tables, version = _schema_marker(path, immutable=False)
        if immutable and ((version is None and tables) or (version or 0) > SCHEMA_VERSION) \
                and os.path.exists(f"{path}-wal"):
            tables, version = _schema_marker(path, immutable=False)
    except sqlite3.Error as exc:
        raise _open_error(exc, path) from None
    if version is None:
        if tables:
            raise StoreCorrupt(path, _foreign(tables))
        return None
    if version > SCHEMA_VERSION:
        raise StoreCorrupt(path, _newer(version))
    return version


def _schema_marker(path: str, *, immutable: bool) -> tuple[set[str], int | None]:
    """The database's tables, and durable's schema version if it is a durable store."""
    conn = _read_only_connection(path, timeout=5.0, immutable=immutable)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "durable_meta" not in tables:
            return tables, None
        row = conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
        return tables, int(row[0]) if row else 0
    finally:
        conn.close()


def _foreign(tables: set[str]) -> str:
    return (
        "is a SQLite database but not a durable store (it has tables " + ", ".join(sorted(tables)[:5])
        + "); it was left untouched: point DURABLE_STORE at a new file"
    )


def _newer(version: int) -> str:
    return f"was written by a newer durable (schema {version}; this version reads up to {SCHEMA_VERSION})"


def _open_error(exc: sqlite3.Error, path: str) -> StoreError:
    """Why a file could not be opened, in words a person can act on: read-only locations and
    permission problems are not corruption."""
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return StoreError(f"SQLite {path}: permission denied (the file cannot be read)")
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    reason = _unwritable(path)
    if reason or code in (_READONLY, _PERM, _CANTOPEN):
        return StoreError(
            f"SQLite {path}: cannot be opened for writing: {reason or exc} (to read it, open it read-only: "
            "sqlite:///...?mode=ro; `durable runs`, `inspect` and `events` do)"
        )
    if code == _FULL:
        return StoreError(f"SQLite {path}: disk full: the store cannot be opened until some space is freed")
    return StoreCorrupt(path, f"cannot be opened as a durable store: {exc}")


def _migrate(conn: sqlite3.Connection, location: str) -> None:
    """Create the schema on an empty database, upgrade an older one, refuse anything else."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "durable_meta" not in tables:
            if tables:
                raise StoreCorrupt(location, _foreign(tables))
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO durable_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT INTO durable_meta (key, value) VALUES ('format', 'durable-sqlite')")
        else:
            row = conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreCorrupt(location, _newer(version))
            if version < SCHEMA_VERSION:
                refusal = _sql.upgrade_refusal(version, conn.execute(_sql.LIVE_WORKERS, (time.time(),)).fetchall())
                if refusal is not None:
                    raise StoreError(f"SQLite {location} {refusal}")
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise StoreCorrupt(location, f"has unknown schema version {version}")
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
                conn.execute("UPDATE durable_meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
