"""PostgreSQL-only behaviour: clear connection errors, migrations, LISTEN/NOTIFY, reconnection, many workers.

The shared suite (every test taking ``store_url``/``runtime``) already runs on PostgreSQL
when ``DURABLE_TEST_POSTGRES`` is set; this module covers what only a server shows: other
processes, dropped connections, a restarted server, and a worker SIGKILLed while two
others share the work.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

import durable
from durable._client.streams import read_stream
from durable._core import codec as _codec
from durable._core.errors import StreamClosedError
from durable.stores import _postgres, store_from_url
from durable.stores._base import NewRun
from durable.stores._postgres import PostgresStore
from durable.stores._sql import SCHEMA_VERSION
from tests import pg
from tests.helpers import ROOT, encode_args, undo_inline_step, wait_until

BASE = os.environ.get("DURABLE_TEST_POSTGRES", "")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not BASE, reason="DURABLE_TEST_POSTGRES is not set (CI sets it; see .ci/run)"),
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL on a new schema of its own, with its own application_name (to kill only its connections)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg.with_options(pg.fresh_database(BASE, name), application_name=f"durable-{name}")
    yield url
    pg.drop_schema(BASE, name)


def app_name(url: str) -> str:
    return dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))["application_name"]


async def open_store(url: str) -> PostgresStore:
    store = store_from_url(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    return store


@durable.step(name="pgt.slow")
async def slow(i: int) -> int:
    await asyncio.sleep(0.03)
    return i


@durable.workflow(name="pgt.chain")
async def chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await slow(i)
    return total


@durable.step(name="pgt.tokens")
async def tokens(n: int, delay: float) -> int:
    writer = durable.get_writable("tokens")
    for i in range(n):
        await writer.write(i)
        await writer.flush()
        await asyncio.sleep(delay)
    await writer.close()
    return n


@durable.workflow(name="pgt.streamer")
async def streamer(n: int, delay: float) -> int:
    return await tokens(n, delay)


def assert_each_step_recorded_once(url: str, steps: int) -> None:
    """The event log holds one step_created and one step_completed per step, and no gaps in any run's seqs."""
    with pg.connect(url) as conn:
        dupes = conn.execute(
            "SELECT run_id, corr_id, kind, count(*) FROM events WHERE kind IN ('step_created', 'step_completed') "
            "GROUP BY 1, 2, 3 HAVING count(*) <> 1"
        ).fetchall()
        assert dupes == []
        counts = dict(conn.execute(
            "SELECT kind, count(*) FROM events WHERE kind IN ('step_created', 'step_completed') GROUP BY kind"
        ).fetchall())
        assert counts == {"step_created": steps, "step_completed": steps}
        gaps = conn.execute(
            "SELECT r.run_id FROM runs r WHERE r.last_seq <> (SELECT count(*) FROM events e WHERE e.run_id = r.run_id)"
        ).fetchall()
        assert gaps == []


# -- connecting ---------------------------------------------------------------------------------

PASSWORD = "s3cret-pw"


