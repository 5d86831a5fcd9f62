"""The one projection of runs, steps and hooks: every view reads the same status, times and retries."""

from __future__ import annotations

import anyio
import httpx
import pytest

import durable
from durable._client.projection import as_datetime
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
