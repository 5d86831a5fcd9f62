"""Durations and deadlines as people write them: ``"10s"``, ``"1 day"``, ``"2h30m"``, ``timedelta``, seconds."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

Duration: TypeAlias = "str | float | int | timedelta"
DurationOrDeadline: TypeAlias = "str | float | int | timedelta | datetime"

_UNITS = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)\s*,?")


#: The longest duration durable takes anywhere (sleeps, timeouts, retry delays): 100 years. Longer
#: ones are almost always a unit mistake (epoch milliseconds taken as seconds) and would make
#: deadlines no datetime can hold.
MAX_DURATION = 100 * 365.25 * 86400.0
_RANGE = "a finite number of seconds from 0 to 100 years"


def parse_duration(value: Duration, *, what: str = "duration") -> float:
    """Return ``value`` in seconds; raise ``ValueError`` naming ``what`` when it cannot be read or
    is not a finite duration from 0 to :data:`MAX_DURATION`."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number of seconds, a string like '5m', or a timedelta; got a bool")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int):
        seconds = float(value) if abs(value) < 2**1023 else (MAX_DURATION * 2 if value > 0 else -1.0)  # out of range: said below
    elif isinstance(value, float):
        seconds = value
    elif isinstance(value, str):
        seconds = _parse_text(value, what)
    else:
        raise TypeError(
            f"{what} must be a number of seconds, a string like '5m', or a timedelta; got {type(value).__name__}"
        )
    check_seconds(seconds, what=what, shown=value)
    return seconds


def check_seconds(seconds: float, *, what: str, shown: object = None) -> float:
    """``seconds`` if it is a finite duration from 0 to :data:`MAX_DURATION`; else ValueError naming it.

    "Wait forever" is a hook, not a timer that never fires; NaN would be stored as NULL.
    """
    if not 0 <= seconds <= MAX_DURATION:  # also false for NaN
        given = repr(seconds if shown is None else shown)
        given = given if len(given) <= 40 else f"{given[:20]}…({len(given)} characters)"
        problem = "finite" if math.isnan(seconds) or math.isinf(seconds) else (
            "zero or positive" if seconds < 0 else "at most 100 years"
        )
        raise ValueError(f"{what} must be {problem} ({_RANGE}), got {given}")
    return seconds


def _parse_text(text: str, what: str) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    total = 0.0
    pos = 0
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(
                f"cannot read {what} {text!r}: expected e.g. '500ms', '10s', '5m', '2h30m', '1 day'"
            )
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"cannot read {what} {text!r}: it is empty")
    return total


def deadline_from(value: DurationOrDeadline, now: float, *, what: str = "duration") -> float:
    """Return the epoch time at which ``value`` (a duration from ``now`` or an aware datetime) falls due."""
    if isinstance(value, datetime):
        check_deadline(value, what=what)
        return value.timestamp()
    return now + parse_duration(value, what=what)


def check_duration_or_deadline(value: DurationOrDeadline, *, what: str) -> None:
    """Raise TypeError/ValueError naming ``what`` unless ``value`` is a valid duration or an aware datetime."""
    if isinstance(value, datetime):
        check_deadline(value, what=what)
    else:
        parse_duration(value, what=what)


def check_deadline(value: datetime, *, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} datetime must be timezone-aware (e.g. datetime.now(timezone.utc)), got {value!r}")


# -- stored timestamps as datetimes, whatever they hold -----------------------------------------------

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def as_datetime(ts: float) -> datetime:
    """An epoch timestamp as an aware UTC datetime; one no datetime can hold (a far-future retry
    written as epoch milliseconds, say, stored before durations were bounded) is shown as the
    earliest or latest moment there is, rather than breaking every view of its run."""
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return EARLIEST if ts < 0 else LATEST  # NaN compares false: the latest


def local_time(when: datetime) -> datetime:
    """``when`` in the local time zone, for people; as it is where the zone's offset would leave the
    range of datetime (the earliest or latest moment)."""
    try:
        return when.astimezone()
    except (OverflowError, ValueError, OSError):
        return when