def _bad_urls() -> list[tuple[str, type[Exception], str]]:
    parts = psycopg.conninfo.conninfo_to_dict(BASE) if BASE else {}
    user, host, port, db = parts.get("user", "durable"), parts.get("host", "127.0.0.1"), parts.get("port", "5432"), parts.get("dbname", "durable")
    return [
        (f"postgresql://{user}:{PASSWORD}@{host}:{port}/{db}", durable.StoreError, "password authentication failed"),
        (f"postgresql://no_such_role:{PASSWORD}@{host}:{port}/{db}", durable.StoreError, "no_such_role"),
        (f"postgresql://{user}:{PASSWORD}@{host}:{port}/no_such_db_x", durable.StoreError, "no_such_db_x"),
        (f"postgresql://{user}:{PASSWORD}@127.0.0.1:1/{db}", durable.StoreError, "connection refused"),
        (f"postgresql://{user}:{PASSWORD}@no-such-host.invalid/{db}", durable.StoreError, "unknown host"),
        (f"postgresql://{user}:{PASSWORD}@{host}:port/{db}", durable.InvalidStoreURL, "port must be a number"),
        (f"postgresql://{user}:{PASSWORD}@{host}:{port}/{db}?colour=blue", durable.InvalidStoreURL, "colour"),
        (f"postgresql://{user}:{PASSWORD}@{host}:{port}/{db}?schema=No-Good", durable.InvalidStoreURL, "schema"),
        (f"postgresql://{user}:{PASSWORD}@{host}:{port}/{db}?pool_size=0", durable.InvalidStoreURL, "pool_size"),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(("url", "error", "words"), _bad_urls(), ids=[case[2] for case in _bad_urls()])
async def test_bad_urls_and_credentials_fail_with_one_clear_line(url: str, error: type[Exception], words: str) -> None:
    """A wrong password, role, database, port, host or option fails with one line naming the problem, no password, no driver traceback."""
    with pytest.raises(error) as caught:
        async with durable.Runtime(url):
            pass
    message = str(caught.value)
    assert words.lower() in message.lower()
    assert "\n" not in message
    assert PASSWORD not in message
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__  # no driver traceback chained
    assert not isinstance(caught.value, psycopg.Error)


def test_import_durable_does_not_import_psycopg() -> None:
    """`import durable` (and using SQLite) never loads the PostgreSQL driver."""
    code = (
        "import sys, durable, durable.stores as s; s.store_from_url('memory://'); "
        "print(any(m.startswith('psycopg') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_every_store_method_has_the_signature_of_the_sqlite_store() -> None:
    """The two stores are interchangeable: each method the runtime calls takes the same parameters."""
    from durable.stores._base import Store
    from durable.stores._sqlite import SQLiteStore

    names = [n for n, v in vars(Store).items() if callable(v) and not n.startswith("_")]
    assert names
    for name in names:
        assert inspect.signature(getattr(PostgresStore, name)) == inspect.signature(getattr(SQLiteStore, name)), name


@pytest.mark.anyio
async def test_driver_errors_become_store_errors_at_one_boundary(pg_url: str) -> None:
    """A failure inside a transaction (here: its tables were dropped) reaches users as StoreError, the driver error as its cause."""
    store = await open_store(pg_url)
    try:
        with pg.connect(pg_url) as conn:
            conn.execute("DROP TABLE runs CASCADE")
        with pytest.raises(durable.StoreError, match=r"get_run failed: .*runs") as caught:
            await store.get_run("r1")
        assert isinstance(caught.value.__cause__, psycopg.Error)
    finally:
        await store.aclose()


# -- migrations ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_first_starts_create_the_schema_once(pg_url: str) -> None:
    """Eight stores opening an empty schema at the same moment: one creates it, the others find it; all work."""
    stores = [PostgresStore(pg_url) for _ in range(8)]
    try:
        async with anyio.create_task_group() as tg:
            for store in stores:
                tg.start_soon(store.open)
        assert [await s.migrate() for s in stores[:2]] == [(SCHEMA_VERSION, SCHEMA_VERSION)] * 2  # idempotent
        record, created = await stores[3].create_run(NewRun("r1", "wf", b"x", "seed", None, time.time()))
        assert created
        assert (await stores[5].get_run("r1")) == record
    finally:
        for store in stores:
            await store.aclose()
    with pg.connect(pg_url) as conn:
        assert conn.execute("SELECT key, value FROM durable_meta ORDER BY key").fetchall() == [
            ("format", "durable-postgresql"), ("schema_version", str(SCHEMA_VERSION)),
        ]


@pytest.mark.anyio
async def test_a_store_from_before_published_workflows_gains_their_table(pg_url: str) -> None:
    """A store written before workflows were published (schema 2) is upgraded on open; publishing then works."""
    from durable.stores._base import PublishedWorkflow

    store = await open_store(pg_url)
    await store.create_run(NewRun("run_old", "wf", b"x", "seed", None, 1.0))
    await store.aclose()
    with pg.connect(pg_url) as conn:
        undo_compose(conn)
        conn.execute("DROP TABLE published_workflows")
        conn.execute("UPDATE durable_meta SET value = '2' WHERE key = 'schema_version'")  # before published workflows
    store = await open_store(pg_url)
    try:
        published = PublishedWorkflow("m:wf", "[]", "json", "v3", "w1", 2.0)
        await store.publish_workflows([published])
        assert (await store.list_workflows(), await store.get_run("run_old") is not None) == ([published], True)
    finally:
        await store.aclose()
    with pg.connect(pg_url) as conn:
        row = conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(_postgres.SCHEMA_VERSION),)


def undo_compose(conn: Any) -> None:
    """Take a current PostgreSQL store back to schema 3: drop what the h-verify and h-compose migrations add."""
    from durable.stores import _sql

    for statement in undo_inline_step():  # the later schemas' changes first
        conn.execute(statement)
    for column in ("version", "forked_from", "forked_step"):  # (h-verify's)
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")

    for statement in reversed(_sql._COMPOSE_CHANGES):
        words = statement.split()
        if words[:2] == ["CREATE", "INDEX"] or words[:3] == ["CREATE", "UNIQUE", "INDEX"]:
            conn.execute(f"DROP INDEX {words[words.index('INDEX') + 1]}")
        elif words[:2] == ["CREATE", "TABLE"]:
            conn.execute(f"DROP TABLE {words[2]}")
        elif words[:2] == ["ALTER", "TABLE"]:
            conn.execute(f"ALTER TABLE {words[2]} DROP COLUMN {words[5]}")


@pytest.mark.anyio
async def test_a_schema_3_store_gains_child_runs_queues_schedules_and_values(pg_url: str) -> None:
    """A store written before h-compose's changes (schema 3) is upgraded on open; its runs read back, new tables work."""
    store = await open_store(pg_url)
    await store.create_run(NewRun("run_old", "wf", b"x", "seed", None, 1.0))
    await store.aclose()
    with pg.connect(pg_url) as conn:
        undo_compose(conn)
        conn.execute("UPDATE durable_meta SET value = '3' WHERE key = 'schema_version'")
    store = await open_store(pg_url)
    try:
        record = await store.get_run("run_old")
        assert record is not None and (record.parent_run_id, record.deadline, record.queue, record.schedule) == (None,) * 4
        assert (await store.list_schedules(), await store.list_values("run_old"), await store.list_children("run_old")) == ([], [], [])
    finally:
        await store.aclose()
    with pg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


@pytest.mark.anyio
async def test_migrations_upgrade_once_under_concurrency_and_newer_schemas_are_refused(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store is upgraded once by workers starting together; an older durable then refuses the newer schema."""
    store = await open_store(pg_url)
    await store.aclose()
    current, newer = SCHEMA_VERSION, SCHEMA_VERSION + 1
    monkeypatch.setattr(_postgres, "SCHEMA_VERSION", newer)
    monkeypatch.setattr(_postgres, "MIGRATIONS", {current: ["ALTER TABLE runs ADD COLUMN labels TEXT"]})
    results: list[tuple[int, int]] = []

    async def migrate() -> None:
        results.append(await PostgresStore(pg_url).migrate())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(migrate)
    assert sorted(results) == [(current, newer)] + [(newer, newer)] * 4
    with pg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(newer),)
        assert conn.execute("SELECT labels FROM runs").fetchall() == []
    monkeypatch.setattr(_postgres, "SCHEMA_VERSION", current)
    with pytest.raises(durable.StoreCorrupt, match="newer durable"):
        await PostgresStore(pg_url).open()


@pytest.mark.anyio
async def test_the_schema_has_the_same_tables_and_columns_as_sqlite(pg_url: str, tmp_path: Path) -> None:
    """Both stores run the same SQL, so their tables and columns must match (a change to one needs the other)."""
    async with store_from_url(f"sqlite:///{tmp_path / 'schema.db'}"):
        pass
    with sqlite3.connect(tmp_path / "schema.db") as lite:
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        sqlite_columns = {t: {r[1] for r in lite.execute(f"PRAGMA table_info({t})")} for t in tables}
    store = await open_store(pg_url)
    await store.aclose()
    with pg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ).fetchall()
    pg_columns: dict[str, set[str]] = {}
    for table, column in rows:
        pg_columns.setdefault(table, set()).add(column)
    assert pg_columns == sqlite_columns


@pytest.mark.anyio
async def test_tables_durable_did_not_create_are_left_alone(pg_url: str) -> None:
    """A schema that already holds an application's `runs` table is refused with advice, not written into."""
    with pg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE runs (id INT)")
    with pytest.raises(durable.StoreCorrupt, match=r"tables named runs .*\?schema=durable"):
        await PostgresStore(pg_url).open()


# -- LISTEN/NOTIFY ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_reader_on_another_store_follows_a_live_stream_by_notify(pg_url: str) -> None:
    """A stream written through one store is followed live through another (as in another process), woken by NOTIFY alone."""
    reader_store = await open_store(pg_url)
    try:
        assert reader_store.notifies_across_processes  # readers wait without polling
        async with durable.Runtime(pg_url, workflows=[streamer], poll_interval=30) as rt:
            run = await rt.start(streamer, 6, 0.1)
            seen = [c async for c in read_stream(reader_store, run.run_id, "tokens", poll_interval=30)]
            assert seen == list(range(6))
            assert await durable.Run(run.run_id, store=reader_store).result(timeout=10) == 6
        assert reader_store.statistics()["notifications"] >= 6
    finally:
        await reader_store.aclose()


@pytest.mark.anyio
@pytest.mark.slow
async def test_an_idle_worker_process_wakes_on_notify_not_on_its_poll(pg_url: str, tmp_path: Path) -> None:
    """A worker in another process whose fallback poll is minutes away starts new runs at once: NOTIFY woke it."""
    workers = WorkerProcesses(pg_url, tmp_path)
    try:
        workers.start("idle-worker", poll_interval=60)
        workers.wait_registered()
        store = await open_store(pg_url)
        try:
            await anyio.sleep(1.0)  # let it go idle
            started = time.monotonic()
            run_id = (await start_chains(store, 1, 2))[0]
            assert await durable.Run(run_id, store=store).result(timeout=20) == expected_chain(0, 2)
            assert time.monotonic() - started < 20  # its fallback poll would take 240 s
        finally:
            await store.aclose()
    finally:
        workers.stop_all()


# -- lost connections ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_killed_connections_are_replaced_and_runs_carry_on(pg_url: str) -> None:
    """pg_terminate_backend of every connection mid-run: the store reconnects, LISTEN resumes, every step is recorded once."""
    async with durable.Runtime(pg_url, workflows=[chain], poll_interval=30, heartbeat_interval=0.2) as rt:
        store = rt.store
        assert isinstance(store, PostgresStore)
        runs = [await rt.start(chain, 20) for _ in range(8)]
        await anyio.sleep(0.5)
        assert pg.terminate_connections(BASE, app_name(pg_url)) >= 2  # the pool's and the LISTEN connection
        assert [await r.result(timeout=60) for r in runs] == [sum(range(20))] * 8
        # The LISTEN connection is back: a run started through another store wakes this runtime.
        await wait_until(lambda: store.statistics().get("listen_reconnects", 0) >= 1, 30)
        other = await open_store(pg_url)
        try:
            record, _ = await other.create_run(NewRun("late", "pgt.chain", encode_args(3), "seed", None, time.time()))
            assert await durable.Run(record.run_id, store=other).result(timeout=20) == 3
        finally:
            await other.aclose()
        assert store.statistics()["reconnects"] >= 1
    assert_each_step_recorded_once(pg_url, steps=8 * 20 + 3)


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_server_restart_mid_run_loses_nothing(pg_url: str) -> None:
    """The server stops for a second and starts again mid-run: workers reconnect with back-off; all runs complete, steps recorded once."""
    control = pg.server_control(BASE)
    if control is None:
        pytest.skip("restarting the server needs root and pg_ctlcluster on the server's machine (CI has both)")
    async with durable.Runtime(pg_url, workflows=[chain], heartbeat_interval=0.2) as rt:
        runs = [await rt.start(chain, 25) for _ in range(8)]
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(pg.restart_server, control, 1.0)
        assert [await r.result(timeout=90) for r in runs] == [sum(range(25))] * 8
        assert isinstance(rt.store, PostgresStore)
        assert rt.store.statistics()["reconnects"] >= 1
    assert_each_step_recorded_once(pg_url, steps=8 * 25)


@durable.step(name="pgt.second")
async def one_second(i: int) -> int:
    await asyncio.sleep(1.0)
    return i


@durable.workflow(name="pgt.two_slow")
async def two_slow() -> int:
    return await one_second(1) + await one_second(2)


@pytest.mark.anyio
@pytest.mark.slow
async def test_an_outage_longer_than_the_retry_budget_still_records_the_step_once(pg_url: str) -> None:
    """The server is down longer than the store retries (1 s here): the step's outcome, kept by the runtime, is recorded once it is back."""
    control = pg.server_control(BASE)
    if control is None:
        pytest.skip("stopping the server needs root and pg_ctlcluster on the server's machine (CI has both)")
    async with durable.Runtime(f"{pg_url}&reconnect_timeout=1", workflows=[two_slow], heartbeat_interval=0.2) as rt:
        run = await rt.start(two_slow)
        await anyio.sleep(0.3)  # the first step is running
        await anyio.to_thread.run_sync(pg.restart_server, control, 3.0)
        assert await run.result(timeout=60) == 3
    assert_each_step_recorded_once(pg_url, steps=2)


class CommitCutter:
    """A TCP proxy in front of the server that can cut a connection right after forwarding a COMMIT.

    The server commits; the client never hears back. That is the one failure where a client
    cannot know the outcome by itself, and the store must look it up (``txid_status``).
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            while True:
                readable, _, _ = select.select([client, server], [], [], 0.5)
                if self.stopped:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        server.sendall(data)
                        if self.armed.is_set() and b"COMMIT" in data:
                            self.armed.clear()
                            self.cuts += 1
                            time.sleep(0.3)  # the server commits meanwhile; its answer is dropped
                            return
                    else:
                        client.sendall(data)

    def close(self) -> None:
        self.stopped = True
        self.listener.close()


@pytest.mark.anyio
async def test_a_commit_whose_answer_is_lost_is_looked_up_not_repeated(pg_url: str) -> None:
    """The connection dies after COMMIT reached the server: the store finds it committed and does not run it twice."""
    parts = psycopg.conninfo.conninfo_to_dict(BASE)
    proxy = CommitCutter(str(parts.get("host") or "127.0.0.1"), int(parts.get("port") or 5432))
    url = pg_url.replace(f":{parts.get('port') or 5432}/", f":{proxy.port}/", 1)
    assert url != pg_url
    store = await open_store(url)
    try:
        await store.create_run(NewRun("r1", "wf", b"x", "seed", None, time.time()))
        proxy.armed.set()
        # Appending is not idempotent: were it run again, the chunks would be there twice.
        assert await store.append_chunks("r1", "out", [b"a", b"b", b"c"], None, None, time.time()) == 3
        assert proxy.cuts == 1
        assert store.statistics()["commits_looked_up"] == 1
        page = await store.read_chunks("r1", "out", 0, 100)
        assert [c.data for c in page.chunks] == [b"a", b"b", b"c"]
    finally:
        await store.aclose()
        proxy.close()


@pytest.mark.anyio
async def test_deadlocks_and_unique_races_are_retried(pg_url: str) -> None:
    """Two transactions locking rows in opposite orders deadlock; the one PostgreSQL aborts runs again and both succeed."""
    store = await open_store(pg_url)
    try:
        for run_id in ("a", "b"):
            await store.create_run(NewRun(run_id, "wf", b"x", "seed", None, time.time()))
        barrier = threading.Barrier(2, timeout=10)
        tries: list[str] = []

        def lock_both(db: Any, first: str, second: str) -> str:
            db.execute("SELECT 1 FROM runs WHERE run_id = ? FOR UPDATE", (first,))
            if first not in tries:  # first try: both hold their first lock before taking the second
                tries.append(first)
                barrier.wait()
            else:
                tries.append(first)
            db.execute("UPDATE runs SET updated_at = updated_at + 1 WHERE run_id = ?", (second,))
            return first

        async with anyio.create_task_group() as tg:
            tg.start_soon(store._call, lock_both, "a", "b")
            tg.start_soon(store._call, lock_both, "b", "a")
        assert store.statistics()["conflict_retries"] >= 1
        assert len(tries) == 3  # the one PostgreSQL aborted ran again, once
        # Many first writes to one new stream race to create its row; every chunk lands once, in order.
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(store.append_chunks, "a", "race", [bytes([i])], None, None, time.time())
        page = await store.read_chunks("a", "race", 0, 100)
        assert [c.index for c in page.chunks] == list(range(12))
        assert sorted(c.data for c in page.chunks) == [bytes([i]) for i in range(12)]
    finally:
        await store.aclose()


def wait_for_a_lock_waiter(db: Any, pg_url: str, failure: str) -> None:
    """Inside a transaction holding a lock: return once another of the store's sessions waits for a lock
    (AssertionError ``failure`` after ~5 s)."""
    for _ in range(500):
        db.execute("SELECT pg_stat_clear_snapshot()")  # (a transaction sees one snapshot of the view otherwise)
        if db.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = ? AND wait_event_type = 'Lock'", (app_name(pg_url),)
        ):
            return
        time.sleep(0.01)
    raise AssertionError(failure)


@pytest.mark.anyio
async def test_a_run_ending_locks_its_parent_before_itself(pg_url: str) -> None:
    """The one statement that locks an ending run and its parent waits for the parent first, holding
    nothing of the child meanwhile (the lock order that keeps parent and child from deadlocking)."""
    from durable.stores import _sql

    store = await open_store(pg_url)
    try:
        for run_id in ("parent", "child"):
            await store.create_run(NewRun(run_id, "wf", b"x", "seed", None, time.time()))
        await store._call(lambda db: db.execute(
            "UPDATE runs SET parent_run_id = 'parent', parent_corr = 'c1' WHERE run_id = 'child'"
        ))
        parent_locked = threading.Event()

        def hold_parent(db: Any) -> bool:
            db.execute("SELECT 1 FROM runs WHERE run_id = 'parent' FOR UPDATE")
            parent_locked.set()
            wait_for_a_lock_waiter(db, pg_url, "the ending run's lock never waited for its parent")
            return bool(db.execute("SELECT 1 FROM runs WHERE run_id = 'child' FOR UPDATE SKIP LOCKED"))

        def lock_ending(db: Any) -> tuple[Any, Any]:
            parent_locked.wait(10)
            return _sql._lock_ending(db, "child")

        results: dict[str, Any] = {}

        async def call(name: str, fn: Any) -> None:
            results[name] = await store._call(fn)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "holder", hold_parent)
            tg.start_soon(call, "ending", lock_ending)
        assert results["holder"] is True  # the child was free while its ending waited for the parent
        run, parent = results["ending"]
        assert (run[8], run[9], parent is not None) == ("parent", "c1", True)
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_chunk_appended_while_its_run_ends_never_leaves_a_stream_open(pg_url: str) -> None:
    """A step's append that comes while its run is ending waits for the end, then is refused: the run
    does not end with a stream nobody will close (readers would wait for it forever)."""
    from durable.stores import _sql

    store = await open_store(pg_url)
    try:
        await store.create_run(NewRun("ending", "wf", b"x", "seed", None, time.time()))
        run_locked = threading.Event()

        def end_run(db: Any) -> None:
            db.execute("SELECT 1 FROM runs WHERE run_id = 'ending' FOR UPDATE")  # as a run's end locks it
            run_locked.set()
            wait_for_a_lock_waiter(db, pg_url, "the append never waited for the ending run")
            _sql.cancel_run(db, "ending", time.time(), "ended meanwhile")  # closes the streams it finds

        async def append_late() -> None:
            await anyio.to_thread.run_sync(run_locked.wait, 10)
            with pytest.raises(StreamClosedError):
                await store.append_chunks("ending", "late", [b"after the end"], "step_1", 1, time.time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(store._call, end_run)
            tg.start_soon(append_late)
        page = await store.read_chunks("ending", "late", 0, 10)
        assert (page.chunks, page.closed) == ([], True)
        assert await store.list_streams("ending") == []
    finally:
        await store.aclose()


# -- many workers -------------------------------------------------------------------------------


def expected_chain(i: int, n: int) -> int:
    from tests.pg_worker import expected

    return expected(i, n)


async def start_chains(store: PostgresStore, count: int, n: int) -> list[str]:
    """Create ``count`` runs of ``pgw.chain`` without executing them here (the worker processes do)."""
    run_ids = []
    for i in range(count):
        record, _ = await store.create_run(
            NewRun(f"r{i:03d}", "pgw.chain", encode_args(i, n), secrets.token_hex(16), None, time.time())
        )
        run_ids.append(record.run_id)
    return run_ids


class WorkerProcesses:
    """Real ``tests/pg_worker.py`` processes on one store; always stopped (and reaped) in teardown."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.dir = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker_id: str, *, host: str | None = None, lease_ttl: float = 3.0, poll_interval: float = 0.5) -> None:
        url = pg.with_options(self.url, application_name=f"durable-{worker_id}")
        command = [sys.executable, "-m", "tests.pg_worker", url, worker_id, "--lease-ttl", str(lease_ttl),
                   "--log", str(self.dir / "attempts.log"), "--poll-interval", str(poll_interval)]
        if host:
            command += ["--host", host]
        with open(self.dir / f"{worker_id}.err", "wb") as err:
            self.procs[worker_id] = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )

    def wait_registered(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with pg.connect(self.url) as conn:
            while True:
                self.check_alive()
                try:
                    registered = {r[0] for r in conn.execute("SELECT worker_id FROM workers").fetchall()}
                except psycopg.errors.UndefinedTable:  # the first worker is still creating the schema
                    registered = set()
                if set(self.procs) <= registered:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"workers did not start: {self.stderr()}")
                time.sleep(0.05)

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            if self.procs[name].poll() is not None:
                raise AssertionError(f"worker {name} exited: {self.stderr(name)}")

    def stderr(self, *names: str) -> str:
        return "\n".join(
            f"--- {n}:\n{(self.dir / f'{n}.err').read_text(errors='replace')}" for n in names or tuple(self.procs)
        )

    def kill(self, name: str, sig: int) -> None:
        os.kill(self.procs[name].pid, sig)
        if sig == signal.SIGKILL:
            self.procs[name].wait()  # reaped: a zombie would still look alive to the others

    def attempts(self) -> dict[tuple[str, str, int], str]:
        """(run id, step id, attempt) -> the worker that ran that attempt."""
        ran: dict[tuple[str, str, int], str] = {}
        for line in (self.dir / "attempts.log").read_text().splitlines():
            worker, run_id, step_id, attempt = line.split()
            ran[(run_id, step_id, int(attempt))] = worker
        return ran

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["same-host", "other-host"])
def test_three_workers_300_runs_and_one_sigkilled(pg_url: str, tmp_path: Path, victim: str) -> None:
    """Three worker processes share 300 runs; one is SIGKILLed mid-run. Every run completes, each step's
    completion is recorded exactly once, and the survivors took over the killed worker's leases (found by
    its pid on the same host, or by its lease running out when it stands for another machine)."""
    runs, n = 300, 3  # 3 sequential steps + 2 parallel ones: 1,500 steps
    steps_per_run = n + 2
    workers = WorkerProcesses(pg_url, tmp_path)
    try:
        run_ids = asyncio.run(_start(pg_url, runs, n))  # all queued first: the workers then share a backlog
        workers.start("w1")
        workers.start("w2")
        workers.start("w3", host="machine-b" if victim == "other-host" else None)
        workers.wait_registered()
        with pg.connect(pg_url) as conn:

            def completed() -> int:
                row = conn.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()
                return int(row[0]) if row else 0

            def steps_done() -> int:  # (a step completed in its run's own chain has no row: count its event)
                row = conn.execute("SELECT count(*) FROM events WHERE kind = 'step_completed'").fetchone()
                return int(row[0]) if row else 0

            deadline = time.monotonic() + 120
            while steps_done() < runs * steps_per_run // 3:  # a third of the way: every run is mid-way
                workers.check_alive()
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.02)
            # Freeze the victim, note what it holds, then kill it: nothing can change in between.
            # (Frozen between two steps -- on a loaded machine, it may be -- it holds none: thaw
            # it and try again a moment later.)
            for _ in range(50):
                workers.kill("w3", signal.SIGSTOP)
                # A COMMIT it sent just before may still be on its way or running on the server: let it land.
                # (Its sessions waiting for a row lock or for its next message never commit: it is frozen.)
                time.sleep(0.5)
                while conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'durable-w3' AND state = 'active' "
                    "AND wait_event_type IS DISTINCT FROM 'Lock' AND wait_event_type IS DISTINCT FROM 'Client'"
                ).fetchone() != (0,):
                    time.sleep(0.01)
                held_steps = conn.execute(  # (a step its run's commit claimed has no row while it runs)
                    "SELECT run_id, step_id, attempt FROM steps WHERE status = 'running' AND owner = 'w3' "
                    "UNION ALL SELECT run_id, inline_step, 1 FROM runs WHERE inline_owner = 'w3' AND inline_step IS NOT NULL"
                ).fetchall()
                held_runs = [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE owner = 'w3'").fetchall()]
                if held_steps:
                    break
                workers.kill("w3", signal.SIGCONT)
                time.sleep(0.05)
            done_at_kill = completed()
            workers.kill("w3", signal.SIGKILL)
            assert held_steps, "the victim held no step lease when it was killed"
            assert done_at_kill < runs

            deadline = time.monotonic() + 180
            while completed() < runs:
                workers.check_alive("w1", "w2")
                assert time.monotonic() < deadline, f"runs stalled at {completed()}/{runs}"
                time.sleep(0.1)

            outputs = dict(conn.execute("SELECT run_id, output FROM runs").fetchall())
            assert {rid: _codec.decode(outputs[rid]) for rid in run_ids} == {
                rid: expected_chain(i, n) for i, rid in enumerate(run_ids)
            }
            finished = dict(conn.execute(
                "SELECT run_id || ' ' || corr_id, attempt FROM events WHERE kind = 'step_completed'"
            ).fetchall())
            assert conn.execute("SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND status = 'completed'",
                                (held_runs,)).fetchone() == (len(held_runs),)
        assert_each_step_recorded_once(pg_url, steps=runs * steps_per_run)
        # Every step the victim held was finished by a survivor, in a later attempt.
        ran = workers.attempts()
        for run_id, step_id, attempt in held_steps:
            final = finished[f"{run_id} {step_id}"]
            assert final > attempt, (run_id, step_id)
            assert ran[(run_id, step_id, final)] in ("w1", "w2")
        assert {"w1", "w2", "w3"} <= set(ran.values())
        print(f"killed w3 with {len(held_steps)} step and {len(held_runs)} run leases, {done_at_kill}/{runs} runs done; "
              f"attempts per worker: {Counter(ran.values())}")
        for name in ("w1", "w2"):
            assert "Traceback" not in (tmp_path / f"{name}.err").read_text(), workers.stderr(name)
    finally:
        workers.stop_all()


async def _start(url: str, runs: int, n: int) -> list[str]:
    store = await open_store(url)
    try:
        return await start_chains(store, runs, n)
    finally:
        await store.aclose()

