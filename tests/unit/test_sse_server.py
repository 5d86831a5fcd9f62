"""SSE against a real uvicorn server in a subprocess (``python -m durable serve``), read by real clients.

The server is started by ``running_server`` (tests/helpers.py), which test_browser.py uses too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.helpers import running_server, sqlite_store_url, start_over_http

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FLOWS = textwrap.dedent(
    '''
    """Workflows for the real-server tests; `app` adds a task counter beside the durable app."""
    import asyncio
    import os
    from contextlib import asynccontextmanager

    import anyio
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    import durable
    from durable.web import create_app


    @durable.step
    async def sse_write(start: int, n: int, delay: float) -> int:
        writer = durable.get_writable()  # not closed here: the stream closes when the run ends
        for i in range(start, start + n):
            await writer.write({"i": i, "text": f"<b>chunk {i}</b>"})
            await writer.flush()
            await anyio.sleep(delay)
        return n


    @durable.workflow
    async def sse_ticker(n: int, delay: float) -> int:
        return await sse_write(0, n, delay)


    @durable.workflow
    async def sse_paused(token: str) -> str:
        """Three chunks, a wait on a hook (the stream stays open), two more chunks."""
        await sse_write(0, 3, 0.0)
        await durable.create_hook(token=token)
        await sse_write(3, 2, 0.0)
        return "done"


    runtime = durable.Runtime(os.environ["DURABLE_STORE"], poll_interval=0.2)


    async def tasks(request):
        return JSONResponse({"tasks": len(asyncio.all_tasks())})


    @asynccontextmanager
    async def lifespan(app):
        async with runtime:
            yield


    app = Starlette(
        routes=[Route("/debug/tasks", tasks), Mount("/", app=create_app(runtime, manage=False, ping=0.2, api_token=""))],
        lifespan=lifespan,
    )
    '''
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with running_server(tmp_path, FLOWS, "flows:app") as running:
        yield running


@pytest.fixture
async def client(server: tuple[str, subprocess.Popen[bytes]]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[0], timeout=httpx.Timeout(10.0)) as c:
        yield c


async def read_events(client: httpx.AsyncClient, url: str, *, count: int | None = None, last_id: str | None = None) -> tuple[list[tuple[int, Any]], bool]:
    """Read up to ``count`` chunk events (all if None); return (index, data) pairs and whether `end` came."""
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    seen: list[tuple[int, Any]] = []
    async with aconnect_sse(client, "GET", url, headers=headers) as source:
        async for event in source.aiter_sse():
            if event.event == "message" and not event.data:
                continue  # a ping comment: httpx-sse yields it as an empty event, browsers do not
            if event.event == "end":
                assert json.loads(event.data) == {"error": None}
                return seen, True
            seen.append((int(event.id), json.loads(event.data)))
            if count is not None and len(seen) == count:
                return seen, False  # leaving the block closes the connection mid-stream
    return seen, False


async def test_a_client_that_disconnects_and_resumes_misses_nothing_and_sees_nothing_twice(client: httpx.AsyncClient) -> None:
    """Reading a live stream over three connections, each resumed with Last-Event-ID, yields every chunk exactly once."""
    run_id = await start_over_http(client, "sse_ticker", 60, 0.01)
    url = f"/runs/{run_id}/stream"
    first, ended = await read_events(client, url, count=10)
    assert not ended
    second, ended = await read_events(client, url, count=25, last_id=str(first[-1][0]))
    assert not ended
    rest, ended = await read_events(client, url, last_id=str(second[-1][0]))
    assert ended
    seen = first + second + rest
    assert [index for index, _ in seen] == list(range(60))
    assert [data for _, data in seen] == [{"i": i, "text": f"<b>chunk {i}</b>"} for i in range(60)]


async def test_chunks_arrive_live_and_resume_after_a_pause(client: httpx.AsyncClient) -> None:
    """Chunks reach SSE and NDJSON readers while the run waits; after a disconnect, Last-Event-ID picks up the rest."""
    run_id = await start_over_http(client, "sse_paused", "sse-pause-1")
    url = f"/runs/{run_id}/stream"
    with anyio.fail_after(20):
        first, ended = await read_events(client, url, count=3)
    assert ([i for i, _ in first], ended) == ([0, 1, 2], False)
    assert (await client.get(f"/runs/{run_id}")).json()["status"] == "running"  # the stream is live, not replayed

    lines: list[dict[str, Any]] = []
    async with client.stream("GET", url, headers={"Accept": "application/x-ndjson"}) as response:
        iterator = response.aiter_lines()
        with anyio.fail_after(20):
            while len(lines) < 3:
                lines.append(json.loads(await anext(iterator)))
            assert (await client.post("/hooks/sse-pause-1", json={"go": True})).status_code == 202
            async for line in iterator:
                lines.append(json.loads(line))
    assert [line.get("index") for line in lines] == [0, 1, 2, 3, 4, None]
    assert lines[-1] == {"end": True, "error": None}

    with anyio.fail_after(20):
        rest, ended = await read_events(client, url, last_id="2")
    assert ([i for i, _ in rest], ended) == ([3, 4], True)


async def test_live_feeds_send_the_runs_list_and_a_run_as_they_change(client: httpx.AsyncClient) -> None:
    """/live/runs re-sends the page of runs when a run starts or ends; /live/runs/{id} sends the run until `event: end`."""
    async with aconnect_sse(client, "GET", "/live/runs") as source:
        events = source.aiter_sse()
        with anyio.fail_after(20):
            first = await anext(events)
            assert (first.event, json.loads(first.data)) == ("runs", {"runs": [], "next_cursor": None})
            run_id = await start_over_http(client, "sse_paused", "sse-live-1")
            statuses: list[str] = []
            async for event in events:
                if event.event == "runs":
                    runs = json.loads(event.data)["runs"]
                    assert [r["run_id"] for r in runs] == [run_id]
                    statuses.append(runs[0]["status"])
                    if statuses[-1] == "running":
                        break
    details: list[dict[str, Any]] = []
    resumed = False
    async with aconnect_sse(client, "GET", f"/live/runs/{run_id}") as source:
        with anyio.fail_after(20):
            async for event in source.aiter_sse():
                if event.event == "run":
                    details.append(json.loads(event.data))
                    if not resumed and [h["status"] for h in details[-1]["hooks"]] == ["active"]:
                        resumed = (await client.post("/hooks/sse-live-1", json=1)).status_code == 202
                elif event.event == "end":
                    break
    assert resumed
    assert details[-1]["status"] == "completed"
    assert [s["status"] for s in details[-1]["steps"]] == ["completed", "completed"]
    assert details[-1]["hooks"][0]["status"] == "disposed"


async def test_idle_streams_get_keep_alive_pings(client: httpx.AsyncClient) -> None:
    """A stream with nothing to send still gets comment lines (pings) at the configured interval."""
    run_id = await start_over_http(client, "sse_paused", "sse-ping-1")
    comments = 0
    async with client.stream("GET", f"/runs/{run_id}/streams/quiet") as response:
        with anyio.fail_after(10):
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    comments += 1
                    if comments == 2:
                        break
    assert comments == 2
    await client.post(f"/runs/{run_id}/cancel")


async def task_count(client: httpx.AsyncClient) -> int:
    count: int = (await client.get("/debug/tasks")).json()["tasks"]
    return count


async def test_disconnected_clients_leave_no_tasks_behind(client: httpx.AsyncClient, server: tuple[str, Any]) -> None:
    """Twenty open followers (streams, NDJSON, live feeds) add tasks; once their clients leave, the server is back to its baseline."""
    run_id = await start_over_http(client, "sse_paused", "sse-leak-1")
    with anyio.fail_after(20):
        await read_events(client, f"/runs/{run_id}/stream", count=3)
        while not (await client.get(f"/runs/{run_id}")).json()["hooks"]:
            await anyio.sleep(0.02)
    await anyio.sleep(0.3)  # the run is parked on its hook: only the runtime's own loops are left
    baseline = await task_count(client)
    ndjson = {"Accept": "application/x-ndjson"}
    followed = [
        (f"/runs/{run_id}/stream", {}), (f"/runs/{run_id}/stream", ndjson), (f"/runs/{run_id}/streams/idle", {}),
        ("/live/runs", {}), (f"/live/runs/{run_id}", {}),
    ] * 4
    async with httpx.AsyncClient(base_url=server[0], timeout=10) as followers:
        responses = []
        for path, headers in followed:
            response = await followers.send(followers.build_request("GET", path, headers=headers), stream=True)
            assert response.status_code == 200
            responses.append(response)
        for response in responses:
            with anyio.fail_after(10):
                await anext(response.aiter_raw())  # each follower is really streaming
        assert await task_count(client) > baseline
        for response in responses:
            await response.aclose()
    with anyio.fail_after(10):
        while await task_count(client) > baseline:
            await anyio.sleep(0.05)


async def test_the_server_stops_promptly_with_streams_open(client: httpx.AsyncClient, server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM ends open SSE responses and the server exits cleanly within seconds."""
    run_id = await start_over_http(client, "sse_paused", "sse-stop-1")
    async with httpx.AsyncClient(base_url=server[0], timeout=10) as followers:
        responses = [await followers.send(followers.build_request("GET", f"/runs/{run_id}/stream"), stream=True) for _ in range(5)]
        for response in responses:
            with anyio.fail_after(10):
                await anext(response.aiter_raw())
        process = server[1]
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            while process.poll() is None:
                await anyio.sleep(0.05)
        assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        assert time.monotonic() - began < 8
        for response in responses:
            await response.aclose()


