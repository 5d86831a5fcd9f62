"""Bugs found in an adversarial review of the core, each proven by a test (they failed before the fixes)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

import durable

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[2]


def run_child(script: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
    """Run ``script`` in a fresh interpreter; None if it did not finish within ``timeout`` seconds (killed)."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None


# -- 1. the dispatcher spins without yielding when steps wait for a slot ---------------------------

SATURATED = """
    import asyncio, sys
    import anyio, durable

    @durable.step
    async def nap(i: int) -> int:
        await anyio.sleep(0.01)
        return i

    @durable.workflow
    async def fan(n: int) -> int:
        return sum(await asyncio.gather(*(nap(i) for i in range(n))))

    async def main() -> None:
        async with durable.Runtime(sys.argv[1] if len(sys.argv) > 1 else "{url}", workflows=[fan]) as rt:
            run = await rt.start(fan, 65)          # one more step than the default 64 slots
            print(await run.result(timeout=5))

    asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_a_gather_wider_than_the_step_slots_completes(url: str, tmp_path: Path) -> None:
    """A gather of 65 steps on a default runtime (64 slots) completes instead of freezing the process."""
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'spin.db'}?synchronous=normal"
    done = run_child(SATURATED.replace("{url}", url), timeout=10)
    assert done is not None, "the child froze at 100% CPU (killed after 10 s)"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sum(range(65)))


# -- 2./3. a step attempt that ends with an unexpected exception leaves its step 'running' forever -


@durable.step(name="review.raises_cancelled", max_retries=1, retry_delay=0.01)
async def raises_cancelled() -> int:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    await task  # a CancelledError that is not the runtime's own cancellation escapes the step body
    return 1


@durable.workflow(name="review.cancelled_inside_step")
async def cancelled_inside_step() -> str:
    try:
        await raises_cancelled()
    except Exception as exc:
        return type(exc).__name__
    return "no error"


async def test_a_step_raising_cancelled_error_does_not_hang_its_run(runtime: durable.Runtime) -> None:
    """A step whose own code raises CancelledError counts as a failed attempt; the run goes on."""
    run = await runtime.start(cancelled_inside_step)
    info = await run.wait(timeout=3)
    assert info.status in ("completed", "failed")
    assert all(s.status != "running" for s in await run.steps())


class ExplodingValue:
    """A value whose custom serializer raises a plain exception (not a SerializationError)."""

    def __durable_serialize__(self) -> dict[str, int]:
        raise ValueError("cannot serialize this one")

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, int]) -> ExplodingValue:
        return cls()


@durable.step(name="review.returns_exploding", max_retries=0)
async def returns_exploding() -> ExplodingValue:
    return ExplodingValue()


@durable.workflow(name="review.step_result_explodes")
async def step_result_explodes() -> str:
    try:
        await returns_exploding()
    except Exception as exc:
        return type(exc).__name__
    return "no error"


async def test_a_step_result_whose_serializer_raises_fails_the_step(runtime: durable.Runtime) -> None:
    """A step result whose __durable_serialize__ raises fails the step (the workflow sees an error) instead of hanging."""
    run = await runtime.start(step_result_explodes)
    assert await run.result(timeout=3) in ("SerializationError", "ValueError", "StepFailed")


# -- 4. an exception escaping WorkflowInstance.advance makes the run retry forever in a hot loop ----


@durable.workflow(name="review.workflow_result_explodes")
async def workflow_result_explodes() -> ExplodingValue:
    return ExplodingValue()


async def test_a_workflow_result_whose_serializer_raises_fails_the_run(
    runtime: durable.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A workflow returning a value whose serializer raises fails the run once, with a clear error."""
    caplog.set_level(logging.CRITICAL, logger="durable")  # the hot loop logs a traceback per attempt
    run = await runtime.start(workflow_result_explodes)
    try:
        with pytest.raises(durable.RunFailed):
            await run.result(timeout=2)
    finally:
        replays = runtime.stats["cold_replays"]
    assert replays < 5


# -- 5. max_concurrent_steps is exceeded: the dispatcher does not reserve slots across its await ----

concurrency = {"now": 0, "max": 0}


@durable.step(name="review.occupy", retry_delay=0.01)
async def occupy(tag: str, deadline: datetime) -> str:
    if tag == "retried" and durable.get_step_metadata().attempt == 1:
        raise durable.RetryableError("come back at the deadline", retry_after=deadline)
    concurrency["now"] += 1
    concurrency["max"] = max(concurrency["max"], concurrency["now"])
    try:
        await anyio.sleep(0.2)
    finally:
        concurrency["now"] -= 1
    return tag


