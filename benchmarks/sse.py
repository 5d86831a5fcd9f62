"""SSE delivery: chunk write -> SSE event received, over loopback, to 1, 10 and 100 concurrent clients.

    python benchmarks/sse.py [--store URL] [--repeat 3] [--clients 1,10,100]

A real uvicorn server runs in a subprocess (this file with ``--serve``): a durable Runtime whose
step writes chunks, the durable web app, and two floor endpoints -- a trivial sse-starlette
endpoint that yields the same events itself, one per ``yield``, with no store behind it.
Clients in this process read with httpx. Chunks carry ``time.monotonic()`` from the writer
(CLOCK_MONOTONIC is one clock for every process on Linux), so latency = receive - write.

- latency: the step writes a chunk every 10 ms and flushes it; p50/p99 over every event at every client;
- throughput: the step writes N chunks as fast as it can (the writer batches); chunks/s delivered
  = N x clients / (time from the go signal to the last client's `event: end`).

Both run against the floor in the same run; medians of ``--repeat`` rounds. Nothing asserts on time.
Targets (issue 4): p50 <= 10 ms, >= 20,000 chunks/s delivered at 10 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

PACE = 0.010  # seconds between paced chunks
PACED_CHUNKS = 200
BURST = {1: 20_000, 10: 5_000, 100: 1_000}  # chunks written per round, by client count


# -- the server ----------------------------------------------------------------------------------


def build_app(store_url: str) -> Any:
    import anyio
    from sse_starlette import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Mount, Route

    import durable
    from durable.web import create_app

    @durable.step(name="bench_write")
    async def bench_write(n: int, pace: float) -> int:
        async with durable.get_writable() as writer:
            for i in range(n):
                await writer.write({"i": i, "t": time.monotonic()})
                if pace:
                    await writer.flush()
                    await anyio.sleep(pace)
        return n

    @durable.workflow(name="bench_stream")
    async def bench_stream(token: str, n: int, pace: float) -> int:
        await durable.create_hook(token=token)  # wait until every client is connected
        return await bench_write(n, pace)

    async def floor(request: Request) -> EventSourceResponse:
        n, pace = int(request.query_params["n"]), float(request.query_params["pace"])

        async def events() -> Any:
            for i in range(n):
                yield f"id: {i}\ndata: {json.dumps({'i': i, 't': time.monotonic()})}\n\n".encode()
                if pace:
                    await anyio.sleep(pace)
            yield b"event: end\ndata: {}\n\n"

        return EventSourceResponse(events(), sep="\n")

    runtime = durable.Runtime(store_url)
    app = Starlette(
        routes=[Route("/floor", floor), Mount("/", create_app(runtime, manage=False, api_token=""))],
        lifespan=lambda app: _open(runtime),
    )
    return app


def _open(runtime: Any) -> Any:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan() -> Any:
        async with runtime:
            yield

    return lifespan()


def serve(port: int, store_url: str) -> None:
    import uvicorn

    uvicorn.run(build_app(store_url), host="127.0.0.1", port=port, log_level="warning", lifespan="on")


# -- the clients ---------------------------------------------------------------------------------


async def read_stream(client: Any, url: str, latencies: list[float] | None) -> tuple[int, float]:
    """Read one SSE response to its `event: end`; return (chunk events, monotonic time of the end)."""
    count = 0
    buffer = b""
    async with client.stream("GET", url) as response:
        async for data in response.aiter_raw():
            now = time.monotonic()
            buffer += data
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                if block.startswith(b"event: end") or b"\nevent: end" in block:
                    return count, now
                start = block.find(b"data: ")
                if start < 0:
                    continue  # a ping
                count += 1
                if latencies is not None:
                    latencies.append(now - json.loads(block[start + 6 :])["t"])
    raise RuntimeError(f"{url}: stream ended without `event: end`")


async def durable_round(client: Any, clients: int, n: int, pace: float, latencies: list[float] | None) -> float:
    """Start a gated run, connect ``clients`` readers, open the gate; return seconds until all ended."""
    token = f"go-{time.monotonic_ns()}"
    response = await client.post("/runs", json={"workflow": "bench_stream", "args": [token, n, pace]})
    run_id = response.json()["run_id"]
    while not (await client.get(f"/runs/{run_id}")).json()["hooks"]:
        await asyncio.sleep(0.01)
    readers = [asyncio.create_task(read_stream(client, f"/runs/{run_id}/stream", latencies)) for _ in range(clients)]
    await asyncio.sleep(0.3 + clients * 0.005)  # every reader has its response open (nothing to read yet)
    began = time.monotonic()
    await client.post(f"/hooks/{token}", json=True)
    results = await asyncio.gather(*readers)
    assert all(count == n for count, _ in results), [count for count, _ in results]
    return max(end for _, end in results) - began


async def floor_round(client: Any, clients: int, n: int, pace: float, latencies: list[float] | None) -> float:
    began = time.monotonic()
    url = f"/floor?n={n}&pace={pace}"
    results = await asyncio.gather(*(read_stream(client, url, latencies) for _ in range(clients)))
    assert all(count == n for count, _ in results)
    return max(end for _, end in results) - began


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base: str, clients: int, repeat: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(120.0)) as client:
        out: dict[str, Any] = {}
        for name, round_ in (("durable", durable_round), ("floor", floor_round)):
            p50s, p99s, rates = [], [], []
            for _ in range(repeat):
                latencies: list[float] = []
                await round_(client, clients, PACED_CHUNKS, PACE, latencies)
                p50s.append(percentile(latencies, 0.50))
                p99s.append(percentile(latencies, 0.99))
                n = BURST.get(clients, 1_000)
                elapsed = await round_(client, clients, n, 0.0, None)
                rates.append(n * clients / elapsed)
            out[name] = {"p50": statistics.median(p50s), "p99": statistics.median(p99s), "rate": statistics.median(rates)}
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file, synchronous=normal)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{tmp}/bench.db?synchronous=normal"
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), store], cwd=os.path.dirname(os.path.abspath(__file__)))
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(base, server)
            print(f"SSE delivery over loopback, store {store.split('?')[0].rsplit('/', 1)[-1] if 'sqlite' in store else store}, "
                  f"median of {args.repeat} rounds; floor = trivial sse-starlette endpoint, same events, no store")
            print(f"latency: one chunk every {PACE * 1000:.0f} ms ({PACED_CHUNKS} chunks); throughput: a burst of chunks written at once\n")
            header = f"{'clients':>7} | {'p50 ms':>7} {'floor':>6} | {'p99 ms':>7} {'floor':>6} | {'chunks/s delivered':>18} {'floor':>9} {'ratio':>6}"
            print(header)
            print("-" * len(header))
            for clients in [int(c) for c in args.clients.split(",")]:
                result = asyncio.run(measure(base, clients, args.repeat))
                d, f = result["durable"], result["floor"]
                print(
                    f"{clients:>7} | {d['p50'] * 1000:7.2f} {f['p50'] * 1000:6.2f} | {d['p99'] * 1000:7.2f} {f['p99'] * 1000:6.2f} | "
                    f"{d['rate']:18,.0f} {f['rate']:9,.0f} {d['rate'] / f['rate']:5.2f}x",
                    flush=True,
                )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_for(base: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the benchmark server exited")
        try:
            httpx.get(base + "/workflows", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the benchmark server did not start")


if __name__ == "__main__":
    main()
