"""Property-based checks of a user's workflow, on Hypothesis: :func:`check_determinism` and its pieces.

The workflow runs on the replay engine alone, in a simulated world whose every choice Hypothesis
draws: each step's result (from its return annotation, or a strategy), whether an attempt fails
and is retried or fails for good, which of several ready steps completes first, when a hook
payload arrives (before or after the workflow awaits it), whether time moves to the next timer
before other events do, and whether the live instance is lost after a commit (the next
invocation replays the history cold, as after a crash or on another worker). A failure shrinks
to a short schedule and prints it, one line per decision.

Each simulated run is checked three ways:

Child workflows are part of the world too, seen from the parent: a child started with
``await child(...)`` or ``start_child`` ends whenever Hypothesis says -- completing with a value
of its return annotation (or of ``steps={child: strategy}``), failing, or cancelled from outside
-- before or after the parent awaits it. (Check each child workflow on its own as well.)

1. values: every step argument, step result, hook payload and the workflow's result round-trips
   the codec with its type (what crosses a boundary is what is recorded);
2. replays: a cold replay of the history at every commit, and one live instance fed it commit by
   commit, issue exactly the commands and reach exactly the outcome recorded -- so a crash
   anywhere, or another worker taking the run over, continues it identically;
3. the world: the same schedule run again with the wall clock a week later and Python's global
   ``random`` reseeded issues the same commands -- ``time.time()``, ``datetime.now()``,
   ``random.random()`` or ``uuid.uuid4()`` in workflow code are caught, the first differing
   command named (use ``durable.now()``, ``durable.random()``, ``durable.uuid4()``).
"""

from __future__ import annotations

import datetime as _dt
import inspect
import math
import random
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from functools import partial
from typing import Any
from unittest import mock

import hypothesis
import hypothesis.errors
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from .._core import codec as _codec
from .._core.commands import (
    CancelChild,
    CancelWait,
    CloseStream,
    Command,
    CreateHook,
    DisposeHook,
    MarkPatch,
    ScheduleStep,
    SetValue,
    StartChild,
    StartWait,
    WriteChunk,
)
from .._core.errorinfo import decode_error, encode_error
from .._core.errors import (
    FatalError,
    HookValidationError,
    RetryableError,
    SerializationError,
)
from .._core.events import Event, EventKind
from .._engine.instance import Outcome, WorkflowInstance
from .._workflow.hooks import hook_definitions
from .._workflow.step import BoundStep, Step
from .._workflow.workflow import Workflow, workflows

T0 = 1_750_000_000.0  # the simulated world's clock starts here, whatever the wall clock says
# The second run's wall clock: a week and a few odd hours, minutes and seconds later (no round
# number, so that no `time.time() % n` can hide the difference).
_ELSEWHERE = 7 * 24 * 3600 + 3 * 3600 + 17 * 60 + 1.234567


class NotDeterministic(AssertionError):
    """A check of :func:`check_determinism` failed; the message says which, and the schedule that led there."""


# -- what the checks are given -----------------------------------------------------------------------