@durable.workflow(name="review.sleep_then_occupy")
async def sleep_then_occupy(deadline: datetime) -> str:
    await durable.sleep(deadline)
    return await occupy("after-sleep", deadline)


@durable.workflow(name="review.retry_then_occupy")
async def retry_then_occupy(deadline: datetime) -> str:
    return await occupy("retried", deadline)


async def test_max_concurrent_steps_is_never_exceeded(tmp_path: Path) -> None:
    """With max_concurrent_steps=1, a timer wake-up and a due retry at the same moment never run two steps at once."""
    concurrency.update(now=0, max=0)
    url = f"sqlite:///{tmp_path / 'slots.db'}"  # synchronous=FULL: writes go through the database thread
    async with durable.Runtime(
        url, max_concurrent_steps=1, workflows=[sleep_then_occupy, retry_then_occupy]
    ) as rt:
        deadline = datetime.now(UTC) + timedelta(seconds=0.5)
        first = await rt.start(sleep_then_occupy, deadline)
        second = await rt.start(retry_then_occupy, deadline)
        assert await first.result(timeout=10) == "after-sleep"
        assert await second.result(timeout=10) == "retried"
        assert rt.slots.free == 1
    assert concurrency["max"] == 1


# -- 6. a stale attempt (its worker's lease lapsed) can put a step running elsewhere back to pending -

ZOMBIE_STEP = """
    import os, time
    import anyio, durable

    @durable.step(name="review.zombie", retry_delay=0.01)
    async def zombie() -> int:
        attempt = durable.get_step_metadata().attempt
        with open(os.environ["ZOMBIE_LOG"], "a") as f:
            f.write(f"{attempt} {os.getpid()}\\n")
        if attempt == 1:
            time.sleep(3)  # blocks this process's event loop: no heartbeat, its lease lapses
            raise RuntimeError("attempt 1 failed, late")
        await anyio.sleep(3)
        return attempt
"""
ZOMBIE_WORKER = (
    ZOMBIE_STEP
    + """
    import asyncio, pathlib, sys

    async def main() -> None:
        async with durable.Runtime(sys.argv[1], workflows=[], heartbeat_interval=0.1, poll_interval=0.05):
            pathlib.Path(sys.argv[2]).touch()
            await anyio.sleep_forever()

    asyncio.run(main())
"""
)
_zombie_namespace: dict[str, object] = {}
exec(textwrap.dedent(ZOMBIE_STEP), _zombie_namespace)  # the same step, registered in this process too
zombie_step: durable.Step[[], int] = _zombie_namespace["zombie"]  # type: ignore[assignment]


@durable.workflow(name="review.zombie_run")
async def zombie_run() -> int:
    return await zombie_step()


