"""Workflow versions: each run records the version label of the code that started it; runtimes claim
runs only of the versions they serve; older stores gain the column by migration."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import durable
from durable._client.present import run_summary
from durable._workflow.workflow import Workflow
from durable.stores import store_from_url
from durable.stores._base import NewRun, Store
from durable.stores._sql import SCHEMA_VERSION, VERSIONS_MIGRATION_FROM
from tests.helpers import fresh_store_url, undo_inline_step, wait_for_hook, wait_for_status

pytestmark = pytest.mark.anyio
NAME = "versions.checkout"


@durable.step(name="versions.price")
async def price(order: str) -> int:
    return len(order)


def coded(label: str | None) -> Workflow[Any, Any]:
    """The code of one deploy: the same workflow name, its own version label."""

    async def checkout(order: str) -> list[Any]:
        await durable.create_hook(token=f"go:{order}")
        return [label, await price(order)]

    return Workflow(checkout, name=NAME, serializer="json", version=label)


async def test_each_run_records_the_version_of_the_code_that_started_it(store_url: str) -> None:
    """``run.info().version`` is the starting code's label (None without one); ``list_runs(version=)``
    filters by it; the JSON presentation carries it."""
    v2, plain = coded("2"), coded(None)
    async with durable.Client(store_url) as client:
        first = await client.start(v2, "a")
        second = await client.start(plain, "bb")
        assert (await first.info()).version == "2"
        assert (await second.info()).version is None
        assert [r.run_id for r in await client.list_runs(version="2")] == [first.run_id]
        assert {r.run_id for r in await client.list_runs()} == {first.run_id, second.run_id}
        assert run_summary(await first.info())["version"] == "2"


def test_the_decorator_takes_and_checks_a_version_label() -> None:
    """``@durable.workflow(version="2")`` sets it; an empty or non-text label is ValueError."""

    async def fn() -> None:
        return None

    assert durable.workflow(name="versions.decorated", version="2")(fn).version == "2"
    with pytest.raises(ValueError, match="workflow version"):
        Workflow(fn, name="versions.bad", serializer="json", version="")


async def test_runtimes_claim_only_the_versions_they_serve_side_by_side(
    deploy_store: str | Store, caplog: pytest.LogCaptureFixture
) -> None:
    """During a rolling deploy an old worker runs version-1 runs and a new one version-2 runs; a run of
    a version neither serves stays pending (with a warning naming it), it does not fail."""
    v1, v2, v3 = coded("1"), coded("2"), coded("3")
    async with durable.Client(deploy_store) as client:
        old = await client.start(v1, "old")
        new = await client.start(v2, "new")
        orphan = await client.start(v3, "orphan")
    caplog.set_level(logging.WARNING, logger="durable")
    async with (
        durable.Runtime(deploy_store, workflows=[v1], versions={NAME: {"1"}}, poll_interval=0.05) as old_worker,
        durable.Runtime(deploy_store, workflows=[v2], versions={NAME: {"2"}}, poll_interval=0.05) as new_worker,
    ):
        await wait_for_hook(old_worker, "go:old")
        await wait_for_hook(new_worker, "go:new")
        await old_worker.resume_hook("go:old", None)
        await new_worker.resume_hook("go:new", None)
        assert await old_worker.run(old.run_id).result(timeout=20) == ["1", 3]
        assert await new_worker.run(new.run_id).result(timeout=20) == ["2", 3]
        await anyio.sleep(0.3)  # a few dispatch rounds: nobody claims the version-3 run
        assert await old_worker.run(orphan.run_id).status() == "pending"
    warnings = [r.getMessage() for r in caplog.records if "version '3'" in r.getMessage()]
    assert warnings and NAME in warnings[0] and "stay pending" in warnings[0]


async def test_none_in_the_versions_stands_for_runs_started_without_one(store_url: str) -> None:
    """A runtime serving ``{None, "2"}`` takes unversioned runs and version-2 runs (and starts its own)."""
    plain, v2 = coded(None), coded("2")
    async with durable.Runtime(store_url, workflows=[v2], versions={NAME: {None, "2"}}, poll_interval=0.05) as rt:
        before = await durable.Client(rt.store).start(plain, "p")
        mine = await rt.start(v2, "m")
        for order in ("p", "m"):
            await wait_for_hook(rt, f"go:{order}")
            await rt.resume_hook(f"go:{order}", None)
        assert await before.result(timeout=20) == ["2", 1]  # executed by the version-2 code it serves
        assert await rt.run(mine.run_id).result(timeout=20) == ["2", 1]


async def test_a_runtime_that_does_not_serve_its_own_version_leaves_new_runs_pending(store_url: str) -> None:
    """A run started by a runtime whose versions= excludes that code's version is not run there."""
    v2 = coded("2")
    async with durable.Runtime(store_url, workflows=[v2], versions={NAME: {"1"}}, poll_interval=0.05) as rt:
        run = await rt.start(v2, "x")
        await anyio.sleep(0.3)
        assert await run.status() == "pending"
        assert await rt.store.list_hooks(run.run_id) == []


