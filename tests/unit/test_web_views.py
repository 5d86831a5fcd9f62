"""What the runs page reads from the API: searched and paged lists, a run's input and timeline, what it
waits for, one step in full, what a hook expects and received, and who may read tracebacks.

Through httpx's ASGI transport, over every store backend. The request's host is the server's address
here: ``http://testserver`` is a server on no loopback address, ``http://127.0.0.1`` one on loopback.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest

import durable
from durable.web import _listing, create_app
from tests.helpers import start_over_http, wait_for_hook

pytestmark = pytest.mark.anyio
attempts_seen: dict[str, int] = {}


@durable.step(max_retries=2, retry_delay=0.05)
async def views_flaky(key: str) -> dict[str, str]:
    attempts_seen[key] = attempts_seen.get(key, 0) + 1
    if attempts_seen[key] == 1:
        raise ConnectionError(f"first try of {key} fails")
    return {"key": key}


@durable.workflow
async def views_sleepy(key: str, seconds: float) -> str:
    await views_flaky(key)
    await durable.sleep(seconds)
    return "woke"


@durable.workflow
async def views_quick(n: int) -> int:
    return n


@durable.step(max_retries=0)
async def views_broken() -> None:
    raise ValueError("views broke")


@durable.workflow
async def views_failing() -> None:
    await views_broken()


@durable.workflow
async def views_dated(when: datetime) -> str:
    return when.isoformat()


@dataclass
class Verdict:
    approved: bool
    reviewers: list[str]
    note: str = ""


verdict_hook: durable.HookDefinition[Verdict] = durable.define_hook(schema=Verdict, name="views-verdict")


@durable.workflow
async def views_reviewed(token: str) -> bool:
    verdict = await verdict_hook.create(token=token)
    return verdict.approved


def client_for(app: Any, base: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@pytest.fixture
async def client(runtime: durable.Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(runtime, manage=False, api_token="")) as c:
        yield c


async def ended(runtime: durable.Runtime, run_id: str) -> None:
    await (await runtime.get_run(run_id)).wait(timeout=20)


# -- the list ------------------------------------------------------------------------------------


async def test_runs_are_found_by_run_id_prefix_and_creation_time(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /runs?id_prefix= finds runs whose id starts so; created_after/created_before (ISO 8601 or epoch seconds)
    bound their creation time; a time that is neither is 400 naming the parameter."""
    ids = [await start_over_http(client, "views_quick", i) for i in range(3)]
    for run_id in ids:
        await ended(runtime, run_id)
    found = (await client.get("/runs", params={"id_prefix": ids[1]})).json()
    assert ([r["run_id"] for r in found["runs"]], found["next_cursor"]) == ([ids[1]], None)
    assert (await client.get("/runs", params={"id_prefix": "nope_"})).json()["runs"] == []
    records = {r.run_id: r for r in await runtime.store.list_runs(limit=10)}
    middle = records[ids[1]].created_at
    after = (await client.get("/runs", params={"created_after": str(middle)})).json()["runs"]
    assert [r["run_id"] for r in after] == [ids[2], ids[1]]  # inclusive, newest first
    between = (records[ids[0]].created_at + middle) / 2  # an ISO time holds microseconds: not exactly `middle`
    before_iso = datetime.fromtimestamp(between, UTC).isoformat().replace("+00:00", "Z")
    before = (await client.get("/runs", params={"created_before": before_iso})).json()["runs"]
    assert [r["run_id"] for r in before] == [ids[0]]
    exclusive = (await client.get("/runs", params={"created_before": str(middle)})).json()["runs"]
    assert [r["run_id"] for r in exclusive] == [ids[0]]
    future = (await client.get("/runs", params={"created_after": "2999-01-01T00:00:00"})).json()
    assert (future["runs"], future["next_cursor"]) == ([], None)
    for params in [{"created_after": "yesterday"}, {"created_before": "2025-13-01"}, {"id_prefix": "x" * 201}]:
        response = await client.get("/runs", params=params)
        assert response.status_code == 400, params
        assert next(iter(params)) in response.json()["error"]
    assert (await client.get("/live/runs", params={"created_after": "soon"})).status_code == 400  # before any stream


