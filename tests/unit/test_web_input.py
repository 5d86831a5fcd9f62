"""Hostile and odd HTTP input: each case found by a review of the web API, each answered with a
4xx that names the problem (never a 500, never a run broken by what was let in)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import durable
from durable._workflow.hooks import hook_definitions
from durable.web import create_app

from .test_web import client_for, sse_events, start, wait_for_hook

pytestmark = pytest.mark.anyio


@durable.workflow(name="web_input_echo")
async def web_input_echo(run_id: str, idempotency_key: str = "") -> list[str]:
    return [run_id, idempotency_key]


@durable.workflow(name="web_input_yields")
async def web_input_yields():  # type: ignore[no-untyped-def]
    yield {"a": 1}
    yield "two"


@durable.step(name="web_input_surrogate_step")
async def web_input_surrogate_step(text: str) -> str:
    await durable.get_writable().write({"text": text})
    return text


@durable.workflow(name="web_input_surrogate")
async def web_input_surrogate(text: str) -> str:
    return await web_input_surrogate_step(text)


@pytest.fixture
async def client(runtime: durable.Runtime) -> Any:
    async with client_for(create_app(runtime, manage=False, api_token="")) as c:
        yield c


async def event_count(client: httpx.AsyncClient, run_id: str) -> int:
    return len((await client.get(f"/runs/{run_id}/events")).json()["events"])


async def test_lone_surrogates_and_deep_nesting_are_malformed_json(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """JSON may spell a lone surrogate ("\\ud800"); no store or response can hold one, so it is refused at the door."""
    run_id = await start(client, "web_waiter", "web-input-1")
    await wait_for_hook(runtime, "web-input-1")
    before = await event_count(client, run_id)
    for body in [b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b"[" * 100_000 + b"]" * 100_000]:
        response = await client.post("/hooks/web-input-1", content=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("malformed JSON")
        response = await client.post("/runs", content=b'{"workflow": "web_waiter", "args": ["\\ud800"]}')
        assert response.status_code == 400
    assert await event_count(client, run_id) == before
    assert (await client.get(f"/runs/{run_id}")).status_code == 200


async def test_values_holding_lone_surrogates_are_served_escaped(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """Python code may store a lone surrogate (the codec keeps it); every page still renders, as JSON's escape."""
    run = await runtime.start(web_input_surrogate, "a\ud800b")
    assert await run.result(timeout=20) == "a\ud800b"
    assert (await client.get(f"/runs/{run.run_id}")).json()["result"] == "a\ud800b"
    events = (await client.get(f"/runs/{run.run_id}/events")).json()["events"]
    assert events[-1]["data"] == "a\ud800b"
    sse = sse_events((await client.get(f"/runs/{run.run_id}/stream")).text)
    assert json.loads(sse[0]["data"]) == {"text": "a\ud800b"}
    ndjson = (await client.get(f"/runs/{run.run_id}/stream", headers={"accept": "application/x-ndjson"})).text
    assert json.loads(ndjson.splitlines()[0])["data"] == {"text": "a\ud800b"}


