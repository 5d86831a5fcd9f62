"""Durations and deadlines as people write them: ``"10s"``, ``"1 day"``, ``"2h30m"``, ``timedelta``, seconds."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
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


def parse_duration(value: Duration, *, what: str = "duration") -> float:
    """Return ``value`` in seconds; raise ``ValueError`` naming ``what`` when it cannot be read."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number of seconds, a string like '5m', or a timedelta; got a bool")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value, what)
    else:
        raise TypeError(
            f"{what} must be a number of seconds, a string like '5m', or a timedelta; got {type(value).__name__}"
        )
    if seconds != seconds or seconds < 0:
        raise ValueError(f"{what} must be zero or positive, got {value!r}")
    if seconds == float("inf"):  # "wait forever" is a hook, not a timer that never fires
        raise ValueError(f"{what} must be finite, got {value!r}")
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
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{what} datetime must be timezone-aware (e.g. datetime.now(timezone.utc)), got {value!r}")
        return value.timestamp()
    return now + parse_duration(value, what=what)
