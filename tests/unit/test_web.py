"""The web app through httpx's ASGI transport: every route and error code.

httpx's ASGITransport reads a whole body before returning, so streams here are ones that
end (their run is over); endless streams are tested against a real server in test_sse_server.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import durable
from durable._workflow.hooks import hook_definitions
from durable.stores._base import ChunkPage
from durable.web import create_app
from durable.web._streams import PageRead, SharedReads, follow_pages
from tests.helpers import start_over_http, wait_for_hook

pytestmark = pytest.mark.anyio
JSON = {"Content-Type": "application/json"}


# -- workflows -----------------------------------------------------------------------------------


@durable.step
async def web_emit(n: int, namespace: str) -> int:
    async with durable.get_writable(namespace) as writer:
        for i in range(n):
            await writer.write({"i": i, "html": "<script>alert(1)</script>"})
    return n


@durable.workflow
async def web_emitter(n: int, namespace: str = "default") -> dict[str, int]:
    return {"written": await web_emit(n, namespace)}


@durable.step
async def web_emit_then_fail(n: int) -> None:
    writer = durable.get_writable()
    for i in range(n):
        await writer.write(i)
    await writer.flush()
    raise durable.FatalError("boom")


@durable.workflow
async def web_failing(n: int) -> None:
    await web_emit_then_fail(n)


@durable.workflow
async def web_waiter(token: str) -> Any:
    return await durable.create_hook(token=token)


@dataclass
class Approval:
    approved: bool
    comment: str = ""


approval_hook: durable.HookDefinition[Approval] = durable.define_hook(schema=Approval, name="web-approval")


@durable.workflow
async def web_typed_waiter(token: str) -> dict[str, object]:
    decision = await approval_hook.create(token=token)
    return {"approved": decision.approved, "comment": decision.comment}


@durable.step
async def web_summarise(request: durable.Request) -> dict[str, Any]:
    return {
        "method": request.method, "query": request.query, "body": request.text(),
        "content_type": request.headers.get("content-type"), "path": request.url.split("?")[0].rsplit("/", 1)[-1],
    }


@durable.workflow
async def web_hooked(token: str, mode: str) -> dict[str, Any]:
    respond_with: Any = None
    if mode == "static":
        respond_with = durable.Response(json={"ok": True}, status=200)
    elif mode == "manual":
        respond_with = "manual"
    webhook = durable.create_webhook(token=token, respond_with=respond_with)
    request = await webhook
    if mode == "manual":
        await web_reply(request)
    return await web_summarise(request)


@durable.step
async def web_reply(request: durable.Request) -> None:
    await request.respond_with(durable.Response(text=f"hello {request.text()}", status=201, headers={"x-durable": "yes"}))


@durable.workflow
async def web_silent_webhook(token: str) -> None:
    webhook = durable.create_webhook(token=token, respond_with="manual")
    never = durable.create_hook(token=token + ":never")
    request = await webhook  # and never respond: end at once, or wait forever
    if request.text() != "end":
        await never


# -- fixtures and helpers ------------------------------------------------------------------------


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(runtime: durable.Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(runtime, manage=False, api_token="")) as c:
        yield c


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse an SSE body into events (field -> value), skipping comments and retry-only blocks."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":") and not line.startswith("retry:"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            events.append(fields)
    return events


# -- runs ----------------------------------------------------------------------------------------


async def test_start_runs_a_workflow_and_the_run_shows_result_steps_and_streams(
    client: httpx.AsyncClient, runtime: durable.Runtime
) -> None:
    """POST /runs starts a registered workflow; GET /runs/{id} shows its status, result, steps and streams."""
    run_id = await start_over_http(client, "web_emitter", 3)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    detail = (await client.get(f"/runs/{run_id}")).json()
    assert (detail["status"], detail["result"]) == ("completed", {"written": 3})
    assert [(s["name"], s["status"], s["attempts"]) for s in detail["steps"]] == [(web_emit.name, "completed", 1)]
    assert detail["steps"][0]["duration"] >= 0
    assert detail["streams"] == [{"namespace": "default", "chunks": 3, "closed": True}]
    assert detail["started_at"] is not None
    assert detail["duration"] >= 0


async def test_start_refuses_unknown_workflows_and_bad_arguments(client: httpx.AsyncClient) -> None:
    """Unknown workflow names are 404 (listing the known ones); arguments that do not fit are 422."""
    response = await client.post("/runs", json={"workflow": "no_such_workflow"})
    assert response.status_code == 404
    assert web_emitter.name in response.json()["workflows"]
    bad_bodies = [
        {"workflow": "web_emitter"},  # missing argument
        {"workflow": "web_emitter", "args": [1], "kwargs": {"colour": "red"}},  # unexpected keyword
        {"workflow": "web_emitter", "args": {"n": 1}},  # args not a list
        {"workflow": "web_emitter", "args": [1], "extra": True},  # unknown field
        {"workflow": 7},
        [1, 2],
        {"workflow": "web_emitter", "args": [1], "run_id": "has/slash"},
    ]
    for body in bad_bodies:
        response = await client.post("/runs", json=body)
        assert (response.status_code, bool(response.json()["error"])) == (422, True), body


async def test_start_refuses_malformed_json_with_400(client: httpx.AsyncClient) -> None:
    """Bodies that are not strict JSON (broken syntax, NaN, empty) are 400."""
    for body in [b"{", b'{"workflow": NaN}', b"", b"\xff\xfe"]:
        response = await client.post("/runs", content=body, headers=JSON)
        assert response.status_code == 400, body
        assert "JSON" in response.json()["error"]


async def test_idempotency_key_returns_the_same_run(client: httpx.AsyncClient) -> None:
    """Starting twice with one idempotency key returns one run id."""
    body = {"workflow": "web_emitter", "args": [1], "idempotency_key": "web-key-1"}
    first = (await client.post("/runs", json=body)).json()["run_id"]
    second = (await client.post("/runs", json=body)).json()["run_id"]
    assert first == second


async def test_list_runs_filters_and_pages_with_a_cursor(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /runs filters by status and workflow, and pages through every run with next_cursor."""
    ids = [await start_over_http(client, "web_emitter", 1) for _ in range(5)]
    waiting = await start_over_http(client, "web_waiter", "web-list-token")
    for run_id in ids:
        await (await runtime.get_run(run_id)).wait(timeout=20)
    seen: list[str] = []
    cursor = ""
    while True:
        page = (await client.get("/runs", params={"limit": 2, "cursor": cursor})).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted([*ids, waiting]) == sorted(seen)
    assert len(seen) == len(set(seen))
    completed = (await client.get("/runs", params={"status": "completed", "workflow": "web_emitter"})).json()["runs"]
    assert sorted(ids) == sorted(r["run_id"] for r in completed)
    assert (await client.get("/runs", params={"workflow": "web_nothing"})).json()["runs"] == []
    for params in [{"status": "done"}, {"limit": "0"}, {"limit": "ten"}]:
        assert (await client.get("/runs", params=params)).status_code == 400


