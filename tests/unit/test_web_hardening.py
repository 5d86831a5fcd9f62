"""The web app against hostile or careless clients, on a real uvicorn server (``durable serve``):
the API token never reaches a log, and slow webhook uploads cannot hold the server.

Raw sockets play the slow clients: httpx always sends a whole body at once.
"""

from __future__ import annotations

import json
import secrets
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from httpx_sse import aconnect_sse

from tests.helpers import running_server, start_over_http

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FLOWS = textwrap.dedent(
    """
    import os

    import durable
    from durable.web import create_app


    @durable.step
    async def hard_write(n: int) -> int:
        writer = durable.get_writable()
        for i in range(n):
            await writer.write({"i": i})
        return n


    @durable.workflow
    async def hard_flow(n: int) -> int:
        return await hard_write(n)


    @durable.workflow
    async def hard_webhook(token: str) -> str:
        request = await durable.create_webhook(token=token)
        return request.text()


    runtime = durable.Runtime(os.environ["DURABLE_STORE"], poll_interval=0.2)
    app = create_app(runtime, api_token="", body_timeout=1.0, max_webhook_bodies=2, max_body=1000)
    """
)


def log_lines(directory: Path) -> list[str]:
    return (directory / "server.log").read_text().splitlines()


async def test_the_api_token_appears_in_no_log_line(tmp_path: Path) -> None:
    """Page, login, cookie-fed live feeds and bearer API calls: the access log records them all, and never the token."""
    token = "tok-" + secrets.token_urlsafe(24)
    with running_server(tmp_path, FLOWS, "hardflows", module="hardflows", env={"DURABLE_API_TOKEN": token}) as (base, _):
        bearer = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:
            started = await api.post("/runs", json={"workflow": "hard_flow", "args": [3]}, headers=bearer)
            assert started.status_code == 201, started.text
            run_id = started.json()["run_id"]
            assert (await api.get(f"/runs/{run_id}", headers=bearer)).status_code == 200
            assert (await api.get("/runs")).status_code == 401
        async with httpx.AsyncClient(base_url=base, timeout=10) as page:  # what the page does, as a browser would
            assert (await page.get("/")).status_code == 200
            assert (await page.get("/static/app.js")).status_code == 200
            login = await page.post("/login", json={"token": token}, headers={"Origin": base})
            assert login.status_code == 200
            assert token not in login.headers["set-cookie"]
            with anyio.fail_after(20):
                async with aconnect_sse(page, "GET", f"/runs/{run_id}/stream") as source:
                    chunks = [json.loads(e.data) async for e in source.aiter_sse() if e.event == "message" and e.data]
                async with aconnect_sse(page, "GET", "/live/runs") as source:
                    async for event in source.aiter_sse():
                        if event.event == "runs":
                            break
            assert chunks == [{"i": 0}, {"i": 1}, {"i": 2}]
            assert (await page.get("/workflows")).status_code == 200
    lines = log_lines(tmp_path)
    assert not [line for line in lines if token in line]
    # The access log was on and saw the requests that carried the token (header, body, cookie).
    for request in ['"POST /runs HTTP/1.1" 201', '"POST /login HTTP/1.1" 200', f'"GET /runs/{run_id}/stream HTTP/1.1" 200',
                    '"GET /live/runs HTTP/1.1" 200']:
        assert any(request in line for line in lines), request
    assert not any("durable: runs page at" in line and "token=" in line for line in lines)  # serve printed no link with it


# -- slow webhook bodies -------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, FLOWS, "hardflows:app", module="hardflows") as (base, _):
        yield base


async def upload(base: str, token: str, length: int, body: bytes = b"") -> SocketStream:
    """Open a raw connection and send a webhook request's head (announcing ``length`` bytes) and ``body``."""
    address = urlsplit(base)
    assert address.hostname is not None and address.port is not None
    stream = await anyio.connect_tcp(address.hostname, address.port)
    head = (
        f"POST /.well-known/workflow/v1/webhook/{token} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
    )
    await stream.send(head.encode() + body)
    return stream


async def answer(stream: SocketStream, timeout: float = 10) -> int:
    """The status code the server answered with; it must then close the connection (TimeoutError if it does not)."""
    data = b""
    with anyio.fail_after(timeout):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return int(data.split(b" ", 2)[1])


async def test_slow_webhook_uploads_are_refused_timed_out_and_capped(server: str, tmp_path: Path) -> None:
    """A made-up token is 404 before the body arrives; a trickled body is 408; a third concurrent body is 503; aborts log one line."""
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        run_id = await start_over_http(client, "hard_webhook", "hard-hook")
        with anyio.fail_after(20):
            while not (await client.get(f"/runs/{run_id}")).json()["hooks"]:
                await anyio.sleep(0.02)

        began = time.monotonic()
        made_up = await upload(server, "made-up-token", 10**6)  # no body sent at all
        assert await answer(made_up, timeout=5) == 404
        too_big = await upload(server, "hard-hook", 10**6)
        assert await answer(too_big, timeout=5) == 413
        assert time.monotonic() - began < 5  # answered without waiting for bodies that never come

        slow = [await upload(server, "hard-hook", 100, b"x") for _ in range(2)]
        await anyio.sleep(0.3)  # both are being read now
        third = await upload(server, "hard-hook", 100, b"x")
        assert await answer(third, timeout=5) == 503
        for stream in slow:  # trickling does not help: the body has a time budget, not a per-byte one
            for _ in range(3):
                await stream.send(b"x")
                await anyio.sleep(0.1)
        for stream in slow:
            assert await answer(stream, timeout=5) == 408

        aborted = await upload(server, "hard-hook", 100, b"partial")
        await anyio.sleep(0.3)
        await aborted.aclose()  # the client gives up mid-body

        for stream in [made_up, too_big, third, *slow]:
            await stream.aclose()
        delivered = await client.post("/.well-known/workflow/v1/webhook/hard-hook", content=b"whole")
        assert delivered.status_code == 202  # the slots are free again
        with anyio.fail_after(20):
            while (detail := (await client.get(f"/runs/{run_id}")).json())["status"] != "completed":
                await anyio.sleep(0.05)
        assert detail["result"] == "whole"
    lines = log_lines(tmp_path)
    assert len([line for line in lines if "went away before sending its whole body" in line]) == 1
    assert len([line for line in lines if "did not arrive within 1s" in line]) == 2
    assert not [line for line in lines if "Traceback" in line or "ERROR" in line], lines
