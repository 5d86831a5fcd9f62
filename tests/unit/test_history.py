"""Recorded histories: ``durable export`` / ``load_history`` round-trip a run byte for byte, ``replay_history``
replays one with the code of now, and ``check-replay`` does it for a whole store. Every store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

import durable
import durable.testing
from durable._workflow.workflow import Workflow
from durable.testing._replay import check_store
from tests.helpers import wait_for_hook

pytestmark = pytest.mark.anyio
NAME = "history.flow"


@durable.step(name="history.tag")
async def tag(value: Any) -> Any:
    return {"tagged": value}


@durable.step(name="history.pickled", serializer="pickle")
async def pickled(value: int) -> complex:
    return complex(value, 1)


async def _flow(order: str) -> list[Any]:
    first = await tag([order, 1.5, None])
    await durable.get_writable().write({"progress": order})
    await durable.sleep(0.01)
    number = await pickled(len(order))
    await durable.create_hook(token=f"history:{order}")
    return [first, str(number)]


def flow(fn: Any = _flow, version: str | None = "3") -> Workflow[Any, Any]:
    return Workflow(fn, name=NAME, serializer="json", version=version)


async def _suspended(rt: durable.Runtime, wf: Workflow[Any, Any], order: str) -> durable.Run:
    run = await rt.start(wf, order)
    await wait_for_hook(rt, f"history:{order}")
    return run


async def test_an_exported_history_reads_back_byte_for_byte(store_url: str) -> None:
    """to_json/from_json keep every event (kinds, ids, names, attempts, timestamps, payload bytes: JSON
    codec text, pickled values and digests), the input, seed, version and status."""
    wf = flow()
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await _suspended(rt, wf, "a")
        history = await durable.testing.read_history(run)
        stored = await run.events()
    text = history.to_json()
    doc = json.loads(text)
    assert (doc["format"], doc["format_version"], doc["workflow"], doc["version"], doc["status"]) == (
        "durable.history", 1, NAME, "3", "running"
    )
    assert doc["input"] == {"json": '{"args":["a"],"kwargs":{}}'}
    payloads = {(e["kind"], next(iter(e["data"]))) for e in doc["events"] if e["data"]}
    assert {("step_completed", "json"), ("step_completed", "base64"), ("stream_written", "base64")} <= payloads
    assert sum(line.lstrip().startswith('{"seq": ') for line in text.splitlines()) == len(stored)  # a line each
    back = durable.testing.History.from_json(text)
    assert back == history
    assert back.events == stored


async def test_load_history_refuses_what_is_not_a_history(tmp_path: Path) -> None:
    """Not JSON, another document, an unknown format version or a malformed payload: ValueError saying which."""
    cases = {
        "not JSON": "{",
        "not a durable history": '{"format": "other"}',
        "format_version 9": '{"format": "durable.history", "format_version": 9}',
        "not a valid durable history": '{"format": "durable.history", "format_version": 1, "run_id": "r", "events": [{"seq": 1}]}',
    }
    for problem, text in cases.items():
        (tmp_path / "h.json").write_text(text)
        with pytest.raises(ValueError, match=problem):
            durable.testing.load_history(tmp_path / "h.json")


async def test_replay_history_passes_compatible_code_and_names_a_divergence(store_url: str, tmp_path: Path) -> None:
    """The exported history replays with its own code (and with ``None``: the workflow registered under its
    name); with a changed step it raises NonDeterminismError with the position, the record and the new call."""
    wf = flow()
    async with durable.Runtime(store_url, workflows=[wf], poll_interval=0.05) as rt:
        run = await _suspended(rt, wf, "b")
        (tmp_path / "b.json").write_text((await durable.testing.read_history(run)).to_json())
    history = durable.testing.load_history(tmp_path / "b.json")
    assert durable.testing.replay_history(wf, history).status == "suspended"

    async def changed(order: str) -> list[Any]:
        return [await tag([order, 2.5, None])]

    with pytest.raises(durable.NonDeterminismError) as info:
        durable.testing.replay_history(flow(changed), history)
    assert (info.value.position, "history.tag" in info.value.recorded, "2.5" in info.value.actual) == (1, True, True)
    with pytest.raises(durable.WorkflowNotFound):
        durable.testing.replay_history(None, history)  # NAME is not a registered workflow here


async def test_check_store_replays_unfinished_runs_and_the_latest_finished_ones(store_url: str) -> None:
    """Every unfinished run, the ``limit`` most recent finished runs, only the statuses asked for; runs of
    workflows the code does not define are counted as having no code."""

    async def quick(order: str) -> Any:
        return await tag(order)

    fast: Workflow[Any, Any] = Workflow(quick, name="history.quick", serializer="json")
    wf = flow()
    async with durable.Runtime(store_url, workflows=[wf, fast], poll_interval=0.05) as rt:
        waiting = [await _suspended(rt, wf, f"w{i}") for i in range(3)]
        done = [await rt.start(fast, f"d{i}") for i in range(4)]
        for run in done:
            await run.result(timeout=20)
        lookup = {NAME: wf, "history.quick": fast}
        report = await check_store(rt.store, lookup.get, [NAME, "history.quick"], limit=2)
        assert (report.checked, report.diverged, report.no_code, report.ok) == (5, [], {}, True)
        only_running = await check_store(rt.store, lookup.get, [NAME, "history.quick"], limit=2, statuses=["running"])
        assert only_running.checked == 3
        seen: list[str] = []

        async def bumped(order: str) -> list[Any]:
            return [await tag([order, 9, None])]

        broken = await check_store(
            rt.store, {NAME: flow(bumped)}.get, [NAME], limit=0, on_divergence=lambda d: seen.append(d.run_id)
        )
        assert sorted(seen) == sorted(r.run_id for r in waiting) and not broken.ok
        assert broken.no_code == {}  # history.quick has no unfinished runs
        await rt.start(fast, "late")  # unfinished for a moment, or already done: count it only if unfinished
        orphaned = await check_store(rt.store, {NAME: wf}.get, [NAME], limit=0)
        assert set(orphaned.no_code) <= {"history.quick"}


def test_the_cli_exports_and_checks_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`durable export` writes the documented JSON; `durable check-replay` refuses bad options with exit 2."""
    from typer.testing import CliRunner

    from durable._cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    wf = flow()

    async def record() -> tuple[str, str]:
        async with durable.Runtime(url, workflows=[wf], poll_interval=0.05) as rt:
            run = await _suspended(rt, wf, "c")
            return run.run_id, (await durable.testing.read_history(run)).to_json()

    run_id, expected = anyio.run(record)
    exported = CliRunner().invoke(app, ["export", run_id, "--store", url])
    assert (exported.exit_code, exported.output) == (0, expected)
    assert CliRunner().invoke(app, ["export", "run_missing", "--store", url]).exit_code == 1
    monkeypatch.chdir(tmp_path)
    (tmp_path / "noflows.py").write_text("X = 1\n")
    for args in (["--status", "done"], ["--limit", "-1"], ["--workflow", "nope"]):
        bad = CliRunner().invoke(app, ["check-replay", "--app", "noflows", "--store", url, *args])
        assert bad.exit_code == 2, (args, bad.output)
    attr = CliRunner().invoke(app, ["check-replay", "--app", "noflows:X", "--store", url])
    assert attr.exit_code == 2 and "not a durable.Runtime" in attr.output
