"""durable.logger logs once per real execution -- never again when a replay re-lives the code -- with the run's fields."""

from __future__ import annotations

import logging

import pytest

import durable

pytestmark = pytest.mark.anyio


@durable.step(max_retries=1, retry_delay="10ms")
async def logged_step(x: int) -> int:
    attempt = durable.get_step_metadata().attempt
    durable.logger.info("step attempt %d", attempt)
    if attempt == 1:
        raise ConnectionError("once")
    return x


@durable.workflow
async def logged_flow(x: int) -> int:
    durable.logger.info("before the steps")
    a = await logged_step(x)
    durable.logger.info("between the steps")
    b = await logged_step(a)
    durable.logger.warning("done: %d", b)
    return b


async def test_each_line_is_logged_once_though_every_invocation_replays_cold(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With no sticky cache every invocation replays from the start; each workflow line still appears once."""
    caplog.set_level(logging.INFO, logger="durable.workflow")
    async with durable.Runtime(store_url, sticky_cache_size=0, poll_interval=0.05) as rt:
        run = await rt.start(logged_flow, 3)
        assert await run.result(timeout=20) == 3
        assert rt.stats["cold_replays"] >= 2  # after each step, the whole log again
    mine = [r for r in caplog.records if r.name == "durable.workflow" and getattr(r, "run_id", None) == run.run_id]
    workflow_lines = [r.getMessage() for r in mine if not hasattr(r, "step")]
    assert workflow_lines == ["before the steps", "between the steps", "done: 3"]
    assert all(r.workflow == logged_flow.name for r in mine)  # type: ignore[attr-defined]
    step_lines = [(r.getMessage(), r.attempt) for r in mine if hasattr(r, "step")]  # type: ignore[attr-defined]
    assert step_lines == [("step attempt 1", 1), ("step attempt 2", 2)] * 2
