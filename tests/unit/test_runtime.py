"""The worker runtime: step slots, step attempts that end oddly, leases, and closing with steps in flight.

Each case here is a regression (it hung, spun or ran a step twice before its fix), found by an
adversarial review of the core or by the property tests in tests/property/.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import anyio
import anyio.lowlevel
import httpx
import pytest

import durable
from durable._workflow.step import Step
from tests.helpers import ROOT, sqlite_store_url, wait_until

pytestmark = pytest.mark.anyio


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


# -- the dispatcher spun without yielding when steps waited for a slot -----------------------------

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
        url = sqlite_store_url(tmp_path / "spin.db")
    done = run_child(SATURATED.replace("{url}", url), timeout=10)
    assert done is not None, "the child froze at 100% CPU (killed after 10 s)"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sum(range(65)))


# -- a step attempt that ended with an unexpected exception left its step 'running' forever --------


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


# -- an exception escaping WorkflowInstance.advance made the run retry forever in a hot loop -------


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


# -- max_concurrent_steps was exceeded: the dispatcher did not reserve slots across its await ------

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


# -- a stale attempt (its worker's lease lapsed) could put a step running elsewhere back to pending ---

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
zombie_step = cast("Step[[], int]", _zombie_namespace["zombie"])


@durable.workflow(name="review.zombie_run")
async def zombie_run() -> int:
    return await zombie_step()


@pytest.mark.slow
async def test_a_late_attempt_cannot_requeue_a_step_running_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a worker's lease lapses mid-step and another worker re-runs the step, the late outcome of the first attempt is refused."""
    import os

    url = sqlite_store_url(tmp_path / "zombie.db")
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
        await wait_until(ready.exists, 15)
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


# -- a worker whose event loop stalled past lease_ttl re-claimed the steps it was itself running ---

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


# -- closing a runtime mid-step left the step's writers open (found by test_crash_anywhere; fixed in 62ebbc2)


@durable.step(name="regressions.writes_then_waits")
async def writes_then_waits(started: str) -> str:
    writer = durable.get_writable("progress")
    await writer.write({"step": "started"})
    Path(started).touch()
    await anyio.sleep(30)
    return "never"


@durable.workflow(name="regressions.long_step")
async def long_step(started: str) -> str:
    return await writes_then_waits(started)


async def test_closing_the_runtime_mid_step_releases_the_steps_writers(tmp_path: Path) -> None:
    """Closing a runtime while a step that writes a stream is running leaves no writer channel open.

    Found by test_crash_anywhere (its crashed runtime is closed with steps in flight): in
    _step_runner.run_step a real cancellation re-raises before ``context.settle_writers()``, so
    the attempt's StreamWriter is never closed (ResourceWarning: Unclosed MemoryObjectSendStream
    when it is collected). Settling the writers in a ``finally`` (shielded, or just closing the
    channels when the task is being cancelled) fixes it.
    """
    import gc
    import warnings

    started = tmp_path / "started"

    async def close_mid_step() -> None:
        async with durable.Runtime("memory://", workflows=[long_step], poll_interval=0.02) as rt:
            await rt.start(long_step, str(started))
            for _ in range(500):
                if started.exists():
                    break
                await anyio.sleep(0.01)
            assert started.exists()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await close_mid_step()
        await anyio.lowlevel.checkpoint()  # let the cancelled tasks be dropped
        gc.collect()
    assert not [w for w in caught if "MemoryObjectSendStream" in str(w.message)], [str(w.message) for w in caught]


# -- what a worker says ------------------------------------------------------------------------------

log_tries: dict[str, int] = {}


@durable.step(retry_delay=0.01)
async def logged_flaky(key: str) -> str:
    log_tries[key] = log_tries.get(key, 0) + 1
    if log_tries[key] < 3:
        raise ConnectionError(f"try {log_tries[key]} of {key}\nsecond line")
    return "ok"


@durable.workflow
async def logged_flow(key: str) -> str:
    return await logged_flaky(key)


async def test_each_failed_attempt_of_a_retried_step_logs_one_info_line(runtime: durable.Runtime, caplog: pytest.LogCaptureFixture) -> None:
    """A step failing twice then succeeding logs two INFO lines on `durable`: step, run, attempt/max, error, when the retry is due."""
    caplog.set_level(logging.INFO, logger="durable")
    run = await runtime.start(logged_flow, f"log-{runtime.store.url}")
    assert await run.result(timeout=20) == "ok"
    lines = [r for r in caplog.records if r.name == "durable" and "failed with" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    for attempt, record in enumerate(lines, start=1):
        message = record.getMessage()
        assert "\n" not in message
        assert message.startswith(f"step {logged_flaky.name} of run {run.run_id}: attempt {attempt}/4 failed with ConnectionError: "
                                  f"try {attempt} of log-")
        assert "\\nsecond line; retry at 20" in message and message.endswith("s)")


# -- a long chain of steps that never await (issue 16) -------------------------------------------------


@durable.step
async def pure(i: int) -> int:
    return i + 1


@durable.workflow
async def pure_chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = await pure(x)
    return x


@pytest.mark.parametrize("url_kind", ["memory", "sqlite normal"])
async def test_heartbeats_and_http_requests_get_through_during_a_long_chain_of_pure_steps(
    url_kind: str, tmp_path: Path
) -> None:
    """While a 10,000-step chain of steps that never await runs (stores that answer inline: memory://,
    SQLite synchronous=normal), heartbeats keep renewing the lease and a real HTTP server answers.

    Before: the chain ran from first step to last without yielding: the web server, other runs and the
    heartbeat stood still for its whole length, and other processes saw the live worker's lease lapse.
    """
    import uvicorn

    from durable.web import create_app
    from tests.helpers import free_port

    url = "memory://" if url_kind == "memory" else sqlite_store_url(tmp_path / "chain.db")
    async with durable.Runtime(url, workflows=[pure_chain], heartbeat_interval=0.05) as rt:
        beats: list[float] = []
        real_beat = rt.liveness.beat

        async def beat(now: float | None = None) -> None:
            beats.append(time.monotonic())
            await real_beat(now)

        rt.liveness.beat = beat  # type: ignore[method-assign]
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(rt, manage=False), port=port, log_level="warning"))
        # _serve, not serve: serve() would take over this test process's SIGINT/SIGTERM handlers.
        serving = asyncio.get_running_loop().create_task(server._serve())
        try:
            await wait_until(lambda: server.started, timeout=10)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                started = time.monotonic()
                run = await rt.start(pure_chain, 10_000)
                answer = (await http.get("/runs", params={"limit": 1})).json()["runs"][0]
                answered = time.monotonic()
                assert await run.result(timeout=120) == 10_000
                finished = time.monotonic()
        finally:
            server.should_exit = True
            await serving
    assert answer["run_id"] == run.run_id
    assert answer["status"] in ("pending", "running"), "the request was only answered after the chain"
    assert started <= answered < finished
    during = [b for b in beats if started < b < finished]
    assert len(during) >= 3, f"{len(during)} heartbeat(s) during a {finished - started:.2f} s chain"
