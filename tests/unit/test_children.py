"""Child workflows on every store: start, wait, fan out, errors, cancellation, parent close policy, replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import durable
from durable._core import codec as _codec
from durable._core.commands import StartChild
from durable._core.events import EventKind
from durable._engine.instance import WorkflowInstance
from durable.testing import check_replay
from tests.helpers import encode_args, wait_for_hook, wait_for_status

pytestmark = pytest.mark.anyio


class OutOfStock(Exception):
    """A user error class: a parent catching a failed child sees this very type."""


@durable.step
async def pack(item: str) -> str:
    return f"packed {item}"


@durable.workflow
async def shipment(item: str) -> str:
    return await pack(item)


@durable.workflow
async def order(items: list[str]) -> dict[str, Any]:
    first = await shipment(items[0])  # a workflow called in a workflow: a child run
    rest = await asyncio.gather(*(shipment(i) for i in items[1:]))
    return {"first": first, "rest": list(rest), "me": durable.get_workflow_metadata().run_id}


async def test_a_workflow_called_in_a_workflow_runs_as_a_child_run(runtime: durable.Runtime) -> None:
    """`await child(...)` starts a child run (deterministic id, parent recorded) and returns its result; gather fans out."""
    run = await runtime.start(order, ["a", "b", "c"])
    result = await run.result(timeout=30)
    assert result == {"first": "packed a", "rest": ["packed b", "packed c"], "me": run.run_id}
    children = await run.children()
    assert [c.run_id for c in children] == [f"{run.run_id}-c1", f"{run.run_id}-c2", f"{run.run_id}-c3"]
    assert all(c.workflow_name == shipment.name and c.status == "completed" for c in children)
    assert all(c.parent_run_id == run.run_id for c in children)
    child = runtime.run(children[0].run_id)
    assert (await child.info()).parent_run_id == run.run_id
    assert await child.parent() == run and await run.parent() is None
    kinds = [e.kind for e in await run.events()]
    assert kinds.count(EventKind.CHILD_STARTED) == 3 and kinds.count(EventKind.CHILD_COMPLETED) == 3


async def test_outside_a_workflow_a_workflow_is_plain_async_code() -> None:
    """Called outside a workflow, a workflow function runs directly: no run, no store."""
    assert await shipment.fn("x") == "packed x"
    assert await shipment("y") == "packed y"  # steps run directly outside a workflow too


@durable.workflow
async def handles(n: int) -> dict[str, Any]:
    started = [await durable.start_child(shipment, f"item{i}") for i in range(n)]
    ids = [h.run_id for h in started]
    results = [await h for h in reversed(started)]
    again = await started[0]  # a handle may be awaited again
    return {"ids": ids, "results": results, "again": again}


async def test_start_child_returns_a_handle_awaited_later(runtime: durable.Runtime) -> None:
    """start_child returns at once with the child's id; awaiting the handle gives its result, more than once."""
    run = await runtime.start(handles, 3)
    result = await run.result(timeout=30)
    assert result["ids"] == [f"{run.run_id}-c{i}" for i in (1, 2, 3)]
    assert result["results"] == ["packed item2", "packed item1", "packed item0"]
    assert result["again"] == "packed item0"


@durable.step(max_retries=0)
async def check_stock(item: str) -> None:
    raise OutOfStock(f"no {item} left")


@durable.workflow
async def failing_child(item: str) -> None:
    await check_stock(item)


class Unknown(Exception):
    def __init__(self, a: int, b: int) -> None:  # cannot be re-created from its args alone
        super().__init__(f"{a}/{b}")


@durable.step(max_retries=0)
async def odd_error() -> None:
    raise Unknown(1, 2)


@durable.workflow
async def odd_child() -> None:
    await odd_error()


@durable.workflow
async def catches(item: str) -> list[Any]:
    out: list[Any] = []
    try:
        await failing_child(item)
    except OutOfStock as exc:
        out.append(["out of stock", str(exc)])
    handle = await durable.start_child(odd_child)
    try:
        await handle
    except durable.ChildFailed as exc:
        out.append([exc.run_id == handle.run_id, exc.error_type.endswith("Unknown")])
    except Unknown as exc:  # a process that can re-create it raises it as it was
        out.append(["unknown", str(exc)])
    return out


async def test_a_failed_child_raises_its_error_in_the_parent(runtime: durable.Runtime) -> None:
    """The child's own exception type reaches the parent when it can be re-created, else ChildFailed."""
    run = await runtime.start(catches, "bolts")
    result = await run.result(timeout=30)
    assert result[0] == ["out of stock", "no bolts left"]
    assert result[1] in ([True, True], ["unknown", "1/2"])