async def test_versions_name_workflows_the_runtime_executes_and_sets_of_labels() -> None:
    """An unknown workflow in ``versions=`` fails at open naming it; a bare string instead of a set is TypeError."""
    v1 = coded("1")
    with pytest.raises(ValueError, match="versions= names workflow 'nope'"):
        async with durable.Runtime("memory://", workflows=[v1], versions={"nope": {"1"}}):
            pass
    with pytest.raises(TypeError, match="set of version labels"):
        durable.Runtime("memory://", workflows=[v1], versions={NAME: "12"})


async def test_version_filters_reach_the_claim_query_of_every_store(store_url: str) -> None:
    """The store's claim and next-wake queries take a run only in a listed version, ``None`` meaning unversioned."""
    async with store_from_url(store_url) as store:
        await store.register_worker("w", "host", 1, "", 30.0, 1.0)
        for run_id, version in (("r1", "1"), ("r2", "2"), ("r3", None)):
            await store.create_run(NewRun(run_id, NAME, b"DJ1:{}", "seed", None, 1.0, version=version))
        assert await store.active_versions() == {(NAME, "1"): 1, (NAME, "2"): 1, (NAME, None): 1}
        assert await store.next_wake([NAME], [], 2.0, {NAME: set()}) is None
        assert await store.next_wake([NAME], [], 2.0, {NAME: {"1"}}) == 1.0
        claimed = await store.claim_runs("w", [NAME], 2.0, 10, {NAME: {"2", None}})
        assert sorted(r.run_id for r in claimed) == ["r2", "r3"]
        assert [r.run_id for r in await store.claim_runs("w", [NAME], 2.0, 10)] == ["r1"]


# -- migration ----------------------------------------------------------------------------------------


def _back_to_the_schema_before(store_url: str, path: Path) -> None:
    """Drop the columns versions added, and mark the store with the schema version before them, as a
    store written by that release would be (later migrations run again too: they are idempotent)."""
    drops = [*undo_inline_step(), *(f"ALTER TABLE runs DROP COLUMN {c}" for c in ("version", "forked_from", "forked_step"))]
    back = f"UPDATE durable_meta SET value = '{VERSIONS_MIGRATION_FROM}' WHERE key = 'schema_version'"
    if store_url.startswith("sqlite"):
        with sqlite3.connect(path) as conn:
            for statement in [*drops, back]:
                conn.execute(statement)
    else:
        from tests.pg import connect

        with connect(store_url) as conn:
            for statement in [*drops, back]:
                conn.execute(statement)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_store_from_before_versions_is_migrated_and_keeps_its_runs(backend: str, tmp_path: Path) -> None:
    """A store written before versions existed gains the columns on open; its runs read as unversioned."""
    if backend == "postgres" and not os.environ.get("DURABLE_TEST_POSTGRES"):
        pytest.skip("needs DURABLE_TEST_POSTGRES")
    url = fresh_store_url(backend, tmp_path)
    async with durable.Client(url) as client:
        run = await client.start(coded(None), "z")
    _back_to_the_schema_before(url, tmp_path / "durable.db")
    async with durable.Client(url) as client:
        info = await client.run(run.run_id).info()
        assert (info.run_id, info.version, info.forked_from) == (run.run_id, None, None)
        assert (await (await client.start(coded("2"), "y")).info()).version == "2"
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "durable.db") as conn:
            assert conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


