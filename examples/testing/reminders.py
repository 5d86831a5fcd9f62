"""A reminder workflow, twice: ``reminder_buggy`` reads the wall clock in workflow code (so a replay
computes another due date than the run recorded), ``reminder`` uses ``durable.now()``.

``test_reminders.py`` shows how ``durable.testing`` tells them apart, and tests the fixed one in
virtual time with a fake for its e-mail step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import durable


@durable.step(max_retries=5, retry_delay="1 min", max_retry_delay="1h")
async def send_email(user: str, text: str) -> str:
    raise RuntimeError("a real e-mail service: not reachable from the tests")  # replaced in them


@durable.workflow(name="examples.reminder_buggy")
async def reminder_buggy(user: str, days: int) -> str:
    due = datetime.now(UTC) + timedelta(days=days)  # the bug: the wall clock, read in workflow code
    await durable.sleep(timedelta(days=days))
    return await send_email(user, f"due {due:%Y-%m-%d %H:%M}")


@durable.workflow(name="examples.reminder")
async def reminder(user: str, days: int) -> str:
    due = durable.now() + timedelta(days=days)  # the time of the run: the same on every replay
    await durable.sleep(timedelta(days=days))
    return await send_email(user, f"due {due:%Y-%m-%d %H:%M}")