def test_child_failed_carries_the_child_error() -> None:
    """ChildFailed names the child run and its error type and message."""
    exc = durable.ChildFailed("run_x-c1", "app.Boom", "it broke")
    assert (exc.run_id, exc.error_type, exc.message) == ("run_x-c1", "app.Boom", "it broke")
    assert str(exc) == "child run run_x-c1 failed: app.Boom: it broke"


@durable.workflow
async def waits_for_approval(token: str) -> str:
    return str(await durable.create_hook(token=token))


@durable.workflow
async def cancels_its_child(token: str) -> list[Any]:
    handle = await durable.start_child(waits_for_approval, token)
    await durable.sleep(0.05)
    handle.cancel()
    try:
        await handle
    except durable.RunCancelled as exc:
        return ["cancelled", exc.run_id == handle.run_id]
    return ["not cancelled"]


async def test_handle_cancel_cancels_the_child_and_the_parent_sees_run_cancelled(runtime: durable.Runtime) -> None:
    """handle.cancel() cancels the child run (its hook disposed); awaiting it raises RunCancelled."""
    run = await runtime.start(cancels_its_child, "cancel-me")
    assert await run.result(timeout=30) == ["cancelled", True]
    (child,) = await run.children()
    assert child.status == "cancelled"
    assert await runtime.store.get_hook("cancel-me") is None


@durable.workflow
async def parent_of_two(token: str) -> None:
    await durable.start_child(waits_for_approval, token + "-cancel")
    await durable.start_child(waits_for_approval, token + "-abandon", on_parent_close="abandon")
    await durable.create_hook(token=token)


async def test_cancelling_the_parent_cancels_children_unless_abandoned(runtime: durable.Runtime) -> None:
    """A cancelled parent cancels its on_parent_close="cancel" children (reason: parent closed); abandoned ones run on."""
    run = await runtime.start(parent_of_two, "p2")
    await wait_for_hook(runtime, "p2")
    await wait_for_hook(runtime, "p2-abandon")
    await wait_for_hook(runtime, "p2-cancel")
    await run.cancel()
    kept, abandoned = (await run.children())[0], (await run.children())[1]
    assert kept.status == "cancelled" and kept.cancel_reason == "parent closed"
    with pytest.raises(durable.RunCancelled, match="parent closed"):
        await runtime.run(kept.run_id).result(timeout=5)
    assert abandoned.status in ("pending", "running")
    await runtime.resume_hook("p2-abandon", "yes")
    assert await runtime.run(abandoned.run_id).result(timeout=20) == "yes"  # its end reaches no one


@durable.workflow
async def fails_after_start(token: str) -> None:
    await durable.start_child(waits_for_approval, token)
    await durable.sleep(0.05)
    raise ValueError("parent gives up")


async def test_a_failing_parent_cancels_its_unfinished_child(runtime: durable.Runtime) -> None:
    """A parent that fails ends its unfinished children too (default policy)."""
    run = await runtime.start(fails_after_start, "orphan")
    with pytest.raises(durable.RunFailed):
        await run.result(timeout=20)
    (child,) = await run.children()
    await wait_for_status(runtime.run(child.run_id), "cancelled")


async def test_cancelling_a_child_from_outside_raises_run_cancelled_in_the_parent(runtime: durable.Runtime) -> None:
    """A child cancelled by someone else: its parent, awaiting it, gets RunCancelled."""

    run = await runtime.start(catch_cancel, "outside")
    await wait_for_hook(runtime, "outside")
    await runtime.cancel(f"{run.run_id}-c1")
    assert await run.result(timeout=20) == "child was cancelled"


@durable.workflow
async def catch_cancel(token: str) -> str:
    try:
        await waits_for_approval(token)
    except durable.RunCancelled:
        return "child was cancelled"
    return "child finished"


@durable.workflow
async def times_out_on_child(token: str) -> str:
    try:
        await asyncio.wait_for(waits_for_approval(token), timeout=0.1)
    except TimeoutError:
        return "gave up"
    return "answered"


async def test_a_cancelled_await_of_a_child_cancels_the_child(runtime: durable.Runtime) -> None:
    """`await child(...)` abandoned by a timeout cancels the child run (structured concurrency)."""
    run = await runtime.start(times_out_on_child, "slow-answer")
    assert await run.result(timeout=20) == "gave up"
    (child,) = await run.children()
    await wait_for_status(runtime.run(child.run_id), "cancelled")


@durable.workflow
async def explicit_id(run_id: str) -> str:
    handle = await durable.start_child(shipment, "x", run_id=run_id)
    assert handle.run_id == run_id
    return str(await handle)