async def test_start_options_do_not_collide_with_workflow_keywords(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """`kwargs` may name a workflow parameter run_id or idempotency_key; the start options are separate fields."""
    response = await client.post(
        "/runs",
        json={"workflow": "web_input_echo", "kwargs": {"run_id": "parent-1", "idempotency_key": "k"}, "run_id": "web-input-own"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["run_id"] == "web-input-own"
    assert await (await runtime.get_run("web-input-own")).result(timeout=20) == ["parent-1", "k"]


async def test_an_idempotency_key_of_another_workflow_is_a_conflict(client: httpx.AsyncClient) -> None:
    first = await client.post("/runs", json={"workflow": "web_waiter", "args": ["web-input-2"], "idempotency_key": "web-k"})
    assert first.status_code == 201
    again = await client.post("/runs", json={"workflow": "web_waiter", "args": ["web-input-2"], "idempotency_key": "web-k"})
    assert again.json()["run_id"] == first.json()["run_id"]
    other = await client.post("/runs", json={"workflow": "web_emitter", "args": [1], "idempotency_key": "web-k"})
    assert other.status_code == 409
    assert "already exists for workflow 'web_waiter'" in other.json()["error"]
    for run_id in [".", ".."]:  # path segments every client normalises away
        response = await client.post("/runs", json={"workflow": "web_emitter", "args": [1], "run_id": run_id})
        assert response.status_code == 422


async def test_indices_and_cursors_are_checked(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    run_id = await start(client, "web_emitter", 5)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    stream = f"/runs/{run_id}/stream"
    for headers in [{"last-event-id": "-3"}, {"last-event-id": "1_0"}, {"last-event-id": "9" * 30}, {"last-event-id": "+1"}]:
        response = await client.get(stream, headers=headers)
        assert response.status_code == 400, (headers, response.text)
        assert "Last-Event-ID" in response.json()["error"]
    for query in ["start_index=99999999999999999999999", "start_index=1_0", "start_index= 1", "start_index=0x1"]:
        assert (await client.get(f"{stream}?{query}")).status_code == 400, query
    assert (await client.get(f"/runs/{run_id}/events?after=99999999999999999999999")).status_code == 400
    assert (await client.get(f"/runs/{run_id}/events?after=-1")).status_code == 400
    assert [e["id"] for e in sse_events((await client.get(f"{stream}?start_index=-2")).text) if e.get("event") != "end"] == ["3", "4"]
    response = await client.get("/runs?cursor=zzzz")
    assert response.status_code == 400
    assert "unknown cursor" in response.json()["error"]


async def test_stream_written_events_show_their_digest(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """A workflow's write is logged as a digest of the chunk (the chunk is in the stream): shown as such."""
    run = await runtime.start(web_input_yields)
    await run.wait(timeout=20)
    written = [e for e in (await client.get(f"/runs/{run.run_id}/events")).json()["events"] if e["kind"] == "stream_written"]
    assert len(written) == 2
    assert all(len(e["data"]["digest"]) == 16 for e in written)


async def test_accept_q_values_choose_between_sse_and_ndjson(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    run_id = await start(client, "web_emitter", 2)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    kinds = {
        "text/event-stream;q=1, application/x-ndjson;q=0.1": "text/event-stream",
        "application/x-ndjson, text/event-stream;q=0.5": "application/x-ndjson",
        "application/x-ndjson;q=0.5, text/event-stream;q=0.5": "text/event-stream",
        "application/x-ndjson": "application/x-ndjson",
        "*/*": "text/event-stream",
    }
    for accept, expected in kinds.items():
        response = await client.get(f"/runs/{run_id}/stream", headers={"accept": accept})
        assert response.headers["content-type"].startswith(expected), accept


async def test_a_typed_hook_is_refused_where_its_schema_is_unknown(
    client: httpx.AsyncClient, runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that does not define the hook's schema cannot check the payload: 503, and nothing is appended."""
    run_id = await start(client, "web_typed_waiter", "web-input-typed")
    await wait_for_hook(runtime, "web-input-typed")
    before = await event_count(client, run_id)
    monkeypatch.delitem(hook_definitions, "web-approval")
    response = await client.post("/hooks/web-input-typed", json={"approved": "yes"})
    assert response.status_code == 503
    assert "schema 'web-approval'" in response.json()["error"]
    with pytest.raises(durable.HookSchemaUnknown):
        await runtime.resume_hook("web-input-typed", {"approved": True})
    assert await event_count(client, run_id) == before
    monkeypatch.undo()
    assert (await client.post("/hooks/web-input-typed", json={"approved": True})).status_code == 202
    assert await (await runtime.get_run(run_id)).result(timeout=20) == {"approved": True, "comment": ""}


async def test_a_non_ascii_bearer_token_matches(runtime: durable.Runtime) -> None:
    async with client_for(create_app(runtime, manage=False, api_token="tök-✓")) as client:
        assert (await client.get("/runs", headers={"authorization": "Bearer tök-✓".encode()})).status_code == 200  # type: ignore[dict-item]
        assert (await client.get("/runs", params={"access_token": "tök-✓"})).status_code == 200
        assert (await client.get("/runs", headers={"authorization": "Bearer tok-v"})).status_code == 401
