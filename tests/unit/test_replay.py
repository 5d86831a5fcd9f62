"""The replay engine on logs written by hand: where the code and its log disagree, replay says so.

Minimal reproductions of bugs found by the property tests (tests/property/), with the input the
property shrank to, so the bug stays pinned down even if the generators change.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import durable
from durable._core import codec as _codec
from durable._core.events import Event, EventKind
from durable._workflow.workflow import Workflow
from durable.testing import replay_events
from tests.helpers import encode_args


def _log(*entries: tuple[str, str | None, str | None, bytes | None]) -> list[Event]:
    events = [Event("run_r", 1, EventKind.RUN_CREATED, None, 1.0, "wf", encode_args()), Event("run_r", 2, EventKind.RUN_STARTED, None, 1.0)]
    for kind, corr, name, data in entries:
        events.append(Event("run_r", len(events) + 1, kind, corr, 2.0, name, data))
    return events


def _workflow(fn: Any) -> Workflow[Any, Any]:
    return Workflow(fn, name="wf", serializer="json")


@durable.step(name="regressions.echo")
async def echo(value: Any) -> Any:
    return value


def test_finishing_before_a_recorded_command_is_non_determinism() -> None:
    """Code that returns where its log holds a further command (here a hook) raises NonDeterminismError, not a result.

    Found by test_nondeterminism: a program ``create_hook(token="h1")`` whose mutant dropped the
    call replayed the original log to completion with a different result.
    """

    async def removed_the_hook() -> list[Any]:
        return []

    log = _log((EventKind.HOOK_CREATED, "hook_1", "h1", None))
    with pytest.raises(durable.NonDeterminismError, match="#1"):
        replay_events(_workflow(removed_the_hook), log)


def test_failing_before_a_recorded_command_is_non_determinism() -> None:
    """A replay that raises before reaching a recorded step reports the divergence, not the unrelated error."""

    async def crashes_early() -> None:
        raise KeyError("h1")

    args = encode_args(1)
    log = _log((EventKind.STEP_CREATED, "step_1", "regressions.echo", args))
    with pytest.raises(durable.NonDeterminismError):
        replay_events(_workflow(crashes_early), log)


def test_finishing_after_every_recorded_command_is_fine() -> None:
    """The control: a workflow that reached every recorded command completes normally."""

    async def one_step() -> Any:
        return await asyncio.gather(echo(1))

    args = encode_args(1)
    log = _log(
        (EventKind.STEP_CREATED, "step_1", "regressions.echo", args),
        (EventKind.STEP_COMPLETED, "step_1", None, _codec.encode(1)),
    )
    assert replay_events(_workflow(one_step), log).result == [1]
