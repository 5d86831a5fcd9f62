"""The one projection of runs, steps and hooks: every view reads the same status, times and retries."""

from __future__ import annotations

import time
from typing import Any, cast

import anyio
import httpx
import pytest
from typer.testing import CliRunner

import durable
import durable.notebook
from durable._cli import app
from durable._client.projection import as_datetime
from durable.notebook._html import state_html, state_text
from durable.stores._sql import DB
from durable.stores._sqlstore import SQLStore
from durable.web import create_app

gate: dict[str, bool] = {"open": False}


@durable.step
async def started_at_seen_by_a_step() -> str:
    return durable.get_workflow_metadata().started_at.isoformat()


@durable.workflow
async def projection_started_at() -> tuple[str, str]:
    await durable.sleep("50ms")  # the step starts well after the run did
    seen_in_step = await started_at_seen_by_a_step()
    return durable.get_workflow_metadata().started_at.isoformat(), seen_in_step


@pytest.mark.anyio
async def test_a_step_sees_the_runs_start_time_not_its_own(runtime: durable.Runtime) -> None:
    """get_workflow_metadata().started_at in a step is the run's start, as in the workflow."""
    run = await runtime.start(projection_started_at)
    in_workflow, in_step = await run.result(timeout=20)
    assert in_step == in_workflow
    info = await run.info()
    assert info.started_at is not None and info.started_at.isoformat() == in_workflow


@durable.step
async def projection_never_ran() -> int:
    return 1


@durable.workflow
async def projection_pending_step() -> int:
    return await projection_never_ran()


@pytest.mark.anyio
async def test_a_step_that_never_ran_has_no_retry_time_in_python_or_over_http(store_url: str) -> None:
    """StepInfo.retry_at and the HTTP retry_at agree (None for a pending step that never ran); a runtime
    with execute_steps=False never runs a step, not even one its own commit created."""
    # A client that runs no steps: the step stays pending, never attempted.
    async with durable.Runtime(store_url, execute_steps=False, poll_interval=0.1) as rt:
        run = await rt.start(projection_pending_step)
        for _ in range(200):
            steps = await run.steps()
            if steps:
                break
            await anyio.sleep(0.02)
        assert [(s.status, s.attempts, s.retry_at) for s in steps] == [("pending", 0, None)]
        app = create_app(rt, manage=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            detail = (await http.get(f"/runs/{run.run_id}")).json()
        assert [(s["status"], s["attempts"], s["retry_at"]) for s in detail["steps"]] == [("pending", 0, None)]


def test_timestamps_no_datetime_can_hold_are_shown_as_the_latest_moment() -> None:
    """A far-future stored time (epoch milliseconds taken as seconds) does not break the views."""
    far = as_datetime(1.8e15)
    assert far is not None and far.year == 9999
    assert as_datetime(None) is None
    assert as_datetime(0.0) is not None


# -- any stored timestamp (issue 16: a far-future retry broke every view of its run) ---------------


@durable.step(max_retries=2)
async def projection_retried_later() -> int:
    raise durable.RetryableError("come back in an hour", retry_after="1h")


@durable.workflow
async def projection_waits_for_a_retry() -> int:
    return await projection_retried_later()


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.anyio
async def test_every_view_of_a_run_survives_any_stored_timestamp(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timestamps no datetime can hold (a retry at 1.8e12 s, infinities, -1e300), as older versions
    could store them, still give a run's steps, info and events in Python, 200s over HTTP, the
    notebook snapshot and the CLI's tables -- also in a time zone east of UTC, where converting the
    latest moment to local time overflows."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        async with durable.Runtime(store_url, workflows=[projection_waits_for_a_retry]) as rt:
            run = await rt.start(projection_waits_for_a_retry)
            with anyio.fail_after(10):
                while not [s for s in await run.steps() if s.retry_at is not None]:
                    await anyio.sleep(0.02)
            store = cast(SQLStore, rt.store)

            def corrupt(db: DB) -> None:
                db.execute("UPDATE steps SET ready_at = ?, started_at = ? WHERE run_id = ?", (1.8e12, -1e300, run.run_id))
                db.execute("UPDATE runs SET started_at = ?, updated_at = ? WHERE run_id = ?", (float("inf"), 1e300, run.run_id))
                db.execute("UPDATE events SET created_at = ? WHERE run_id = ? AND seq = 2", (float("-inf"), run.run_id))
                db.execute("UPDATE events SET created_at = ? WHERE run_id = ? AND seq = 3", (1.8e15, run.run_id))

            await store._run(corrupt)
            [step] = await run.steps()
            assert step.retry_at is not None and step.retry_at.year == 9999
            assert step.started_at is not None and step.started_at.year == 1 and step.duration is not None
            info = await run.info()
            assert info.started_at is not None and info.started_at.year == 9999 and info.duration == 0.0
            assert [e.timestamp.year for e in await run.events()][1:3] == [1, 9999]
            app_ = create_app(rt, manage=False)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_), base_url="http://test") as http:
                detail = await http.get(f"/runs/{run.run_id}")
                events = await http.get(f"/runs/{run.run_id}/events")
                listed = await http.get("/runs")
            assert detail.status_code == events.status_code == listed.status_code == 200
            assert detail.json()["steps"][0]["retry_at"].startswith("9999-12-31")
            state = await durable.notebook.snapshot(run)
            assert run.run_id in state_html(state) and run.run_id in state_text(state)
            if store_url != "memory://":
                for command, expected in ((("runs",), run.run_id), (("inspect", run.run_id), "come back in an hour"),
                                          (("events", run.run_id), "step_retrying")):
                    shown = await anyio.to_thread.run_sync(_cli, *(*command, "--store", store_url))
                    assert shown.exit_code == 0 and expected in shown.output, (command, shown.output)
            await run.cancel()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
