"""Fork and rerun: a new run reuses a run's recorded history up to a step and runs the rest with the
code deployed now; the source run is untouched. Every store."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import durable
from durable._workflow.workflow import Workflow
from durable.stores._base import Store
from tests.helpers import wait_for_hook, wait_for_status

pytestmark = pytest.mark.anyio
executed: Counter[str] = Counter()
broken: set[str] = set()
gates: dict[str, asyncio.Event] = {}


@durable.step(name="fork.work", retry_delay=0.01, max_retries=0)
async def work(tag: str) -> str:
    executed[tag] += 1
    if tag in broken:
        raise durable.FatalError(f"{tag} is broken")
    return f"did {tag}"


def flow(fn: Any, name: str = "fork.flow") -> Workflow[Any, Any]:
    return Workflow(fn, name=name, serializer="json")


async def three_steps(prefix: str) -> list[str]:
    return [await work(f"{prefix}1"), await work(f"{prefix}2"), await work(f"{prefix}3")]


@pytest.fixture(autouse=True)
def _clean() -> None:
    executed.clear()
    broken.clear()
    gates.clear()


async def test_a_fork_reuses_the_steps_before_its_point_and_runs_the_rest(store_url: str) -> None:
    """Steps before ``from_step`` keep their recorded results (not run again); the rest run with the
    code of now; the new run records where it came from; the source's log is unchanged."""
    wf = flow(three_steps)
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        source = await rt.start(wf, "a")
        assert await source.result(timeout=20) == ["did a1", "did a2", "did a3"]
        before = await source.events()
        forked = await source.fork(from_step=2)
        assert await forked.result(timeout=20) == ["did a1", "did a2", "did a3"]
        assert executed == Counter({"a1": 1, "a2": 2, "a3": 2})
        assert await source.events() == before
        info = await forked.info()
        assert (info.forked_from, info.forked_step, info.status) == (source.run_id, "step_2", "completed")
        steps = {s.step_id: (s.status, s.attempts) for s in await forked.steps()}
        assert steps == {"step_1": ("completed", 1), "step_2": ("completed", 1), "step_3": ("completed", 1)}
        again = await source.fork("step_3")
        assert await again.result(timeout=20) == ["did a1", "did a2", "did a3"] and executed["a3"] == 3


async def test_rerun_of_a_failed_run_starts_at_its_first_failed_step_with_the_fixed_code(store_url: str) -> None:
    """The bug is fixed (here: the step no longer fails), ``durable.rerun`` replays the steps that
    succeeded and runs the failed one again."""
    wf = flow(three_steps)
    broken.add("b2")
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        failed = await rt.start(wf, "b")
        with pytest.raises(durable.RunFailed, match="b2 is broken"):
            await failed.result(timeout=20)
        broken.clear()
        fixed = await durable.rerun(failed)
        assert await fixed.result(timeout=20) == ["did b1", "did b2", "did b3"]
        assert executed == Counter({"b1": 1, "b2": 2, "b3": 1})
        assert (await fixed.info()).forked_step == "step_2"
        assert await failed.status() == "failed"


async def test_rerun_of_a_run_cancelled_while_waiting_continues_the_wait(store_url: str) -> None:
    """Cancelled with no step left unfinished: the rerun holds the whole history, so it waits for the
    same hook again (its token is free once the source ended) and finishes when resumed."""

    async def waits(tag: str) -> list[Any]:
        first = await work(tag)
        return [first, await durable.create_hook(token=f"fork-wait:{tag}")]

    wf = flow(waits)
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, "c")
        await wait_for_hook(rt, "fork-wait:c")
        await run.cancel()
        again = await durable.rerun(run)
        assert (await again.info()).forked_step == "end"
        await wait_for_hook(rt, "fork-wait:c")
        await rt.resume_hook("fork-wait:c", "go")
        assert await again.result(timeout=20) == ["did c", "go"]
        assert executed == Counter({"c": 1})


@durable.step(name="fork.held")
async def held(tag: str) -> str:
    executed[tag] += 1
    await gates.setdefault(tag, asyncio.Event()).wait()
    return f"held {tag}"


async def test_parallel_steps_unfinished_at_the_point_run_again(store_url: str) -> None:
    """A step created before the fork point but still running there runs again in the fork; hook
    payloads recorded before the point are reused (the fork does not wait for them again)."""

    async def parallel(tag: str) -> list[str]:
        async def chain() -> str:
            payload = await durable.create_hook(token=f"fork-par:{tag}")
            return f"{payload} " + await work(f"{tag}-after")

        return list(await asyncio.gather(held(f"{tag}-slow"), chain()))

    wf = flow(parallel)
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, "d")
        await wait_for_hook(rt, "fork-par:d")
        await rt.resume_hook("fork-par:d", "x")
        with anyio.fail_after(10):
            while executed["d-after"] == 0:
                await anyio.sleep(0.01)
        gates.setdefault("d-slow", asyncio.Event()).set()
        assert await run.result(timeout=20) == ["held d-slow", "x did d-after"]
        forked = await run.fork("step_3")  # held (step_1) had not finished when step_3 was created
        assert await forked.result(timeout=20) == ["held d-slow", "x did d-after"]
        assert (executed["d-slow"], executed["d-after"]) == (2, 2)
        assert {s.step_id: s.status for s in await forked.steps()} == {"step_1": "completed", "step_3": "completed"}
        # step_1 started with its step_created in the source; in the fork, which ran it again, only its new attempt did
        assert [e.attempt for e in await forked.events() if e.starts_attempt and e.correlation_id == "step_1"] == [1]
        assert [(s.step_id, s.attempts) for s in await forked.steps()] == [("step_1", 1), ("step_3", 1)]