@pytest.mark.slow
async def test_a_late_attempt_cannot_requeue_a_step_running_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a worker's lease lapses mid-step and another worker re-runs the step, the late outcome of the first attempt is refused."""
    import os

    url = f"sqlite:///{tmp_path / 'zombie.db'}?synchronous=normal"
    log = tmp_path / "zombie.log"
    monkeypatch.setenv("ZOMBIE_LOG", str(log))
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ZOMBIE_WORKER), url, str(ready)],
        cwd=ROOT,
        env={**os.environ, "ZOMBIE_LOG": str(log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with anyio.fail_after(15):
            while not ready.exists():
                await anyio.sleep(0.05)
        async with durable.Runtime(url, workflows=[zombie_run], lease_ttl=0.5, heartbeat_interval=0.1) as rt:
            run = await rt.start(zombie_run)  # attempt 1 runs here and blocks this loop for 3 s
            result = await run.result(timeout=20)
            await anyio.sleep(1)  # let any extra attempt show up in the log
    finally:
        child.kill()
        child.wait()
    attempts = [line.split() for line in log.read_text().splitlines()]
    assert attempts == [
        ["1", str(os.getpid())],
        ["2", str(child.pid)],
    ]  # the child took over; nobody else ran it
    assert result == 2


# -- 7. a worker whose event loop stalled past lease_ttl re-claims the steps it is itself running -----

stall_log: list[tuple[str, int]] = []


@durable.step(name="review.stall_loop")
async def stall_loop() -> str:
    stall_log.append(("stall", durable.get_step_metadata().attempt))
    for _ in range(3):  # three chances: after each stall the dispatcher usually runs before the heartbeat
        await anyio.sleep(0.05)
        time.sleep(0.7)  # sync work in a step: the loop (and the heartbeat) stall longer than lease_ttl
    return "stalled"


@durable.step(name="review.bystander")
async def bystander() -> str:
    stall_log.append(("bystander", durable.get_step_metadata().attempt))
    await anyio.sleep(3)
    return "done"


@durable.workflow(name="review.stall_and_bystander")
async def stall_and_bystander() -> list[str]:
    return list(await asyncio.gather(stall_loop(), bystander()))


async def test_a_stalled_worker_does_not_rerun_its_own_running_steps(sqlite_url: str) -> None:
    """A loop stall longer than lease_ttl in a single runtime does not start a second attempt of a step it is still running."""
    stall_log.clear()
    async with durable.Runtime(
        sqlite_url, workflows=[stall_and_bystander], lease_ttl=0.5, heartbeat_interval=0.2, poll_interval=0.01
    ) as rt:
        run = await rt.start(stall_and_bystander)
        assert await run.result(timeout=10) == ["stalled", "done"]
    assert sorted(stall_log) == [("bystander", 1), ("stall", 1)]


# -- 8./9. typed hooks: a predicate's False is taken as the payload; converters are applied twice ----


async def wait_for_hook(runtime: durable.Runtime, token: str) -> None:
    """Poll until a live hook holds ``token``."""
    with anyio.fail_after(10):
        while await runtime.store.get_hook(token) is None:
            await anyio.sleep(0.01)


def has_ok_key(value: object) -> bool:
    """A predicate-style validator: True when valid, False when not."""
    return isinstance(value, dict) and "ok" in value


PredicateHook = durable.define_hook(schema=has_ok_key, name="review.predicate")


@durable.workflow(name="review.awaits_predicate_hook")
async def awaits_predicate_hook() -> object:
    return await PredicateHook.create(token="review-predicate")


async def test_a_validator_returning_false_rejects_the_payload(runtime: durable.Runtime) -> None:
    """A callable schema that returns False rejects the payload with HookValidationError and records nothing."""
    run = await runtime.start(awaits_predicate_hook)
    await wait_for_hook(runtime, "review-predicate")
    try:
        with pytest.raises(durable.HookValidationError):
            await PredicateHook.resume("review-predicate", {"nope": 1})
        assert not any(e.kind == "hook_received" for e in await run.events())
    finally:
        await run.cancel()


@dataclasses.dataclass
class Point:
    x: int
    y: int


def to_point(value: object) -> Point:
    """A converting validator: a mapping in, a Point out."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return Point(int(value["x"]), int(value["y"]))


PointHook = durable.define_hook(schema=to_point, name="review.point")


@durable.workflow(name="review.awaits_point")
async def awaits_point() -> Point:
    return await PointHook.create(token="review-point")


async def test_a_converting_validator_is_applied_once(runtime: durable.Runtime) -> None:
    """define_hook(schema=converter).resume() converts the payload once and the workflow receives the converted value."""
    run = await runtime.start(awaits_point)
    await wait_for_hook(runtime, "review-point")
    try:
        await PointHook.resume("review-point", {"x": "1", "y": 2})
        assert await run.result(timeout=10) == Point(1, 2)
    finally:
        await run.cancel()


# -- 10. a plain hook whose user metadata has a "webhook" key is reachable through the webhook URL ---


@durable.workflow(name="review.plain_hook_with_metadata")
async def plain_hook_with_metadata() -> object:
    hook = durable.create_hook(token="review-internal", metadata={"webhook": "posted to #approvals"})
    return await hook


async def test_user_metadata_cannot_make_a_plain_hook_a_webhook(runtime: durable.Runtime) -> None:
    """A plain hook stays unreachable over HTTP whatever keys its user metadata has."""
    run = await runtime.start(plain_hook_with_metadata)
    await wait_for_hook(runtime, "review-internal")
    try:
        with pytest.raises(durable.HookNotFound):
            await runtime.resume_webhook(
                "review-internal", durable.Request("POST", "http://x/", {}, [], b"{}")
            )
    finally:
        await run.cancel()


# -- 11. a manual webhook whose run ends without answering reports a timeout that never happened ------


@durable.workflow(name="review.ends_without_answering")
async def ends_without_answering() -> str:
    await durable.create_webhook(token="review-unanswered", respond_with="manual")
    return "done, never answered"


async def test_a_run_ending_without_a_webhook_answer_says_so(runtime: durable.Runtime) -> None:
    """When the run ends without answering a manual webhook, the error says the run ended rather than claiming a timeout."""
    run = await runtime.start(ends_without_answering)
    await wait_for_hook(runtime, "review-unanswered")
    request = durable.Request("POST", "http://x/", {}, [], b"")
    with pytest.raises(durable.DurableError) as info:
        await runtime.resume_webhook("review-unanswered", request, timeout=30)
    assert await run.status() == "completed"
    assert "within 30s" not in str(info.value)
    assert "ended" in str(info.value) or "completed" in str(info.value)


# -- 12. module-level durable.* calls inside a step reach the executing runtime only sometimes -------


@durable.step(name="review.resume_from_step")
async def resume_from_step(token: str, value: int) -> str:
    try:
        await durable.resume_hook(token, value)  # the module-level API: "the current runtime"
    except durable.HookNotFound as exc:
        return f"HookNotFound: {exc}"
    return "delivered"


@durable.workflow(name="review.collects_two")
async def collects_two() -> list[object]:
    hook = durable.create_hook(token="review-two")
    return [await hook, await hook]


@durable.workflow(name="review.resumes_from_a_step")
async def resumes_from_a_step(value: int, sleep_first: bool) -> str:
    if sleep_first:
        await durable.sleep(0.05)  # the next invocation is claimed by the dispatcher
    return await resume_from_step("review-two", value)


async def test_module_level_calls_in_a_step_use_the_runtime_running_it(
    runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable.resume_hook called in a step reaches the runtime executing the step, however the step was launched."""
    monkeypatch.setenv("DURABLE_STORE", "memory://")  # where a stray default runtime would go
    collector = await runtime.start(collects_two)
    await wait_for_hook(runtime, "review-two")
    direct = await runtime.start(resumes_from_a_step, 1, False)
    assert await direct.result(timeout=10) == "delivered"
    after_sleep = await runtime.start(resumes_from_a_step, 2, True)
    try:
        assert await after_sleep.result(timeout=10) == "delivered"
        assert await collector.result(timeout=10) == [1, 2]
    finally:
        await collector.cancel()


# -- 13. a workflow-side write to a closed stream is dropped silently -------------------------------


@durable.step(name="review.closes_default_stream")
async def closes_default_stream() -> int:
    async with durable.get_writable() as writer:  # closes the run's default stream on exit
        await writer.write("from the step")
    return 1


@durable.workflow(name="review.yields_after_close")
async def yields_after_close():  # type: ignore[no-untyped-def]
    yield "first"
    await closes_default_stream()
    yield "after the close"


async def test_a_yield_to_a_closed_stream_is_not_lost_silently(runtime: durable.Runtime) -> None:
    """A yield after the default stream was closed either reaches the stream or fails the run; it never vanishes."""
    run = await runtime.start(yields_after_close)
    with contextlib.suppress(durable.RunFailed):
        await run.result(timeout=10)
    chunks = [c async for c in run.stream()] if await run.status() == "completed" else []
    assert await run.status() == "failed" or "after the close" in chunks


# -- 14. a token re-bound between lookup and resume reaches the wrong hook ---------------------------


@durable.workflow(name="review.webhook_then_done")
async def webhook_then_done() -> object:
    request = await durable.create_webhook(token="review-rebound")
    return request.method


@durable.workflow(name="review.plain_hook_on_rebound_token")
async def plain_hook_on_rebound_token() -> object:
    return await durable.create_hook(token="review-rebound")


async def test_a_token_rebound_after_lookup_does_not_reach_the_new_hook(
    runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume_webhook looks the token up, then appends: if the token moved to a plain hook in between,
    the request must not reach that hook (plain hooks are never reachable over HTTP)."""
    first = await runtime.start(webhook_then_done)
    await wait_for_hook(runtime, "review-rebound")
    stale = await runtime.store.get_hook("review-rebound")  # what a slow resumer looked up
    await runtime.resume_webhook("review-rebound", durable.Request("POST", "http://x/", {}, [], b""))
    assert await first.result(timeout=10) == "POST"  # the run ended; its token is free again

    second = await runtime.start(plain_hook_on_rebound_token)
    try:
        await wait_for_hook(runtime, "review-rebound")

        async def looked_up_before_the_rebind(token: str) -> object:
            return stale

        monkeypatch.setattr(runtime.store, "get_hook", looked_up_before_the_rebind)
        with pytest.raises(durable.HookNotFound):
            await runtime.resume_webhook("review-rebound", durable.Request("POST", "http://x/", {}, [], b"{}"))
        with pytest.raises(durable.HookNotFound):
            await runtime.resume_hook("review-rebound", {"validated for": "the old hook"})
        assert not [e for e in await second.events() if e.kind == durable.EventKind.HOOK_RECEIVED]
    finally:
        await second.cancel()
