"""Checks of numeric parameters: a wrong type or a value out of range is a clear error naming the
parameter and what it accepts, raised where the value is given rather than deep inside a store."""

from __future__ import annotations

import math
from typing import Any


def check_int(name: str, value: Any, *, minimum: int, maximum: int) -> int:
    """``value`` if it is an int (not a bool) within ``minimum..maximum``; else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int between {minimum:,} and {maximum:,}, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum:,} and {maximum:,}, got {value:,}")
    return value


def check_number(
    name: str, value: Any, *, minimum: float, maximum: float, integer: bool = False, above: bool = False,
    unit: str = "",
) -> float:
    """``value`` as a float if it is a finite real number within the range; else TypeError/ValueError.

    ``above``: the minimum itself is excluded (``> minimum``). ``integer``: ints only.
    """
    shown = f"{_fmt(minimum)}{unit} < {name}" if above else f"{_fmt(minimum)}{unit} <= {name}"
    allowed = f"{shown} <= {_fmt(maximum)}{unit}"
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind} ({allowed}), got {value!r}")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.copysign(math.inf, value)
    if math.isnan(number) or (number <= minimum if above else number < minimum) or number > maximum:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def _fmt(x: float) -> str:
    return f"{x:,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