WEBHOOK_FLOWS = textwrap.dedent(
    """
    import durable


    @durable.workflow
    async def sse_webhook_flow() -> str:
        webhook = durable.create_webhook(respond_with=durable.Response(text="thanks", status=200))
        await durable.get_writable().write(webhook.url)  # a recorded write from the workflow itself
        request = await webhook
        return request.text()
    """
)


async def test_serving_a_module_gives_webhooks_absolute_urls_that_work(tmp_path: Path) -> None:
    """`durable serve --app module` runs its workflows; a webhook's URL names this server and answers over HTTP."""
    with running_server(tmp_path, WEBHOOK_FLOWS, "whflows", module="whflows") as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            run_id = await start_over_http(client, "sse_webhook_flow")
            with anyio.fail_after(20):
                (_, url), = (await read_events(client, f"/runs/{run_id}/stream", count=1))[0]
            assert url.startswith(base + "/.well-known/workflow/v1/webhook/")
            answer = await client.post(url, content=b"hello")
            assert (answer.status_code, answer.text) == (200, "thanks")
            with anyio.fail_after(20):
                while (detail := (await client.get(f"/runs/{run_id}")).json())["status"] != "completed":
                    await anyio.sleep(0.05)
            assert detail["result"] == "hello"


PUBLISHED_FLOWS = textwrap.dedent(
    """
    import durable


    @durable.step
    async def sse_published_double(x: int) -> int:
        return 2 * x


    @durable.workflow
    async def sse_published(x: int, plus: int = 1) -> int:
        return await sse_published_double(x) + plus
    """
)


