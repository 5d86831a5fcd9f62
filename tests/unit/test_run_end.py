"""When a run ends, the cleanup it causes is in its event log too, and a cancelled step says so."""

from __future__ import annotations

import asyncio

import anyio
import pytest

import durable
import durable.testing

pytestmark = pytest.mark.anyio

started: dict[str, anyio.Event] = {}


@durable.step
async def end_long_step() -> str:
    started["step"].set()
    await anyio.sleep(30)
    return "never"


@durable.step
async def end_writes() -> None:
    writer = durable.get_writable("progress")
    await writer.write("half way")
    await writer.flush()  # left open: the run's end closes it


@durable.workflow
async def end_with_everything_open() -> str:
    hook = durable.create_hook(token="end:open")
    await end_writes()
    timer = asyncio.create_task(durable.sleep("1 day"))
    await asyncio.sleep(0)  # the timer is created
    del hook, timer
    return "done"


@durable.workflow
async def end_cancelled_mid_step() -> str:
    return await end_long_step()


async def test_run_end_disposes_cancels_and_closes_as_events_before_the_terminal_event(runtime: durable.Runtime) -> None:
    """hook_disposed, wait_cancelled and stream_closed are appended when a run ends; its terminal event stays last."""
    run = await runtime.start(end_with_everything_open)
    assert await run.result(timeout=20) == "done"
    events = await run.events()
    tail = [(e.kind, e.name) for e in events[-4:]]
    assert tail == [
        ("hook_disposed", "end:open"), ("wait_cancelled", None), ("stream_closed", "progress"), ("run_completed", None),
    ]
    assert (await durable.testing.check_replay(run)).status == "completed"  # replay skips them


async def test_a_step_running_when_its_run_is_cancelled_is_cancelled_not_failed(runtime: durable.Runtime) -> None:
    """The attempt's status and event are 'cancelled', not a failure with a RuntimeError."""
    started["step"] = anyio.Event()
    run = await runtime.start(end_cancelled_mid_step)
    await started["step"].wait()
    await run.cancel()
    for _ in range(500):
        steps = await run.steps()
        if steps and steps[0].status != "running":
            break
        await anyio.sleep(0.02)
    assert [s.status for s in steps] == ["cancelled"]
    assert "step_cancelled" in [e.kind for e in await run.events()]

    # Every surface says so: the web API (what the runs page draws), the notebook's step table, the CLI.
    from durable._client.present import run_detail
    from durable.notebook import snapshot
    from durable.notebook._html import now_utc, steps_html

    detail = run_detail(await run.info(), None, steps, [], [])
    assert [(s["status"], s["error"]["type"].rpartition(".")[2]) for s in detail["steps"]] == [("cancelled", "RunCancelled")]
    table = steps_html(await snapshot(run), now_utc())
    assert 'durable-badge durable-cancelled"' in table and ">cancelled</span>" in table
    assert "RuntimeError" not in table and "failed" not in table
    if runtime.store.url.startswith("sqlite"):
        from typer.testing import CliRunner

        from durable._cli import app

        shown = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, ["inspect", run.run_id, "--store", runtime.store.url]))
        assert shown.exit_code == 0, shown.stderr
        (line,) = [line for line in shown.stdout.splitlines() if "end_long_step" in line]
        assert "cancelled" in line and "failed" not in line, shown.stdout
