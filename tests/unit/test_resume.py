"""Resuming a hook right after its run starts: public waits instead of racing the hook's creation."""

from __future__ import annotations

import anyio
import pytest

import durable

pytestmark = pytest.mark.anyio


@durable.step
async def resume_slow_setup() -> str:
    await anyio.sleep(0.2)  # the hook is created only after this step: a resume at once would race it
    return "ready"


@durable.workflow
async def resume_after_setup(key: str) -> str:
    await resume_slow_setup()
    decision = await durable.create_hook(token=f"resume:{key}")
    return f"got {decision}"


@durable.workflow
async def resume_never_hooks(key: str) -> str:
    return "done without a hook"


async def test_a_resume_at_once_races_the_hook_but_wait_for_hook_does_not(runtime: durable.Runtime) -> None:
    """Right after start, the token is unknown (HookNotFound); run.wait_for_hook returns once it exists."""
    run = await runtime.start(resume_after_setup, "a")
    with pytest.raises(durable.HookNotFound):
        await runtime.resume_hook("resume:a", "yes")
    hook = await run.wait_for_hook("resume:a", timeout="10s")
    assert hook.token == "resume:a" and hook.status == "active"
    await runtime.resume_hook("resume:a", "yes")
    assert await run.result(timeout=20) == "got yes"


async def test_resume_hook_can_wait_for_the_hook_to_be_created(runtime: durable.Runtime) -> None:
    """resume_hook(..., wait=...) delivers to a hook created after the call began."""
    run = await runtime.start(resume_after_setup, "b")
    result = await runtime.resume_hook("resume:b", "sure", wait="10s")
    assert result.run_id == run.run_id
    assert await run.result(timeout=20) == "got sure"


async def test_waits_end_with_a_timeout_or_when_the_run_ends_without_the_hook(runtime: durable.Runtime) -> None:
    """No hook in time is TimeoutError; a run that ended without creating it is HookNotFound."""
    with pytest.raises(TimeoutError, match="resume:nobody"):
        await runtime.resume_hook("resume:nobody", 1, wait=0.2)
    run = await runtime.start(resume_never_hooks, "c")
    with pytest.raises(durable.HookNotFound):
        await run.wait_for_hook("resume:c", timeout="10s")
    with pytest.raises(TimeoutError):
        await (await runtime.start(resume_after_setup, "d")).wait_for_hook("resume:other", timeout=0.3)
