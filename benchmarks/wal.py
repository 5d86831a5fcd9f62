"""The SQLite WAL under continuous load: its size after 100,000 sequential steps, next to the database's.

Under ``synchronous=normal`` steps commit inline, back to back, so passive checkpoints never catch
up; the store starts the WAL over with a RESTART checkpoint whenever it holds more than its limit
(64 MiB by default). This prints the largest WAL seen (sampled every 10 ms), the WAL at the end, the
database file, and the steps per second -- with ``--unbounded``, also the same run with the limit
out of the way (what the WAL did before it had one; mind the disk: ~25 KB per step).

``--pages``: instead, the WAL pages a sequential step writes, by b-tree (table or index): the
frames of one run of ``--steps`` steps (2,000 is plenty), read back from the WAL file and mapped to
their b-trees through SQLite's ``dbstat`` table. A page written to the WAL costs a few µs.

Run: ``.venv/bin/python benchmarks/wal.py [--steps 100000] [--unbounded] [--pages]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import struct
import time
from collections import Counter

from _common import fresh_db, header

import durable
from durable.stores._sqlite import WAL_LIMIT, SQLiteStore


@durable.step(name="bench.wal.noop")
async def noop(i: int) -> int:
    return i


@durable.workflow(name="bench.wal.steps")
async def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


async def measure(n: int, synchronous: str, wal_limit: int) -> dict[str, float]:
    path = fresh_db("wal")
    store = SQLiteStore(path, synchronous=synchronous, wal_limit=wal_limit)
    largest = 0
    done = False

    async def sample() -> None:
        nonlocal largest
        while not done:
            largest = max(largest, _size(f"{path}-wal"))
            await asyncio.sleep(0.01)

    async with durable.Runtime(store, workflows=[steps]) as rt:
        sampler = asyncio.get_running_loop().create_task(sample())
        t0 = time.perf_counter()
        assert await (await rt.start(steps, n)).result() == n * (n - 1) // 2
        elapsed = time.perf_counter() - t0
        done = True
        await sampler
        largest = max(largest, _size(f"{path}-wal"))
        final = _size(f"{path}-wal")
    return {"largest": largest, "final": final, "db": _size(path), "steps_per_s": n / elapsed}


def _frames(path: str) -> list[int]:
    """The page number of each frame in the WAL since it last started over (frames carry its salt)."""
    with open(f"{path}-wal", "rb") as f:
        data = f.read()
    page_size, salt = struct.unpack(">I", data[8:12])[0], data[16:24]
    pages, offset = [], 32
    while offset + 24 + page_size <= len(data) and data[offset + 8 : offset + 16] == salt:
        pages.append(struct.unpack(">I", data[offset : offset + 4])[0])
        offset += 24 + page_size
    return pages


async def pages_per_step(n: int, synchronous: str) -> tuple[int, Counter[str]]:
    """The WAL frames one run of n sequential steps wrote, counted by the b-tree each page belongs to."""
    path = fresh_db("pages")
    # No limit: the WAL must not start over during the run, or its first frames are overwritten.
    async with durable.Runtime(SQLiteStore(path, synchronous=synchronous, wal_limit=2**40), workflows=[steps]) as rt:
        await (await rt.start(steps, 5)).result()  # the schema and a first run are written already
        # A reader's open snapshot keeps checkpoints from finishing, so the WAL cannot start over
        # (under `full` the database thread's checkpoints would otherwise catch up between steps).
        pin = sqlite3.connect(path, isolation_level=None)
        pin.execute("BEGIN")
        pin.execute("SELECT count(*) FROM durable_meta").fetchall()
        before = len(_frames(path))
        assert await (await rt.start(steps, n)).result() == n * (n - 1) // 2
        written = _frames(path)[before:]
        pin.close()
    conn = sqlite3.connect(path)
    try:
        owner = dict(conn.execute("SELECT pageno, name FROM dbstat"))
    finally:
        conn.close()
    return len(written), Counter(owner.get(page, "(pointer map, free list)") for page in written)


def _mb(size: float) -> str:
    return f"{size / 1e6:9.1f} MB"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--synchronous", default="normal")
    parser.add_argument("--unbounded", action="store_true", help="also run with the WAL limit out of the way")
    parser.add_argument("--pages", action="store_true", help="the WAL pages a step writes, by table and index")
    args = parser.parse_args()
    if args.pages:
        header(f"wal: WAL pages per sequential step, one run of {args.steps:,} steps, sqlite synchronous={args.synchronous}")
        total, by_tree = await pages_per_step(args.steps, args.synchronous)
        print(f"{'b-tree':<26}{'pages/step':>12}")
        for name, count in by_tree.most_common():
            if count / args.steps >= 0.005:
                print(f"{name:<26}{count / args.steps:>12.2f}")
        print(f"{'all':<26}{total / args.steps:>12.2f}")
        return
    header(f"wal: one run of {args.steps:,} sequential steps, sqlite synchronous={args.synchronous}")
    print(f"{'WAL limit':<22}{'largest WAL':>14}{'WAL at end':>14}{'database':>14}{'steps/s':>10}")
    limits = [("64 MiB (default)", WAL_LIMIT)] + ([("none", 2**40)] if args.unbounded else [])
    for name, limit in limits:
        m = await measure(args.steps, args.synchronous, limit)
        print(f"{name:<22}{_mb(m['largest']):>14}{_mb(m['final']):>14}{_mb(m['db']):>14}{m['steps_per_s']:>10.0f}")


if __name__ == "__main__":
    asyncio.run(main())
