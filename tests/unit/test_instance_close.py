"""Evicting a suspended run's live instance cancels every task its workflow made, so their
``finally`` blocks run then, on the workflow's own loop -- not at garbage collection."""

from __future__ import annotations

import asyncio

import pytest

import durable
from tests.helpers import wait_for_hook

pytestmark = pytest.mark.anyio

cleaned: list[str] = []


async def _holds(what: str) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        cleaned.append(what)


@durable.workflow(name="close.spawns")
async def spawns(tag: str) -> str:
    created = asyncio.create_task(_holds(f"{tag}: create_task"))
    async with asyncio.TaskGroup() as group:
        grouped = group.create_task(_holds(f"{tag}: task group"))
        await durable.create_hook(token=f"close:{tag}")
        created.cancel()
        grouped.cancel()
    return tag


async def test_evicting_an_instance_runs_the_finally_blocks_of_all_its_tasks() -> None:
    """With room for one live instance, starting a second run evicts the first: the tasks its
    workflow made with create_task and in a task group are cancelled then, and the run still
    completes when resumed later (replayed cold)."""
    cleaned.clear()
    async with durable.Runtime("memory://", workflows=[spawns], sticky_cache_size=1) as runtime:
        first = await runtime.start(spawns, "a")
        await wait_for_hook(runtime, "close:a")
        assert cleaned == []
        await runtime.start(spawns, "b")
        await wait_for_hook(runtime, "close:b")
        assert sorted(cleaned) == ["a: create_task", "a: task group"]
        await runtime.resume_hook("close:a", None)
        assert await first.result() == "a"
