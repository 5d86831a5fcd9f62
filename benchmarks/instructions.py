"""Instructions per durable step, counted by valgrind, next to the instructions of one INSERT commit.

Wall-clock figures on a shared 2-core machine wander by 10-20% between runs; instruction counts
of memory:// steps repeat within ~1%, so this is the figure to compare two versions of the hot path
by. It counts user-space work only (no fsync wait, no kernel), which is what code changes move.
Under ``synchronous=normal`` the database thread's checkpoints are counted too, and how much they
copy depends on timing: single counts there vary by ~3%, so each figure is a median of three.

Each figure is the difference of two child processes run under ``valgrind --tool=callgrind``, one
running ``BASE`` steps and one ``BASE + N``, divided by ``N``: start-up, imports and the runtime's
opening cancel out. The floor is measured the same way: ``N`` more ``BEGIN IMMEDIATE; INSERT;
COMMIT`` transactions through the ``sqlite3`` module with the same pragmas. The workflow and the
floor are ``steps.py``'s, so the two benchmarks measure the same work.

Run: ``.venv/bin/python benchmarks/instructions.py`` (needs valgrind; about three minutes). Without
valgrind it says so and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import fresh_db, header, median, quick, sqlite_url
from steps import floor_connection, insert_commits, steps

import durable

BASE = 200


async def run_steps(url: str, n: int) -> None:
    async with durable.Runtime(url, workflows=[steps]) as rt:
        await (await rt.start(steps, n)).result()


def child(kind: str, n: int) -> None:
    if kind == "insert":
        insert_commits(floor_connection(fresh_db("floor"), "normal"), n)
    elif kind == "memory":
        asyncio.run(run_steps("memory://", n))
    else:
        asyncio.run(run_steps(sqlite_url(fresh_db("steps"), "normal"), n))


def instructions(valgrind: str, kind: str, n: int) -> int:
    with tempfile.TemporaryDirectory(prefix="durable-ic-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, "--child", kind, str(n)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no instruction total in {out}")
        return int(match.group(1))


def per_unit(valgrind: str, kind: str, n: int, repeats: int) -> float:
    """Median over ``repeats`` of (instructions of BASE + n units - instructions of BASE) / n."""
    return median([
        (instructions(valgrind, kind, BASE + n) - instructions(valgrind, kind, BASE)) / n for _ in range(repeats)
    ])


def main() -> None:
    valgrind = shutil.which("valgrind")
    n, repeats = (200, 1) if quick() else (1000, 3)
    header(
        "instructions: user-space instructions per sequential step (valgrind callgrind)",
        f"medians of {repeats} count(s) (PYTHONHASHSEED=0)",
    )
    if valgrind is None:
        print("valgrind is not installed; nothing measured")
        return
    floor = per_unit(valgrind, "insert", n, repeats)
    print(f"{'what':<34}{'instructions':>14}{'ratio':>8}")
    print(f"{'floor: one INSERT commit (normal)':<34}{floor / 1e3:>13.1f}k{1:>7.1f}x")
    for kind, label in (("memory", "durable step, memory://"), ("normal", "durable step, sqlite normal")):
        count = per_unit(valgrind, kind, n, repeats)
        print(f"{label:<34}{count / 1e3:>13.1f}k{count / floor:>7.1f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