async def test_unversioned_runs_in_flight_wait_for_a_runtime_serving_none(deploy_store: str | Store) -> None:
    """The common upgrade: runs started before versions were used are unversioned; a runtime serving only
    "2" leaves them pending, one without a filter (or with None in it) runs them."""
    async with durable.Client(deploy_store) as client:
        before = await client.start(coded(None), "q")
    async with durable.Runtime(deploy_store, workflows=[coded("2")], versions={NAME: {"2"}}, poll_interval=0.05) as rt:
        await anyio.sleep(0.3)
        assert await rt.run(before.run_id).status() == "pending"
    async with durable.Runtime(deploy_store, workflows=[coded("2")], poll_interval=0.05) as rt:
        await wait_for_hook(rt, "go:q")
        await rt.resume_hook("go:q", None)
        await wait_for_status(rt.run(before.run_id), "completed")


# -- the CLI ------------------------------------------------------------------------------------------


def test_the_cli_lists_filters_and_inspects_runs_by_version(tmp_path: Path) -> None:
    """`durable runs` has a version column and ``--version``; `durable inspect` names the version."""
    from typer.testing import CliRunner

    from durable._cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def seed() -> list[str]:
        async with durable.Client(url) as client:
            return [(await client.start(coded(label), "c")).run_id for label in ("7", None)]

    versioned, plain = anyio.run(seed)
    listed = CliRunner().invoke(app, ["runs", "--store", url, "--version", "7"])
    assert listed.exit_code == 0, listed.output
    assert versioned in listed.output and plain not in listed.output and "version" in listed.output.splitlines()[0]
    shown = CliRunner().invoke(app, ["inspect", versioned, "--store", url])
    assert f"{NAME}  version 7" in shown.output


def test_worker_versions_are_parsed_and_bad_ones_refused() -> None:
    """``--versions checkout=1,2`` (repeatable, ``-`` for no version); anything else is a usage error."""
    from durable._cli import CLIError, _parse_versions

    assert _parse_versions(["checkout=1,2", "billing=-", "checkout=3"]) == {"checkout": {"1", "2", "3"}, "billing": {None}}
    for bad in ("checkout", "=1", "checkout="):
        with pytest.raises(CLIError, match="WORKFLOW=V1,V2"):
            _parse_versions([bad])


async def test_the_web_api_shows_and_filters_versions(runtime: durable.Runtime) -> None:
    """``GET /runs`` answers each run's version and takes ``?version=``; a run's detail has it too."""
    import httpx

    from durable.web import create_app

    client = durable.Client(runtime.store)  # the runtime opened the store: the client only uses it
    versioned = await client.start(coded("5"), "w")
    await client.start(coded(None), "w2")
    app = create_app(runtime, manage=False, api_token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        listed = (await http.get("/runs", params={"version": "5"})).json()["runs"]
        assert [(r["run_id"], r["version"], r["forked_from"]) for r in listed] == [(versioned.run_id, "5", None)]
        assert (await http.get(f"/runs/{versioned.run_id}")).json()["version"] == "5"


@pytest.mark.slow
async def test_durable_worker_versions_runs_only_those_versions(tmp_path: Path, sqlite_url: str) -> None:
    """`durable worker --app m --versions NAME=1` executes the version-1 run and leaves the version-2 one pending."""
    import signal
    import sys

    (tmp_path / "versionflows.py").write_text(
        "import durable\n\n@durable.workflow(name='vf.flow', version='2')\nasync def flow(x: int) -> int:\n    return x + 1\n"
    )

    async def plus(x: int) -> int:
        return x + 1

    async with durable.Client(sqlite_url) as client:
        old = await client.start(Workflow(plus, name="vf.flow", serializer="json", version="1"), 1)
        new = await client.start(Workflow(plus, name="vf.flow", serializer="json", version="2"), 2)
    env = {**os.environ, "DURABLE_STORE": sqlite_url}
    async with await anyio.open_process(
        [sys.executable, "-m", "durable", "worker", "--app", "versionflows", "--versions", "vf.flow=1"], cwd=tmp_path, env=env
    ) as worker:
        async with durable.Client(sqlite_url) as client:
            assert await client.run(old.run_id).result(timeout=30) == 2
            await anyio.sleep(0.5)
            assert await client.run(new.run_id).status() == "pending"
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await worker.wait() == 0
        assert worker.stderr is not None
        stderr = (await worker.stderr.receive()).decode()
    assert "vf.flow only in version(s) 1" in stderr
