"""Edges of the public API found by a review: each case failed (hung, passed bad input through,
or raised an unclear error) before its fix."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Literal

import pytest

import durable
from durable._core.durations import parse_duration

pytestmark = pytest.mark.anyio


# -- workflow code cannot act on the world ----------------------------------------------------------


@durable.workflow(name="edges.child")
async def edges_child(x: int) -> int:
    return x * 2


@durable.workflow(name="edges.starts_a_child_in_workflow_code")
async def starts_a_child_in_workflow_code() -> str:
    run = await durable.start(edges_child, 21)  # belongs in a step: a replay would start it again
    return run.run_id


@durable.workflow(name="edges.resumes_in_workflow_code")
async def resumes_in_workflow_code() -> object:
    return await durable.resume_hook("edges-anything", 1)


@pytest.mark.parametrize("sticky", [64, 0])
async def test_start_or_resume_in_workflow_code_fails_the_run_clearly(store_url: str, sticky: int) -> None:
    """Not a hang and not an unrecorded child run: the workflow fails naming the call and the fix."""
    async with durable.Runtime(
        store_url, workflows=[starts_a_child_in_workflow_code, resumes_in_workflow_code, edges_child],
        sticky_cache_size=sticky, poll_interval=0.2,
    ) as rt:
        for workflow, api in [(starts_a_child_in_workflow_code, "start"), (resumes_in_workflow_code, "resume_hook")]:
            run = await rt.start(workflow)
            with pytest.raises(durable.RunFailed) as failed:
                await run.result(timeout=10)
            assert failed.value.error_type == "durable._core.errors.SideEffectInWorkflowError"
            assert f"durable.{api}() cannot be called in workflow code" in failed.value.message
            assert "@durable.step" in failed.value.message
        assert [r.workflow_name for r in await rt.list_runs(workflow="edges.child")] == []


# -- waiters learn that the store closed ----------------------------------------------------------


@durable.workflow(name="edges.waits_forever")
async def edges_waits_forever() -> object:
    return await durable.create_hook(token="edges-forever")


async def test_waiters_end_with_store_error_when_the_runtime_exits(store_url: str) -> None:
    async with durable.Runtime(store_url, workflows=[edges_waits_forever]) as rt:
        run = await rt.start(edges_waits_forever)
        result = asyncio.create_task(run.result())
        chunk = asyncio.create_task(anext(aiter(run.stream())))
        await asyncio.sleep(0.2)
    done, pending = await asyncio.wait([result, chunk], timeout=10)
    assert not pending
    for task in done:
        assert isinstance(task.exception(), durable.StoreError)


async def test_starting_a_workflow_this_runtime_does_not_run_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async with durable.Runtime("memory://", workflows=[edges_child]) as rt:
        with caplog.at_level(logging.WARNING, logger="durable"):
            run = await rt.start(edges_waits_forever)
    assert f"run {run.run_id} of workflow 'edges.waits_forever' waits for a runtime that executes it" in caplog.text


# -- typed hooks built on dataclasses --------------------------------------------------------------


@dataclasses.dataclass
class Reviewer:
    name: str
    level: int = 1


@dataclasses.dataclass
class Review:
    tags: list[str]
    reviewer: Reviewer | None = None
    verdict: Literal["approve", "reject"] = "approve"
    score: float = 0.0
    marks: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    point: tuple[int, int] = (0, 0)


review_hook = durable.define_hook(schema=Review, name="edges-review")


def test_dataclass_schemas_convert_nested_json_and_check_element_types() -> None:
    value = review_hook.validate(
        {"tags": ["a"], "reviewer": {"name": "ada"}, "score": 2, "marks": {"k": [1, 2]}, "point": [3, 4]}
    )
    assert value == Review(["a"], Reviewer("ada"), "approve", 2.0, {"k": [1, 2]}, (3, 4))
    assert type(value.score) is float
    cases = {
        "tags[1]: expected str, got int": {"tags": ["a", 2]},
        "reviewer.level: expected int, got str": {"tags": [], "reviewer": {"name": "x", "level": "1"}},
        "reviewer.name: field required": {"tags": [], "reviewer": {}},
        "verdict: expected one of 'approve', 'reject', got 'maybe'": {"tags": [], "verdict": "maybe"},
        "point: expected 2 items, got 1": {"tags": [], "point": [1]},
        "marks.k[0]: expected int, got str": {"tags": [], "marks": {"k": ["x"]}},
        "(root): expected an object with the fields of Review, got list": [],
    }
    for problem, payload in cases.items():
        with pytest.raises(durable.HookValidationError) as info:
            review_hook.validate(payload)
        assert problem in info.value.problems, (payload, info.value.problems)


def test_schemas_that_cannot_validate_are_refused_when_defined() -> None:
    for schema in [5, None, "Review"]:
        with pytest.raises(TypeError, match="hook schema must be"):
            durable.define_hook(schema=schema, name=f"edges-bad-{schema}")

    @dataclasses.dataclass
    class Local:
        value: Undefined  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="cannot resolve the field types of"):
        durable.define_hook(schema=Local, name="edges-local")


# -- bad input names what is wrong ------------------------------------------------------------------


async def test_timeouts_take_durations_and_unknown_runs_are_not_found(tmp_path: Path) -> None:
    async with durable.Runtime(f"sqlite:///{tmp_path / 'x.db'}", workflows=[edges_waits_forever]) as rt:
        run = await rt.start(edges_waits_forever)
        with pytest.raises(TimeoutError, match="within '50ms'"):
            await run.result(timeout="50ms")
        with pytest.raises(ValueError, match="cannot read timeout 'soon'"):
            await run.result(timeout="soon")
        with pytest.raises(durable.RunNotFound):
            await durable.Run("run_nope", rt).streams()
        await run.cancel()


def test_infinite_durations_and_inverted_retry_delays_are_refused() -> None:
    for value in [float("inf"), "inf", "1e400"]:
        with pytest.raises(ValueError, match="must be finite"):
            parse_duration(value, what="sleep")
    with pytest.raises(ValueError, match="must not exceed max_retry_delay"):
        durable.step(retry_delay=10, max_retry_delay=1)