async def test_an_explicit_child_run_id_is_used_and_a_taken_one_fails_the_child(runtime: durable.Runtime) -> None:
    """run_id= names the child; an id that names another run fails the child with RunConflict in the parent."""
    run = await runtime.start(explicit_id, "my-child")
    assert await run.result(timeout=20) == "packed x"
    assert (await runtime.run("my-child").info()).parent_run_id == run.run_id
    clash = await runtime.start(explicit_id, "my-child")  # the id is taken now
    with pytest.raises(durable.RunFailed, match="RunConflict"):
        await clash.result(timeout=20)


async def test_start_child_refuses_bad_options_and_runs_only_in_workflows() -> None:
    """on_parent_close must be cancel or abandon; start_child outside a workflow is NotInWorkflowError."""
    with pytest.raises(durable.NotInWorkflowError):
        await durable.start_child(shipment, "x")
    from durable._workflow.children import check_parent_close

    with pytest.raises(ValueError, match=r"'cancel'.*'abandon'"):
        check_parent_close("terminate")


@durable.workflow
async def grandparent() -> str:
    return str(await middle())


@durable.workflow
async def middle() -> str:
    return "from " + str(await shipment("deep"))


async def test_children_nest_and_replay_cold(runtime: durable.Runtime) -> None:
    """A child starting its own child works; each run's log replays cold to the same commands."""
    run = await runtime.start(grandparent)
    assert await run.result(timeout=30) == "from packed deep"
    (child,) = await run.children()
    (grandchild,) = await runtime.run(child.run_id).children()
    assert grandchild.run_id == f"{run.run_id}-c1-c1"
    for run_id in (run.run_id, child.run_id, grandchild.run_id):
        result = await check_replay(runtime.run(run_id))
        assert (result.status, result.new_commands) == ("completed", []), result


def test_replay_refuses_a_changed_child_workflow_or_arguments() -> None:
    """On replay, a child start at a position whose record names another workflow or other arguments diverges."""

    @durable.workflow(name="tests.children.replayed")
    async def replayed(x: int) -> Any:
        return await shipment(str(x))

    def commands(x: int, events: list[durable.Event]) -> Any:
        instance = WorkflowInstance(replayed, run_id="run_r", input=encode_args(x), seed="s")
        try:
            return instance.advance(events)
        finally:
            instance.close()

    started = [durable.Event("run_r", 1, EventKind.RUN_CREATED, None, 1.0), durable.Event("run_r", 2, EventKind.RUN_STARTED, None, 1.0)]
    first = commands(1, started)
    (cmd,) = first.commands
    assert isinstance(cmd, StartChild) and cmd.run_id == "run_r-c1" and cmd.workflow_name == shipment.name
    record = durable.Event("run_r", 3, EventKind.CHILD_STARTED, cmd.correlation_id, 1.0, cmd.workflow_name, cmd.input)
    assert commands(1, [*started, record]).status == "suspended"  # the same call: no new command, no divergence
    assert commands(2, [*started, record]).diverged  # other arguments
    other = record._replace(name="tests.unit.test_children:pack")
    assert commands(1, [*started, other]).diverged  # another workflow
    done = durable.Event("run_r", 4, EventKind.CHILD_COMPLETED, cmd.correlation_id, 1.0, "run_r-c1", _codec.encode("ok"))
    outcome = commands(1, [*started, record, done])
    assert outcome.status == "completed" and _codec.decode(outcome.result or b"") == "ok"


async def test_the_web_api_lists_children_and_parent(runtime: durable.Runtime) -> None:
    """GET /runs/{id} lists the children; a child's detail names its parent."""
    import httpx

    from durable.web import create_app

    run = await runtime.start(order, ["a", "b"])
    await run.result(timeout=30)
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        detail = (await http.get(f"/runs/{run.run_id}")).json()
        assert [c["run_id"] for c in detail["children"]] == [f"{run.run_id}-c1", f"{run.run_id}-c2"]
        assert detail["parent_run_id"] is None
        child = (await http.get(f"/runs/{run.run_id}-c1")).json()
        assert child["parent_run_id"] == run.run_id and child["children"] == []


async def test_many_children_complete_under_one_parent(runtime: durable.Runtime) -> None:
    """A fan-out over twenty children completes, each child once."""

    run = await runtime.start(fan, 20)
    assert await run.result(timeout=60) == [f"packed {i}" for i in range(20)]
    children = await run.children()
    assert len(children) == len({c.run_id for c in children}) == 20
    assert all(c.status == "completed" for c in children)


@durable.workflow
async def fan(n: int) -> list[str]:
    return list(await asyncio.gather(*(shipment(str(i)) for i in range(n))))
