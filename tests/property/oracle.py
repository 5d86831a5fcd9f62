"""What a generated program must produce, computed without durable: the properties' independent oracle.

Comparing the engine with itself (cold against sticky, one schedule against another, the
runtime against the simulator) cannot see a bug every path shares -- a hook payload handed out
twice, a step result given to the wrong awaiter in every run alike. Generated programs are
simple enough to evaluate directly: step attempts follow :func:`programs.plan_attempt`, hooks
hand out their payloads in order, ``durable.random()`` is the run's seeded ``random.Random``
(drawn only outside parallel branches, so in program order), and everything else has a fixed
result.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from durable._core.errorinfo import type_name

from .harness import Observation
from .programs import (
    Child,
    Close,
    HookAwait,
    HookCreate,
    HookDispose,
    HookTimeout,
    Parallel,
    Patched,
    PatchMode,
    Program,
    Random,
    Seq,
    Sleep,
    Step,
    Write,
    Yield,
    caught,
    child_error,
    child_result,
    plan_attempt,
)
from .values import strict_eq


class _RunFails(Exception):
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Evaluator:
    def __init__(self, seed: str, patches: PatchMode = "new") -> None:
        self.patches = patches
        self.random = random.Random(f"{seed}:random")  # what durable.random() draws from
        self.streams: dict[str, list[tuple[Any, int | None]]] = {}
        self.hooks: dict[str, list[Any]] = {}
        self.unread: dict[int, deque[Any]] = {}
        self.steps: dict[int, tuple[str, tuple[str, ...], Any]] = {}
        self.children: dict[int, tuple[str, tuple[str, ...], Any]] = {}
        self.timers = 0

    def write(self, namespace: str, value: Any, attempt: int | None = None) -> None:
        self.streams.setdefault(namespace, []).append((value, attempt))

    def seq(self, seq: Seq) -> list[Any]:
        return [self.node(item) for item in seq.items]

    def node(self, n: Any) -> Any:
        if isinstance(n, Step):
            return self.step(n)
        if isinstance(n, Child):
            if not n.fails:
                self.children[n.key] = (n.name, (), ("completed", child_result(n.key, n.arg)))
                return child_result(n.key, n.arg)
            error = child_error(n.key)
            self.children[n.key] = (n.name, (), ("failed", type_name(error), str(error)))
            if n.guarded:
                return caught(error)
            raise _RunFails(error)
        if isinstance(n, Sleep):
            self.timers += 1
            return None
        if isinstance(n, HookCreate):
            self.unread[n.hid] = deque(n.payloads)
            self.hooks[n.token] = []
            return None
        if isinstance(n, HookAwait):
            payload = self.unread[n.hid].popleft()
            self.hooks[f"h{n.hid}"].append(payload)
            return payload
        if isinstance(n, HookTimeout):
            assert not self.unread[n.hid], "generated programs time out only on exhausted hooks"
            self.timers += 1
            return "timeout"
        if isinstance(n, HookDispose):
            return None
        if isinstance(n, Write):
            self.write(n.namespace, n.value)
            return None
        if isinstance(n, Close):
            self.streams.setdefault(n.namespace, [])  # a stream closed unwritten still exists, empty
            return None
        if isinstance(n, Random):
            if self.random.random() < 0.5:
                return ["heads", self.seq(n.then)]
            return ["tails", self.seq(n.otherwise)]
        if isinstance(n, Patched):  # a run that is not replayed takes every patch
            return ["old", self.seq(n.old)] if self.patches == "old" else ["new", self.seq(n.new)]
        if isinstance(n, Parallel):
            return [self.seq(b) for b in n.branches]  # branches share nothing: any order gives this
        raise TypeError(n)

    def step(self, n: Step) -> Any:
        attempt = 0
        while True:
            attempt += 1
            plan = plan_attempt(n.key, n.arg, n.fails, n.fatal, n.chunks, attempt)
            for chunk in plan.chunks:
                self.write(f"s{n.key}", chunk, attempt)
            if plan.outcome == "retry":
                continue
            if plan.outcome == "completed":
                self.steps[n.key] = (n.name, (), ("completed", plan.value))
                return plan.value
            assert plan.error is not None
            self.steps[n.key] = (n.name, (), ("failed", type_name(plan.error), str(plan.error)))
            if n.guarded:
                return caught(plan.error)
            raise _RunFails(plan.error)


def expected(program: Program, seed: str, patches: PatchMode = "new") -> Observation:
    """The observation every correct run of ``program`` (its ``patches`` version) with this seed must produce."""
    ev = _Evaluator(seed, patches)
    try:
        if program.generator:
            for i, item in enumerate(program.body.items):
                ev.write("default", item.value if isinstance(item, Yield) else {"item": i, "result": ev.node(item)})
            outcome: tuple[Any, ...] = ("completed", None)
        else:
            outcome = ("completed", ev.seq(program.body))
    except _RunFails as fails:
        outcome = ("failed", type_name(fails.error), str(fails.error))
    streams = {ns: (values, True) for ns, values in ev.streams.items()}
    hooks: dict[str, tuple[tuple[str, ...], list[Any]]] = {token: ((), payloads) for token, payloads in ev.hooks.items()}
    return Observation(outcome, ev.steps, hooks, streams, ev.timers, ev.children)


def oracle_differences(want: Observation, got: Observation, *, step_streams: bool = True) -> list[str]:
    """Where a run's observation departs from the oracle's (event kinds, which the oracle does not predict, aside)."""
    out = []
    if not strict_eq(want.outcome, got.outcome):
        out.append(f"outcome:\n    expected {want.outcome!r}\n    actual   {got.outcome!r}")
    steps = {k: (name, result) for k, (name, _, result) in got.steps.items()}
    if not strict_eq({k: (name, result) for k, (name, _, result) in want.steps.items()}, steps):
        out.append(f"steps:\n    expected {want.steps!r}\n    actual   {got.steps!r}")
    # A hook created and disposed within one slice of the workflow (nothing awaited in between)
    # is never recorded: it could not receive anything. So a hook without payloads may be absent.
    payloads = {token: p for token, (_, p) in got.hooks.items()}
    wanted_payloads = {token: p for token, (_, p) in want.hooks.items() if p or token in payloads}
    if not strict_eq(wanted_payloads, payloads):
        out.append(f"hook payloads:\n    expected {want.hooks!r}\n    actual   {got.hooks!r}")
    streams = {ns: s for ns, s in got.streams.items() if step_streams or not ns.startswith("s")}
    wanted = {ns: s for ns, s in want.streams.items() if step_streams or not ns.startswith("s")}
    if not strict_eq(wanted, streams):
        out.append(f"streams:\n    expected {wanted!r}\n    actual   {streams!r}")
    children = {k: (name, result) for k, (name, _, result) in got.children.items()}
    if not strict_eq({k: (name, result) for k, (name, _, result) in want.children.items()}, children):
        out.append(f"children:\n    expected {want.children!r}\n    actual   {got.children!r}")
    if want.timers_fired != got.timers_fired:
        out.append(f"timers fired: expected {want.timers_fired}, actual {got.timers_fired}")
    return out
