"""Testing your own workflows with ``durable.testing``: property-based determinism checks, virtual time
and a step fake. Run from this directory: ``python -m pytest test_reminders.py``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import strategies as st
from reminders import reminder, reminder_buggy, send_email

import durable
import durable.testing

ARGS = st.tuples(st.sampled_from(["ann", "bob"]), st.integers(0, 30))  # (user, days)


def test_the_buggy_reminder_is_caught() -> None:
    with pytest.raises(durable.testing.NotDeterministic, match="must not read the wall clock"):
        durable.testing.check_determinism(reminder_buggy, args=ARGS, max_examples=50)


def test_the_fixed_reminder_is_deterministic() -> None:
    durable.testing.check_determinism(reminder, args=ARGS, max_examples=50)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_reminder_is_sent_three_days_later_after_a_retry() -> None:
    sent: list[tuple[str, str]] = []

    async def fake_send(user: str, text: str) -> str:
        if durable.get_step_metadata().attempt == 1:
            raise durable.RetryableError("the mail server is busy")  # the retry path, in virtual time
        sent.append((user, text))
        return f"sent to {user}"

    start = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    async with durable.testing.TestRuntime(start=start) as rt:
        with rt.replace_step(send_email, fake_send):
            run = await rt.start(reminder, "ann", 3)
            assert await run.result(timeout=10) == "sent to ann"
        assert rt.clock.now() >= datetime(2025, 1, 4, 9, 0, tzinfo=UTC)
    assert sent == [("ann", "due 2025-01-04 09:00")]
