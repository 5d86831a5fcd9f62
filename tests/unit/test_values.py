"""Live values (durable.set_event) on every store: published once, read and awaited from outside, over HTTP and SSE."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

import durable
from durable._core import codec as _codec
from durable._core.commands import SetValue
from durable._core.events import EventKind
from durable._engine.instance import WorkflowInstance
from durable.testing import check_replay
from tests.helpers import encode_args, running_server, start_over_http, wait_for_hook

pytestmark = pytest.mark.anyio


@durable.workflow
async def progress(token: str) -> str:
    durable.set_event("stage", "fetching")
    durable.set_event("progress", {"done": 1, "of": 3})
    await durable.create_hook(token=token)
    durable.set_event("stage", "done")
    return "ok"


async def test_a_run_publishes_values_that_are_read_and_awaited_from_outside(runtime: durable.Runtime) -> None:
    """get_event waits for a key and returns its latest value; values() holds the latest of each; each set is one event."""
    run = await runtime.start(progress, "v-1")
    assert await run.get_event("stage", timeout=20) == "fetching"
    await wait_for_hook(runtime, "v-1")
    assert await run.values() == {"stage": "fetching", "progress": {"done": 1, "of": 3}}
    await runtime.resume_hook("v-1", {})
    assert await run.result(timeout=20) == "ok"
    assert await run.get_event("stage") == "done"
    sets = [(e.name, e.value) for e in await run.events() if e.kind == EventKind.VALUE_SET]
    assert sets == [("stage", "fetching"), ("progress", {"done": 1, "of": 3}), ("stage", "done")]
    replayed = await check_replay(run)  # a cold replay publishes nothing again
    assert (replayed.status, replayed.new_commands) == ("completed", [])


@durable.workflow
async def silent(token: str) -> None:
    await durable.create_hook(token=token)


async def test_get_event_times_out_and_refuses_a_key_a_finished_run_never_set(runtime: durable.Runtime) -> None:
    """TimeoutError while the run may still set the key; LookupError once it ended without it."""
    run = await runtime.start(silent, "v-2")
    with pytest.raises(TimeoutError, match="has not set event 'nothing'"):
        await run.get_event("nothing", timeout=0.2)
    await run.cancel()
    with pytest.raises(LookupError, match=r"ended .cancelled. without setting event 'nothing'"):
        await run.get_event("nothing", timeout=5)


def test_set_event_is_checked_on_replay_and_refuses_bad_keys() -> None:
    """A replay setting another key or value at a recorded position diverges; keys must be plain text; outside a workflow it is refused."""

    @durable.workflow(name="tests.values.replayed")
    async def replayed(x: int) -> None:
        durable.set_event("k", x)

    def advance(x: int, events: list[durable.Event]) -> Any:
        instance = WorkflowInstance(replayed, run_id="run_v", input=encode_args(x), seed="s")
        try:
            return instance.advance(events)
        finally:
            instance.close()

    started = [durable.Event("run_v", 1, EventKind.RUN_CREATED, None, 1.0), durable.Event("run_v", 2, EventKind.RUN_STARTED, None, 1.0)]
    (cmd,) = advance(1, started).commands
    assert isinstance(cmd, SetValue) and (cmd.key, _codec.decode(cmd.data)) == ("k", 1)
    record = durable.Event("run_v", 3, EventKind.VALUE_SET, cmd.correlation_id, 1.0, "k", cmd.data)
    assert advance(1, [*started, record]).commands == []
    assert advance(2, [*started, record]).diverged
    with pytest.raises(durable.NotInWorkflowError):
        durable.set_event("k", 1)


async def test_values_over_http_and_in_the_run_detail(runtime: durable.Runtime) -> None:
    """GET /runs/{id}/values/{key} answers the latest value (404 until set); /values lists them; the detail has them."""
    from durable.web import create_app

    run = await runtime.start(progress, "v-3")
    await wait_for_hook(runtime, "v-3")
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        stage = (await http.get(f"/runs/{run.run_id}/values/stage")).json()
        assert (stage["key"], stage["value"]) == ("stage", "fetching")
        assert (await http.get(f"/runs/{run.run_id}/values/nope")).status_code == 404
        listed = (await http.get(f"/runs/{run.run_id}/values")).json()["values"]
        assert [v["key"] for v in listed] == ["progress", "stage"]
        assert (await http.get(f"/runs/{run.run_id}")).json()["values"] == {"progress": {"done": 1, "of": 3}, "stage": "fetching"}
        assert (await http.get(f"/runs/{run.run_id}/events")).status_code == 200  # the event log keeps its path
    await runtime.resume_hook("v-3", {})
    await run.result(timeout=20)


FLOWS = textwrap.dedent(
    """
    import os
    import durable
    from durable.web import create_app

    @durable.workflow
    async def stages(token: str) -> str:
        durable.set_event("stage", "one")
        await durable.create_hook(token=token)
        durable.set_event("stage", "two")
        await durable.create_hook(token=token + "-2")
        return "done"

    runtime = durable.Runtime(os.environ["DURABLE_STORE"], poll_interval=0.1)
    app = create_app(runtime, api_token="")
    """
)


@pytest.mark.slow
async def test_the_sse_variant_follows_a_value_as_it_changes(tmp_path: Path) -> None:
    """GET /live/runs/{id}/values/{key} on a real server sends each new value as it is published, then `end`."""
    with running_server(tmp_path, FLOWS, "flows:app") as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(20.0)) as client:
            run_id = await start_over_http(client, "stages", "sse-v")
            seen: list[Any] = []
            with anyio.fail_after(30):
                async with aconnect_sse(client, "GET", f"/live/runs/{run_id}/values/stage") as source:
                    async for event in source.aiter_sse():
                        if event.event == "value":
                            data = json.loads(event.data)
                            seen.append(None if data is None else data["value"])
                            if seen[-1] == "one":
                                await client.post("/hooks/sse-v", json={})
                            elif seen[-1] == "two":
                                await client.post("/hooks/sse-v-2", json={})
                        elif event.event == "end":
                            break
    assert [v for v in seen if v is not None] == ["one", "two"]


async def test_the_notebook_view_shows_a_runs_current_values(runtime: durable.Runtime) -> None:
    """The notebook's run view (HTML and text) lists each value by key, as the run last published it."""
    from durable.notebook._feed import RunFeed
    from durable.notebook._html import state_html, state_text

    run = await runtime.start(progress, "v-nb")
    await wait_for_hook(runtime, "v-nb")
    state = await RunFeed(run).refresh()
    assert state.values == (("progress", '{"done": 1, "of": 3}'), ("stage", '"fetching"'))
    assert 'class="durable-values"' in state_html(state) and "stage" in state_html(state)
    assert 'value stage: "fetching"' in state_text(state)
    await runtime.resume_hook("v-nb", {})
    await run.result(timeout=20)
