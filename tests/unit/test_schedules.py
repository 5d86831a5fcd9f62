"""Schedules on every store: ticks kept in the store, one run per tick across runtimes, catch-up, overlap, steering."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

import durable
from durable._worker.scheduler import Scheduler
from durable.stores import store_from_url

pytestmark = pytest.mark.anyio

seen: list[Any] = []


@durable.workflow
async def report(kind: str) -> dict[str, Any]:
    meta = durable.get_workflow_metadata()
    return {"kind": kind, "scheduled_at": meta.scheduled_at.timestamp() if meta.scheduled_at else None}


@durable.workflow
async def held(token: str) -> Any:
    return await durable.create_hook(token=token)


def test_bad_definitions_are_refused_with_what_to_write() -> None:
    """A bad cron string, an unknown time zone or overlap policy, and neither or both of cron/every are refused."""
    with pytest.raises(ValueError, match=r"cannot read cron '61 \* \* \* \*'.*write five fields"):
        durable.schedule("bad", report, cron="61 * * * *", args=("x",))
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'; use an IANA name such as 'UTC'"):
        durable.schedule("bad", report, cron="0 3 * * *", timezone="Mars/Olympus", args=("x",))
    with pytest.raises(ValueError, match=r"overlap must be 'skip'.*'buffer_one'.*'allow_all'"):
        durable.schedule("bad", report, every="1m", overlap="queue", args=("x",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one of cron="):
        durable.schedule("bad", report, args=("x",))
    with pytest.raises(ValueError, match="every must be a positive duration"):
        durable.schedule("bad", report, every=0, args=("x",))
    with pytest.raises(TypeError, match="report"):
        durable.schedule("bad", report, every="1m")  # the workflow's arguments are bound at definition


def test_cron_ticks_follow_the_time_zone_across_dst() -> None:
    """'0 3 * * *' in Europe/Paris ticks at 03:00 local time, before and after the spring change (01:00 / 02:00 UTC)."""
    s = durable.schedule("paris", report, cron="0 3 * * *", timezone="Europe/Paris", args=("x",))
    start = datetime(2026, 3, 27, 12, 0, tzinfo=UTC).timestamp()
    ticks = s.ticks(start)
    first, second, third = (datetime.fromtimestamp(next(ticks), UTC) for _ in range(3))
    assert [t.hour for t in (first, second, third)] == [2, 1, 1]  # UTC+1 on the 28th, UTC+2 after the 29th
    every = durable.schedule("every", report, every="15m", args=("x",))
    assert every.next_tick(900.0) == 1800.0 and every.next_tick(899.0) == 900.0


def test_due_splits_catch_up_from_skipped_ticks() -> None:
    """Missed ticks inside the catch-up window run (oldest first); older ones are counted as skipped."""
    s = durable.schedule("due", report, every="10s", catchup_window="25s", args=("x",))
    fire, skipped, next_at = s.due(100.0, 200.0)
    assert fire == [180.0, 190.0, 200.0] and skipped == 8 and next_at == 210.0


async def test_ticks_start_runs_that_read_their_scheduled_at(store_url: str) -> None:
    """An every= schedule starts a run per tick; each run's id is derived from the tick and it reads scheduled_at."""
    s = durable.schedule("every-200ms", report, every="200ms", args=("daily",), overlap="allow_all")
    async with durable.Runtime(store_url, schedules=[s], poll_interval=0.05) as rt:
        with anyio.fail_after(20):
            while len([r for r in await rt.list_runs() if r.status == "completed"]) < 3:
                await anyio.sleep(0.05)
        runs = [r for r in await rt.list_runs() if r.schedule == "every-200ms"]
        for info in runs:
            assert info.scheduled_at is not None and info.run_id == s.run_id(info.scheduled_at.timestamp())
        done = [r for r in runs if r.status == "completed"]
        result = await rt.run(done[0].run_id).result()
        assert result == {"kind": "daily", "scheduled_at": done[0].scheduled_at.timestamp()}  # type: ignore[union-attr]
        (sched,) = await rt.list_schedules()
        assert (sched.name, sched.workflow_name, sched.every, sched.overlap, sched.paused) == (
            "every-200ms", report.name, 0.2, "allow_all", False
        )


async def test_two_schedulers_serving_one_schedule_start_each_tick_once(store_url: str) -> None:
    """Two schedulers (each on its own connection to the store where it can have one) fire the same ticks at once:
    every tick has exactly one run, and none is missing."""
    s = durable.schedule("shared", report, every="10s", args=("x",), overlap="allow_all")
    async with durable.Runtime(store_url, workflows=[report], poll_interval=0.05) as rt:
        other = rt.store if store_url == "memory://" else store_from_url(store_url)
        if other is not rt.store:
            await other.open()
        try:
            first, second = Scheduler(rt.store, [s], poll_interval=0.05), Scheduler(other, [s], poll_interval=0.05)
            await first.register()
            await second.register()
            start = (await rt.list_schedules())[0].next_at.timestamp()
            for k in range(8):
                await asyncio.gather(first.tick_once(now=start + 10.0 * k), second.tick_once(now=start + 10.0 * k))
        finally:
            if other is not rt.store:
                await other.aclose()
        runs = [r for r in await rt.list_runs(limit=1000) if r.schedule == "shared"]
    ticks = sorted(r.scheduled_at.timestamp() - start for r in runs if r.scheduled_at is not None)
    assert ticks == [10.0 * k for k in range(8)]


