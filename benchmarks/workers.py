"""Throughput of 1, 2 and 4 worker processes sharing one store: PostgreSQL and SQLite, next to the floor.

Each worker is a real process running ``durable.Runtime(url)`` until stopped. Two workloads:

- **steps/s**: 32 runs of 50 sequential trivial steps, queued at once; the rate is the number of
  steps over the wall time from the first run created to the last one completed.
- **runs/s**: 200 runs of a 10-step workflow, created one after another by a client process
  while the workers execute them: end to end (created, started, 10 steps, completed).

The floor is committed single-row INSERTs per second on the same server by as many processes
as there are workers, measured in the same run: autocommit ``INSERT`` on PostgreSQL, ``BEGIN
IMMEDIATE; INSERT; COMMIT`` with the store's pragmas on SQLite. "INSERTs per step" is the
floor rate over the step rate: what one durable step costs in units of the cheapest durable
write the server can do. Medians of repeated measurements; never assertions on time.

Run: ``.venv/bin/python benchmarks/workers.py`` -- PostgreSQL from ``DURABLE_BENCH_POSTGRES``
(or ``DURABLE_TEST_POSTGRES``); without either, SQLite only. ``BENCH_QUICK=1`` shrinks it all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import fresh_db, header, median, quick

import durable
from durable._core import codec as _codec
from durable.stores import store_from_url
from durable.stores._base import NewRun

HERE = Path(__file__).resolve()
PG_BASE = os.environ.get("DURABLE_BENCH_POSTGRES") or os.environ.get("DURABLE_TEST_POSTGRES") or ""
PROCESSES = (1, 2, 4)


@durable.step(name="benchw.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="benchw.chain")
async def chain(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


# -- child processes ---------------------------------------------------------------------------


async def serve(url: str) -> None:
    """A worker: execute runs until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable.Runtime(url, workflows=[chain]):
        await stop.wait()


def insert_floor(kind: str, target: str, n: int, start_at: float) -> None:
    """One floor process: wait for the common start, do ``n`` committed single-row INSERTs, print the end time."""
    payload = b"x" * 64
    if kind == "postgresql":
        import psycopg

        conn = psycopg.connect(target, autocommit=True)
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(n):
            conn.execute("INSERT INTO floor (data) VALUES (%s)", (payload,))
    else:
        conn_ = sqlite3.connect(target, isolation_level=None, timeout=60)
        conn_.execute("PRAGMA synchronous=FULL")
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(n):
            conn_.execute("BEGIN IMMEDIATE")
            conn_.execute("INSERT INTO floor (data) VALUES (?)", (payload,))
            conn_.execute("COMMIT")
    print(time.time(), flush=True)


# -- the parent ----------------------------------------------------------------------------------


