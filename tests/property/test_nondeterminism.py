"""Property 3: a log replayed with code that no longer matches it raises NonDeterminismError.

A generated program is run (on the simulator), then mutated at a node the run actually reached
-- a renamed step, a changed argument, a removed command (a step, sleep, hook, write or yield
that is no longer awaited), two adjacent commands swapped -- and its log is replayed cold with
the mutant, as a restarted runtime would. The replay must raise ``NonDeterminismError``; a
result of any kind (completed, failed with another error, or suspended) would be a wrong answer
given silently.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import assume, event, given, note, settings
from hypothesis import strategies as st

import durable
from durable._core import codec as _codec
from durable._core.events import EventKind
from durable.testing import replay_events

from .conftest import examples
from .programs import (
    CHILDREN,
    Child,
    Close,
    HookCreate,
    HookTimeout,
    Program,
    Seq,
    Sleep,
    Step,
    Write,
    Yield,
    mutate_seq_items,
    programs,
    sequences,
    to_workflow,
)
from .sim import History, simulate

COMMAND_NODES = (Step, Child, Sleep, HookCreate, HookTimeout, Write, Close, Yield)
NO_TIMER_FIRST = (Step, Child, HookCreate, Write, Close, Yield)  # their first command is never a timer


def _signature(node: Any) -> tuple[Any, ...]:
    """What the engine compares at a command's position: kind plus name/token/argument bytes."""
    if isinstance(node, Step):
        return ("step", node.name, _codec.encode([node.key, node.arg, node.fails, node.fatal, node.chunks]))
    if isinstance(node, Child):
        return ("child", node.name, _codec.encode([node.key, node.arg, node.fails]))
    if isinstance(node, HookCreate):
        return ("hook", node.token)
    if isinstance(node, Write):
        return ("write", node.namespace, _codec.encode(node.value))
    if isinstance(node, Yield):
        return ("write", "default", _codec.encode(node.value))
    if isinstance(node, Close):
        return ("close", node.namespace)
    return ("wait",)  # the engine does not compare durations: two sleeps are interchangeable


@dataclasses.dataclass(frozen=True)
class Mutation:
    kind: str  # rename | argument | remove | swap
    path: tuple[int, ...]
    index: int

    def apply(self, program: Program) -> Program:
        seq = dict(sequences(program))[self.path]
        items = list(seq.items)
        node = items[self.index]
        if self.kind == "rename" and isinstance(node, Child):
            items[self.index] = dataclasses.replace(node, name=next(n for n in sorted(CHILDREN) if n != node.name))
        elif self.kind == "rename":
            items[self.index] = dataclasses.replace(node, name="prop.beta" if node.name == "prop.alpha" else "prop.alpha")
        elif self.kind == "argument":
            items[self.index] = dataclasses.replace(node, arg=("changed", node.arg))
        elif self.kind == "remove":
            del items[self.index]
        else:
            items[self.index], items[self.index + 1] = items[self.index + 1], items[self.index]
        return mutate_seq_items(program, self.path, tuple(items))


def mutations(program: Program, executed: set[int], recorded_hooks: set[str]) -> list[Mutation]:
    """Every mutation that changes what the run asks for at a position its log holds.

    A hook created and disposed within one slice is never recorded (it could not receive
    anything), so its creation holds no position: removing it changes nothing the log can show.
    Nor does removing a timer (a sleep, a hook's timeout) when what follows may start with a
    timer of its own: that timer takes the position, and durations are not compared (a sleep
    removed before ``wait_for(hook, 3600)`` whose payload is already in: the log cannot tell).
    """
    out = []
    for path, seq in sequences(program):
        reached = [
            isinstance(n, COMMAND_NODES) and id(n) in executed and (not isinstance(n, HookCreate) or n.token in recorded_hooks)
            for n in seq.items
        ]
        for i, node in enumerate(seq.items):
            if not reached[i]:
                continue
            if isinstance(node, Step | Child):
                out += [Mutation("rename", path, i), Mutation("argument", path, i)]
            following = seq.items[i + 1] if i + 1 < len(seq.items) else None
            if _signature(node) != ("wait",) or following is None or isinstance(following, NO_TIMER_FIRST):
                out.append(Mutation("remove", path, i))
            if i + 1 < len(seq.items) and reached[i + 1] and _signature(node) != _signature(seq.items[i + 1]):
                out.append(Mutation("swap", path, i))
    return out


def _executed(program: Program, history: History) -> set[int]:
    trace: list[Any] = []
    replay_events(to_workflow(program, trace), history.events, input=history.input, seed=history.seed)
    return {id(n) for n in trace}


@settings(max_examples=examples(150))
@given(program=programs(), rng=st.randoms(use_true_random=False), data=st.data())
def test_mutated_code_replaying_a_log_raises_non_determinism(program: Program, rng: random.Random, data: st.DataObject) -> None:
    """Renaming, re-arguing, removing or swapping a command the run reached makes its cold replay raise NonDeterminismError."""
    history = simulate(program, seed="mutants", rng=rng)
    recorded_hooks = {e.name or "" for e in history.events if e.kind in (EventKind.HOOK_CREATED, EventKind.HOOK_CONFLICT)}
    candidates = mutations(program, _executed(program, history), recorded_hooks)
    assume(candidates)
    note(f"original:\n{program!r}")
    # One site per kind of mutation, every kind each time: drawing the kind would let
    # Hypothesis's preference for early choices starve the others.
    for kind in sorted({m.kind for m in candidates}):
        mutation = data.draw(st.sampled_from([m for m in candidates if m.kind == kind]), label=kind)
        event(f"mutation: {kind}")
        mutant = mutation.apply(program)
        try:
            replayed = replay_events(to_workflow(mutant), history.events, input=history.input, seed=history.seed)
        except durable.NonDeterminismError:
            continue
        pytest.fail(
            f"{mutation.kind} at {mutation.path}[{mutation.index}] was not detected: the replay {replayed.status} "
            f"with result {replayed.result!r}, error {replayed.error!r}, new commands {replayed.new_commands}\n"
            f"mutant:\n{mutant!r}"
        )


def test_an_unchanged_program_replays_without_complaint() -> None:
    """The control: the same code replaying its own log never raises (so the property above can fail only on mutants)."""
    program = Program(Seq((Step(1, "prop.alpha", 1), Sleep(0.001), Step(2, "prop.beta", [2]))))
    history = simulate(program, seed="control", rng=random.Random(0))
    replayed = replay_events(to_workflow(program), history.events, input=history.input, seed=history.seed)
    assert replayed.status == "completed"
    assert replayed.new_commands == []
