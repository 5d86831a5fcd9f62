"""Durable sequential steps per second on SQLite, next to the floor of one committed INSERT per step.

A workflow awaits N trivial steps one after the other; each step costs: running it on the
runtime's loop, recording its completion and scheduling (and starting) the next step. The
floor is one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per step with the same pragmas, in the same
run. Both ``synchronous=full`` (the default: survives power loss) and ``normal``.

Run: ``.venv/bin/python benchmarks/steps.py`` (``--tracing``: with an OpenTelemetry SDK tracer and meter
provider installed, spans and metrics recorded and dropped, to show what tracing costs when on;
``--encryption``: with ``Runtime(encryption=...)``, every payload encrypted at rest)
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time

from _common import fresh_db, header, median, quick, sqlite_url

import durable


@durable.step(name="bench.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="bench.steps")
async def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


ENCRYPTION: durable.Encryption | None = None


async def durable_per_step(url: str, n: int) -> float:
    async with durable.Runtime(url, workflows=[steps], encryption=ENCRYPTION) as rt:
        await (await rt.start(steps, 20)).result()  # warm up
        t0 = time.perf_counter()
        run = await rt.start(steps, n)
        await run.result()
        return (time.perf_counter() - t0) / n


def floor_connection(path: str, synchronous: str) -> sqlite3.Connection:
    """A new SQLite file with the store's pragmas and one table, for the floor's commits."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    return conn


def insert_commits(conn: sqlite3.Connection, n: int) -> None:
    """The floor: ``n`` transactions of one small INSERT each."""
    payload = b"x" * 64
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (data) VALUES (?)", (payload,))
        conn.execute("COMMIT")


def insert_floor(path: str, synchronous: str, n: int) -> float:
    conn = floor_connection(path, synchronous)
    t0 = time.perf_counter()
    insert_commits(conn, n)
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed / n


async def main() -> None:
    n = 300 if quick() else 2000
    repeats = 1 if quick() else 3
    header(f"steps: durable sequential steps ({n} per run)")
    print(f"{'store':<16}{'per step':>14}{'steps/s':>10}{'floor INSERT':>16}{'floor/s':>10}{'ratio':>8}")
    for sync in ("full", "normal"):
        per_step = median([await durable_per_step(sqlite_url(fresh_db("steps"), sync), n) for _ in range(repeats)])
        floor = median([insert_floor(fresh_db("floor"), sync, n) for _ in range(repeats)])
        print(
            f"{'sqlite ' + sync:<16}{per_step * 1e6:>11.1f} µs{1 / per_step:>10.0f}"
            f"{floor * 1e6:>13.1f} µs{1 / floor:>10.0f}{per_step / floor:>7.1f}x"
        )
    per_step = median([await durable_per_step("memory://", n) for _ in range(repeats)])
    print(f"{'memory://':<16}{per_step * 1e6:>11.1f} µs{1 / per_step:>10.0f}{'':>16}{'':>10}{'':>8}")


def install_tracing() -> None:
    """The real SDK, recording everything, exporting nowhere: the cost of tracing itself."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


if __name__ == "__main__":
    if "--tracing" in sys.argv:
        install_tracing()
        print("(tracing on: OpenTelemetry SDK spans and metrics, exported nowhere)")
    if "--encryption" in sys.argv:
        ENCRYPTION = durable.Encryption(durable.Encryption.generate_key(), key_id="bench")
        print("(encryption on: every argument, result and event payload encrypted at rest)")
    asyncio.run(main())
