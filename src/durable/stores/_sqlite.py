"""The embedded default store: one SQLite file in WAL mode (or ``:memory:`` for ``memory://``).

All database work happens on one dedicated thread that owns the connection, so the event
loop never blocks on SQLite. That thread also *groups commits*: operations queued while a
transaction is being written run together in the next one (each inside its own SAVEPOINT, so
one failing operation does not undo the others), turning N fsyncs into one under load.

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
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._core.errors import DurableError, StoreCorrupt, StoreError
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

_SCHEMA = _sql.schema(blob="BLOB", real="REAL", bigint="INTEGER", norowid=" WITHOUT ROWID")
# Migrations from version N to N+1, appended as the schema evolves: MIGRATIONS[N] runs on a version-N store.
MIGRATIONS: dict[int, list[str]] = _sql.migrations(blob="BLOB", real="REAL", bigint="INTEGER", norowid=" WITHOUT ROWID")
# (h-compose: schema 3 -> 4 is _sql._COMPOSE_CHANGES, one of those migrations)


class _Tx:
    """The :class:`_sql.DB` view of the connection inside one transaction."""

    for_update = ""
    skip_locked = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.topics: list[tuple[str, ...]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def note(self, *topic: str) -> None:
        self.topics.append(topic)


class _Op:
    __slots__ = ("fn", "future", "loop", "topics", "write")

    def __init__(self, fn: Callable[[_Tx], Any], write: bool, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future: asyncio.Future[Any] | None = loop.create_future() if loop is not None else None
        self.topics: list[tuple[str, ...]] = []


class _DatabaseThread:
    """Owns the connection; runs queued operations in grouped transactions."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str, *, memory: bool = False) -> None:
        self._connect = connect
        self._memory = memory
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
        _resolve(run_batch(conn, batch))
        self._since_checkpoint += len(batch)
        if self._since_checkpoint >= _CHECKPOINT_AFTER_OPS:
            self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database here, off the event loop (the inline connection never does)."""
        if self._since_checkpoint and not self._memory:
            with contextlib.suppress(sqlite3.Error):  # busy: the next idle moment will do it
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._since_checkpoint = 0


class Busy(Exception):
    """The database is locked by another connection; try again on the database thread."""


def run_batch(conn: sqlite3.Connection, batch: list[_Op], *, fail_if_busy: bool = False) -> list[tuple[_Op, bool, Any]]:
    """Run operations in one transaction, each in its own savepoint; return (op, ok, value) per op."""
    results: list[tuple[_Op, bool, Any]] = []
    writing = any(op.write for op in batch)
    try:
        conn.execute("BEGIN IMMEDIATE" if writing else "BEGIN")
    except sqlite3.OperationalError as exc:
        if fail_if_busy and "locked" in str(exc):
            raise Busy() from exc
        return [(op, False, _translate(exc)) for op in batch]
    except sqlite3.Error as exc:
        return [(op, False, _translate(exc)) for op in batch]
    single = len(batch) == 1
    for i, op in enumerate(batch):
        tx = _Tx(conn)
        savepoint = f"op{i}"
        if writing and not single:
            conn.execute(f"SAVEPOINT {savepoint}")
        try:
            value = op.fn(tx)
        except BaseException as exc:
            if writing and not single:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
            elif single:
                conn.execute("ROLLBACK")
                return [(op, False, exc if isinstance(exc, DurableError) else _translate(exc))]
            results.append((op, False, exc if isinstance(exc, DurableError) else _translate(exc)))
            continue
        if writing and not single:
            conn.execute(f"RELEASE {savepoint}")
        op.topics = tx.topics
        results.append((op, True, value))
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        error = _translate(exc)
        results = [(op, False, error) for op, _, _ in results]
    return results


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StoreCorrupt("sqlite", "the file is not a SQLite database")
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"SQLite error: {exc}")
        error.__cause__ = exc
        return error
    return exc


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
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "full", busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.url = "memory://" if self.memory else f"sqlite:///{self.path}"
        synchronous = synchronous.lower()
        if synchronous not in ("full", "normal", "off", "extra"):
            raise ValueError(f"synchronous must be full, normal, extra or off, got {synchronous!r}")
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.notifier = Notifier()
        self.cross_process = not self.memory
        self._thread: _DatabaseThread | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_writes = 0
        self.inline_writes = self.memory or synchronous in ("normal", "off")

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.url} synchronous={self.synchronous}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._inline is not None:
            return
        if self.memory:
            self._inline = self._connect()
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = await asyncio.to_thread(_DatabaseThread, self._connect, f"durable-sqlite {self.path}")
        self._inline = await asyncio.to_thread(self._connect_inline)

    async def aclose(self) -> None:
        thread, self._thread = self._thread, None
        inline, self._inline = self._inline, None
        if thread is not None:
            await asyncio.to_thread(thread.stop)
        if inline is not None:
            inline.close()
        # Waiters (run.result(), stream readers) re-read and learn the store is closed, rather
        # than wait for a notification that can no longer come.
        self.notifier.notify_all()

    def _connect_inline(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the database thread checkpoints
        return conn

    def _count_inline_write(self) -> None:
        self._inline_writes += 1
        if self._inline_writes >= _CHECKPOINT_AFTER_OPS and self._thread is not None:
            self._inline_writes = 0
            self._thread.request_checkpoint()

    def _connect(self) -> sqlite3.Connection:
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
            _migrate(conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(self.path, f"cannot be opened as a durable store: {exc}") from None
        return conn

    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        if self._inline is None:
            raise StoreError(f"{self!r} is not open (use it inside `async with`)")
        if self._thread is None or not write or self.inline_writes:
            # No checkpoint here: an inline call completes without yielding, like a dict
            # lookup. Loops that call the store repeatedly checkpoint themselves.
            op = _Op(_bound(fn, args), write)
            try:
                ((_, ok, value),) = run_batch(self._inline, [op], fail_if_busy=self._thread is not None)
            except Busy:
                pass
            else:
                if write:
                    self._count_inline_write()
                for topic in op.topics:
                    self.notifier.notify(*topic)
                if not ok:
                    raise value
                return typing.cast(T, value)
        assert self._thread is not None
        op = _Op(_bound(fn, args), write, asyncio.get_running_loop())
        self._thread.submit(op)
        assert op.future is not None
        try:
            result: T = await op.future
        finally:
            for topic in op.topics:
                self.notifier.notify(*topic)
        return result


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


def _migrate(conn: sqlite3.Connection, location: str) -> None:
    """Create the schema on an empty database, upgrade an older one, refuse anything else."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "durable_meta" not in tables:
            if tables:
                raise StoreCorrupt(
                    location,
                    "is a SQLite database but not a durable store (it has tables "
                    + ", ".join(sorted(tables)[:5])
                    + "); point DURABLE_STORE at a new file",
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO durable_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT INTO durable_meta (key, value) VALUES ('format', 'durable-sqlite')")
        else:
            row = conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreCorrupt(
                    location, f"was written by a newer durable (schema {version}; this version reads up to {SCHEMA_VERSION})"
                )
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise StoreCorrupt(location, f"has unknown schema version {version}")
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
                conn.execute("UPDATE durable_meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
