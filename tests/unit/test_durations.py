"""Durations and deadlines: what people write parses, what cannot be meant is refused with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import durable
from durable._core.durations import Duration, deadline_from, parse_duration


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