async def test_a_store_only_server_starts_runs_that_a_separate_worker_executes(tmp_path: Path) -> None:
    """`durable serve` without --app lists and starts the workflows a `durable worker` published in the store; the worker runs them."""
    with running_server(tmp_path, PUBLISHED_FLOWS, None, module="pubflows") as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/workflows")).json() == {"can_start": False, "workflows": [], "definitions": []}
            assert (await client.get("/runs")).json() == {"runs": [], "next_cursor": None}
            assert (await client.post("/runs", json={"workflow": "pubflows:sse_published"})).status_code == 503
            env = {**os.environ, "DURABLE_STORE": sqlite_store_url(tmp_path / "server.db")}
            async with await anyio.open_process(
                [sys.executable, "-m", "durable", "worker", "--app", "pubflows"], cwd=tmp_path, env=env
            ) as worker:
                try:
                    with anyio.fail_after(30):
                        while not (listed := (await client.get("/workflows")).json())["workflows"]:
                            await anyio.sleep(0.05)
                    assert listed["workflows"] == ["pubflows:sse_published"]
                    assert [p["name"] for p in listed["definitions"][0]["parameters"]] == ["x", "plus"]
                    refused = await client.post("/runs", json={"workflow": "sse_published", "args": ["a", 1, 2]})
                    assert refused.status_code == 422
                    assert "too many positional arguments" in refused.json()["error"]
                    run_id = await start_over_http(client, "sse_published", 20)  # a bare name works too
                    with anyio.fail_after(30):
                        while (detail := (await client.get(f"/runs/{run_id}")).json())["status"] != "completed":
                            await anyio.sleep(0.05)
                    assert (detail["workflow"], detail["result"]) == ("pubflows:sse_published", 41)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    with anyio.fail_after(15):
                        await worker.wait()