def arguments(workflow: Workflow[Any, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The workflow's required parameters as keyword arguments, each from its annotation (``st.from_type``)."""
    hints = _hints(workflow.fn)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for param in inspect.signature(workflow.fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.default is not param.empty:
            continue
        if param.name not in hints:
            raise TypeError(
                f"parameter {param.name!r} of workflow {workflow.name!r} has no annotation: "
                "pass args=<a strategy for the arguments> to check_determinism"
            )
        parts[param.name] = st.from_type(hints[param.name])
    return st.fixed_dictionaries(parts)


def step_results(step: Step[Any, Any] | BoundStep | Workflow[Any, Any]) -> st.SearchStrategy[Any]:
    """Values of a step's (or a child workflow's) return annotation (``st.from_type``); TypeError if it has none."""
    target = step.step if isinstance(step, BoundStep) else step
    hints = _hints(target.fn)
    if "return" not in hints:
        what = "child workflow" if isinstance(target, Workflow) else "step"
        raise TypeError(f"{what} {target.name!r} has no return annotation: give steps={{{target.fn.__name__}: <a strategy>}}")
    annotation = hints["return"]
    return st.none() if annotation is None or annotation is type(None) else st.from_type(annotation)


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation naming something this module cannot see
        return {}


@dataclass
class Spec:
    """A workflow and the world it is checked in (see :func:`check_determinism` for each option)."""

    workflow: Workflow[Any, Any]
    args: st.SearchStrategy[Any] | None = None
    steps: Mapping[Step[Any, Any] | BoundStep | Workflow[Any, Any] | str, st.SearchStrategy[Any]] = field(default_factory=dict)
    hooks: Mapping[str, st.SearchStrategy[Any]] = field(default_factory=dict)
    failures: bool = True
    crashes: bool = True
    max_decisions: int = 200
    max_payloads: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.workflow, Workflow):
            raise TypeError(f"check_determinism takes a @durable.workflow, got {self.workflow!r}")
        self._results: dict[str, st.SearchStrategy[Any]] = {}
        for key, strategy in self.steps.items():
            name = key if isinstance(key, str) else (key.step if isinstance(key, BoundStep) else key).name
            self._results[name] = strategy
        self.arguments = self.args if self.args is not None else arguments(self.workflow)

    def results_of(self, step: Step[Any, Any] | Workflow[Any, Any]) -> st.SearchStrategy[Any]:
        found = self._results.get(step.name)
        if found is None:
            found = self._results[step.name] = step_results(step)
        return found

    def payloads_for(self, token: str) -> st.SearchStrategy[Any] | None:
        """The strategy of the longest ``hooks`` prefix ``token`` starts with."""
        matches = [prefix for prefix in self.hooks if token.startswith(prefix)]
        return self.hooks[max(matches, key=len)] if matches else None


# -- choices ---------------------------------------------------------------------------------------------


class _Drawing:
    """Choices drawn from Hypothesis (``draw``: ``data.draw`` or a composite's draw), so they shrink;
    kept to run the same schedule again."""

    def __init__(self, draw: Callable[..., Any]) -> None:
        self.draw = draw
        self.made: list[Any] = []

    def pick(self, label: str, count: int) -> int:
        chosen: int = self.draw(st.integers(0, count - 1), label=label) if count > 1 else 0
        self.made.append(chosen)
        return chosen

    def value(self, label: str, strategy: st.SearchStrategy[Any]) -> Any:
        drawn = self.draw(strategy, label=label)
        self.made.append(drawn)
        return drawn


class _Replaying:
    """The choices of an earlier run, in order; ``_Exhausted`` once the run asks for something else."""

    def __init__(self, made: Sequence[Any]) -> None:
        self._made = list(made)
        self._next = 0

    def _take(self) -> Any:
        if self._next >= len(self._made):
            raise _Exhausted()
        value = self._made[self._next]
        self._next += 1
        return value

    def pick(self, label: str, count: int) -> int:
        chosen = self._take()
        if not isinstance(chosen, int) or not 0 <= chosen < count:
            raise _Exhausted()
        return chosen

    def value(self, label: str, strategy: st.SearchStrategy[Any]) -> Any:
        return self._take()


class _Exhausted(Exception):
    """The run went elsewhere than the schedule being replayed."""


# -- the simulated world --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """One invocation: the log it had seen, what it issued and how it left the run."""

    known: int
    commands: tuple[Command, ...]
    status: str
    result: bytes | None
    error: bytes | None
    note: str  # "cold" or "live"


@dataclass
class SimulatedRun:
    """A run of a workflow in the simulated world: its history, its commits and the schedule that made them."""

    workflow: Workflow[Any, Any]
    arguments: Any
    input: bytes
    seed: str
    spec: Spec = field(repr=False)
    events: list[Event] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    schedule: list[str] = field(default_factory=list)
    choices: list[Any] = field(default_factory=list)
    status: str = "running"
    result: bytes | None = None
    error: bytes | None = None

    def describe(self) -> str:
        lines = [f"workflow {self.workflow.name!r} with arguments {self.arguments!r} (run seed {self.seed!r})", "schedule:"]
        lines += [f"  {i:>3}. {line}" for i, line in enumerate(self.schedule, 1)] or ["  (nothing happened)"]
        return "\n".join(lines)


@dataclass
class _Pending:
    step: Step[Any, Any]
    attempt: int = 0
    ready_at: float = 0.0


class _Recording(WorkflowInstance):
    """The engine's instance, checking that each step call's arguments round-trip the codec."""

    def __init__(self, *args: Any, check: Callable[[str, Any], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._check_value = check

    async def call_step(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        *, spelled: tuple[tuple[Any, ...], dict[str, Any]],
    ) -> Any:
        for index, value in enumerate(args):
            self._check_value(f"argument {index} of step {step.name!r}", value)
        for name, value in kwargs.items():
            self._check_value(f"argument {name!r} of step {step.name!r}", value)
        return await super().call_step(step, args, kwargs, spelled=spelled)


class _World:
    """Runs one workflow run, every choice made by ``chooser``."""

    def __init__(self, spec: Spec, chooser: _Drawing | _Replaying, arguments: Any, seed: str, *, check_values: bool) -> None:
        self.spec = spec
        self.chooser = chooser
        self.check_values = check_values
        wf = spec.workflow
        args, kwargs = (tuple(arguments), {}) if isinstance(arguments, list | tuple) else ((), dict(arguments))
        bound_args, bound_kwargs = wf.binder.bind(args, kwargs)
        data = wf.binder.encode(bound_args, bound_kwargs, serializer=wf.serializer, root=f"arguments of {wf.name}")
        self.run = SimulatedRun(wf, arguments, data, seed, spec)
        if check_values:
            for index, value in enumerate(args):
                self._round_trip(f"argument {index} of the workflow", value)
            for name, value in kwargs.items():
                self._round_trip(f"argument {name!r} of the workflow", value)
        self.now = T0
        self.instance: WorkflowInstance | None = None
        self.pending: dict[str, _Pending] = {}
        self.waits: dict[str, float] = {}
        self.hooks: dict[str, str] = {}  # live hook: correlation id -> token
        self.metadata: dict[str, bytes | None] = {}
        self.delivered: dict[str, int] = {}
        self.streams: dict[str, bool] = {}  # namespace -> closed
        self.children: dict[str, tuple[Workflow[Any, Any], str]] = {}  # unfinished child: corr -> (workflow, run id)
        self.dirty = False

    # -- the log -----------------------------------------------------------------------------------------

    def append(self, kind: str, corr: str | None = None, *, name: str | None = None, data: bytes | None = None,
               attempt: int | None = None) -> None:
        run = self.run
        run.events.append(Event("run_check", len(run.events) + 1, kind, corr, self.now, name, data, attempt))

    def say(self, line: str) -> None:
        self.run.schedule.append(line)

    def fail(self, problem: str) -> NotDeterministic:
        return NotDeterministic(f"{problem}\n\n{self.run.describe()}")

    def _round_trip(self, what: str, value: Any, serializer: str = "json") -> bytes:
        try:
            data = _codec.encode(value, serializer=serializer, root=what)  # type: ignore[arg-type]
        except (SerializationError, Exception) as exc:
            raise self.fail(f"{what} cannot be recorded: {type(exc).__name__}: {exc}") from None
        back = _codec.decode(data, allow_pickle=serializer == "pickle", root=what)
        if self.check_values and not same(back, value):
            raise self.fail(f"{what} does not survive the codec: {value!r} ({type(value).__name__}) comes back as "
                            f"{back!r} ({type(back).__name__})")
        return data

    def _check_argument(self, what: str, value: Any) -> None:
        if self.check_values:
            self._round_trip(what, value)

    # -- running -------------------------------------------------------------------------------------------

    def simulate(self) -> SimulatedRun:
        self.append(EventKind.RUN_CREATED, name=self.spec.workflow.name, data=self.run.input)
        self.append(EventKind.RUN_STARTED)
        try:
            self.invoke()
            for _ in range(self.spec.max_decisions):
                if self.run.status != "running":
                    break
                options = self.options()
                if not options:
                    if self.hooks and not any(self.spec.payloads_for(t) for t in self.hooks.values()):
                        self.say("the run waits for hook(s) " + ", ".join(repr(t) for t in self.hooks.values())
                                 + " that hooks= gives no payloads for")
                    break
                _, action = options[self.chooser.pick("what happens next", len(options))]
                action()
        finally:
            if self.instance is not None:
                self.instance.close()
        self.run.choices = list(getattr(self.chooser, "made", []))
        return self.run

    def options(self) -> list[tuple[str, Callable[[], None]]]:
        out: list[tuple[str, Callable[[], None]]] = []
        if self.dirty:
            out.append(("invoke", self.invoke))
        for corr, pending in self.pending.items():
            if pending.ready_at <= self.now:
                out.append((corr, partial(self.attempt, corr)))
        for corr, token in self.hooks.items():
            if self.delivered.get(corr, 0) < self.spec.max_payloads and self.spec.payloads_for(token) is not None:
                out.append((corr, partial(self.deliver, corr)))
        for corr, due in self.waits.items():
            if due <= self.now:
                out.append((corr, partial(self.fire, corr)))
        for corr in self.children:
            out.append((corr, partial(self.end_child, corr)))
        later = [t for t in (*self.waits.values(), *(p.ready_at for p in self.pending.values())) if t > self.now]
        if later:
            out.append(("time", partial(self.advance, min(later))))
        if self.spec.crashes and self.instance is not None and self.run.commits:
            out.append(("crash", self.crash))
        return out

    def invoke(self) -> None:
        cold = self.instance is None
        if self.instance is None:
            self.instance = _Recording(  # a simulation: durable.logger stays quiet in it, as in a replay
                self.spec.workflow, run_id="run_check", input=self.run.input, seed=self.run.seed,
                check=self._check_argument, replay_until=math.inf, notice_calls=False,
            )
        known = len(self.run.events)
        outcome = self.instance.advance(self.run.events)
        self.dirty = False
        if outcome.diverged:
            info = decode_error(outcome.error or b"")
            how = "a cold replay of its own history" if cold and self.run.commits else "its own history"
            raise self.fail(f"the workflow did not follow {how}: {info.message}")
        self.run.commits.append(
            Commit(known, tuple(outcome.commands), outcome.status, outcome.result, outcome.error, "cold" if cold else "live")
        )
        how = "the run starts" if len(self.run.commits) == 1 else "replays the history cold" if cold else "live"
        self.say(f"invocation {len(self.run.commits)} ({how}): "
                 + (", ".join(describe_command(c) for c in outcome.commands) or "issues nothing new")
                 + ("" if outcome.status == "suspended" else f"; the run {outcome.status}"))
        self.apply(outcome, self.instance)

    def apply(self, outcome: Outcome, instance: WorkflowInstance) -> None:
        for cmd in outcome.commands:
            corr = cmd.correlation_id
            if isinstance(cmd, ScheduleStep):
                self.append(EventKind.STEP_CREATED, corr, name=cmd.name, data=cmd.input)
                step = instance.issued_steps.get(corr)
                if step is None:
                    raise self.fail(f"the engine issued {corr} without a step object")  # pragma: no cover
                self.pending[corr] = _Pending(step, ready_at=self.now)
            elif isinstance(cmd, CreateHook):
                if cmd.token in self.hooks.values():
                    self.append(EventKind.HOOK_CONFLICT, corr, name=cmd.token, data=cmd.metadata)
                    self.dirty = True
                else:
                    self.append(EventKind.HOOK_CREATED, corr, name=cmd.token, data=cmd.metadata)
                    self.hooks[corr] = cmd.token
                    self.metadata[corr] = cmd.metadata
            elif isinstance(cmd, StartWait):
                self.append(EventKind.WAIT_CREATED, corr, data=_codec.encode(cmd.resume_at))
                self.waits[corr] = cmd.resume_at
            elif isinstance(cmd, CancelWait):
                self.waits.pop(corr, None)
                self.append(EventKind.WAIT_CANCELLED, corr)
            elif isinstance(cmd, DisposeHook):
                self.hooks.pop(corr, None)
                self.append(EventKind.HOOK_DISPOSED, corr)
            elif isinstance(cmd, WriteChunk):
                self.streams.setdefault(cmd.namespace, False)
                self.append(EventKind.STREAM_WRITTEN, corr, name=cmd.namespace, data=cmd.digest)
            elif isinstance(cmd, CloseStream):
                self.streams[cmd.namespace] = True
                self.append(EventKind.STREAM_CLOSED, corr, name=cmd.namespace)
            elif isinstance(cmd, MarkPatch):
                self.append(EventKind.PATCH_MARKED, corr, name=cmd.patch_id)
            elif isinstance(cmd, SetValue):
                self.append(EventKind.VALUE_SET, corr, name=cmd.key, data=cmd.data)
            elif isinstance(cmd, StartChild):
                child = workflows.resolve(cmd.workflow_name)
                if child is None:
                    raise self.fail(f"the workflow starts child workflow {cmd.workflow_name!r}, which is not defined")
                self.append(EventKind.CHILD_STARTED, corr, name=cmd.workflow_name, data=cmd.input)
                self.children[corr] = (child, cmd.run_id)
            elif isinstance(cmd, CancelChild) and corr in self.children:  # (one that ended first: nothing to cancel)
                _, child_id = self.children.pop(corr)
                self.append(EventKind.CHILD_CANCELLED, corr, name=child_id)
                self.dirty = True
        if outcome.status == "suspended":
            return
        if outcome.status == "completed" and self.check_values:
            main = getattr(instance, "_main", None)
            if main is not None and main.done() and not main.cancelled() and main.exception() is None:
                self._round_trip("the workflow's result", main.result(), self.spec.workflow.serializer)
        for corr in sorted(self.hooks, key=lambda c: (len(c), c)):
            self.append(EventKind.HOOK_DISPOSED, corr, name=self.hooks[corr])
        for corr in sorted(self.waits, key=lambda c: (len(c), c)):
            self.append(EventKind.WAIT_CANCELLED, corr)
        for namespace in sorted(ns for ns, closed in self.streams.items() if not closed):
            self.append(EventKind.STREAM_CLOSED, None, name=namespace)
        terminal = EventKind.RUN_COMPLETED if outcome.status == "completed" else EventKind.RUN_FAILED
        self.append(terminal, data=outcome.result if outcome.status == "completed" else outcome.error)
        self.run.status, self.run.result, self.run.error = outcome.status, outcome.result, outcome.error
        self.pending.clear()
        self.hooks.clear()
        self.waits.clear()
        self.children.clear()

    # -- what happens in the world ------------------------------------------------------------------------------

    def attempt(self, corr: str) -> None:
        pending = self.pending[corr]
        step = pending.step
        pending.attempt += 1
        attempt = pending.attempt
        self.append(EventKind.STEP_STARTED, corr, attempt=attempt)
        kinds = ["completes"]
        if self.spec.failures:
            kinds.append("fails")
            if attempt < step.retry.max_attempts:
                kinds.append("is retried")
        how = kinds[self.chooser.pick(f"{step.name}#{attempt}", len(kinds))]
        label = f"step {step.name}#{attempt} ({corr})"
        if how == "completes":
            value = self.chooser.value(f"result of {step.name}#{attempt}", self.spec.results_of(step))
            data = self._round_trip(f"the result of step {step.name!r}", value, step.serializer)
            self.append(EventKind.STEP_COMPLETED, corr, data=data, attempt=attempt)
            del self.pending[corr]
            self.dirty = True
            self.say(f"{label} -> {_short(value)}")
        elif how == "is retried":
            delay = min(step.retry.max_delay, step.retry.initial_delay * 2 ** (attempt - 1))
            retried = RetryableError(f"a generated failure of attempt {attempt}")
            pending.ready_at = self.now + delay
            self.append(EventKind.STEP_RETRYING, corr, data=encode_error(retried, retry_at=pending.ready_at), attempt=attempt)
            self.say(f"{label} -> RetryableError (retried after {delay:g} s)")
        else:
            fatal = FatalError(f"a generated failure of step {step.name!r}")
            self.append(EventKind.STEP_FAILED, corr, data=encode_error(fatal), attempt=attempt)
            del self.pending[corr]
            self.dirty = True
            self.say(f"{label} -> FatalError")

    def end_child(self, corr: str) -> None:
        child, child_id = self.children.pop(corr)
        kinds = ["completes", "fails", "is cancelled"] if self.spec.failures else ["completes"]
        how = kinds[self.chooser.pick(f"child {child.name} ({corr})", len(kinds))]
        label = f"child workflow {child.name} ({corr})"
        if how == "completes":
            value = self.chooser.value(f"result of child {child.name}", self.spec.results_of(child))
            data = self._round_trip(f"the result of child workflow {child.name!r}", value, child.serializer)
            self.append(EventKind.CHILD_COMPLETED, corr, name=child_id, data=data)
            self.say(f"{label} -> {_short(value)}")
        elif how == "fails":
            failed = FatalError(f"a generated failure of child workflow {child.name!r}")
            self.append(EventKind.CHILD_FAILED, corr, name=child_id, data=encode_error(failed))
            self.say(f"{label} -> FatalError")
        else:
            self.append(EventKind.CHILD_CANCELLED, corr, name=child_id)
            self.say(f"{label} is cancelled")
        self.dirty = True

    def deliver(self, corr: str) -> None:
        token = self.hooks[corr]
        strategy = self.spec.payloads_for(token)
        assert strategy is not None
        value = self.chooser.value(f"payload for {token}", strategy)
        self.delivered[corr] = self.delivered.get(corr, 0) + 1
        schema = _schema_of(self.metadata.get(corr))
        if schema is not None:
            definition = hook_definitions.resolve(schema)
            if definition is not None:
                try:
                    value = definition.validate(value)
                except HookValidationError as exc:
                    self.say(f"a payload for hook {token!r} ({corr}) is refused by its schema: {'; '.join(exc.problems)}")
                    return
        data = self._round_trip(f"a payload for hook {token!r}", value)
        waiting = self._awaited(corr)
        self.append(EventKind.HOOK_RECEIVED, corr, name=token, data=data)
        self.dirty = True
        when = "" if waiting is None else (" while the workflow awaits it" if waiting else " before the workflow awaits it")
        self.say(f"hook {token!r} ({corr}) receives {_short(value)}{when}")

    def _awaited(self, corr: str) -> bool | None:
        hook = getattr(self.instance, "_subscribers", {}).get(corr) if self.instance is not None else None
        awaiters = getattr(hook, "_awaiters", None)
        return None if awaiters is None else any(not f.done() for f in awaiters)

    def fire(self, corr: str) -> None:
        del self.waits[corr]
        self.append(EventKind.WAIT_COMPLETED, corr)
        self.dirty = True
        self.say(f"timer {corr} fires")

    def advance(self, when: float) -> None:
        self.say(f"time moves {when - self.now:g} s on, to the next deadline")
        self.now = when

    def crash(self) -> None:
        assert self.instance is not None
        self.instance.close()
        self.instance = None
        self.say(f"crash after commit {len(self.run.commits)}: the live instance is lost, the next invocation replays")


def _schema_of(metadata: bytes | None) -> str | None:
    if not metadata:
        return None
    try:
        value = _codec.decode(metadata, root="hook metadata")
    except SerializationError:
        return None
    return str(value["schema"]) if isinstance(value, dict) and value.get("schema") else None


# -- the checks -------------------------------------------------------------------------------------------


def simulate(spec: Spec, draw: Callable[..., Any]) -> SimulatedRun:
    """One run of ``spec``'s workflow, every choice drawn with ``draw`` (``data.draw``, or a composite
    strategy's ``draw``); the values crossing its boundaries are checked against the codec."""
    arguments = draw(spec.arguments, label="arguments")
    seed = draw(st.text("0123456789abcdef", min_size=4, max_size=8), label="run seed")
    with _seeded(1):
        return _World(spec, _Drawing(draw), arguments, seed, check_values=True).simulate()


def check_replays(run: SimulatedRun) -> None:
    """Cold at every commit and live commit by commit, a replay issues and reaches what was recorded."""
    for index, commit in enumerate(run.commits, 1):
        replayed = _replay(run, run.events[: commit.known])
        if replayed != _expected(commit):
            raise NotDeterministic(_mismatch(f"a cold replay of the history at commit {index} (as after a crash there)",
                                             commit, replayed, run))
    instance = WorkflowInstance(
        run.workflow, run_id="run_check", input=run.input, seed=run.seed, replay_until=math.inf, notice_calls=False
    )
    try:
        for index, commit in enumerate(run.commits, 1):
            got = _described(instance.advance(run.events[instance.seen_seq: commit.known]))
            if got != _expected(commit):
                raise NotDeterministic(_mismatch(f"one live instance fed the history commit by commit, at commit {index}",
                                                 commit, got, run))
    finally:
        instance.close()


def check_world(run: SimulatedRun) -> None:
    """The same schedule with the wall clock a week later and ``random`` reseeded issues the same commands."""
    world = _World(run.spec, _Replaying(run.choices), run.arguments, run.seed, check_values=False)
    with _elsewhere(2, run.workflow.fn):
        try:
            other = world.simulate()
        except (_Exhausted, NotDeterministic):
            other = world.run
    for index, (first, second) in enumerate(zip(run.commits, other.commits, strict=False), 1):
        if first.commands != second.commands:
            position = next(
                (i for i, (a, b) in enumerate(zip(first.commands, second.commands, strict=False)) if a != b),
                min(len(first.commands), len(second.commands)),
            )
            a = describe_command(first.commands[position]) if position < len(first.commands) else "nothing more"
            b = describe_command(second.commands[position]) if position < len(second.commands) else "nothing more"
            raise NotDeterministic(
                f"run again with the wall clock {_ELSEWHERE / 86400:.1f} days later and the global random module "
                f"reseeded, the same schedule makes the workflow issue other commands at invocation {index}: first "
                f"{a}, then {b}. Workflow code must not read the wall clock or global randomness (time.time(), "
                "datetime.now(), random.random(), uuid.uuid4(), ...): use durable.now(), durable.random() and "
                f"durable.uuid4(), or do it in a step.\n\n{run.describe()}"
            )
        if (first.status, first.result) != (second.status, second.result) and first.status == "completed":
            raise NotDeterministic(
                f"run again with the wall clock later and random reseeded, the workflow returns another result: "
                f"first {_short_bytes(first.result)}, then {_short_bytes(second.result)}: workflow code reads the wall "
                f"clock or global randomness (use durable.now(), durable.random(), durable.uuid4())\n\n{run.describe()}"
            )


def check_run(run: SimulatedRun) -> None:
    """Checks 2 and 3 of the module docstring on a simulated run (check 1 happens while it is simulated)."""
    check_world(run)
    check_replays(run)


def check_determinism(
    workflow: Workflow[Any, Any],
    *,
    args: st.SearchStrategy[Any] | None = None,
    steps: Mapping[Step[Any, Any] | BoundStep | Workflow[Any, Any] | str, st.SearchStrategy[Any]] | None = None,
    hooks: Mapping[str, st.SearchStrategy[Any]] | None = None,
    failures: bool = True,
    crashes: bool = True,
    max_examples: int = 100,
    max_decisions: int = 200,
    max_payloads: int = 3,
    settings: hypothesis.settings | None = None,
) -> None:
    """Check ``workflow`` on ``max_examples`` generated runs; NotDeterministic (an AssertionError)
    describing the first problem found, on the shortest schedule Hypothesis finds for it.

    ``args``: a strategy for the arguments (a tuple/list of positional ones, or a dict of keyword
    ones; default: the parameters' annotations). ``steps={step: strategy}``: its results (default:
    its return annotation); a child workflow may be a key too. ``hooks={"token prefix": strategy}``: payloads for hooks whose token
    starts so (a hook with none is never resumed). ``failures``: attempts may fail and be retried
    (per the step's retry policy) or fail for good; ``crashes``: the live instance may be lost after
    any commit. ``max_decisions`` bounds each run, ``max_payloads`` the payloads per hook.
    ``settings`` replaces the Hypothesis settings (default: the active profile's, with
    ``max_examples`` and no deadline).
    """
    spec = Spec(workflow, args, steps or {}, hooks or {}, failures, crashes, max_decisions, max_payloads)

    def property_of_the_workflow(data: st.DataObject) -> None:
        check_run(simulate(spec, data.draw))

    chosen = settings or hypothesis.settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=False,  # the simplest failure, with its schedule, is the one to read
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # no "explain": the schedule is
    )
    property_of_the_workflow.__name__ = "check_determinism_of_" + "".join(c if c.isalnum() else "_" for c in workflow.name)
    try:
        hypothesis.given(data=st.data())(chosen(property_of_the_workflow))()
    except hypothesis.errors.Flaky as exc:
        # The same choices gave another run: something outside the run changed between the two
        # (a module global, a cache, a file, the wall clock taken at import...).
        raise NotDeterministic(
            f"workflow {workflow.name!r} does something else each time it is run with the same arguments, results "
            "and schedule: it depends on state outside the run (a module-level variable, a cache, a file, a "
            "connection...). Keep workflow state in the workflow's own variables, and read the world in steps. "
            f"(Hypothesis: {type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc


# -- helpers ---------------------------------------------------------------------------------------------


def _replay(run: SimulatedRun, events: Sequence[Event]) -> tuple[Any, ...]:
    instance = WorkflowInstance(
        run.workflow, run_id="run_check", input=run.input, seed=run.seed, replay_until=math.inf, notice_calls=False
    )
    try:
        return _described(instance.advance(events))
    finally:
        instance.close()


def _described(outcome: Outcome) -> tuple[Any, ...]:
    error = decode_error(outcome.error) if outcome.error else None
    return (outcome.status, tuple(outcome.commands), outcome.result, error and (error.type, error.message))


def _expected(commit: Commit) -> tuple[Any, ...]:
    error = decode_error(commit.error) if commit.error else None
    return (commit.status, commit.commands, commit.result, error and (error.type, error.message))


def _mismatch(how: str, commit: Commit, got: tuple[Any, ...], run: SimulatedRun) -> str:
    want = _expected(commit)

    def shown(state: tuple[Any, ...]) -> str:
        status, commands, result, error = state
        parts = [", ".join(describe_command(c) for c in commands) or "no command", f"the run {status}"]
        if result is not None:
            parts.append(f"result {_short_bytes(result)}")
        if error is not None:
            parts.append(f"error {error[0]}: {error[1]}")
        return "; ".join(parts)

    return f"{how} differs from what the run did:\n  recorded: {shown(want)}\n  replayed: {shown(got)}\n\n{run.describe()}"


def describe_command(cmd: Command) -> str:
    if isinstance(cmd, ScheduleStep):
        return f"step {cmd.name!r} ({cmd.correlation_id}) with arguments {_short_bytes(cmd.input)}"
    if isinstance(cmd, CreateHook):
        return f"hook {cmd.token!r} ({cmd.correlation_id})"
    if isinstance(cmd, StartWait):
        return f"a timer ({cmd.correlation_id}) until +{cmd.resume_at - T0:g} s"
    if isinstance(cmd, CancelWait):
        return f"cancelling timer {cmd.correlation_id}"
    if isinstance(cmd, DisposeHook):
        return f"disposing hook {cmd.correlation_id}"
    if isinstance(cmd, WriteChunk):
        return f"a write to stream {cmd.namespace!r} ({cmd.correlation_id}): {_short_bytes(cmd.data)}"
    if isinstance(cmd, CloseStream):
        return f"closing stream {cmd.namespace!r}"
    if isinstance(cmd, StartChild):
        return f"child run of {cmd.workflow_name!r} ({cmd.correlation_id}) with arguments {_short_bytes(cmd.input)}"
    if isinstance(cmd, CancelChild):
        return f"cancelling child {cmd.correlation_id}"
    if isinstance(cmd, SetValue):
        return f"setting event {cmd.key!r} ({cmd.correlation_id}): {_short_bytes(cmd.data)}"
    return f"patch marker {cmd.patch_id!r} ({cmd.correlation_id})"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_bytes(data: bytes | None, limit: int = 100) -> str:
    if data is None:
        return "nothing"
    text = bytes(data[4:]).decode("utf-8", "replace") if data[:4] == _codec.JSON_TAG else "<pickled>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The global random module seeded for one simulated run, and put back after it."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


class _LaterDatetime(_dt.datetime):
    """``datetime.now()`` and friends a week later (they return plain datetimes)."""

    @classmethod
    def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
        return _REAL_DATETIME.now(tz) + _dt.timedelta(seconds=_ELSEWHERE)

    @classmethod
    def utcnow(cls) -> _dt.datetime:  # type: ignore[override]
        return _REAL_DATETIME.utcnow() + _dt.timedelta(seconds=_ELSEWHERE)

    @classmethod
    def today(cls) -> _dt.datetime:  # type: ignore[override]
        return cls.now()


class _LaterDate(_dt.date):
    @classmethod
    def today(cls) -> _dt.date:  # type: ignore[override]
        return (_REAL_DATETIME.now() + _dt.timedelta(seconds=_ELSEWHERE)).date()


_REAL_DATETIME, _REAL_DATE = _dt.datetime, _dt.date


@contextmanager
def _elsewhere(seed: int, code: Any) -> Iterator[None]:
    """The wall clock a week later and the global random module seeded otherwise, for one simulated run.

    ``time.time`` and ``datetime.now`` are moved where the workflow's code reaches them: through
    their modules, and through the names its module imported them as (``from time import time``).
    """
    real_time, real_ns = time.time, time.time_ns

    def later() -> float:
        return real_time() + _ELSEWHERE

    def later_ns() -> int:
        return real_ns() + int(_ELSEWHERE * 1e9)

    replacements = {_REAL_DATETIME: _LaterDatetime, _REAL_DATE: _LaterDate, real_time: later, real_ns: later_ns}
    names = getattr(code, "__globals__", {})
    imported = {name: replacements[value] for name, value in list(names.items()) if _hashable(value) and value in replacements}
    with _seeded(seed), mock.patch.object(time, "time", later), mock.patch.object(time, "time_ns", later_ns), \
            mock.patch.object(_dt, "datetime", _LaterDatetime), mock.patch.object(_dt, "date", _LaterDate), \
            mock.patch.dict(names, imported):
        yield


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def same(a: Any, b: Any) -> bool:
    """``b`` is ``a`` rebuilt: same types all the way down, equal values (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(
            same(ka, next(kb for kb in b if kb == ka)) and same(a[ka], b[ka]) for ka in a
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if is_dataclass(a) and not isinstance(a, type):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, BaseException):
        return str(a) == str(b)
    if type(a).__eq__ is object.__eq__ and hasattr(a, "__dict__"):  # type: ignore[comparison-overlap]  # no __eq__: compare its state
        return same(vars(a), vars(b))
    try:
        return bool(a == b)
    except Exception:
        return False
