"""Queue limits across processes on PostgreSQL: three worker processes share a concurrency-3 queue and a
20/s rate-limited queue; the limits hold for all of them together (the claim query enforces them)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests import pg
from tests import queue_worker as qw
from tests.helpers import ROOT

BASE = os.environ.get("DURABLE_TEST_POSTGRES", "")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not BASE, reason="DURABLE_TEST_POSTGRES is not set (CI sets it; see .ci/run)"),
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield pg.fresh_database(BASE, name)
    pg.drop_schema(BASE, name)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at the same instant as a start closes first)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = now = 0
    for _, delta in points:
        now += delta
        best = max(best, now)
    return best


def max_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(sum(1 for t in ordered if s <= t < s + window) for s in ordered)


def test_max_overlap_and_windows_count_what_they_say() -> None:
    """The two measures the PostgreSQL test relies on, on known inputs."""
    assert max_overlap([(0, 2), (1, 3), (2, 4), (2.5, 3)]) == 3
    assert max_in_window([0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4  # [0.5, 1.5)
    assert max_in_window([0, 1.0, 2.0], 1.0) == 1


async def _drive(url: str) -> None:
    async with durable.Runtime(url, workflows=[], execute_steps=False) as client:
        limited = [await client.start(qw.fan, i, 5, False) for i in range(12)]
        for i, run in enumerate(limited):
            assert await run.result(timeout=120) == sum(i * 100 + k for k in range(5))
        rated = [await client.start(qw.fan, i, 10, True) for i in range(6)]
        for i, run in enumerate(rated):
            assert await run.result(timeout=120) == sum(i * 100 + k for k in range(10))


@pytest.mark.timeout(240)
def test_three_workers_never_exceed_a_concurrency_limit_and_hold_a_rate(pg_url: str, tmp_path: Path) -> None:
    """Concurrency 3 across three processes: never more than 3 queued steps run at once (from the workers' own
    clocks); a 20/s rate: no one-second window of the store's admissions holds more than 20 (+10%)."""
    log = tmp_path / "steps.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for i in range(3):
        with (tmp_path / f"w{i}.err").open("wb") as err:  # the child keeps its own copy of the descriptor
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.queue_worker", pg_url, f"w{i}", str(log)], cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=err, text=True,
            ))
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("ready"), proc.args
        asyncio.run(_drive(pg_url))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
            assert proc.stdout is not None
            proc.stdout.close()
    lines = [line.split() for line in log.read_text().splitlines()]
    limited = [(float(s), float(e)) for _, q, s, e in lines if q == "qw.limited"]
    rated = [float(s) for _, q, s, _ in lines if q == "qw.rated"]
    assert len(limited) == 60 and len(rated) == 60
    workers = {w for w, q, _, _ in lines if q == "qw.limited"}
    assert len(workers) > 1, "one worker ran every step: the limit was not shared"
    overlap = max_overlap(limited)
    assert overlap <= 3
    with pg.connect(pg_url) as conn:
        admitted = [r[0] for r in conn.execute(
            "SELECT e.created_at FROM events e JOIN steps s ON s.run_id = e.run_id AND s.step_id = e.corr_id "
            "WHERE e.kind = 'step_started' AND s.queue = 'qw.rated'"
        ).fetchall()]
    assert len(admitted) == 60
    in_window = max_in_window(admitted, 1.0)
    assert in_window <= 22  # 20 per second, within 10%
    span = max(admitted) - min(admitted)
    rate = len(admitted) / (span + 1.0)  # n admissions under a 1 s window need at least n/20 - 1 s of spread
    assert rate <= 22
    print(f"queue limits: max {overlap}/3 queued steps at once over {sorted(workers)}; rate: at most {in_window} "
          f"admissions in any 1 s (limit 20), {rate:.1f}/s overall")
    for i in range(3):
        assert "Traceback" not in (tmp_path / f"w{i}.err").read_text()
