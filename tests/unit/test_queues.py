"""Queues on every store: concurrency, per-key limits, rates, priorities and dedupe ids hold in the claim queries."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

import durable
from durable._client.present import run_summary, waiting_reasons
from tests.helpers import wait_for_hook

pytestmark = pytest.mark.anyio

STEP_QUEUE = durable.Queue("tests.steps", concurrency=2)
RATED = durable.Queue("tests.rated", rate="4/500ms")
RUN_QUEUE = durable.Queue("tests.runs", concurrency=1, priority_levels=3)
KEYED = durable.Queue("tests.keyed", per_key_concurrency=1)
DEDUPED = durable.Queue("tests.deduped")

running = {"now": 0, "max": 0}


@durable.step(queue=STEP_QUEUE)
async def limited(i: int) -> int:
    running["now"] += 1
    running["max"] = max(running["max"], running["now"])
    try:
        await asyncio.sleep(0.05)
    finally:
        running["now"] -= 1
    return i


@durable.workflow
async def fan_out(n: int) -> list[int]:
    return list(await asyncio.gather(*(limited(i) for i in range(n))))


async def test_a_step_queue_runs_at_most_its_concurrency_at_once(runtime: durable.Runtime) -> None:
    """Eight gathered steps of a concurrency-2 queue: never more than two run at once, and all complete."""
    running.update(now=0, max=0)
    run = await runtime.start(fan_out, 8)
    assert await run.result(timeout=30) == list(range(8))
    assert running["max"] == 2


@durable.step(queue="tests.rated")
async def rated(i: int) -> int:
    return i


@durable.workflow
async def many_rated(n: int) -> list[int]:
    return list(await asyncio.gather(*(rated(i) for i in range(n))))


async def test_a_rate_limited_queue_admits_at_most_its_rate_in_any_window(runtime: durable.Runtime) -> None:
    """Ten steps under "4/500ms": the store's step starts never hold more than four in any half second."""
    run = await runtime.start(many_rated, 10)
    assert await run.result(timeout=30) == list(range(10))
    starts = sorted(e.created_at for e in await run.events() if e.starts_attempt)
    assert len(starts) == 10
    assert max(sum(1 for t in starts if s <= t < s + 0.5) for s in starts) <= 4
    assert starts[-1] - starts[0] >= 0.5 * 2  # ten admissions at four per window need two more windows


@durable.workflow
async def held(token: str) -> str:
    return str(await durable.create_hook(token=token))


async def test_a_full_run_queue_keeps_runs_waiting_in_the_store_and_says_why(runtime: durable.Runtime) -> None:
    """Concurrency 1: the second run waits unadmitted (pending in the store) until the first ends; its summary says why."""
    first = await runtime.start(held, "q-first", queue="tests.runs")
    await wait_for_hook(runtime, "q-first")
    second = await runtime.start(held, "q-second", queue=RUN_QUEUE)
    await anyio.sleep(0.3)
    info = await second.info()
    assert (info.status, info.queue, info.queued) == ("pending", "tests.runs", True)
    (state,) = await runtime.queue_states(["tests.runs"])
    assert (state.active, state.waiting) == (1, 1)
    assert state.blocked_by == "queue 'tests.runs' is full (1/1 running)"
    summaries = [run_summary(r) for r in await runtime.list_runs(queue="tests.runs")]
    waiting_reasons(summaries, [state])
    (waiting,) = [s for s in summaries if s["run_id"] == second.run_id]
    assert waiting["queue"]["why"] == "queue 'tests.runs' is full (1/1 running)"
    await runtime.resume_hook("q-first", "done")
    assert await first.result(timeout=20) == "done"
    await wait_for_hook(runtime, "q-second")
    assert not (await second.info()).queued
    await runtime.resume_hook("q-second", "done too")
    assert await second.result(timeout=20) == "done too"


async def test_priorities_decide_which_waiting_run_is_admitted_first(runtime: durable.Runtime) -> None:
    """With the queue full, runs of priority 1 are admitted before 2, and 2 before 3, whatever their start order."""
    blocker = await runtime.start(held, "p-blocker", queue=RUN_QUEUE)
    await wait_for_hook(runtime, "p-blocker")
    runs = {p: await runtime.start(held, f"p{p}", queue=RUN_QUEUE, priority=p) for p in (3, 1, 2)}
    await runtime.resume_hook("p-blocker", "go")
    await blocker.result(timeout=20)
    order = []
    for _ in range(3):
        with anyio.fail_after(20):
            while True:
                live = [p for p, r in runs.items() if p not in order and not (await r.info()).queued]
                if live:
                    break
                await anyio.sleep(0.02)
        (p,) = live
        order.append(p)
        await wait_for_hook(runtime, f"p{p}")
        await runtime.resume_hook(f"p{p}", "ok")
        await runs[p].result(timeout=20)
    assert order == [1, 2, 3]


