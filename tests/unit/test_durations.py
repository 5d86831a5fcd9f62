"""Durations and deadlines: what people write parses, what cannot be meant is refused with a reason."""

from __future__ import annotations

import pytest

import durable
from durable._core.durations import parse_duration

# Found by a review of the public API's edges.


def test_infinite_durations_and_inverted_retry_delays_are_refused() -> None:
    for value in [float("inf"), "inf", "1e400"]:
        with pytest.raises(ValueError, match="must be finite"):
            parse_duration(value, what="sleep")
    with pytest.raises(ValueError, match="must not exceed max_retry_delay"):
        durable.step(retry_delay=10, max_retry_delay=1)
