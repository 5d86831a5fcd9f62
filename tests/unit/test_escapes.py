"""Control-flow exceptions in user code (``sys.exit()``, argparse, KeyboardInterrupt) fail a step
attempt or a run -- never the worker, and so never, on every restart, the runs in flight with it."""

from __future__ import annotations

import sys
import traceback

import pytest

import durable

pytestmark = pytest.mark.anyio


@durable.step(max_retries=1, retry_delay="10ms")
async def escape_exits(code: int) -> int:
    sys.exit(code)


@durable.step
async def escape_fine(x: int) -> int:
    return x + 1


@durable.workflow
async def escape_caught() -> str:
    try:
        await escape_exits(3)
    except durable.StepFailed as exc:
        return f"caught {exc.error_type}"
    return "not raised"


@durable.workflow
async def escape_in_workflow() -> int:
    await escape_fine(1)
    raise SystemExit(4)


@durable.workflow
async def escape_keyboard() -> int:
    raise KeyboardInterrupt


async def test_sys_exit_in_a_step_fails_its_attempts_and_reaches_the_workflow_as_step_failed(runtime: durable.Runtime) -> None:
    """Each attempt fails (and is retried); the workflow can catch the final failure; other runs go on."""
    run = await runtime.start(escape_caught)
    other = await runtime.start(escape_in_workflow)
    assert await run.result(timeout=20) == "caught SystemExit"
    steps = await run.steps()
    assert [(s.status, s.attempts) for s in steps] == [("failed", 2)]
    with pytest.raises(durable.RunFailed) as failed:
        await other.result(timeout=20)
    assert failed.value.error_type == "SystemExit"


@durable.step(max_retries=1, retry_delay="10ms")
async def escape_interrupted() -> int:
    raise KeyboardInterrupt


@durable.workflow
async def escape_interrupted_flow() -> str:
    try:
        await escape_interrupted()
    except durable.StepFailed as exc:
        return f"caught {exc.error_type}"
    return "not raised"


async def test_keyboard_interrupt_in_a_step_fails_that_step_not_the_runtime(runtime: durable.Runtime) -> None:
    """A step raising KeyboardInterrupt (a library's own Ctrl-C handling, say) fails each attempt like
    any error; the workflow catches the final failure and the runtime goes on running other runs."""
    run = await runtime.start(escape_interrupted_flow)
    assert await run.result(timeout=20) == "caught KeyboardInterrupt"
    assert [(s.status, s.attempts, s.error and s.error.type) for s in await run.steps()] == [("failed", 2, "KeyboardInterrupt")]
    assert await (await runtime.start(escape_caught)).result(timeout=20) == "caught SystemExit"


async def test_system_exit_or_keyboard_interrupt_in_workflow_code_fails_only_that_run(runtime: durable.Runtime) -> None:
    """The runtime keeps running: a later run on it completes."""
    for wf in (escape_in_workflow, escape_keyboard):
        with pytest.raises(durable.RunFailed) as failed:
            await (await runtime.start(wf)).result(timeout=20)
        assert failed.value.error_type in ("SystemExit", "KeyboardInterrupt")
    assert await (await runtime.start(escape_caught)).result(timeout=20) == "caught SystemExit"


@durable.step(max_retries=0)
async def escape_raises_deep() -> None:
    def inner_helper() -> None:
        raise ValueError("deep down")

    inner_helper()


@durable.workflow
async def escape_formats() -> str:
    try:
        await escape_raises_deep()
    except ValueError as exc:
        return "".join(traceback.format_exception(exc))
    return ""


async def test_a_caught_step_error_shows_the_steps_own_traceback(runtime: durable.Runtime) -> None:
    """traceback.format_exception of a step error caught in the workflow shows the step's frames."""
    text = await (await runtime.start(escape_formats)).result(timeout=20)
    assert "inner_helper" in text and "deep down" in text and "The step's own traceback" in text
