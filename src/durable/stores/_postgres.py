"""The PostgreSQL store: many worker processes, on any number of machines, sharing one database.

::

    runtime ──await──► PostgresStore._call(fn, *args)                         event loop
                          │  one transaction = one hop to a worker thread
                          ▼
                   _attempt: BEGIN · fn(_Tx) · SELECT txid, pg_notify(topics) · COMMIT
                          │  fn is the shared SQL of stores/_sql.py (also run by SQLite),
                          │  pipelined: only statements whose rows fn reads wait for an answer
                          ▼
                      PostgreSQL ──NOTIFY "durable:<schema>"──► LISTEN connection   event loop
                                                                  └─► notifier.notify(topic)
                                                                      (every other process)

Why threads and not ``psycopg.AsyncConnection`` for transactions: the transaction bodies in
``_sql.py`` are plain functions, written once for ``sqlite3``, that decide what to run next
from what they just read (claim loops, conditional updates). Running them on a blocking
connection in a worker thread (from a ``psycopg_pool.ConnectionPool``) costs one thread
hop per transaction, about what one statement round trip costs here, and keeps the SQL in
one place. Cancelling the caller waits for the transaction in flight to finish, so a
commit is never half-known to this process. The LISTEN side, which only waits, is a
``psycopg.AsyncConnection`` on the event loop.

Failures, and what each one becomes:

- connection lost (server restart, ``pg_terminate_backend``, network): before ``COMMIT``
  the transaction certainly rolled back, so it is run again on a fresh connection, with
  back-off, for up to ``reconnect_timeout`` seconds. If the connection breaks *during*
  ``COMMIT``, the outcome is looked up with ``txid_status()`` of the transaction id read
  just before: committed means done (the result computed is returned), aborted means run
  it again. Nothing recorded is lost and nothing is recorded twice.
- serialization failure, deadlock, a unique-key race (two first writes to one stream): the
  transaction function runs again after a short jittered pause.
- anything else from the driver: :class:`~durable.StoreError` naming the operation, with
  the driver's exception as ``__cause__``. Connecting (bad URL, wrong credentials, server
  unreachable) fails with one line that names the server, never with the password.

The LISTEN connection reconnects on its own; after a gap it wakes every local listener
(they re-read, so a notification missed meanwhile costs one read, not a hang).

URL: ``postgresql://user:password@host:port/dbname?option=value``. libpq options pass
through (``sslmode``, ``connect_timeout``, ...); durable's own are ``schema`` (keep
durable's tables in their own schema, created on first use), ``pool_size`` (connections
per process, default 10) and ``reconnect_timeout`` (seconds, default 60).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import anyio
import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from .._core.errors import DurableError, InvalidStoreURL, StoreCorrupt, StoreError, StoreUnavailable
from . import _sql
from ._base import Notifier
from ._sqlstore import SQLStore

log = logging.getLogger("durable.store")
T = TypeVar("T")

SCHEMA_VERSION = _sql.SCHEMA_VERSION
# Migrations from version N to N+1, appended as the schema evolves: MIGRATIONS[N] runs on a version-N store.
MIGRATIONS: dict[int, list[str]] = _sql.migrations(blob="BYTEA", real="DOUBLE PRECISION", bigint="BIGINT", norowid="")

# The tables of stores/_sql.py in PostgreSQL types (shared with SQLite, so they stay alike).
_TABLES = ("durable_meta", "workers", "runs", "events", "steps", "hooks", "waits", "streams", "chunks", "published_workflows",
           "queues", "queue_admissions", "schedules", "run_values")  # (h-compose: the last four)
_SCHEMA = _sql.schema(blob="BYTEA", real="DOUBLE PRECISION", bigint="BIGINT", norowid="")

# pg_advisory_xact_lock(class, hashtext(schema)): serialises schema creation and migration
# between processes starting at once. The class is "dura" in ASCII.
_MIGRATION_LOCK_CLASS = 0x64757261
_OPTIONS = ("schema", "pool_size", "reconnect_timeout")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,49}")
# NOTIFY payload: "<nonce>\x1e<topic>\x1e<topic>...", each topic's parts joined by \x1f.
# The nonce names the sending store, whose own process was already woken in-process.
_TOPIC_SEP = "\x1e"
_PART_SEP = "\x1f"
_PAYLOAD_MAX = 7900  # PostgreSQL refuses payloads of 8000 bytes or more
# SQLSTATEs after which the transaction function simply runs again.
_CONFLICTS = {"40001": "serialization failure", "40P01": "deadlock", "23505": "unique-key race"}
_MAX_CONFLICT_RETRIES = 20
# SQLSTATEs meaning "this connection is no good": reconnect and run the transaction again.
_CONNECTION_STATES = {"57P01", "57P02", "57P03", "25006"}  # shutdown x3, read-only (failed-over primary)


# -- the URL --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """Where to connect, parsed once from the store URL."""

    conninfo: str  # libpq connection string, durable's own options removed, defaults added
    schema: str | None
    pool_size: int
    reconnect_timeout: float
    display: str  # user@host:port/dbname, never the password
    masked_url: str
    user: str
    host: str
    port: str
    dbname: str


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _parse_url(url: str) -> _Target:
    """Split durable's options from libpq's, validate both, and add safe defaults."""
    masked = _mask(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise InvalidStoreURL(masked, "a PostgreSQL URL starts with postgresql://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OPTIONS}
    rest = [(k, v) for k, v in query if k not in _OPTIONS]
    schema = ours.get("schema") or None
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidStoreURL(masked, f"schema must be a lower-case name of letters, digits and _, got {schema!r}")
    try:
        pool_size = int(ours.get("pool_size", "10"))
        reconnect_timeout = float(ours.get("reconnect_timeout", "60"))
    except ValueError as exc:
        raise InvalidStoreURL(masked, f"pool_size and reconnect_timeout must be numbers ({exc})") from None
    if pool_size < 1:
        raise InvalidStoreURL(masked, f"pool_size must be at least 1, got {pool_size}")
    libpq_url = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.Error as exc:
        raise InvalidStoreURL(masked, _one_line(str(exc))) from None
    extra: dict[str, Any] = {}
    # Without connect_timeout, libpq waits forever for a host that drops packets.
    extra.setdefault("connect_timeout", params.get("connect_timeout") or 10)
    extra.setdefault("application_name", params.get("application_name") or "durable")
    # Keepalives notice a silently dead peer (a machine gone, a cut network) in ~25 s.
    for key, value in (("keepalives", 1), ("keepalives_idle", 10), ("keepalives_interval", 5), ("keepalives_count", 3)):
        extra[key] = params.get(key, value)
    # A worker frozen or cut off mid-transaction holds row locks that others wait for; the
    # server ends such a session after a minute (ours never idle inside a transaction).
    # Server-side keepalives end the session of a machine that vanished (its TCP peer gone).
    options = str(params.get("options", ""))
    for setting in ("idle_in_transaction_session_timeout=60s", "tcp_keepalives_idle=10", "tcp_keepalives_interval=5",
                    "tcp_keepalives_count=3"):
        if setting.split("=")[0] not in options:
            options += f" -c {setting}"
    if schema is not None:
        options += f" -c search_path={schema}"
    extra["options"] = options.strip()
    conninfo = make_conninfo(libpq_url, **extra)
    user = str(params.get("user") or parts.username or "(default user)")
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    if not all(p.strip().isdigit() for p in port.split(",")):
        raise InvalidStoreURL(masked, f"the port must be a number, got {port!r}")
    dbname = str(params.get("dbname") or user)
    return _Target(
        conninfo=conninfo, schema=schema, pool_size=pool_size, reconnect_timeout=reconnect_timeout,
        display=f"{user}@{host}:{port}/{dbname}" + (f" (schema {schema})" if schema else ""),
        masked_url=masked, user=user, host=host, port=port, dbname=dbname,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _connect_error(exc: BaseException, target: _Target) -> StoreError:
    """One line that says which server refused and why, in words a person can act on."""
    text = _one_line(str(exc))
    low = text.lower()
    # libpq prefixes: "connection failed: connection to server at "h" (ip), port p failed: <reason>"
    reason = re.sub(r"^(connection failed: |connection is bad: )?(connection to server (at|on) .*? failed: )?", "", text)
    if "password authentication failed" in low or "authentication failed" in low:
        problem = f"password authentication failed for user {target.user!r} (check the user and password in the URL)"
    elif "no password supplied" in low:
        problem = f"the server wants a password for user {target.user!r} and the URL has none"
    elif re.search(r'database ".*" does not exist', low):
        problem = f"database {target.dbname!r} does not exist (create it: createdb {target.dbname})"
    elif re.search(r'role ".*" does not exist', low):
        problem = f"role {target.user!r} does not exist"
    elif "connection refused" in low:
        problem = f"connection refused (is PostgreSQL running and listening on {target.host}:{target.port}?)"
    elif "could not translate host name" in low or "name or service not known" in low:
        problem = f"unknown host {target.host!r}"
    elif "timeout expired" in low:
        problem = "no answer before connect_timeout (is the host reachable? a firewall?)"
    else:
        problem = reason
    return StoreError(f"cannot connect to PostgreSQL {target.display}: {problem}")


# -- one transaction ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _pg(statement: str) -> tuple[str, bool]:
    """``?`` placeholders (the shared SQL's dialect) to psycopg's ``%s``; and whether it returns rows."""
    upper = statement.lstrip().upper()
    returns = upper.startswith(("SELECT", "WITH", "VALUES")) or "RETURNING" in upper
    return statement.replace("%", "%%").replace("?", "%s"), returns


_MULTIROW_MAX = 64


class _Tx:
    """The :class:`_sql.DB` view of one pooled connection inside one transaction.

    In a write transaction the connection is in pipeline mode: statements that return no
    rows (most INSERTs and UPDATEs) are sent without waiting for their answer, which
    arrives with the next statement that does return rows. A step's commit then costs
    four round trips instead of nine: little on one machine, milliseconds across a
    network. An error in a statement sent ahead surfaces at the next read, inside the same
    transaction function, and aborts it as a whole. Each read ends its batch with a Sync
    (not a mere Flush), so between our statements the server sees the session "idle in
    transaction", which ``idle_in_transaction_session_timeout`` ends if this process is
    frozen or cut off while it holds row locks.
    """

    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    counts_rows = False  # a row count waits for the statement's answer: RETURNING costs the same and says more

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.cursor = conn.cursor()  # one cursor for the whole transaction: a new one per statement costs ~2x
        self.pipeline: psycopg.Pipeline | None = None
        self.topics: list[tuple[str, ...]] = []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        query, returns = _pg(statement)
        self.cursor.execute(query, params)
        if not returns:
            return []
        if self.pipeline is not None:
            self.pipeline.sync()
        return self.cursor.fetchall()

    def execute_count(self, statement: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(_pg(statement)[0], params)
        if self.pipeline is not None:
            self.pipeline.sync()
        return self.cursor.rowcount

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        multi = _sql.multirow_insert(statement, len(rows)) if 1 < len(rows) <= _MULTIROW_MAX else None
        if multi is not None:  # one statement, not one per row: psycopg's per-statement cost dominates here
            self.cursor.execute(_pg(multi)[0], [value for row in rows for value in row])
        else:
            self.cursor.executemany(_pg(statement)[0], rows)

    def note(self, *topic: str) -> None:
        if topic not in self.topics:
            self.topics.append(topic)


def _payloads(nonce: str, topics: Sequence[tuple[str, ...]]) -> list[str]:
    """Pack a transaction's topics into as few NOTIFY payloads as fit the size limit."""
    payloads: list[str] = []
    current = nonce
    for topic in topics:
        item = _PART_SEP.join(topic)
        if len(item.encode()) > _PAYLOAD_MAX - 64:
            item = _PART_SEP.join(topic[:2])[: _PAYLOAD_MAX // 8]  # a coarser wake-up still wakes
        if len((current + _TOPIC_SEP + item).encode()) > _PAYLOAD_MAX:
            payloads.append(current)
            current = nonce
        current += _TOPIC_SEP + item
    if current != nonce:
        payloads.append(current)
    return payloads


class _Lost(Exception):
    """The connection broke. ``xid`` is set when it broke during COMMIT: the outcome must be looked up."""

    def __init__(self, cause: BaseException, xid: int | None = None, value: Any = None,
                 topics: Sequence[tuple[str, ...]] = ()) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.xid = xid
        self.value = value
        self.topics = list(topics)


class _Conflict(Exception):
    """A serialization failure, deadlock or unique-key race: run the transaction function again."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _is_connection_error(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    if conn is not None and conn.closed:
        return True
    state = getattr(exc, "sqlstate", None)
    return state is not None and (state.startswith("08") or state in _CONNECTION_STATES)


# -- the store ------------------------------------------------------------------------------


class PostgresStore(SQLStore):
    """PostgreSQL store: ``FOR UPDATE SKIP LOCKED`` claims, leases with heartbeats, LISTEN/NOTIFY wake-ups.

    Build it from a URL (``store_from_url`` does); :meth:`open` connects, creates or
    migrates the schema (under an advisory lock) and starts listening.
    """

    cross_process = True
    notifies_across_processes = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._target = _parse_url(url)
        self.notifier = Notifier()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._listener: asyncio.Task[None] | None = None
        self._channel = ""
        self._nonce = f"{random.getrandbits(48):012x}"
        self._stats: Counter[str] = Counter()
        self._outage_since: float | None = None
        self._check_lock = threading.Lock()
        self._checked_at = 0.0

    def __repr__(self) -> str:
        return f"<PostgresStore {self._target.masked_url}>"

    def statistics(self) -> dict[str, int]:
        """Counters: transactions by operation, retries, reconnections, notifications in and out."""
        return dict(self._stats)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._channel = await anyio.to_thread.run_sync(self._prepare)
        target = self._target
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            target.conninfo, min_size=1, max_size=target.pool_size, open=False, name="durable",
            kwargs={"autocommit": True}, timeout=target.reconnect_timeout,
            reconnect_timeout=max(target.reconnect_timeout, 30.0),
        )
        try:
            await anyio.to_thread.run_sync(functools.partial(pool.open, wait=True, timeout=30.0))
        except PoolTimeout:
            await anyio.to_thread.run_sync(pool.close)
            raise StoreError(f"cannot connect to PostgreSQL {target.display}: no connection within 30 s") from None
        self._pool = pool
        self._limiter = anyio.CapacityLimiter(target.pool_size)
        listening: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listener = asyncio.get_running_loop().create_task(self._listen(listening), name="durable LISTEN")
        try:
            await listening
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            try:
                await listener
            except asyncio.CancelledError:
                # Our own cancel of the listener ends here; a cancellation of this task goes on.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:
                log.exception("durable: the LISTEN task failed")
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pool.close)
        self.notifier.notify_all()  # waiters re-read and learn the store is closed

    def _prepare(self) -> str:
        """Connect once (clear errors), create or migrate the schema, and name the NOTIFY channel."""
        conn = self._connect_direct()
        try:
            _migrate(conn, self._target)
            schema = conn.execute("SELECT current_schema()").fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self._target.display}: cannot prepare the schema: {_one_line(str(exc))}") from exc
        finally:
            conn.close()
        return f"durable:{schema[0] if schema else 'public'}"[:63]

    def _connect_direct(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.Connection.connect(self._target.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise _connect_error(exc, self._target) from None

    async def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema now (``durable migrate``); return (version before, version after)."""

        def run() -> tuple[int, int]:
            conn = self._connect_direct()
            try:
                return _migrate(conn, self._target)
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL {self._target.display}: migration failed: {_one_line(str(exc))}") from exc
            finally:
                conn.close()

        return await anyio.to_thread.run_sync(run)

    # -- transactions ----------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``fn(db, *args)`` as one transaction, retried across conflicts and lost connections."""
        if self._pool is None or self._limiter is None:
            raise StoreError(f"{self!r} is not open (use it inside `async with`)")
        self._stats[fn.__name__] += 1
        conflicts = 0
        delay = 0.02
        deadline: float | None = None
        unsure: _Lost | None = None  # the connection broke during COMMIT: did it commit?
        while True:
            try:
                if unsure is None:
                    value, topics = await anyio.to_thread.run_sync(
                        self._attempt, fn, args, write, limiter=self._limiter
                    )
                else:
                    assert unsure.xid is not None
                    status = await anyio.to_thread.run_sync(self._xact_status, unsure.xid, limiter=self._limiter)
                    if status == "in progress":  # the old backend is still finishing it
                        raise _Lost(unsure.cause)
                    self._stats["commits_looked_up"] += 1
                    if status != "committed":  # aborted: nothing happened, run it again
                        unsure = None
                        continue
                    value, topics = unsure.value, unsure.topics
            except _Conflict as exc:
                conflicts += 1
                self._stats["conflict_retries"] += 1
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise self._error(fn, exc.cause) from exc.cause
                await anyio.sleep(random.uniform(0, min(0.2, 0.002 * 2**conflicts)))
                continue
            except _Lost as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._target.reconnect_timeout
                self._note_outage(exc.cause)
                if exc.xid is not None and unsure is None:
                    unsure = exc
                if now >= deadline:
                    raise StoreUnavailable(
                        f"lost the connection to PostgreSQL {self._target.display} and could not get it back "
                        f"within {self._target.reconnect_timeout:g} s: {_one_line(str(exc.cause))}"
                    ) from None
                await anyio.sleep(min(delay, deadline - now) * random.uniform(0.5, 1.0))
                delay = min(2.0, delay * 2)
                continue
            if self._outage_since is not None:
                log.warning(
                    "durable: PostgreSQL %s is back after %.1f s", self._target.display,
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            for topic in topics:
                self.notifier.notify(*topic)
            return value

    def _note_outage(self, cause: BaseException) -> None:
        self._stats["reconnects"] += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("durable: lost the connection to PostgreSQL %s (%s); reconnecting",
                        self._target.display, _one_line(str(cause)) or type(cause).__name__)

    def _check_pool(self) -> None:
        """After one dead connection, test the idle ones at once (a restart kills them all),
        instead of meeting them one failed transaction at a time. At most once a second."""
        pool = self._pool
        with self._check_lock:
            if pool is None or time.monotonic() - self._checked_at < 1.0:
                return
            self._checked_at = time.monotonic()
        try:
            pool.check()
        except Exception:  # the pool's own reconnection takes over
            log.debug("durable: pool check failed", exc_info=True)

    def _attempt(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> tuple[T, list[tuple[str, ...]]]:
        """One try of one transaction, on a worker thread. Raises _Lost/_Conflict for the caller to retry."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is closed")
        try:
            conn = pool.getconn(timeout=min(5.0, self._target.reconnect_timeout / 4))
        except PoolTimeout as exc:
            raise _Lost(exc) from None
        returned = False
        committing = False
        xid: int | None = None
        value: Any = None
        tx = _Tx(conn)
        try:
            if not write:  # autocommit: each statement its own snapshot, as READ COMMITTED gives anyway
                return fn(tx, *args), tx.topics
            with conn.pipeline() as tx.pipeline:
                tx.cursor.execute("BEGIN")
                value = fn(tx, *args)
                # Before COMMIT: the transaction id (to look the outcome up should the connection
                # break during COMMIT) and the NOTIFYs, which PostgreSQL delivers at commit.
                row = tx.execute(
                    "SELECT txid_current_if_assigned(), (SELECT count(pg_notify(?, p)) FROM unnest(?::text[]) AS p)",
                    (self._channel, _payloads(self._nonce, tx.topics)),
                )[0]
                xid = row[0] if row else None
                committing = True
                tx.cursor.execute("COMMIT")
            return value, tx.topics
        except psycopg.Error as exc:
            self._rollback(conn)
            if _is_connection_error(exc, conn):
                if not conn.closed:
                    conn.close()  # e.g. a read-only (demoted) server: the pool replaces it
                pool.putconn(conn)
                returned = True
                self._check_pool()
                raise _Lost(exc, xid if committing else None, value, tx.topics) from None
            if exc.sqlstate in _CONFLICTS:
                raise _Conflict(exc) from None
            raise
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            if not returned:
                pool.putconn(conn)

    @staticmethod
    def _rollback(conn: psycopg.Connection[Any]) -> None:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()

    def _xact_status(self, xid: int) -> str | None:
        """After a connection broke during COMMIT: did that transaction commit?"""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is closed")
        try:
            with pool.connection(timeout=min(5.0, self._target.reconnect_timeout / 4)) as conn:
                row = conn.execute("SELECT txid_status(%s)", (xid,)).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _Lost(exc, xid) from None
        return row[0] if row else None

    def _error(self, fn: Callable[..., Any], exc: BaseException) -> StoreError:
        return StoreError(f"PostgreSQL {self._target.display}: {fn.__name__} failed: {_one_line(str(exc))}")

    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """:meth:`_call`, with driver errors that are not ours to retry translated at this one boundary."""
        try:
            return await self._call(fn, *args, write=write)
        except DurableError:
            raise
        except psycopg.Error as exc:
            raise self._error(fn, exc) from exc

    # -- LISTEN ----------------------------------------------------------------------------

    async def _listen(self, listening: asyncio.Future[None]) -> None:
        """Feed NOTIFYs from other processes into the notifier; reconnect forever with back-off."""
        delay = 0.1
        gap = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._target.conninfo, autocommit=True)
            except Exception as exc:
                if not listening.done():
                    listening.set_exception(_connect_error(exc, self._target))
                    return
                log.debug("durable LISTEN: reconnect failed: %s", exc)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(5.0, delay * 2)
                continue
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                delay = 0.1
                if not listening.done():
                    listening.set_result(None)
                if gap:  # notifications may have been missed: everyone re-reads once
                    self._stats["listen_reconnects"] += 1
                    log.info("durable: LISTEN on PostgreSQL %s resumed", self._target.display)
                    self.notifier.notify_all()
                    gap = False
                while True:
                    async for notify in conn.notifies(timeout=10.0):
                        self._deliver(notify.payload)
                    # Quiet for 10 s: make sure the connection is alive, not silently cut.
                    async with asyncio.timeout(10.0):
                        await conn.execute("SELECT 1")
            except Exception as exc:  # psycopg.Error, TimeoutError, or anything else: never die silently
                if not listening.done():
                    listening.set_exception(_connect_error(exc, self._target))
                    return
                gap = True
                log.warning("durable: LISTEN connection to PostgreSQL %s lost (%s); reconnecting",
                            self._target.display, _one_line(str(exc)) or type(exc).__name__)
                self.notifier.notify_all()
            finally:
                await conn.close()

    def _deliver(self, payload: str) -> None:
        nonce, _, rest = payload.partition(_TOPIC_SEP)
        if nonce == self._nonce or not rest:
            return  # our own commit: this process was woken when it returned
        self._stats["notifications"] += 1
        for item in rest.split(_TOPIC_SEP):
            self.notifier.notify(*item.split(_PART_SEP))


# -- schema ---------------------------------------------------------------------------------


def _migrate(conn: psycopg.Connection[Any], target: _Target) -> tuple[int, int]:
    """Create the schema in an empty (or new) schema, upgrade an older one, refuse anything else.

    One transaction under an advisory lock keyed by the schema name, so workers that start
    at the same moment take turns: the first creates, the others find it done. PostgreSQL
    DDL is transactional, so a failed migration leaves the previous version intact.
    """
    location = f"PostgreSQL {target.display}"
    with conn.transaction():
        if target.schema is not None:
            name = target.schema
        else:
            row = conn.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                raise StoreCorrupt(location, "has no schema to create tables in (search_path names none that exists); "
                                   "add ?schema=durable to the URL")
            name = row[0]
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_MIGRATION_LOCK_CLASS, name))
        if target.schema is not None:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (name,)
            ).fetchall()
        }
        if "durable_meta" not in tables:
            clash = sorted(tables & set(_TABLES))
            if clash:
                raise StoreCorrupt(
                    location,
                    f"schema {name!r} already has tables named {', '.join(clash)} that durable did not create; "
                    "add ?schema=durable to the URL to keep durable's tables apart",
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO durable_meta (key, value) VALUES ('schema_version', %s), ('format', 'durable-postgresql')",
                (str(SCHEMA_VERSION),),
            )
            return 0, SCHEMA_VERSION
        row = conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
        version = before = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreCorrupt(
                location, f"was written by a newer durable (schema {version}; this version reads up to {SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            refusal = _sql.upgrade_refusal(version, conn.execute(_sql.LIVE_WORKERS.replace("?", "%s"), (time.time(),)).fetchall())
            if refusal is not None:
                raise StoreError(f"PostgreSQL {location} {refusal}")
        while version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise StoreCorrupt(location, f"has unknown schema version {version}")
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
        if version != before:
            conn.execute("UPDATE durable_meta SET value = %s WHERE key = 'schema_version'", (str(version),))
            log.info("durable: migrated %s from schema %d to %d", location, before, version)
        return before, version
