"""A run's timeline folded from its event log: attempts and how each ended, timers, hook waits, fed incrementally."""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable._client.present import timeline_json
from durable._client.timeline import Timeline
from durable._core import codec as _codec
from durable._core.errorinfo import encode_error
from durable._core.events import Event


def log(*entries: tuple[Any, ...]) -> list[Event]:
    """Events of one run, numbered in order: (kind, correlation id, time[, {name, data, attempt}])."""
    events = []
    for seq, (kind, corr, at, *extra) in enumerate(entries, start=1):
        events.append(Event("run_t", seq, kind, corr, at, **(extra[0] if extra else {})))
    return events


def failure(message: str, retry_at: float | None = None) -> bytes:
    return encode_error(ValueError(message), retry_at=retry_at)


def test_attempts_are_timed_and_a_crashed_one_is_lost() -> None:
    """Each step_started opens an attempt and its end closes it; a start with the previous attempt still open
    means its worker died (lost); a retried attempt keeps its error and when the retry was due."""
    timeline = Timeline()
    timeline.feed(log(
        ("run_created", None, 0.0), ("run_started", None, 0.5),
        ("step_created", "step_1", 1.0, {"name": "fetch"}),
        ("step_started", "step_1", 1.0, {"attempt": 1}),
        ("step_retrying", "step_1", 2.0, {"attempt": 1, "data": failure("nope", retry_at=3.0)}),
        ("step_started", "step_1", 3.0, {"attempt": 2}),
        ("step_started", "step_1", 9.0, {"attempt": 3}),  # attempt 2's worker was killed
        ("step_completed", "step_1", 9.5, {"attempt": 3, "data": _codec.encode(1)}),
        ("run_completed", None, 10.0),
    ))
    lane = timeline.lane("step_1")
    assert lane is not None
    assert [(a.attempt, a.started_at, a.ended_at, a.outcome) for a in lane.attempts] == [
        (1, 1.0, 2.0, "retrying"), (2, 3.0, 9.0, "lost"), (3, 9.0, 9.5, "completed"),
    ]
    assert lane.attempts[0].error is not None and lane.attempts[0].error.message == "nope"
    assert (lane.attempts[0].retry_at, lane.status, lane.ended_at) == (3.0, "completed", 9.5)
    assert (timeline.created_at, timeline.started_at, timeline.ended_at) == (0.0, 0.5, 10.0)


def test_a_step_claimed_as_it_was_created_starts_its_first_attempt_with_its_step_created() -> None:
    """A step_created with attempt 1 (schema 9: the commit that created the step claimed it) opens attempt 1
    at once, as a step_started would; the step's later attempts start with their step_started."""
    timeline = Timeline()
    timeline.feed(log(
        ("run_created", None, 0.0), ("run_started", None, 0.5),
        ("step_created", "step_1", 1.0, {"name": "fetch", "attempt": 1}),
    ))
    lane = timeline.lane("step_1")
    assert lane is not None and lane.status == "running"
    assert [(a.attempt, a.started_at, a.outcome) for a in lane.attempts] == [(1, 1.0, "running")]
    timeline.feed(log(
        ("run_created", None, 0.0), ("run_started", None, 0.5),
        ("step_created", "step_1", 1.0, {"name": "fetch", "attempt": 1}),
        ("step_retrying", "step_1", 2.0, {"attempt": 1, "data": failure("nope", retry_at=3.0)}),
        ("step_started", "step_1", 3.0, {"attempt": 2}),
        ("step_completed", "step_1", 4.0, {"attempt": 2, "data": _codec.encode(1)}),
    ))
    assert [(a.attempt, a.started_at, a.ended_at, a.outcome) for a in lane.attempts] == [
        (1, 1.0, 2.0, "retrying"), (2, 3.0, 4.0, "completed"),
    ]
    assert [e.starts_attempt for e in log(("step_created", "step_1", 1.0, {"attempt": 1}), ("step_created", "step_2", 1.0),
                                          ("step_started", "step_2", 2.0, {"attempt": 1}))] == [True, False, True]


