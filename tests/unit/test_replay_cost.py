"""``durable.testing.measure_replay`` and ``durable bench-replay``: what replaying a recorded run costs. Every store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import durable
import durable.testing
from durable._workflow.workflow import Workflow

pytestmark = pytest.mark.anyio


@durable.step(name="cost.add")
async def add(total: int, i: int) -> int:
    return total + i


async def _summed(n: int) -> int:
    total = 0
    for i in range(n):
        total = await add(total, i)
    return total


def summed() -> Workflow[Any, Any]:
    return Workflow(_summed, name="cost.summed", serializer="json")


async def test_measure_replay_reports_cold_sticky_and_floor_per_event(store_url: str) -> None:
    """A 20-step run: 41 events a replay reads (run_started, and a creation and a result per step), each
    figure positive, min <= median <= max, and a readable summary; changed code is NonDeterminismError."""
    wf = summed()
    async with durable.Runtime(store_url, workflows=[wf]) as rt:
        run = await rt.start(wf, 20)
        await run.result(timeout=20)
        cost = await durable.testing.measure_replay(run, repeat=3, workflow=wf)

        async def changed(n: int) -> int:
            return await add(-1, 0)

        with pytest.raises(durable.NonDeterminismError):
            await durable.testing.measure_replay(run, workflow=Workflow(changed, name="cost.summed", serializer="json"))
        with pytest.raises(ValueError, match="repeat"):
            await durable.testing.measure_replay(run, repeat=0)
    assert (cost.events, cost.steps, cost.repeat) == (41, 20, 3)
    assert 0 < cost.cold_min <= cost.cold_median <= cost.cold_max and cost.sticky > 0 and cost.floor > 0
    text = str(cost)
    assert "41 events read by a replay (20 steps)" in text and "sticky:" in text and "floor:" in text


def test_bench_replay_prints_the_figures_for_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`durable bench-replay RUN --app module` replays with that module's code; bad options are exit 2."""
    from typer.testing import CliRunner

    from durable._cli import app

    (tmp_path / "costflows.py").write_text(
        "import durable\n\n"
        "@durable.step(name='costflows.inc')\nasync def inc(x: int) -> int:\n    return x + 1\n\n"
        "@durable.workflow(name='costflows.loop')\nasync def loop(n: int) -> int:\n"
        "    for _ in range(n):\n        n = await inc(n) - 1\n    return n\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import costflows  # type: ignore[import-not-found]

    url = f"sqlite:///{tmp_path / 'cost.db'}"

    async def record() -> str:
        async with durable.Runtime(url, workflows=[costflows.loop]) as rt:
            run = await rt.start(costflows.loop, 5)
            await run.result(timeout=20)
            return run.run_id

    run_id = anyio.run(record)
    done = CliRunner().invoke(app, ["bench-replay", run_id, "--app", "costflows", "--store", url, "--repeat", "2"])
    assert done.exit_code == 0, done.output
    assert f"run {run_id} (costflows.loop): 11 events read by a replay (5 steps), replayed cold 2 times" in done.output
    assert CliRunner().invoke(app, ["bench-replay", run_id, "--app", "costflows", "--store", url, "--repeat", "0"]).exit_code == 2
