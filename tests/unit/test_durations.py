"""Durations and deadlines: what people write parses, what cannot be meant is refused with a reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import anyio
import pytest

import durable
from durable._core.durations import MAX_DURATION, Duration, deadline_from, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1 day", 86400), ("2h30m", 9000), ("1.5h", 5400), ("500ms", 0.5),
     ("1 week, 2 days", 777600), ("90", 90), (3, 3.0), (timedelta(minutes=2), 120)],
)
def test_durations_people_write(text: Duration, seconds: float) -> None:
    """Durations parse from strings, numbers and timedeltas."""
    assert parse_duration(text) == seconds


def test_bad_durations_and_naive_deadlines_are_refused() -> None:
    """Unreadable, negative or naive-datetime durations raise errors that say what is expected."""
    with pytest.raises(ValueError, match=r"expected e\.g\."):
        parse_duration("soon")
    with pytest.raises(ValueError, match="zero or positive"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline_from(datetime(2026, 1, 1), 0.0)
    assert deadline_from(datetime(2026, 1, 1, tzinfo=UTC), 0.0) == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


# -- found by a review of the public API's edges ----------------------------------------------------


def test_infinite_durations_and_inverted_retry_delays_are_refused() -> None:
    infinite: list[Duration] = [float("inf"), "inf", "1e400"]
    for value in infinite:
        with pytest.raises(ValueError, match="must be finite"):
            parse_duration(value, what="sleep")
    with pytest.raises(ValueError, match="must not exceed max_retry_delay"):
        durable.step(retry_delay=10, max_retry_delay=1)


# -- non-finite, negative and far-future durations from any path (issue 16) -------------------------

NAN = float("nan")


@durable.workflow
async def times_out_badly(how: str) -> str:
    if how == "asyncio.sleep(nan)":
        await asyncio.sleep(NAN)
    elif how == "asyncio.sleep(inf)":
        await asyncio.sleep(float("inf"))
    elif how == "asyncio.sleep(1.8e12)":
        await asyncio.sleep(1.8e12)  # epoch milliseconds taken as seconds
    elif how == "wait_for(hook, nan)":
        await asyncio.wait_for(durable.create_hook(), NAN)
    elif how == "anyio.fail_after(nan)":
        with anyio.fail_after(NAN):
            await durable.create_hook()
    elif how == "durable.sleep(nan)":
        await durable.sleep(NAN)
    elif how == "durable.sleep(-1)":
        await durable.sleep(-1)
    return "slept"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("how", "shown"),
    [("asyncio.sleep(nan)", "nan"), ("asyncio.sleep(inf)", "inf"), ("asyncio.sleep(1.8e12)", "1800000000000.0"),
     ("wait_for(hook, nan)", "nan"), ("anyio.fail_after(nan)", "nan"), ("durable.sleep(nan)", "nan"),
     ("durable.sleep(-1)", "-1")],
)
async def test_timers_that_cannot_be_stored_fail_the_run_naming_the_value(store_url: str, how: str, shown: str) -> None:
    """A NaN, infinite, negative or far-future timer in workflow code fails the run with a ValueError
    naming the value; no wait is ever recorded.

    Before: ``asyncio.sleep(nan)`` bound NULL into a NOT NULL column, every commit failed, the invocation
    was retried forever and the run stayed pending.
    """
    async with durable.Runtime(store_url, workflows=[times_out_badly]) as rt:
        run = await rt.start(times_out_badly, how)
        with pytest.raises(durable.RunFailed) as info:
            await run.result(timeout=10)
        assert info.value.error_type == "ValueError"
        assert shown.lower() in info.value.message.lower(), info.value.message  # anyio names NaN itself
        assert not [e for e in await run.events() if e.kind == "wait_created"]


@durable.step(max_retries=1, retry_delay="10ms", max_retry_delay="10ms")
async def retries_at(value: float) -> str:
    raise durable.RetryableError("come back later", retry_after=value)


@durable.workflow
async def retried_badly(value: float) -> str:
    return await retries_at(value)


@pytest.mark.anyio
@pytest.mark.parametrize("value", [NAN, -1.0, 1.8e12, float("inf")])
async def test_a_retry_after_that_cannot_be_stored_fails_the_step_naming_the_value(store_url: str, value: float) -> None:
    """``RetryableError(retry_after=...)`` with NaN, a negative, an infinite or a far-future delay raises
    ValueError naming it where it is raised; no such retry time is ever stored.

    Before: NaN silently fell back to the back-off, and 1.8e12 (epoch milliseconds taken as seconds) was
    stored as a retry ~57,000 years away -- the run never finished and its views broke.
    """
    async with durable.Runtime(store_url, workflows=[retried_badly]) as rt:
        run = await rt.start(retried_badly, value)
        with pytest.raises(durable.RunFailed) as info:
            await run.result(timeout=10)
        assert info.value.error_type == "ValueError" and "retry_after" in info.value.message, info.value.message
        assert repr(value) in info.value.message
        for step in await run.steps():
            assert step.retry_at is None or step.retry_at.year < 2200


def test_durations_are_bounded_and_refused_with_the_value_whatever_path_they_come_from() -> None:
    """Durations past 100 years, NaN, infinite, negative or huge ints: ValueError naming the parameter and
    the value, for durable.step's timeouts and delays, RetryableError and parse_duration itself."""
    for value in (NAN, float("inf"), -1, 1.8e12, 10**400, "1800000000000s"):
        with pytest.raises(ValueError, match=r"step timeout must be .*(finite|positive|100 years)"):
            durable.step(timeout=value)
        with pytest.raises(ValueError, match=r"retry_after must be"):
            durable.RetryableError("later", retry_after=value)
        with pytest.raises(ValueError, match=r"retry_delay must be"):
            durable.step(retry_delay=value)
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_duration(MAX_DURATION * 1.01)
    with pytest.raises(ValueError, match="timezone-aware"):
        durable.RetryableError("later", retry_after=datetime(2030, 1, 1))
    assert durable.RetryableError("later", retry_after=datetime(2030, 1, 1, tzinfo=UTC)).retry_after.year == 2030