async def test_a_search_looks_at_a_bounded_number_of_runs_and_its_cursor_carries_on(
    client: httpx.AsyncClient, runtime: durable.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filters applied by the server look at SCAN_BUDGET runs per page at most; a page can then hold fewer runs
    than its limit and still name a next cursor, and following the cursors finds every match exactly once."""
    monkeypatch.setattr(_listing, "SCAN_BUDGET", 3)
    monkeypatch.setattr(_listing, "SCAN_BATCH", 2)
    ids = [await start_over_http(client, "views_quick", i) for i in range(7)]
    for run_id in ids:
        await ended(runtime, run_id)
    oldest = ids[0]
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = (await client.get("/runs", params={"id_prefix": oldest, "cursor": cursor, "limit": 5})).json()
        pages.append(page)
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [len(p["runs"]) for p in pages] == [0, 0, 1]  # 3 + 3 + 1 runs looked at
    assert [p["searched"] for p in pages] == [3, 3, 1]
    assert pages[-1]["runs"][0]["run_id"] == oldest
    everything: list[str] = []
    cursor = ""
    while True:
        page = (await client.get("/runs", params={"id_prefix": "run_", "cursor": cursor, "limit": 2})).json()
        assert len(page["runs"]) <= 2 and page["searched"] <= 3
        everything += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert everything == ids[::-1]


# -- one run -------------------------------------------------------------------------------------


async def test_a_sleeping_run_shows_its_timeline_input_and_timer_deadline(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /runs/{id} of a sleeping run: its input (exact JSON), a timeline lane per step attempt and per sleep, and
    what it waits for: the timer, until its deadline."""
    run_id = await start_over_http(client, "views_sleepy", f"sleepy-{time.time()}", 3600)
    run = await runtime.get_run(run_id)

    with anyio.fail_after(20):
        while True:
            found = (await client.get(f"/runs/{run_id}")).json()
            if any(w["kind"] == "timer" for w in found["waiting_for"]):
                break
            await anyio.sleep(0.02)
    assert found["input"]["exact"] is True and found["input"]["args"][1] == 3600
    step, timer = found["timeline"]["lanes"]
    assert (step["kind"], step["name"], step["status"]) == ("step", views_flaky.name, "completed")
    assert [(a["attempt"], a["outcome"]) for a in step["attempts"]] == [(1, "retrying"), (2, "completed")]
    assert step["attempts"][0]["error"]["type"] == "ConnectionError" and step["attempts"][0]["retry_at"]
    assert "traceback" not in step["attempts"][0]["error"]  # the waterfall never carries them
    assert (timer["kind"], timer["status"], timer["ended_at"]) == ("timer", "waiting", None)
    assert len(found["waiting_for"]) == 1, found["waiting_for"]
    [waiting] = found["waiting_for"]
    assert (waiting["kind"], waiting["until"]) == ("timer", timer["until"])
    slept_at = datetime.fromisoformat(timer["created_at"]).timestamp()
    assert abs(datetime.fromisoformat(timer["until"]).timestamp() - (slept_at + 3600)) < 5
    await run.cancel()
    after = (await client.get(f"/runs/{run_id}")).json()
    assert (after["waiting_for"], after["timeline"]["lanes"][1]["status"]) == ([], "cancelled")
    assert after["timeline"]["ended_at"] is not None


async def test_an_input_json_cannot_carry_exactly_is_not_offered_as_exact(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """A run started with a datetime shows its input in plain form, marked not exact (a new start from it would differ)."""
    run = await runtime.start(views_dated, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    await run.wait(timeout=20)
    found = (await client.get(f"/runs/{run.run_id}")).json()
    assert found["input"] == {"args": ["2025-01-02T03:04:05+00:00"], "kwargs": {}, "exact": False}


async def test_a_step_is_shown_with_its_arguments_result_and_every_attempt(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /runs/{id}/steps/{step_id}: arguments, result, timings and each attempt with how it ended; 404 for a step
    or run that does not exist."""
    key = f"step-{time.time()}"
    run_id = await start_over_http(client, "views_sleepy", key, 0.01)
    await ended(runtime, run_id)
    step = (await client.get(f"/runs/{run_id}/steps/step_1")).json()
    assert (step["name"], step["status"], step["arguments"], step["result"]) == (
        views_flaky.name, "completed", {"args": [key], "kwargs": {}}, {"key": key},
    )
    assert step["queued"] >= 0 and step["duration"] >= 0
    first, second = step["attempt_history"]
    assert (first["outcome"], first["error"]["message"], second["outcome"], second["error"]) == (
        "retrying", f"first try of {key} fails", "completed", None,
    )
    assert first["duration"] >= 0 and datetime.fromisoformat(second["started_at"]) >= datetime.fromisoformat(first["ended_at"])
    missing = await client.get(f"/runs/{run_id}/steps/step_9")
    assert (missing.status_code, missing.json()["error"]) == (404, f"run {run_id!r} has no step 'step_9'")
    assert (await client.get("/runs/run_nope/steps/step_1")).status_code == 404


async def test_tracebacks_are_shown_to_token_holders_and_on_loopback_only(runtime: durable.Runtime) -> None:
    """Recorded tracebacks come with a step's and a run's error when the app has a token, or listens on loopback;
    a server without a token on another address never sends them, and lists never do."""
    app = create_app(runtime, manage=False, api_token="")
    async with client_for(app) as public:
        run_id = await start_over_http(public, "views_failing")
        await ended(runtime, run_id)
        assert "traceback" not in (await public.get(f"/runs/{run_id}")).json()["error"]
        assert "traceback" not in (await public.get(f"/runs/{run_id}/steps/step_1")).json()["error"]
    token = "views-token"
    protected = create_app(runtime, manage=False, api_token=token)
    local = client_for(app, "http://127.0.0.1:8000")
    holder = client_for(protected)
    holder.headers["Authorization"] = f"Bearer {token}"
    for reader in (local, holder):
        async with reader:
            run = (await reader.get(f"/runs/{run_id}")).json()
            step = (await reader.get(f"/runs/{run_id}/steps/step_1")).json()
            assert "ValueError: views broke" in run["error"]["traceback"]
            assert "views_broken" in step["error"]["traceback"]
            assert "views_broken" in step["attempt_history"][0]["error"]["traceback"]
            listed = (await reader.get("/runs", params={"id_prefix": run_id})).json()["runs"]
            assert listed[0]["error"] == {"type": "ValueError", "message": "views broke"}


async def test_a_typed_hook_says_what_it_expects_and_shows_what_it_received(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """A typed hook in a run's detail carries its JSON Schema and an example payload that passes its validation;
    once resumed it lists the payload it received, as recorded."""
    token = f"views-verdict-{time.time()}"
    run_id = await start_over_http(client, "views_reviewed", token)
    await wait_for_hook(runtime, token)
    [hook] = (await client.get(f"/runs/{run_id}")).json()["hooks"]
    expected = hook["expected"]
    assert expected["known"] is True
    assert expected["json_schema"]["required"] == ["approved", "reviewers"]
    assert expected["json_schema"]["properties"]["reviewers"] == {"type": "array", "items": {"type": "string"}}
    assert expected["example"] == {"approved": False, "reviewers": []}
    assert hook["received"] == []
    assert (await client.post(f"/hooks/{token}", json=expected["example"])).status_code == 202
    await ended(runtime, run_id)
    [hook] = (await client.get(f"/runs/{run_id}")).json()["hooks"]
    [received] = hook["received"]
    assert received["payload"] == {"approved": False, "reviewers": [], "note": ""}  # as validated and recorded
    lanes = (await client.get(f"/runs/{run_id}")).json()["timeline"]["lanes"]
    assert [(lane["kind"], lane["status"], lane["received"]) for lane in lanes] == [("hook", "received", [received["at"]])]


async def test_the_event_log_pages_with_a_limit(client: httpx.AsyncClient, runtime: durable.Runtime) -> None:
    """GET /runs/{id}/events?limit= returns that many events and says whether more follow."""
    run_id = await start_over_http(client, "views_quick", 1)
    await ended(runtime, run_id)
    everything = (await client.get(f"/runs/{run_id}/events")).json()
    assert everything["more"] is False
    first = (await client.get(f"/runs/{run_id}/events", params={"limit": 2})).json()
    rest = (await client.get(f"/runs/{run_id}/events", params={"after": 2, "limit": 100})).json()
    assert (first["more"], rest["more"]) == (True, False)
    assert first["events"] + rest["events"] == everything["events"]
