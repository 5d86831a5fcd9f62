"""Waiting for a run's end: in the process whose runtime holds the run, ``result()`` is woken by the
runtime's notification instead of polling the store; a plain client over a SQLite file still polls."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import durable
from durable.stores._base import RunRecord, Store

pytestmark = pytest.mark.anyio

gates: dict[str, anyio.Event] = {}


@durable.step(name="waiting.gated")
async def gated() -> str:
    gates["started"].set()
    await gates["release"].wait()
    return "done"


@durable.workflow(name="waiting.wf")
async def gated_wf() -> str:
    return await gated()


def count_get_run(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every ``get_run`` the store answers from now on."""
    calls: list[str] = []
    real = store.get_run

    async def counted(run_id: str) -> RunRecord | None:
        calls.append(run_id)
        return await real(run_id)

    monkeypatch.setattr(store, "get_run", counted)
    return calls


async def held_result(rt: durable.Runtime, client: durable.Client, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Start a run whose step waits ~0.3 s; return the ``get_run`` calls ``client``'s ``result()`` made meanwhile."""
    gates.update(started=anyio.Event(), release=anyio.Event())
    run = await rt.start(gated_wf)
    await gates["started"].wait()  # the runtime holds the run live: its step runs here
    calls = count_get_run(client.store, monkeypatch)
    async with anyio.create_task_group() as tg:

        async def release() -> None:
            await anyio.sleep(0.3)
            gates["release"].set()

        tg.start_soon(release)
        assert await client.run(run.run_id).result(timeout=10) == "done"
    return calls


async def test_result_in_the_runtimes_process_waits_on_its_notification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a SQLite file, result() of a run this runtime holds reads the run about twice (before and after its end), not every few milliseconds."""
    async with durable.Runtime(f"sqlite:///{tmp_path / 'w.db'}", workflows=[gated_wf]) as rt:
        calls = await held_result(rt, rt, monkeypatch)
    assert 2 <= len(calls) <= 3  # the first check, the one the run's end woke (a slow second: one re-check)


async def test_a_client_without_the_runtime_still_polls_a_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Client over the same SQLite file, whose process holds no runtime of it, keeps re-reading with a back-off (another process may end the run)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    async with durable.Runtime(url, workflows=[gated_wf]) as rt, durable.Client(url) as client:
        assert not client.holds_run("anything")
        calls = await held_result(rt, client, monkeypatch)
    assert len(calls) >= 4  # 10, 20, 40, 80 ms ... between re-reads over the 0.3 s