async def test_streams_and_timers_before_the_point_come_along(store_url: str) -> None:
    """The workflow's own writes and a finished step's chunks recorded before the point are in the
    fork's stream, in order; a durable sleep that fired before it is not slept again."""

    async def writes(tag: str) -> str:
        await durable.get_writable().write(f"{tag}: start")
        await durable.sleep(0.01)
        await work(f"{tag}-a")
        await durable.get_writable().write(f"{tag}: middle")
        return await work(f"{tag}-b")

    wf = flow(writes)
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, "s")
        await run.result(timeout=20)
        forked = await run.fork("step_5")
        assert await forked.result(timeout=20) == "did s-b"
        assert [chunk async for chunk in forked.stream()] == ["s: start", "s: middle"]
        kinds = [e.kind for e in await forked.events()]
        assert kinds.count("wait_created") == 1 and kinds.count("wait_completed") == 1


async def test_a_fork_with_new_input_is_checked_against_its_history_first(store_url: str) -> None:
    """``input=`` replaces the arguments; a fork whose history the code would no longer replay with
    them raises NonDeterminismError and creates nothing."""
    wf = flow(three_steps)
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, "e")
        await run.result(timeout=20)
        fresh = await run.fork(1, input=["f"])  # nothing recorded before step_1: any input replays
        assert await fresh.result(timeout=20) == ["did f1", "did f2", "did f3"]
        count = len(await rt.list_runs())
        with pytest.raises(durable.NonDeterminismError, match="command #1"):
            await run.fork(2, input={"args": ["g"]})  # step_1 was recorded with "e1"
        assert len(await rt.list_runs()) == count
        with pytest.raises(TypeError, match="input must be"):
            await run.fork(2, input="e")


async def test_forks_that_cannot_be_made_say_why(store_url: str) -> None:
    """An unknown step, a hook token the source still holds live, and a rerun of a run that did not
    fail or get cancelled are ForkError, and nothing is created."""

    async def holds(tag: str) -> Any:
        hook = durable.create_hook(token=f"fork-held:{tag}")
        await work(tag)
        return await hook

    wf = flow(holds)
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, "h")
        await wait_for_status(run, "running")
        with anyio.fail_after(10):
            while not any(s.status == "completed" for s in await run.steps()):
                await anyio.sleep(0.01)
        with pytest.raises(durable.ForkError, match=r"no step 'step_9' \(its steps: step_2\)"):
            await run.fork(9)
        with pytest.raises(durable.ForkError, match="token 'fork-held:h'"):
            await run.fork(2, input=None)
        with pytest.raises(durable.ForkError, match="it is running"):
            await durable.rerun(run)
        assert len(await rt.list_runs()) == 1


async def test_rerun_after_a_divergence_starts_at_the_command_that_diverged(deploy_store: str | Store) -> None:
    """A run a bad deploy ended with NonDeterminismError is rerun under the fixed code from the command
    that diverged: what it recorded before is reused."""

    async def v1(tag: str) -> Any:
        await work(f"{tag}-1")
        return await durable.create_hook(token=f"fork-div:{tag}")

    async def v2(tag: str) -> Any:  # the deploy that broke it: position 2 is no longer the hook
        await work(f"{tag}-1")
        return await work(f"{tag}-oops")

    async def v3(tag: str) -> Any:  # the fix: the run goes on without waiting
        return [await work(f"{tag}-1"), await work(f"{tag}-2")]

    async with durable.Runtime(deploy_store, workflows=[flow(v1)], poll_interval=0.05) as rt:
        run_id = (await rt.start(flow(v1), "n")).run_id
        await wait_for_hook(rt, "fork-div:n")
    async with durable.Runtime(deploy_store, workflows=[flow(v2)], poll_interval=0.05) as rt:
        await rt.resume_hook("fork-div:n", "late")
        with pytest.raises(durable.RunFailed, match="command #2"):
            await rt.run(run_id).result(timeout=20)
    async with durable.Runtime(deploy_store, workflows=[flow(v3)], poll_interval=0.05) as rt:
        again = await durable.rerun(rt.run(run_id))
        assert (await again.info()).forked_step == "hook_2"
        assert await again.result(timeout=20) == ["did n-1", "did n-2"]
    assert executed == Counter({"n-1": 1, "n-2": 1})