class Backend:
    """One fresh store (a PostgreSQL schema or a SQLite file) with a way to count finished runs."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._conn: Any = None
        if kind == "postgresql":
            import psycopg

            self.schema = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            self.url = f"{PG_BASE}{'&' if '?' in PG_BASE else '?'}schema={self.schema}"
            self.sql_target = f"{PG_BASE}{'&' if '?' in PG_BASE else '?'}options=-csearch_path%3D{self.schema}"
            self._psycopg = psycopg
        else:
            path = fresh_db("workers")
            self.url = f"sqlite:///{path}?synchronous=full"
            self.sql_target = path

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One value, on a connection kept open (a new PostgreSQL connection costs a server process)."""
        if self._conn is None:
            if self.kind == "postgresql":
                self._conn = self._psycopg.connect(self.sql_target, autocommit=True)
            else:
                self._conn = sqlite3.connect(self.sql_target, timeout=60, isolation_level=None, check_same_thread=False)
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        row = self._conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def drop(self) -> None:
        self.drop_connection()
        if self.kind == "postgresql":
            with self._psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class Workers:
    def __init__(self, backend: Backend, count: int) -> None:
        self.procs = [
            subprocess.Popen([sys.executable, str(HERE), "--worker", backend.url], stdout=subprocess.DEVNULL)
            for _ in range(count)
        ]
        deadline = time.monotonic() + 60
        while True:  # registered: the schema exists and every worker executes
            try:
                if backend.query("SELECT count(*) FROM workers") == count:
                    return
            except Exception:  # the first worker is still creating the schema
                backend.drop_connection()
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError("workers did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def batch(backend: Backend, runs: int, steps: int) -> float:
    """Create ``runs`` runs of ``steps`` steps one after another; return the seconds until all completed."""
    tag = uuid.uuid4().hex[:8]
    store = store_from_url(backend.url)
    await store.open()
    try:
        data = _codec.encode({"args": [steps], "kwargs": {}})
        t0 = time.perf_counter()
        for i in range(runs):
            await store.create_run(NewRun(f"{tag}-{i}", "benchw.chain", data, secrets.token_hex(16), None, time.time()))
        while True:
            done = await asyncio.to_thread(
                backend.query, "SELECT count(*) FROM runs WHERE status = 'completed' AND run_id LIKE ?", (f"{tag}-%",)
            )
            if done == runs:
                return time.perf_counter() - t0
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()


def floor_rate(kind: str, processes: int, n: int) -> float:
    """Committed single-row INSERTs per second by ``processes`` processes at once."""
    backend = Backend(kind)
    try:
        if kind == "postgresql":
            import psycopg

            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{backend.schema}"')
                conn.execute(f'CREATE TABLE "{backend.schema}".floor (id BIGSERIAL PRIMARY KEY, data BYTEA)')
        else:
            with sqlite3.connect(backend.sql_target) as conn_:
                conn_.execute("PRAGMA journal_mode=WAL")
                conn_.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, data BLOB)")
        start_at = time.time() + 1.0  # past every child's start-up
        children = [
            subprocess.Popen([sys.executable, str(HERE), "--floor", kind, backend.sql_target, str(n), str(start_at)],
                             stdout=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]
        ends = [float(c.communicate()[0].strip().splitlines()[-1]) for c in children]
        return processes * n / (max(ends) - start_at)
    finally:
        backend.drop()


def measure(kind: str, processes: int, repeats: int, sizes: dict[str, int]) -> dict[str, float]:
    backend = Backend(kind)
    workers = Workers(backend, processes)
    try:
        asyncio.run(batch(backend, 8, 5))  # warm up: imports, caches, prepared statements
        steps_s = [sizes["long_runs"] * sizes["long_steps"] / asyncio.run(batch(backend, sizes["long_runs"], sizes["long_steps"]))
                   for _ in range(repeats)]
        runs_s = [sizes["runs"] / asyncio.run(batch(backend, sizes["runs"], 10)) for _ in range(repeats)]
    finally:
        workers.stop()
        backend.drop()
    return {"steps": median(steps_s), "runs": median(runs_s)}


def report(kind: str, repeats: int, sizes: dict[str, int], floor_n: int) -> None:
    label = "postgresql" if kind == "postgresql" else "sqlite (full)"
    base: dict[str, float] = {}
    for processes in PROCESSES:
        got = measure(kind, processes, repeats, sizes)
        floor = median([floor_rate(kind, processes, floor_n) for _ in range(repeats)])
        base = base or got
        print(
            f"{label:<15}{processes:>6}{got['steps']:>10.0f}{got['steps'] / base['steps']:>7.2f}x"
            f"{got['runs']:>10.1f}{got['runs'] / base['runs']:>7.2f}x{floor:>10.0f}{floor / got['steps']:>10.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=4, metavar=("KIND", "TARGET", "N", "START_AT"), help=argparse.SUPPRESS)
    parser.add_argument("--stores", default="postgresql,sqlite", help="comma-separated: postgresql, sqlite")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(serve(args.worker))
        return
    if args.floor:
        kind, target, n, start_at = args.floor
        insert_floor(kind, target, int(n), float(start_at))
        return
    repeats = 1 if quick() else 3
    sizes = {"long_runs": 8, "long_steps": 20, "runs": 40} if quick() else {"long_runs": 32, "long_steps": 50, "runs": 200}
    floor_n = 200 if quick() else 1000
    header(
        f"workers: {sizes['long_runs']} runs x {sizes['long_steps']} steps (steps/s) and {sizes['runs']} runs "
        "of 10 steps (runs/s), by worker processes"
    )
    print(f"{'store':<15}{'procs':>6}{'steps/s':>10}{'':>8}{'runs/s':>10}{'':>8}{'floor/s':>10}{'INSERTs':>10}")
    print(f"{'':<15}{'':>6}{'':>10}{'vs 1':>8}{'':>10}{'vs 1':>8}{'':>10}{'per step':>10}")
    stores: list[str] = [s.strip() for s in args.stores.split(",") if s.strip()]
    for kind in stores:
        if kind == "postgresql" and not PG_BASE:
            print("postgresql     skipped: set DURABLE_BENCH_POSTGRES (or DURABLE_TEST_POSTGRES) to a server URL")
            continue
        report(kind, repeats, sizes, floor_n)


if __name__ == "__main__":
    main()