async def test_per_key_concurrency_limits_each_key_alone(runtime: durable.Runtime) -> None:
    """per_key_concurrency=1: a second run of key "a" waits while key "b" is admitted beside the first."""
    a1 = await runtime.start(held, "k-a1", queue=KEYED, key="a")
    a2 = await runtime.start(held, "k-a2", queue=KEYED, key="a")
    b1 = await runtime.start(held, "k-b1", queue=KEYED, key="b")
    await wait_for_hook(runtime, "k-a1")
    await wait_for_hook(runtime, "k-b1")
    assert (await a2.info()).queued
    await runtime.resume_hook("k-a1", "x")
    await a1.result(timeout=20)
    await wait_for_hook(runtime, "k-a2")
    for token, run in (("k-a2", a2), ("k-b1", b1)):
        await runtime.resume_hook(token, "y")
        await run.result(timeout=20)


async def test_a_dedupe_id_refuses_a_second_live_entry_until_the_first_ends(runtime: durable.Runtime) -> None:
    """dedupe_id names one live entry of its queue: a second start is RunConflict; once it ended, the id is free."""
    first = await runtime.start(held, "d-1", queue=DEDUPED, dedupe_id="invoice-7")
    with pytest.raises(durable.RunConflict, match="dedupe_id 'invoice-7' already names live run"):
        await runtime.start(held, "d-2", queue=DEDUPED, dedupe_id="invoice-7")
    await wait_for_hook(runtime, "d-1")
    await runtime.resume_hook("d-1", "paid")
    await first.result(timeout=20)
    again = await runtime.start(held, "d-3", queue=DEDUPED, dedupe_id="invoice-7")
    assert again.run_id != first.run_id
    await runtime.cancel(again.run_id)


async def test_queue_options_are_checked_before_anything_is_recorded(runtime: durable.Runtime) -> None:
    """An unknown queue, a priority out of range and queue options without a queue are ValueErrors; no run is made."""
    with pytest.raises(ValueError, match="no queue named 'nope' is defined"):
        await runtime.start(held, "x", queue="nope")
    with pytest.raises(ValueError, match=r"priority for queue .tests.runs. must be an int from 1 .first. to 3"):
        await runtime.start(held, "x", queue=RUN_QUEUE, priority=4)
    with pytest.raises(ValueError, match="pass queue= too"):
        await runtime.start(held, "x", dedupe_id="d")
    assert await runtime.list_runs() == []


def test_queue_definitions_are_checked() -> None:
    """Bad limits and rates are refused at definition with what to write."""
    with pytest.raises(ValueError, match="'100/min', '5/s' or '10/30s'"):
        durable.Queue("bad", rate="fast")
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        durable.Queue("bad", concurrency=0)
    with pytest.raises(ValueError, match="queue name"):
        durable.Queue("")
    assert durable.Queue("ok", rate="100/min").rate_limit == (100, 60.0)
    assert durable.Queue("ok2", rate="10/30s").rate_limit == (10, 30.0)


@durable.step(queue="tests.undefined-queue")
async def orphan_step() -> None: ...


@durable.workflow
async def calls_orphan() -> str:
    try:
        await orphan_step()
    except ValueError as exc:
        return str(exc)
    return "ran"


async def test_a_step_whose_queue_is_not_defined_raises_in_the_workflow(runtime: durable.Runtime) -> None:
    """@step(queue=name) with no such queue defined: the call raises ValueError in the workflow, naming it."""
    run = await runtime.start(calls_orphan)
    assert "no queue named 'tests.undefined-queue'" in await run.result(timeout=20)


@durable.workflow
async def queued_children(n: int) -> list[Any]:
    handles = [await durable.start_child(held, f"qc-{i}", queue=RUN_QUEUE) for i in range(n)]
    return [await h for h in handles]


async def test_a_child_can_wait_in_a_queue(runtime: durable.Runtime) -> None:
    """start_child(queue=...) children are admitted one at a time by a concurrency-1 queue."""
    run = await runtime.start(queued_children, 2)
    await wait_for_hook(runtime, "qc-0")
    child = runtime.run(f"{run.run_id}-c2")
    assert (await child.info()).queued
    await runtime.resume_hook("qc-0", 0)
    await wait_for_hook(runtime, "qc-1")
    await runtime.resume_hook("qc-1", 1)
    assert await run.result(timeout=20) == ["0", "1"]


async def test_the_runs_json_and_the_cli_show_queued_work_and_why_it_waits(runtime: durable.Runtime, tmp_path: Any) -> None:
    """GET /runs?queue= and GET /queues show a waiting run, its priority and why it waits."""
    import httpx

    from durable.web import create_app

    first = await runtime.start(held, "w-first", queue=RUN_QUEUE, priority=2)
    await wait_for_hook(runtime, "w-first")
    second = await runtime.start(held, "w-second", queue=RUN_QUEUE, priority=1)
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        listed = (await http.get("/runs", params={"queue": "tests.runs"})).json()["runs"]
        by_id = {r["run_id"]: r for r in listed}
        assert by_id[second.run_id]["queue"] == {
            "name": "tests.runs", "priority": 1, "key": None, "admitted_at": None, "waiting": True,
            "why": "queue 'tests.runs' is full (1/1 running)",
        }
        assert by_id[first.run_id]["queue"]["waiting"] is False
        (state,) = [q for q in (await http.get("/queues")).json()["queues"] if q["name"] == "tests.runs"]
        assert (state["concurrency"], state["active"], state["waiting"]) == (1, 1, 1)
    await runtime.cancel(first.run_id)
    await wait_for_hook(runtime, "w-second")
    await runtime.cancel(second.run_id)
