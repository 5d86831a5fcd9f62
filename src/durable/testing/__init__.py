"""Testing workflows: replay checks over recorded histories, and checks of your own workflows.

- ``await check_replay(run)``, ``replay_events(workflow, events)``: replay a run's log with the code
  of now; NonDeterminismError if the code no longer matches it.
- ``load_history(path)`` / ``replay_history(workflow, history)``: the same for a history exported
  with ``durable export RUN_ID > history.json`` (see :mod:`durable._client.history` for the format).
- ``TestRuntime()``: a runtime on a memory store in virtual time (``rt.clock``), with step fakes
  (``rt.replace_step(step, fake)``).
- ``check_determinism(workflow, args=..., steps=..., hooks=...)``: property-based checks of a
  workflow on generated runs (Hypothesis, imported only then); ``durable.testing.strategies``
  has the pieces.
- ``await measure_replay(run)``: what replaying a recorded run costs (cold, sticky, and the floor).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._client.history import History as History
from .._client.history import load_history as load_history
from ._cost import ReplayCost as ReplayCost
from ._cost import measure_replay as measure_replay
from ._replay import ReplayResult as ReplayResult
from ._replay import check_replay as check_replay
from ._replay import read_history as read_history
from ._replay import replay_events as replay_events
from ._replay import replay_history as replay_history
from ._runtime import StepReplacement as StepReplacement
from ._runtime import TestRuntime as TestRuntime
from ._runtime import VirtualClock as VirtualClock

if TYPE_CHECKING:
    from . import strategies as strategies
    from ._determinism import NotDeterministic as NotDeterministic


def check_determinism(workflow: Any, **options: Any) -> None:
    """Check that ``workflow`` is deterministic on generated runs (Hypothesis; see
    :func:`durable.testing._determinism.check_determinism` for the options): NotDeterministic, an
    AssertionError naming the problem and printing the shrunk schedule, if it is not."""
    _hypothesis()
    from ._determinism import check_determinism as check

    check(workflow, **options)


def _hypothesis() -> None:
    try:
        importlib.import_module("hypothesis")
    except ImportError:
        raise ImportError("durable.testing's property checks need hypothesis: pip install 'durable-workflows[testing]'") from None


def __getattr__(name: str) -> Any:
    # Hypothesis is a test dependency: imported only when these are used, never by `import durable.testing`.
    if name == "strategies":
        _hypothesis()
        return importlib.import_module(".strategies", __name__)
    if name == "NotDeterministic":
        _hypothesis()
        return importlib.import_module("._determinism", __name__).NotDeterministic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "History", "NotDeterministic", "ReplayCost", "ReplayResult", "StepReplacement", "TestRuntime", "VirtualClock", "check_determinism",
    "check_replay", "load_history", "measure_replay", "read_history", "replay_events", "replay_history", "strategies",
]
