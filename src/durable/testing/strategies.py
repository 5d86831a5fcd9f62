"""The pieces of ``durable.testing.check_determinism``, for properties of your own (needs hypothesis).

::

    from hypothesis import given
    from durable.testing import strategies as ds

    @given(run=ds.runs(checkout, steps={charge: st.integers(0, 100)}))
    def test_checkout_never_charges_twice(run):
        ds.check(run)                                       # the determinism checks
        charged = [e for e in run.events if e.kind == "step_created" and e.name.endswith("charge")]
        assert len(charged) <= 1

- :func:`arguments` -- a workflow's arguments from its annotations;
- :func:`step_results` -- a step's results from its return annotation;
- :func:`runs` -- simulated runs of a workflow (:class:`SimulatedRun`: events, commits, the schedule);
- :func:`check` -- the replay and wall-clock/randomness checks on one such run (codec round trips are
  checked while it is simulated).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from .._workflow.step import BoundStep, Step
from .._workflow.workflow import Workflow
from ._determinism import NotDeterministic as NotDeterministic
from ._determinism import SimulatedRun as SimulatedRun
from ._determinism import Spec, check_run, simulate
from ._determinism import arguments as arguments
from ._determinism import step_results as step_results


def runs(
    workflow: Workflow[Any, Any],
    *,
    args: st.SearchStrategy[Any] | None = None,
    steps: Mapping[Step[Any, Any] | BoundStep | Workflow[Any, Any] | str, st.SearchStrategy[Any]] | None = None,
    hooks: Mapping[str, st.SearchStrategy[Any]] | None = None,
    failures: bool = True,
    crashes: bool = True,
    max_decisions: int = 200,
    max_payloads: int = 3,
) -> st.SearchStrategy[SimulatedRun]:
    """Simulated runs of ``workflow`` (options as for ``check_determinism``); drawing one raises
    NotDeterministic if a value does not round-trip the codec or the run diverges from itself."""
    spec = Spec(workflow, args, steps or {}, hooks or {}, failures, crashes, max_decisions, max_payloads)

    @st.composite
    def simulated(draw: st.DrawFn) -> SimulatedRun:
        return simulate(spec, draw)

    return simulated()


def check(run: SimulatedRun) -> None:
    """Replays at every commit (cold and live) and the wall-clock/randomness rerun of ``run``; NotDeterministic if one fails."""
    check_run(run)


__all__ = ["NotDeterministic", "SimulatedRun", "arguments", "check", "runs", "step_results"]
