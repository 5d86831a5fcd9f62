"""Property 6: ``durable.patched()`` lets code change under runs in flight, deterministically.

Generated programs hold :class:`~.programs.Patched` nodes (``if durable.patched(...): new else:
old``), in sequences and inside ``gather``/task-group branches. Each stands for an edit, and
``to_workflow(program, patches=...)`` builds each version of the code: before the patch
(``old``), with it (``new``), with ``deprecate_patch`` (``deprecated``) and with the call gone
(``retired``). On the simulator, under schedules Hypothesis chooses:

1. a finished run recorded by the old code replays with the patched code exactly as it ran
   (old branches, same outcome, no new command);
2. a run deployed over at any invocation (the worker restarts with the patched code and replays
   cold) never diverges, ends as the program says, and every commit the new code made is
   reproduced by a cold replay and by a sticky instance;
3. runs recorded by the patched code replay commit for commit under ``deprecate_patch``; with the
   call removed while such a run is in flight, its replay raises NonDeterminismError.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import durable
from durable._core import codec as _codec
from durable._core.events import EventKind
from durable.testing import replay_events

from .conftest import examples
from .harness import observe
from .oracle import expected, oracle_differences
from .programs import Parallel, Patched, Program, Seq, Step, programs, render, to_workflow
from .sim import check_commits, simulate
from .values import strict_eq


def _with_patches(program: Program) -> bool:
    return bool(program.patches())


@settings(max_examples=examples(40))
@given(program=programs().filter(_with_patches), seed=st.integers(0, 2**32), upgrade=st.integers(0, 12))
def test_runs_recorded_before_a_patch_replay_and_continue_under_the_patched_code(
    program: Program, seed: int, upgrade: int
) -> None:
    """(1) an old finished run replays unchanged with the patched code; (2) a deploy at any invocation
    of an old run never diverges, and each commit the new code made replays cold and sticky."""
    note("before the patch:\n" + render(program, "old"))
    note("after:\n" + repr(program))
    new = to_workflow(program, patches="new")
    old = simulate(program, seed="patching", rng=random.Random(seed), patches="old")
    assert not oracle_differences(expected(program, "patching", "old"), observe(old))
    replayed = replay_events(new, old.events, input=old.input, seed=old.seed)
    assert (replayed.status, replayed.new_commands) == (old.status, [])
    if old.status == "completed":
        assert strict_eq(replayed.result, _codec.decode(old.result or b""))

    upgraded = simulate(program, seed="patching", rng=random.Random(seed + 1), patches="old", upgrade_at=upgrade)
    first = upgraded.upgraded_at if upgraded.upgraded_at is not None else len(upgraded.commits)
    event(f"deployed after {min(first, 3)}{'+' if first >= 3 else ''} commit(s)")
    check_commits(new, upgraded, first=first)
    final = replay_events(new, upgraded.events, input=upgraded.input, seed=upgraded.seed)
    assert (final.status, final.new_commands) == (upgraded.status, [])
    if first == 0:  # the patched code ran the whole run: a fresh run of the new version
        assert not oracle_differences(expected(program, "patching", "new"), observe(upgraded))


@settings(max_examples=examples(25))
@given(program=programs().filter(_with_patches), seed=st.integers(0, 2**32))
def test_deprecating_then_removing_a_patch(program: Program, seed: int) -> None:
    """(3) ``deprecate_patch`` reproduces every commit of a run the patched code recorded (markers
    included); removing the call under a run that recorded a marker is NonDeterminismError."""
    note(repr(program))
    history = simulate(program, seed="patching", rng=random.Random(seed))
    check_commits(to_workflow(program, patches="deprecated"), history)
    if not any(e.kind == EventKind.PATCH_MARKED for e in history.events):
        event("no patch reached")
        return
    with pytest.raises(durable.NonDeterminismError):
        replay_events(to_workflow(program, patches="retired"), history.events, input=history.input, seed=history.seed)


def _patched_branch(key: int) -> Seq:
    new, old = Seq((Step(key + 10, "prop.beta", key),)), Seq((Step(key + 20, "prop.alpha", key),))
    return Seq((Step(key, "prop.alpha", key), Patched(key, new, old)))


def test_a_patch_in_each_of_two_gathered_branches_upgrades_without_divergence() -> None:
    """The control for (2), pinned: patches in both branches of a gather, deployed before each invocation."""
    program = Program(Seq((Parallel("gather", (_patched_branch(1), _patched_branch(2))),)))
    new = to_workflow(program, patches="new")
    for upgrade in range(6):
        history = simulate(program, seed="pin", rng=random.Random(upgrade), patches="old", upgrade_at=upgrade)
        assert history.status == "completed"
        first = history.upgraded_at if history.upgraded_at is not None else len(history.commits)
        check_commits(new, history, first=first)