async def test_downtime_catches_up_inside_the_window_and_counts_the_rest(store_url: str) -> None:
    """After a gap, missed ticks inside catchup_window each start one run (oldest first); older ones are skipped."""
    s = durable.schedule("catchup", report, every="10s", catchup_window="35s", args=("x",), overlap="allow_all")
    async with durable.Runtime(store_url, workflows=[report], poll_interval=0.05) as rt:
        scheduler = Scheduler(rt.store, [s], poll_interval=0.05)
        await scheduler.register()
        (before,) = await rt.list_schedules()
        start = before.next_at.timestamp()
        await scheduler.tick_once(now=start + 100.0)  # "down" for 100 s: ticks start .. start+100
        (after,) = await rt.list_schedules()
        runs = sorted((r for r in await rt.list_runs(limit=100) if r.schedule == "catchup"), key=lambda r: r.run_id)
        assert [r.scheduled_at.timestamp() - start for r in runs if r.scheduled_at] == [70.0, 80.0, 90.0, 100.0]
        assert after.skipped == 7 and after.next_at.timestamp() == start + 110.0
        await scheduler.tick_once(now=start + 100.0)  # the same moment again: nothing new
        assert len([r for r in await rt.list_runs(limit=100) if r.schedule == "catchup"]) == 4


async def test_overlap_skip_and_buffer_one(store_url: str) -> None:
    """skip: a tick while the last run is unfinished starts nothing; buffer_one: one tick waits and starts after it."""
    skip = durable.schedule("o-skip", held, every="10s", args=("o-skip",), overlap="skip")
    buffer = durable.schedule("o-buffer", held, every="10s", args=("o-buffer",), overlap="buffer_one")
    async with durable.Runtime(store_url, workflows=[held], poll_interval=0.05) as rt:
        scheduler = Scheduler(rt.store, [skip, buffer], poll_interval=0.05)
        await scheduler.register(now=time.time() - 1000)  # ticks in the past: their runs are due at once
        base = {s.name: s.next_at.timestamp() for s in await rt.list_schedules()}
        for k in range(3):  # three ticks while the first run waits for its hook
            await scheduler.tick_once(now=max(base.values()) + 10.0 * k)
        runs = {name: [r for r in await rt.list_runs(limit=100) if r.schedule == name] for name in base}
        assert len(runs["o-skip"]) == 1 and len(runs["o-buffer"]) == 1
        infos = {s.name: s for s in await rt.list_schedules()}
        assert infos["o-skip"].skipped >= 2 and infos["o-buffer"].buffered_at is not None
        with anyio.fail_after(10):
            while await rt.store.get_hook("o-buffer") is None:
                await anyio.sleep(0.02)
        await rt.resume_hook("o-buffer", "first done")
        await rt.run(runs["o-buffer"][0].run_id).result(timeout=10)
        await scheduler.tick_once(now=max(base.values()) + 30.0)
        after = [r for r in await rt.list_runs(limit=100) if r.schedule == "o-buffer"]
        assert len(after) == 2  # the buffered tick started once the run before it ended
        buffered = {i.name: i.buffered_at for i in await rt.list_schedules()}["o-buffer"]
        assert buffered is not None and buffered.timestamp() == max(base.values()) + 30.0  # the next one waits in turn
        for run in after + runs["o-skip"]:
            await rt.cancel(run.run_id)


async def test_pause_resume_trigger_delete(store_url: str) -> None:
    """Paused schedules start nothing; trigger starts a run now; delete forgets the schedule; unknown names are refused."""
    s = durable.schedule("steer", report, every="10s", args=("x",))
    async with durable.Runtime(store_url, workflows=[report], poll_interval=0.05) as rt:
        scheduler = Scheduler(rt.store, [s], poll_interval=0.05)
        await scheduler.register()
        await rt.pause_schedule("steer")
        (info,) = await rt.list_schedules()
        assert info.paused
        await scheduler.tick_once(now=info.next_at.timestamp() + 1)
        assert [r for r in await rt.list_runs() if r.schedule == "steer"] == []
        await rt.resume_schedule("steer")
        run = await rt.trigger_schedule("steer")
        assert (await run.result(timeout=20))["kind"] == "x"
        assert (await rt.get_schedule("steer")).last_run_id == run.run_id
        await rt.delete_schedule("steer")
        assert await rt.list_schedules() == []
        with pytest.raises(durable.ScheduleNotFound, match="no schedule named 'steer'"):
            await rt.pause_schedule("steer")


async def test_schedules_over_http_list_pause_resume_trigger_delete(store_url: str) -> None:
    """GET /schedules lists them; POST .../pause|resume|trigger and DELETE steer them; an unknown name is 404."""
    import httpx

    from durable.web import create_app

    s = durable.schedule("http-steer", report, cron="0 3 * * *", timezone="Europe/Paris", args=("x",))
    async with durable.Runtime(store_url, schedules=[s], poll_interval=0.05) as rt:
        app = create_app(rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            (listed,) = (await http.get("/schedules")).json()["schedules"]
            assert (listed["name"], listed["cron"], listed["timezone"], listed["paused"]) == (
                "http-steer", "0 3 * * *", "Europe/Paris", False
            )
            assert (await http.post("/schedules/http-steer/pause", json={})).json()["paused"] is True
            assert (await http.post("/schedules/http-steer/resume", json={})).json()["paused"] is False
            triggered = await http.post("/schedules/http-steer/trigger", json={})
            assert triggered.status_code == 201
            assert (await rt.run(triggered.json()["run_id"]).result(timeout=20))["kind"] == "x"
            assert (await http.post("/schedules/nope/pause", json={})).status_code == 404
            assert (await http.post("/schedules/http-steer/explode", json={})).status_code == 404
            assert (await http.delete("/schedules/http-steer")).json() == {"schedule": "http-steer", "deleted": True}
            assert (await http.get("/schedules/http-steer")).status_code == 404