# -- surfaces ---------------------------------------------------------------------------------------


@durable.workflow(name="fork.registered")
async def registered_flow(prefix: str) -> list[str]:
    return await three_steps(prefix)


async def test_post_fork_answers_the_new_run_and_its_errors(runtime: durable.Runtime) -> None:
    """``POST /runs/{id}/fork`` with a step makes the fork (201, ``forked_from`` in the answer); without one
    it reruns; a bad step is 409, a bad body 422, an unknown run 404."""
    import httpx

    from durable.web import create_app

    broken.add("w2")
    run = await runtime.start(registered_flow, "w")
    with pytest.raises(durable.RunFailed):
        await run.result(timeout=20)
    broken.clear()
    app = create_app(runtime, manage=False, api_token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        forked = await http.post(f"/runs/{run.run_id}/fork", json={"from_step": "step_2"})
        assert forked.status_code == 201, forked.text
        assert forked.json()["forked_from"] == {"run_id": run.run_id, "step": "step_2"}
        assert await runtime.run(forked.json()["run_id"]).result(timeout=20) == ["did w1", "did w2", "did w3"]
        rerun = await http.post(f"/runs/{run.run_id}/fork", json={})  # no from_step: a rerun
        assert rerun.status_code == 201 and rerun.json()["forked_from"]["step"] == "step_2"
        assert (await http.get(f"/runs/{rerun.json()['run_id']}")).json()["forked_from"]["run_id"] == run.run_id
        assert (await http.post(f"/runs/{run.run_id}/fork", json={"from_step": 7})).status_code == 409
        assert (await http.post(f"/runs/{run.run_id}/fork", json={"step": 1})).status_code == 422
        assert (await http.post(f"/runs/{run.run_id}/fork", json={"from_step": True})).status_code == 422
        assert (await http.post("/runs/run_nope/fork", json={})).status_code == 404


def test_durable_fork_prints_the_new_run(tmp_path: Path) -> None:
    """`durable fork RUN_ID --from-step N [--input JSON]` makes the fork and says which run it is; a bad
    step is a one-line error; `durable inspect` of the fork names its source."""
    from typer.testing import CliRunner

    from durable._cli import app

    url = f"sqlite:///{tmp_path / 'fork.db'}"

    async def record() -> str:
        async with durable.Runtime(url, workflows=[registered_flow]) as rt:
            run = await rt.start(registered_flow, "k")
            await run.result(timeout=20)
            return run.run_id

    source = anyio.run(record)
    made = CliRunner().invoke(app, ["fork", source, "--from-step", "1", "--input", '["z"]', "--store", url])
    assert made.exit_code == 0, made.output
    assert made.output.startswith("forked run run_") and f"from run {source} at step_1" in made.output
    new = made.output.split()[2]
    shown = CliRunner().invoke(app, ["inspect", new, "--store", url])
    assert f"forked from run {source} at step_1" in shown.output
    bad = CliRunner().invoke(app, ["fork", source, "--from-step", "step_8", "--store", url])
    assert bad.exit_code == 1 and "no step 'step_8'" in bad.output


def test_the_notebook_view_names_the_fork_and_the_version() -> None:
    """The notebook's run view (HTML header and text) shows a run's version and where it was forked from."""
    from datetime import UTC, datetime

    from durable._client.projection import RunInfo
    from durable.notebook._html import header_html, state_text
    from durable.notebook._model import RunState

    info = RunInfo(
        "run_new", "fork.flow", "running", datetime.now(UTC), None, None, None, None,
        version="4", forked_from="run_old", forked_step="step_2",
    )
    state = RunState("run_new").with_info(info)
    now = datetime.now(UTC)
    assert "version 4" in header_html(state, now) and "fork of <code>run_old</code> at step_2" in header_html(state, now)
    assert "forked from run run_old at step_2" in state_text(state, now) and "version: 4" in state_text(state, now)


async def test_a_fork_does_not_log_again_what_its_source_logged(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """durable.logger lines of the copied history were the source's (the slice that issued the fork's first
    step included): the fork logs only what runs after it."""
    import logging

    async def logs(tag: str) -> list[str]:
        durable.logger.info("starting %s", tag)
        first = await work(f"{tag}-1")
        durable.logger.info("between %s", tag)
        second = await work(f"{tag}-2")
        durable.logger.info("done %s", tag)
        return [first, second]

    wf = flow(logs)
    caplog.set_level(logging.INFO, logger="durable.workflow")
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await rt.start(wf, "l")
        await run.result(timeout=20)
        forked = await run.fork("step_2")
        await forked.result(timeout=20)
    lines = [(getattr(r, "run_id", None), r.getMessage()) for r in caplog.records if r.name == "durable.workflow"]
    assert lines == [
        (run.run_id, "starting l"), (run.run_id, "between l"), (run.run_id, "done l"), (forked.run_id, "done l"),
    ]
