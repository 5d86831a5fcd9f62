"""Checks of numeric parameters: a wrong type or a value out of range is a clear error naming the
parameter and what it accepts, raised where the value is given rather than deep inside a store."""

from __future__ import annotations

import math
from typing import Any


def check_int(name: str, value: Any, *, minimum: int, maximum: int) -> int:
    """``value`` if it is an int (not a bool) within ``minimum..maximum``; else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int from {minimum:,} to {maximum:,}, got {_shown(value)}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be from {minimum:,} to {maximum:,}, got {_shown(value)}")
    return value


def check_number(
    name: str, value: Any, *, minimum: float, maximum: float, integer: bool = False, above: bool = False,
    unit: str = "",
) -> float:
    """``value`` as a float if it is a finite real number within the range; else TypeError/ValueError.

    ``above``: the minimum itself is excluded (``> minimum``). ``integer``: ints only.
    """
    if above:
        allowed = f"above {_fmt(minimum)}{unit} and at most {_fmt(maximum)}{unit}"
    else:
        allowed = f"from {_fmt(minimum)}{unit} to {_fmt(maximum)}{unit}"
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind} {allowed}, got {_shown(value)}")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else (math.inf if value > 0 else -math.inf)
    if math.isnan(number) or (number <= minimum if above else number < minimum) or number > maximum:
        raise ValueError(f"{name} must be {allowed}, got {_shown(value)}")
    return number


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} characters)"