def test_sleeps_and_hooks_have_lanes_of_their_own() -> None:
    """A timer lane carries its deadline and ends fired or cancelled; a hook lane ends with its first payload (and
    lists every one), or with its disposal if none came; a conflicting token ends at once."""
    timeline = Timeline()
    timeline.feed(log(
        ("run_created", None, 0.0),
        ("wait_created", "wait_1", 1.0, {"data": _codec.encode(61.0)}),
        ("wait_completed", "wait_1", 61.0),
        ("wait_created", "wait_2", 62.0, {"data": _codec.encode(1e12)}),
        ("hook_created", "hook_3", 62.0, {"name": "tok"}),
        ("hook_conflict", "hook_4", 62.0, {"name": "tok"}),
        ("hook_received", "hook_3", 70.0, {"name": "tok", "data": _codec.encode({"n": 1})}),
        ("hook_received", "hook_3", 80.0, {"name": "tok", "data": _codec.encode({"n": 2})}),
        ("hook_created", "hook_5", 81.0, {"name": "other"}),
        ("wait_cancelled", "wait_2", 90.0),
        ("hook_disposed", "hook_3", 90.0), ("hook_disposed", "hook_5", 90.0),
        ("run_cancelled", None, 90.0),
    ))
    lanes = {lane.id: lane for lane in timeline.lanes.values()}
    assert [lane.kind for lane in lanes.values()] == ["timer", "timer", "hook", "hook", "hook"]
    assert (lanes["wait_1"].status, lanes["wait_1"].until, lanes["wait_1"].ended_at) == ("fired", 61.0, 61.0)
    assert (lanes["wait_2"].status, lanes["wait_2"].ended_at) == ("cancelled", 90.0)
    assert (lanes["hook_3"].status, lanes["hook_3"].ended_at) == ("received", 70.0)
    assert [_codec.decode(data or b"") for _, data in timeline.payloads("hook_3")] == [{"n": 1}, {"n": 2}]
    assert (lanes["hook_4"].status, lanes["hook_4"].ended_at) == ("conflict", 62.0)
    assert (lanes["hook_5"].status, lanes["hook_5"].ended_at) == ("disposed", 90.0)
    assert [e.kind for e in timeline.wait_events] == ["wait_created", "wait_completed", "wait_created", "wait_cancelled"]
    shown = timeline_json(timeline)
    assert shown["lanes"][1]["until"] == "9999-12-31T23:59:59.999999+00:00"  # no datetime holds it: the latest one
    assert shown["lanes"][2]["received"] == ["1970-01-01T00:01:10+00:00", "1970-01-01T00:01:20+00:00"]


def test_a_step_cancelled_before_it_ran_has_no_attempt() -> None:
    """A step cancelled while pending ends the lane without inventing an attempt."""
    timeline = Timeline()
    timeline.feed(log(("step_created", "step_1", 1.0, {"name": "s"}), ("step_cancelled", "step_1", 2.0, {"data": failure("run cancelled")})))
    lane = timeline.lane("step_1")
    assert lane is not None and (lane.status, lane.ended_at, lane.attempts) == ("cancelled", 2.0, [])


@durable.step(max_retries=1, retry_delay=0.01)
async def timeline_flaky(n: int) -> int:
    if durable.get_step_metadata().attempt == 1:
        raise RuntimeError("once")
    return n


@durable.workflow
async def timeline_flow() -> int:
    total = 0
    for i in range(3):
        total += await timeline_flaky(i)
        await durable.sleep("10ms")
    return total


@pytest.mark.anyio
async def test_feeding_a_real_log_in_pieces_gives_the_same_timeline(runtime: durable.Runtime) -> None:
    """A live view feeds the events after the last one it saw; however the log is cut (overlaps included), the
    timeline is the one a single read of the whole log gives."""
    run = await runtime.start(timeline_flow)
    await run.result(timeout=20)
    events = await runtime.store.load_events(run.run_id)
    whole = Timeline()
    whole.feed(events)
    for cut in range(0, len(events) + 1, 3):
        pieces = Timeline()
        pieces.feed(events[:cut])
        pieces.feed(events[max(0, cut - 2):])  # an overlapping read: the seen ones are skipped
        assert timeline_json(pieces) == timeline_json(whole)
    lanes = timeline_json(whole)["lanes"]
    assert [lane["kind"] for lane in lanes] == ["step", "timer"] * 3
    assert all([a["outcome"] for a in lane["attempts"]] == ["retrying", "completed"] for lane in lanes if lane["kind"] == "step")
