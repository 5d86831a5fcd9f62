"""Stream throughput and write-to-read latency, next to the floor of a raw batched INSERT.

A step writes N small chunks through a flushable writer (``get_writable``); a live reader in
the same process (``run.stream()``) reads them back. We report chunks per second written (the
time until every chunk is durable in the log) and the p50/p99 latency from ``write()`` to the
reader receiving that chunk. The floor inserts the same encoded chunks into a table of the same
shape, in batches of the same size, in one process, with the same pragmas.

Run: ``.venv/bin/python benchmarks/streams.py``
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from _common import fresh_db, header, median, percentile, quick, sqlite_url

import durable
from durable._core import codec as _codec

sent_at: dict[int, float] = {}


@durable.step(name="bench.produce")
async def produce(n: int, pace: float) -> float:
    writer = durable.get_writable("bench")
    t0 = time.perf_counter()
    for i in range(n):
        sent_at[i] = time.perf_counter()
        await writer.write({"i": i, "token": "lorem"})
        if pace:
            await asyncio.sleep(pace)
    await writer.close()
    return time.perf_counter() - t0


@durable.workflow(name="bench.stream")
async def stream_workflow(n: int, pace: float) -> float:
    return await produce(n, pace)


async def run_once(url: str, n: int, pace: float) -> tuple[float, list[float]]:
    """Return (seconds until all n chunks were durable, write->read latencies)."""
    sent_at.clear()
    latencies: list[float] = []
    async with durable.Runtime(url, workflows=[stream_workflow]) as rt:
        run = await rt.start(stream_workflow, n, pace)
        async for chunk in run.stream("bench"):
            latencies.append(time.perf_counter() - sent_at[chunk["i"]])
        write_time = await run.result()
    return write_time, latencies


def floor(path: str, synchronous: str, n: int, batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute(
        "CREATE TABLE chunks (run_id TEXT, namespace TEXT, idx INTEGER, data BLOB, step_id TEXT, attempt INTEGER, "
        "created_at REAL, PRIMARY KEY (run_id, namespace, idx)) WITHOUT ROWID"
    )
    rows = [("run_x", "bench", i, _codec.encode({"i": i, "token": "lorem"}), "step_1", 1, time.time()) for i in range(n)]
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?)", rows[start : start + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


async def main() -> None:
    n = 5_000 if quick() else 50_000
    repeats = 1 if quick() else 3
    header(f"streams: {n} chunks through a flushable writer, read live in process")
    print(f"{'store':<16}{'chunks/s':>10}{'floor (512/batch)':>19}{'ratio':>7}{'p50 latency':>14}{'p99 latency':>14}"
          f"{'paced p50':>12}{'paced p99':>12}")
    for sync in ("full", "normal"):
        bursts = [await run_once(sqlite_url(fresh_db("streams"), sync), n, 0.0) for _ in range(repeats)]
        write_time = median([b[0] for b in bursts])
        lat = [x for b in bursts for x in b[1]]
        # Latency when the writer is not saturating the store: one chunk per millisecond.
        _, paced = await run_once(sqlite_url(fresh_db("paced"), sync), 500 if quick() else 2000, 0.001)
        floor_time = median([floor(fresh_db("floor"), sync, n, 512) for _ in range(repeats)])
        print(
            f"{'sqlite ' + sync:<16}{n / write_time:>10.0f}{n / floor_time:>19.0f}{floor_time / write_time:>6.2f}x"
            f"{percentile(lat, 50) * 1e3:>11.2f} ms{percentile(lat, 99) * 1e3:>11.2f} ms"
            f"{percentile(paced, 50) * 1e3:>9.2f} ms{percentile(paced, 99) * 1e3:>9.2f} ms"
        )
    print("(ratio: our chunks/s over the floor's; latency: write() called -> chunk received by the live reader)")


if __name__ == "__main__":
    asyncio.run(main())
