"""Shared helpers for the benchmarks: fresh databases, medians, and a consistent table layout.

Benchmarks print figures next to a floor measured in the same run on the same machine, so the
ratio stays meaningful on a noisy shared host. They never assert on time.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def fresh_db(name: str) -> str:
    """A path to a new, empty SQLite file in a temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="durable-bench-"))
    return str(directory / f"{name}.db")


def sqlite_url(path: str, synchronous: str) -> str:
    return f"sqlite:///{path}?synchronous={synchronous}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:9.2f} µs"


def header(title: str, method: str = "medians of repeated measurements") -> None:
    print()
    print(title)
    print("-" * len(title))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {method}")


def quick() -> bool:
    """``BENCH_QUICK=1`` shrinks the workloads (tests/unit/test_benchmarks.py runs every script so)."""
    return os.environ.get("BENCH_QUICK") == "1"