async def test_unknown_run_ids_are_404_everywhere(client: httpx.AsyncClient) -> None:
    """Every per-run route answers 404 with a JSON error for an unknown run id."""
    for method, path in [
        ("GET", "/runs/run_nope"), ("GET", "/runs/run_nope/events"), ("GET", "/runs/run_nope/stream"),
        ("GET", "/runs/run_nope/streams/logs"), ("POST", "/runs/run_nope/cancel"), ("GET", "/live/runs/run_nope"),
    ]:
        response = await client.request(method, path, json={} if method == "POST" else None)
        assert (response.status_code, response.json()["error"]) == (404, "no run with id 'run_nope'"), path


async def test_events_are_the_decoded_log_and_can_resume_after_a_seq(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /runs/{id}/events lists the log with decoded data; ?after= returns only later events."""
    run_id = await start_over_http(client, "web_emitter", 2)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    events = (await client.get(f"/runs/{run_id}/events")).json()["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["run_created", "run_started", "step_created"]
    assert kinds[-1] == "run_completed"
    assert events[2]["data"] == {"args": [2, "default"], "kwargs": {}}
    assert list(range(1, len(events) + 1)) == [e["seq"] for e in events]
    later = (await client.get(f"/runs/{run_id}/events", params={"after": 2})).json()["events"]
    assert events[2:] == later


async def test_cancel_ends_the_run_and_closes_its_streams(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """POST /runs/{id}/cancel cancels a waiting run; its stream then ends with the cancellation as error."""
    run_id = await start_over_http(client, "web_waiter", "web-cancel-token")
    await wait_for_hook(runtime, "web-cancel-token")
    response = await client.post(f"/runs/{run_id}/cancel", json={})
    assert (200, {"run_id": run_id, "status": "cancelled"}) == (response.status_code, response.json())
    assert (await client.get(f"/runs/{run_id}")).json()["status"] == "cancelled"
    events = sse_events((await client.get(f"/runs/{run_id}/stream")).text)
    assert events == [{"event": "end", "data": '{"error":"run cancelled"}'}]


# -- streams -------------------------------------------------------------------------------------


async def test_sse_stream_sends_each_chunk_with_its_index_then_end(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """The SSE stream has id = chunk index and data = the chunk as JSON, then `event: end`."""
    run_id = await start_over_http(client, "web_emitter", 4)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    response = await client.get(f"/runs/{run_id}/stream")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.text.startswith("retry: 1000\nid: 0\n")  # reconnect soon: a field of the first event
    events = sse_events(response.text)
    assert [str(i) for i in range(4)] == [e["id"] for e in events[:-1]]
    assert [{"i": i, "html": "<script>alert(1)</script>"} for i in range(4)] == [json.loads(e["data"]) for e in events[:-1]]
    assert events[-1] == {"event": "end", "data": '{"error":null}'}


async def test_sse_stream_honours_start_index_and_last_event_id(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """?start_index= starts at that chunk (negative counts from the end); Last-Event-ID resumes after it and wins."""
    run_id = await start_over_http(client, "web_emitter", 6)
    await (await runtime.get_run(run_id)).wait(timeout=20)

    async def ids(**kwargs: Any) -> list[str]:
        events = sse_events((await client.get(f"/runs/{run_id}/stream", **kwargs)).text)
        assert events[-1].get("event") == "end"
        return [e["id"] for e in events[:-1]]

    assert await ids(params={"start_index": 4}) == ["4", "5"]
    assert await ids(params={"start_index": -3}) == ["3", "4", "5"]
    assert await ids(headers={"Last-Event-ID": "2"}) == ["3", "4", "5"]
    assert await ids(params={"start_index": 1}, headers={"Last-Event-ID": "4"}) == ["5"]
    assert await ids(headers={"Last-Event-ID": "5"}) == []
    assert (await client.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": "x"})).status_code == 400
    assert (await client.get(f"/runs/{run_id}/stream", params={"start_index": "1.5"})).status_code == 400


@durable.step
async def web_write_range(start: int, stop: int) -> None:
    writer = durable.get_writable()
    for i in range(start, stop):
        await writer.write(i)
    await writer.flush()


@durable.workflow
async def web_two_phases(token: str) -> None:
    await web_write_range(0, 3)
    await durable.create_hook(token=token)
    await web_write_range(3, 5)


async def test_streams_are_followed_live_in_process(runtime: durable.Runtime) -> None:
    """The pages behind SSE arrive while the run is live (woken in process, or by polling the file) and end with it."""
    run = await runtime.start(web_two_phases, "web-live-1")
    pages = follow_pages(SharedReads(runtime.store), run.run_id, "default", 0, poll_interval=0.2)
    seen: list[int] = []
    with anyio.fail_after(20):
        while len(seen) < 3:
            seen += [c.index for c in page_of(await anext(pages)).chunks]
        assert await run.status() == "running"
        await wait_for_hook(runtime, "web-live-1")
        await runtime.resume_hook("web-live-1", None)
        async for read in pages:
            seen += [c.index for c in page_of(read).chunks]
    assert seen == [0, 1, 2, 3, 4]
    assert page_of(read).closed
    assert page_of(read).error is None


def page_of(read: PageRead) -> ChunkPage:
    assert read.page is not None
    return read.page


@durable.step
async def web_trickle(n: int) -> None:
    writer = durable.get_writable()
    for i in range(n):
        await writer.write(i)
        await writer.flush()
        await anyio.sleep(0.005)


@durable.workflow
async def web_trickler(token: str, n: int) -> None:
    await durable.create_hook(token=token)
    await web_trickle(n)


async def test_live_followers_of_one_stream_share_store_reads(runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty followers of a live stream each get every chunk once, in order, from far fewer store reads than twenty each."""
    calls = 0
    read_chunks = runtime.store.read_chunks

    async def counted(*args: Any) -> ChunkPage:
        nonlocal calls
        calls += 1
        return await read_chunks(*args)

    monkeypatch.setattr(runtime.store, "read_chunks", counted)
    reads = SharedReads(runtime.store)
    run = await runtime.start(web_trickler, "web-share-1", 30)
    await wait_for_hook(runtime, "web-share-1")
    results: list[list[int]] = [[] for _ in range(20)]
    pages_read: list[int] = []

    async def follow(seen: list[int]) -> None:
        pages = 0
        async for read in follow_pages(reads, run.run_id, "default", 0, poll_interval=0.2):
            seen += [c.index for c in page_of(read).chunks]
            assert page_of(read).error is None
            pages += 1
        pages_read.append(pages)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for seen in results:
                tg.start_soon(follow, seen)
            await anyio.sleep(0.2)  # every follower is waiting for the first chunk
            calls = 0
            await runtime.resume_hook("web-share-1", None)
    assert results == [list(range(30))] * 20
    assert calls < sum(pages_read) / 4  # unshared, every follower would read every page itself


async def test_named_streams_and_ndjson(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """/streams/{namespace} reads another stream; Accept: application/x-ndjson gives the same as NDJSON lines."""
    run_id = await start_over_http(client, "web_emitter", 3, "logs")
    await (await runtime.get_run(run_id)).wait(timeout=20)
    sse = sse_events((await client.get(f"/runs/{run_id}/streams/logs")).text)
    assert [e["id"] for e in sse[:-1]] == ["0", "1", "2"]
    response = await client.get(f"/runs/{run_id}/streams/logs", params={"start_index": 1}, headers={"Accept": "application/x-ndjson"})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    expected = [{"index": i, "data": {"i": i, "html": "<script>alert(1)</script>"}} for i in (1, 2)]
    assert [*expected, {"end": True, "error": None}] == lines
    # The default stream of this run was never written: it ends cleanly with the run.
    assert sse_events((await client.get(f"/runs/{run_id}/stream")).text) == [{"event": "end", "data": '{"error":null}'}]


async def test_a_failed_run_ends_its_stream_with_the_error(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """Chunks written before a failure are sent, then `event: end` carries the run's error."""
    run_id = await start_over_http(client, "web_failing", 2)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    events = sse_events((await client.get(f"/runs/{run_id}/stream")).text)
    assert [e["data"] for e in events[:-1]] == ["0", "1"]
    end = events[-1]
    assert end["event"] == "end"
    assert "boom" in json.loads(end["data"])["error"]
    detail = (await client.get(f"/runs/{run_id}")).json()
    assert (detail["status"], detail["error"]["message"]) == ("failed", "boom")
    assert "traceback" not in json.dumps(detail).lower()


async def test_live_run_feed_of_an_ended_run_sends_its_detail_then_end(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /live/runs/{id} sends the run's detail as `event: run`, and `event: end` once the run has ended."""
    run_id = await start_over_http(client, "web_emitter", 1)
    await (await runtime.get_run(run_id)).wait(timeout=20)
    events = sse_events((await client.get(f"/live/runs/{run_id}")).text)
    assert [e["event"] for e in events] == ["run", "end"]
    assert (json.loads(events[0]["data"])["status"], json.loads(events[0]["data"])["result"]) == ("completed", {"written": 1})


# -- hooks ---------------------------------------------------------------------------------------


async def test_post_hook_resumes_the_run_with_the_payload(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """POST /hooks/{token} with JSON delivers it to the waiting workflow (202 with run and hook ids)."""
    run_id = await start_over_http(client, "web_waiter", "web-hook-1")
    await wait_for_hook(runtime, "web-hook-1")
    detail = (await client.get(f"/runs/{run_id}")).json()
    assert [(h["token"], h["kind"], h["status"]) for h in detail["hooks"]] == [("web-hook-1", "hook", "active")]
    response = await client.post("/hooks/web-hook-1", json={"approved": True, "n": [1, 2.5, None]})
    assert (202, {"run_id": run_id, "hook_id": "hook_1", "token": "web-hook-1"}) == (response.status_code, response.json())
    assert await (await runtime.get_run(run_id)).result(timeout=20) == {"approved": True, "n": [1, 2.5, None]}


async def test_tokens_with_slashes_and_spaces_work_on_both_routes(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """Hook and webhook tokens are arbitrary strings: URL-encoded, a "/" or a space in them still reaches the hook."""
    run_id = await start_over_http(client, "web_waiter", "team/a b?c")
    await wait_for_hook(runtime, "team/a b?c")
    assert (await client.post("/hooks/team%2Fa%20b%3Fc", json=1)).status_code == 202
    assert await (await runtime.get_run(run_id)).result(timeout=20) == 1

    hooked = await start_over_http(client, "web_hooked", "wh/x y", "default")
    await wait_for_hook(runtime, "wh/x y")
    path = (await client.get(f"/runs/{hooked}")).json()["hooks"][0]["path"]
    assert path == "/.well-known/workflow/v1/webhook/wh%2Fx%20y"
    assert (await client.post(path, content=b"hi")).status_code == 202
    assert (await (await runtime.get_run(hooked)).result(timeout=20))["body"] == "hi"


async def test_post_hook_errors_append_nothing(runtime: durable.Runtime) -> None:
    """Unknown tokens 404, schema problems 422 (listed), oversized 413, malformed 400: and the log is unchanged."""
    async with client_for(create_app(runtime, manage=False, api_token="", max_body=200)) as client:
        run_id = await start_over_http(client, "web_typed_waiter", "web-typed-1")
        await wait_for_hook(runtime, "web-typed-1")
        before = len((await client.get(f"/runs/{run_id}/events")).json()["events"])

        response = await client.post("/hooks/web-unknown", json={"approved": True})
        assert response.status_code == 404
        response = await client.post("/hooks/web-typed-1", json={"approved": "yes", "colour": 1})
        assert response.status_code == 422
        assert response.json()["problems"] == ["colour: unknown field", "approved: expected bool, got str"]
        response = await client.post("/hooks/web-typed-1", content=json.dumps({"approved": True, "comment": "x" * 500}), headers=JSON)
        assert response.status_code == 413
        for body in [b"{'approved': true}", b'{"approved": Infinity}', b""]:
            assert (await client.post("/hooks/web-typed-1", content=body, headers=JSON)).status_code == 400

        assert before == len((await client.get(f"/runs/{run_id}/events")).json()["events"])
        response = await client.post("/hooks/web-typed-1", json={"approved": True, "comment": "fine"})
        assert response.status_code == 202
        assert await (await runtime.get_run(run_id)).result(timeout=20) == {"approved": True, "comment": "fine"}


async def test_a_chunked_oversized_body_is_refused_while_reading(runtime: durable.Runtime) -> None:
    """A body without Content-Length is cut off at the limit with 413."""
    async with client_for(create_app(runtime, manage=False, api_token="", max_body=100)) as client:

        async def body() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 50

        response = await client.post("/hooks/anything", content=body(), headers=JSON)
        assert response.status_code == 413


# -- webhooks ------------------------------------------------------------------------------------


async def test_webhook_default_answers_202_and_delivers_the_request(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """Any method on the webhook URL delivers the full request to the workflow; the default answer is 202."""
    run_id = await start_over_http(client, "web_hooked", "web-wh-default", "default")
    await wait_for_hook(runtime, "web-wh-default")
    detail = (await client.get(f"/runs/{run_id}")).json()
    assert [h["kind"] for h in detail["hooks"]] == ["webhook"]
    url = detail["hooks"][0]["path"] + "?a=1&a=2&b=x"
    assert url == "/.well-known/workflow/v1/webhook/web-wh-default?a=1&a=2&b=x"
    response = await client.put(url, content=b"name=ada", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202
    result = await (await runtime.get_run(run_id)).result(timeout=20)
    expected = {
        "method": "PUT", "query": [("a", "1"), ("a", "2"), ("b", "x")], "body": "name=ada",
        "content_type": "application/x-www-form-urlencoded", "path": "web-wh-default",
    }
    assert expected == result


async def test_webhook_static_and_manual_responses(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """A static respond_with is sent at once; in manual mode the response a step sends is returned."""
    await start_over_http(client, "web_hooked", "web-wh-static", "static")
    await wait_for_hook(runtime, "web-wh-static")
    response = await client.post("/.well-known/workflow/v1/webhook/web-wh-static", json={"x": 1})
    assert (response.status_code, response.json()) == (200, {"ok": True})

    await start_over_http(client, "web_hooked", "web-wh-manual", "manual")
    await wait_for_hook(runtime, "web-wh-manual")
    response = await client.post("/.well-known/workflow/v1/webhook/web-wh-manual", content=b"ada")
    assert (response.status_code, response.text, response.headers["x-durable"]) == (201, "hello ada", "yes")


async def test_webhook_errors(runtime: durable.Runtime) -> None:
    """Unknown tokens and plain hooks are 404 at the webhook URL, webhooks are 404 at /hooks, 413 over the limit,
    504 when a manual response does not come in time, 502 when the run ends without one."""
    async with client_for(create_app(runtime, manage=False, api_token="", webhook_timeout=0.3, max_body=64)) as client:
        await runtime.start(web_silent_webhook, "web-wh-silent")
        await wait_for_hook(runtime, "web-wh-silent:never")
        assert (await client.get("/.well-known/workflow/v1/webhook/web-wh-none")).status_code == 404
        assert (await client.post("/.well-known/workflow/v1/webhook/web-wh-silent:never", json={})).status_code == 404
        assert (await client.post("/hooks/web-wh-silent", json={})).status_code == 404
        assert (await client.post("/.well-known/workflow/v1/webhook/web-wh-silent", content=b"x" * 65)).status_code == 413
        response = await client.post("/.well-known/workflow/v1/webhook/web-wh-silent", content=b"hi")
        assert response.status_code == 504
        assert "did not respond" in response.json()["error"]

        await runtime.start(web_silent_webhook, "web-wh-ending")
        await wait_for_hook(runtime, "web-wh-ending:never")
        response = await client.post("/.well-known/workflow/v1/webhook/web-wh-ending", content=b"end")
        assert (response.status_code, response.json()) == (502, {"error": "the workflow ended without responding"})


# -- auth, errors, page, lifespan ----------------------------------------------------------------


async def test_bearer_token_guards_everything_but_webhooks_and_the_page(runtime: durable.Runtime) -> None:
    """With an API token, the API needs it in the Authorization header; webhooks and the page do not."""
    async with client_for(create_app(runtime, manage=False, api_token="s3cret")) as client:
        response = await client.get("/runs")
        assert (response.status_code, response.headers["www-authenticate"]) == (401, "Bearer")
        assert (await client.get("/runs", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await client.post("/runs", json={"workflow": "web_emitter", "args": [1]})).status_code == 401
        assert (await client.post("/hooks/x", json={})).status_code == 401
        assert (await client.get("/runs", headers={"Authorization": "Basic s3cret"})).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/runs", headers=good)).status_code == 200
        assert (await client.post("/runs", headers=good, json={"workflow": "web_emitter", "args": [1]})).status_code == 201
        assert (await client.post("/.well-known/workflow/v1/webhook/nope")).status_code == 404  # not 401
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/app.js")).status_code == 200


async def test_tokens_in_urls_are_refused(runtime: durable.Runtime) -> None:
    """?access_token= is refused on every API route, right or wrong, so no client learns to put a token in a URL."""
    async with client_for(create_app(runtime, manage=False, api_token="s3cret")) as client:
        for method, path in [("GET", "/runs"), ("GET", "/live/runs"), ("GET", "/runs/x/stream"), ("POST", "/runs")]:
            response = await client.request(method, path, params={"access_token": "s3cret"}, json={} if method == "POST" else None)
            assert response.status_code == 400, path
            assert "not accepted in URLs" in response.json()["error"]
    async with client_for(create_app(runtime, manage=False, api_token="")) as client:
        assert (await client.get("/runs", params={"access_token": "x"})).status_code == 400


async def test_login_sets_a_strict_http_only_cookie_that_opens_the_api(runtime: durable.Runtime) -> None:
    """POST /login with the token answers with an HttpOnly SameSite=Strict cookie (not the token) that the API accepts."""
    async with client_for(create_app(runtime, manage=False, api_token="s3cret")) as client:
        assert (await client.post("/login", json={"token": "wrong"})).status_code == 401
        assert (await client.post("/login", json={"tok": "s3cret"})).status_code == 422
        assert (await client.post("/login", content=b'{"token": "s3cret"}')).status_code == 415
        assert not client.cookies
        response = await client.post("/login", json={"token": "s3cret"})
        assert (response.status_code, response.json()) == (200, {"token_required": True})
        cookie = response.headers["set-cookie"]
        name, _, rest = cookie.partition("=")
        assert name.startswith("durable_session_")
        assert "s3cret" not in cookie
        assert {"httponly", "samesite=strict", "path=/"} <= {part.strip().lower() for part in rest.split(";")}
        assert (await client.get("/runs")).status_code == 200  # the cookie alone
        assert (await client.post("/runs", json={"workflow": "web_emitter", "args": [1]})).status_code == 201
        await client.post("/logout", json={})
        assert (await client.get("/runs")).status_code == 401
    async with client_for(create_app(runtime, manage=False, api_token="other")) as other:
        other.cookies.set(name, rest.partition(";")[0])
        assert (await other.get("/runs")).status_code == 401  # a cookie made for another token opens nothing
    async with client_for(create_app(runtime, manage=False, api_token="")) as open_app:
        assert (await open_app.post("/login", json={"token": ""})).json() == {"token_required": False}


async def test_writes_need_json_and_the_same_origin(runtime: durable.Runtime) -> None:
    """Every state-changing route takes only application/json (415) and refuses another origin's page (403)."""
    async with client_for(create_app(runtime, manage=False, api_token="")) as client:
        run_id = await start_over_http(client, "web_waiter", "web-csrf-1")
        await wait_for_hook(runtime, "web-csrf-1")
        writes = [("/runs", {"workflow": "web_emitter", "args": [1]}), (f"/runs/{run_id}/cancel", {}),
                  ("/hooks/web-csrf-1", {"ok": 1}), ("/login", {"token": ""})]
        for path, body in writes:
            text = json.dumps(body).encode()
            for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]:
                headers = {"Content-Type": content_type} if content_type else {}
                assert (await client.post(path, content=text, headers=headers)).status_code == 415, (path, content_type)
            for foreign in [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": "http://testserver:8080"},
                            {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}]:
                response = await client.post(path, content=text, headers={**JSON, **foreign})
                assert response.status_code == 403, (path, foreign)
        assert len(await runtime.list_runs()) == 1
        assert await (await runtime.get_run(run_id)).status() == "running"  # neither cancelled nor resumed
        assert (await client.post("/runs/" + run_id + "/cancel", content=b"[1]", headers=JSON)).status_code == 422
        # The page's own requests carry its origin; clients that are not browsers carry none.
        same = {**JSON, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
        assert (await client.post("/hooks/web-csrf-1", content=b'{"ok": 2}', headers=same)).status_code == 202
        second = await start_over_http(client, "web_waiter", "web-csrf-2")
        assert (await client.post(f"/runs/{second}/cancel", content=b"", headers=JSON)).status_code == 200
        assert (await client.post("/.well-known/workflow/v1/webhook/none", content=b"x", headers={"Origin": "http://evil.example"})).status_code == 404


async def test_the_host_header_must_name_the_server(runtime: durable.Runtime) -> None:
    """On a loopback address only loopback Host names pass (DNS rebinding); allowed_hosts replaces that rule."""
    app = create_app(runtime, manage=False, api_token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
        for host in ["127.0.0.1:8000", "localhost:8000", "localhost", "[::1]:8000", "app.localhost:8000"]:
            assert (await client.get("/runs", headers={"Host": host})).status_code == 200, host
        for host in ["evil.example:8000", "evil.example", "10.0.0.1:8000", ""]:
            for path in ["/runs", "/", "/static/app.js"]:
                response = await client.get(path, headers={"Host": host})
                assert response.status_code == 400, (host, path)
            assert "is not allowed" in response.json()["error"]
        webhook = await client.post("/.well-known/workflow/v1/webhook/none", headers={"Host": "hooks.example"})
        assert webhook.status_code == 404  # webhooks are for third parties: any Host reaches them
    listed = create_app(runtime, manage=False, api_token="", allowed_hosts=["runs.example", "Box.Local."])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=listed), base_url="http://127.0.0.1:8000") as client:
        assert (await client.get("/runs", headers={"Host": "runs.example:8000"})).status_code == 200
        assert (await client.get("/runs", headers={"Host": "box.local"})).status_code == 200
        assert (await client.get("/runs", headers={"Host": "localhost:8000"})).status_code == 400
    anywhere = create_app(runtime, manage=False, api_token="", allowed_hosts=["*"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=anywhere), base_url="http://127.0.0.1:8000") as client:
        assert (await client.get("/runs", headers={"Host": "evil.example"})).status_code == 200
    with pytest.raises(TypeError, match="list of host names"):
        create_app(runtime, manage=False, allowed_hosts="localhost")


async def test_api_token_comes_from_the_environment(runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """DURABLE_API_TOKEN turns auth on when api_token is not given."""
    monkeypatch.setenv("DURABLE_API_TOKEN", "from-env")
    async with client_for(create_app(runtime, manage=False)) as client:
        assert (await client.get("/runs")).status_code == 401
        assert (await client.get("/runs", headers={"Authorization": "Bearer from-env"})).status_code == 200


async def test_unexpected_errors_answer_500_without_details(runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside an endpoint is logged and answered with a bare 500: no message, no traceback."""

    async def broken(**kwargs: Any) -> list[Any]:
        raise RuntimeError("secret connection string postgres://user:pw@db")

    monkeypatch.setattr(runtime.store, "list_runs", broken)
    async with client_for(create_app(runtime, manage=False, api_token="")) as client:
        response = await client.get("/runs")
    assert (response.status_code, response.json()) == (500, {"error": "internal server error"})
    assert "secret" not in response.text
    assert "Traceback" not in response.text


async def test_unknown_routes_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    """Unknown paths are 404 and wrong methods 405, both as JSON."""
    response = await client.get("/nowhere")
    assert (response.status_code, response.json()["error"]) == (404, "Not Found")
    assert (await client.delete("/runs")).status_code == 405
    assert (await client.get("/static/secrets.py")).status_code == 404


async def test_page_and_assets_are_served_and_know_their_mount_point(runtime: durable.Runtime) -> None:
    """GET / is the runs page; mounted under a prefix, its base points there."""
    outer = Starlette(routes=[Mount("/durable", app=create_app(runtime, manage=False, api_token=""))])
    async with client_for(outer) as client:
        page = await client.get("/durable/")
        assert page.headers["content-type"].startswith("text/html")
        assert '<meta name="durable-base" content="/durable/">' in page.text
        assert 'src="/durable/static/app.js"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = await client.get("/durable/static/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "EventSource" in script.text
        assert "innerHTML" not in script.text
        runs = await client.get("/durable/runs")
        assert runs.status_code == 200


async def test_workflows_route_says_what_can_be_started(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /workflows lists what can be started, with the signatures workers published; a store nobody published to, nothing."""
    listed = (await client.get("/workflows")).json()
    assert listed["can_start"] is True
    assert web_emitter.name in listed["workflows"]
    emitter = next(d for d in listed["definitions"] if d["name"] == web_emitter.name)
    assert emitter["parameters"] == [
        {"name": "n", "kind": "positional_or_keyword", "annotation": "int"},
        {"name": "namespace", "kind": "positional_or_keyword", "annotation": "str", "default": "default"},
    ]
    assert (emitter["serializer"], emitter["startable"], emitter["published_by"]) == ("json", True, runtime.worker_id)
    async with durable.Client("memory://") as empty, client_for(create_app(empty.store, manage=False, api_token="")) as bare:
        assert (await bare.get("/workflows")).json() == {"can_start": False, "workflows": [], "definitions": []}
        response = await bare.post("/runs", json={"workflow": "web_emitter", "args": [1]})
        assert response.status_code == 503
        assert "durable worker" in response.json()["error"]


@durable.workflow(serializer="pickle")
async def web_pickled(value: Any) -> Any:
    return value


@durable.workflow
async def web_defaults(a: int, b: str = "b", *rest: int, c: tuple[int, ...] = (1, 2), **extra: int) -> list[Any]:
    return [a, b, list(rest), c, extra]


async def test_a_store_only_app_starts_the_workflows_workers_published(runtime: durable.Runtime) -> None:
    """Given only a store, the app serves runs, cancels and hooks, and starts published workflows, checking their signatures."""
    async with client_for(create_app(runtime, manage=False, api_token="")) as full, client_for(
        create_app(runtime.store, manage=False, api_token="")
    ) as client:
        first = await start_over_http(full, "web_waiter", "web-store-only-1")
        second = await start_over_http(client, "web_waiter", "web-store-only-2")  # started by the store-only app
        await wait_for_hook(runtime, "web-store-only-1")
        await wait_for_hook(runtime, "web-store-only-2")  # ... and executed by the worker
        assert first in [r["run_id"] for r in (await client.get("/runs")).json()["runs"]]
        assert (await client.post("/hooks/web-store-only-1", json=[1, 2])).status_code == 202
        assert await (await runtime.get_run(first)).result(timeout=20) == [1, 2]
        assert {"run_id": second, "status": "cancelled"} == (await client.post(f"/runs/{second}/cancel", json={})).json()

        # The published signature binds the call as the worker would: JSON defaults applied, so it is the same run.
        started = await client.post("/runs", json={"workflow": "web_emitter", "args": [1], "idempotency_key": "web-def"})
        assert started.status_code == 201, started.text
        here = await runtime.start(web_emitter, 1, namespace="default", idempotency_key="web-def")
        assert here.run_id == started.json()["run_id"]
        # A default that is not JSON (a tuple) is left to the function, which applies it.
        started = await client.post("/runs", json={"workflow": "web_defaults", "args": [1, "x", 3], "kwargs": {"y": 2}})
        assert started.status_code == 201, started.text
        assert await (await runtime.get_run(started.json()["run_id"])).result(timeout=20) == [1, "x", [3], (1, 2), {"y": 2}]
        for body, problem in [
            ({"workflow": "web_defaults", "args": []}, "missing a required argument: 'a'"),
            ({"workflow": "web_defaults", "args": [1], "kwargs": {"a": 2}}, "multiple values for argument 'a'"),
            ({"workflow": "web_waiter", "args": [1, 2]}, "too many positional arguments"),
            ({"workflow": "web_pickled", "args": [1]}, "serializer='pickle'"),
        ]:
            response = await client.post("/runs", json=body)
            assert response.status_code == 422, response.text
            assert problem in response.json()["error"]
        unknown = await client.post("/runs", json={"workflow": "web_nope"})
        assert unknown.status_code == 404
        assert web_waiter.name in unknown.json()["workflows"]
        assert not [r for r in await runtime.list_runs() if r.workflow_name in (web_pickled.name, "web_nope")]


async def test_lifespan_opens_and_closes_a_runtime() -> None:
    """Given a Runtime, the app's lifespan opens it (runs execute) and closes it on shutdown."""
    runtime = durable.Runtime("memory://")
    app = create_app(runtime, api_token="")
    async with app.router.lifespan_context(app), client_for(app) as client:
        run_id = await start_over_http(client, "web_emitter", 2)
        assert await (await runtime.get_run(run_id)).result(timeout=20) == {"written": 2}
    with pytest.raises(durable.StoreError):
        await runtime.store.list_runs()


async def test_create_app_refuses_other_objects() -> None:
    """create_app takes a Runtime or a Store, and says so."""
    with pytest.raises(TypeError, match="Runtime or a Store"):
        create_app(cast(Any, "memory://"))  # the wrong type on purpose


def test_importing_durable_does_not_import_the_web_stack() -> None:
    """`import durable` leaves starlette, sse_starlette, uvicorn, typer and rich unimported."""
    code = "import sys, durable; print(sorted(m for m in ('starlette','sse_starlette','uvicorn','typer','rich') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


# -- hostile and odd input: each case found by a review of the web API, each answered with a 4xx that
# names the problem (never a 500, never a run broken by what was let in) -----------------------------


@durable.workflow(name="web_input_echo")
async def web_input_echo(run_id: str, idempotency_key: str = "") -> list[str]:
    return [run_id, idempotency_key]


@durable.workflow(name="web_input_yields")
async def web_input_yields() -> AsyncIterator[object]:
    yield {"a": 1}
    yield "two"


@durable.step(name="web_input_surrogate_step")
async def web_input_surrogate_step(text: str) -> str:
    await durable.get_writable().write({"text": text})
    return text


@durable.workflow(name="web_input_surrogate")
async def web_input_surrogate(text: str) -> str:
    return await web_input_surrogate_step(text)


async def event_count(client: httpx.AsyncClient, run_id: str) -> int:
    return len((await client.get(f"/runs/{run_id}/events")).json()["events"])


async def test_lone_surrogates_and_deep_nesting_are_malformed_json(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """JSON may spell a lone surrogate ("\\ud800"); no store or response can hold one, so it is refused at the door."""
    run_id = await start_over_http(client, "web_waiter", "web-input-1")
    await wait_for_hook(runtime, "web-input-1")
    before = await event_count(client, run_id)
    for body in [b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b"[" * 100_000 + b"]" * 100_000]:
        response = await client.post("/hooks/web-input-1", content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("malformed JSON")
        response = await client.post("/runs", content=b'{"workflow": "web_waiter", "args": ["\\ud800"]}', headers=JSON)
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
    assert f"already exists for workflow {web_waiter.name!r}" in other.json()["error"]
    for run_id in [".", ".."]:  # path segments every client normalises away
        response = await client.post("/runs", json={"workflow": "web_emitter", "args": [1], "run_id": run_id})
        assert response.status_code == 422


async def test_indices_and_cursors_are_checked(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    run_id = await start_over_http(client, "web_emitter", 5)
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
    run_id = await start_over_http(client, "web_emitter", 2)
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
    run_id = await start_over_http(client, "web_typed_waiter", "web-input-typed")
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
        assert (await client.get("/runs", headers={b"authorization": "Bearer tök-✓".encode()})).status_code == 200
        assert (await client.get("/runs", headers={"authorization": "Bearer tok-v"})).status_code == 401
