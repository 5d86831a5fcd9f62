"""An in-test stand-in for the store and runtime around the pure replay engine, and the replay checks.

:class:`Simulator` runs a program's workflow with :class:`~durable._engine.instance.WorkflowInstance`
alone: it appends events to a log, applies the commands each invocation returns the way the
store's commit does, runs step attempts (their behaviour is :func:`programs.plan_attempt`),
fires timers, sends hook payloads and ends child runs (their result is :func:`programs.child_result`)
-- and a Hypothesis-controlled ``random.Random`` chooses
what happens next among everything that could (which parallel step completes first, whether a
payload lands before a timer, how many events pile up before the next invocation, whether the
sticky instance is evicted). Time is virtual and jumps ahead only when nothing else can happen.

:func:`check_commits` is the heart of replay determinism: for every commit of a history
(recorded by the simulator, or by :class:`harness.RecordingStore` around the real runtime) a
fresh instance replayed cold from the log prefix that commit was computed from must return
exactly the same commands and outcome, and so must one sticky instance fed the log slice by
slice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from durable._core import codec as _codec
from durable._core.commands import (
    CancelChild,
    CancelWait,
    CloseStream,
    Command,
    CreateHook,
    DisposeHook,
    MarkPatch,
    ScheduleStep,
    StartChild,
    StartWait,
    WriteChunk,
)
from durable._core.errorinfo import decode_error, encode_error
from durable._core.errors import StreamClosedError
from durable._core.events import REPLAY_KINDS, Event, EventKind
from durable._engine.instance import Outcome, WorkflowInstance
from durable._workflow.workflow import Workflow
from tests.helpers import encode_args

from .programs import STEP_DELAY, PatchMode, Program, child_error, child_result, plan_attempt, to_workflow

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Commit:
    """One committed invocation: what the instance had seen, and what it returned."""

    known_seq: int  # the instance had consumed the log up to here ...
    speculative: tuple[tuple[str, str | None], ...]  # ... plus these (kind, correlation id), appended by this commit
    commands: tuple[Command, ...]
    status: str
    result: bytes | None
    error: bytes | None


@dataclass(frozen=True)
class StoredChunk:
    index: int
    data: bytes
    step_id: str | None
    attempt: int | None


@dataclass
class History:
    """Everything a run left behind: its log, its commits, its streams and how it ended."""

    run_id: str
    input: bytes
    seed: str
    events: list[Event]
    commits: list[Commit]
    chunks: dict[str, list[StoredChunk]]
    closed: dict[str, bool]
    status: str
    result: bytes | None
    error: bytes | None
    upgraded_at: int | None = None  # the index of the first commit made by the code deployed mid-run


class Stuck(AssertionError):
    """The simulated run waits for something that can never happen."""


@dataclass
class _SimStep:
    corr: str
    args: list[Any]
    attempt: int = 0
    ready_at: float | None = 0.0  # None: finished


@dataclass
class Simulator:
    """Runs one program on the pure engine under a schedule chosen by ``rng``."""

    program: Program
    seed: str
    rng: random.Random
    batch: float = 0.35  # chance to let another happening pile up before invoking
    evict: float = 0.15  # chance to drop the sticky instance before an invocation
    patches: PatchMode = "new"  # the version of the code the run starts with (see programs.Patched)
    # A deploy while the run is in flight: before invocation ``upgrade_at`` (0: the first) the
    # worker restarts with the ``upgrade_to`` version of the code, replaying the log cold.
    upgrade_at: int | None = None
    upgrade_to: PatchMode = "new"
    run_id: str = "run_sim"
    events: list[Event] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workflow = to_workflow(self.program, patches=self.patches)
        self.invocations = 0
        self.upgraded_at: int | None = None
        self.input = encode_args()
        self.now = T0
        self.instance: WorkflowInstance | None = None
        self.steps: dict[str, _SimStep] = {}
        self.waits: dict[str, float] = {}
        self.hooks: dict[str, str] = {}  # live hook: correlation id -> token
        self.children: dict[str, tuple[str, list[Any]]] = {}  # live child: correlation id -> (run id, arguments)
        self.unsent: dict[str, list[Any]] = {}
        self.payloads = {token: list(h.payloads) for token, h in self.program.hooks().items()}
        self.chunks: dict[str, list[StoredChunk]] = {}
        self.closed: dict[str, bool] = {}
        self.status = "running"
        self.result: bytes | None = None
        self.error: bytes | None = None
        self.dirty = False

    # -- the log -----------------------------------------------------------------------------

    def _append(self, kind: str, corr: str | None = None, *, name: str | None = None, data: bytes | None = None,
                attempt: int | None = None) -> None:
        self.events.append(Event(self.run_id, len(self.events) + 1, kind, corr, self.now, name, data, attempt))
        self.dirty = True

    def _write(self, namespace: str, data: bytes, step_id: str | None, attempt: int | None) -> bool:
        if self.closed.get(namespace):
            return False
        log = self.chunks.setdefault(namespace, [])
        self.closed.setdefault(namespace, False)
        log.append(StoredChunk(len(log), data, step_id, attempt))
        return True

    # -- running -----------------------------------------------------------------------------

    def run(self, max_rounds: int = 5000) -> History:
        self._append(EventKind.RUN_CREATED, name=self.workflow.name, data=self.input)
        self._append(EventKind.RUN_STARTED)
        try:
            self._loop(max_rounds)
        finally:
            if self.instance is not None:
                self.instance.close()
        return History(
            self.run_id, self.input, self.seed, self.events, self.commits, self.chunks, self.closed, self.status,
            self.result, self.error, self.upgraded_at,
        )

    def _loop(self, max_rounds: int) -> None:
        self._invoke()
        for _ in range(max_rounds):
            if self.status != "running":
                break
            options = self._enabled()
            if not options or (self.dirty and self.rng.random() >= self.batch):
                if self.dirty:
                    self._invoke()
                    continue
                later = [t for t in (*self.waits.values(), *(s.ready_at for s in self.steps.values())) if t is not None]
                if not later:
                    raise Stuck(f"the workflow waits for something that can never happen; log: {self.events}")
                self.now = max(self.now, min(later))
                continue
            self.rng.choice(options)()
        else:
            raise Stuck(f"no end after {max_rounds} rounds")

    def _invoke(self) -> None:
        if self.invocations == self.upgrade_at:
            self.workflow = to_workflow(self.program, patches=self.upgrade_to)
            self.upgraded_at = len(self.commits)
            if self.instance is not None:  # a new worker: the old one's live instance is gone
                self.instance.close()
                self.instance = None
        self.invocations += 1
        if self.instance is None or self.rng.random() < self.evict:
            if self.instance is not None:
                self.instance.close()
            self.instance = WorkflowInstance(self.workflow, run_id=self.run_id, input=self.input, seed=self.seed)
        known = len(self.events)
        outcome = self.instance.advance(self.events)
        self.dirty = False
        if outcome.diverged:
            raise AssertionError(f"an uninterrupted run diverged from its own log: {decode_error(outcome.error or b'')}")
        self.commits.append(Commit(known, (), tuple(outcome.commands), outcome.status, outcome.result, outcome.error))
        self._apply(outcome)

    def _apply(self, outcome: Outcome) -> None:
        lost_write: str | None = None
        for cmd in outcome.commands:
            corr = cmd.correlation_id
            if isinstance(cmd, ScheduleStep):
                self._append(EventKind.STEP_CREATED, corr, name=cmd.name, data=cmd.input)
                self.steps[corr] = _SimStep(corr, _codec.decode(cmd.input)["args"], ready_at=self.now)
            elif isinstance(cmd, CreateHook):
                self._append(EventKind.HOOK_CREATED, corr, name=cmd.token, data=cmd.metadata)
                self.hooks[corr] = cmd.token
                self.unsent[corr] = list(self.payloads.get(cmd.token, []))
            elif isinstance(cmd, StartWait):
                self._append(EventKind.WAIT_CREATED, corr, data=_codec.encode(cmd.resume_at))
                self.waits[corr] = cmd.resume_at
            elif isinstance(cmd, CancelWait):
                self.waits.pop(corr, None)
                self._append(EventKind.WAIT_CANCELLED, corr)
            elif isinstance(cmd, DisposeHook):
                self.hooks.pop(corr, None)
                self.unsent.pop(corr, None)
                self._append(EventKind.HOOK_DISPOSED, corr)
            elif isinstance(cmd, WriteChunk):
                if self._write(cmd.namespace, cmd.data, None, None):
                    self._append(EventKind.STREAM_WRITTEN, corr, name=cmd.namespace, data=cmd.digest)
                elif lost_write is None:
                    lost_write = cmd.namespace
            elif isinstance(cmd, CloseStream):
                self.chunks.setdefault(cmd.namespace, [])  # as the store does: a closed stream exists
                self.closed[cmd.namespace] = True
                self._append(EventKind.STREAM_CLOSED, corr, name=cmd.namespace)
            elif isinstance(cmd, StartChild):
                self._append(EventKind.CHILD_STARTED, corr, name=cmd.workflow_name, data=cmd.input)
                self.children[corr] = (cmd.run_id, _codec.decode(cmd.input)["args"])
            elif isinstance(cmd, CancelChild) and corr in self.children:
                self._append(EventKind.CHILD_CANCELLED, corr, name=self.children.pop(corr)[0])
            elif isinstance(cmd, MarkPatch):
                self._append(EventKind.PATCH_MARKED, corr, name=cmd.patch_id)
        if lost_write is not None:
            # As the store does: a workflow write to a stream a step closed fails the run.
            error = encode_error(StreamClosedError(self.run_id, lost_write))
            outcome = Outcome("failed", [], error=error)
        if outcome.status == "suspended":
            return
        # As the store does when a run ends: each live hook disposed, each pending wait cancelled
        # and each open stream closed is an event, before the terminal one.
        for corr in sorted(self.hooks, key=lambda c: (len(c), c)):
            self._append(EventKind.HOOK_DISPOSED, corr, name=self.hooks[corr])
        for corr in sorted(self.waits, key=lambda c: (len(c), c)):
            self._append(EventKind.WAIT_CANCELLED, corr)
        for namespace in sorted(ns for ns in self.chunks if not self.closed.get(ns)):
            self._append(EventKind.STREAM_CLOSED, None, name=namespace)
        if outcome.status == "completed":
            self._append(EventKind.RUN_COMPLETED, data=outcome.result)
        else:
            self._append(EventKind.RUN_FAILED, data=outcome.error)
        self.status, self.result, self.error = outcome.status, outcome.result, outcome.error
        self.closed = {ns: True for ns in self.closed}
        self.dirty = False

    # -- what can happen now ---------------------------------------------------------------------

    def _enabled(self) -> list[Any]:
        options: list[Any] = []
        for step in self.steps.values():
            if step.ready_at is not None and step.ready_at <= self.now:
                options.append(lambda s=step: self._attempt(s))
        for corr, pending in self.unsent.items():
            if pending:
                options.append(lambda c=corr: self._send(c))
        for corr, due in self.waits.items():
            if due <= self.now:
                options.append(lambda c=corr: self._fire(c))
        for corr in self.children:
            options.append(lambda c=corr: self._child_ends(c))
        return options

    def _child_ends(self, corr: str) -> None:
        run_id, (key, arg, fails) = self.children.pop(corr)
        if fails:
            self._append(EventKind.CHILD_FAILED, corr, name=run_id, data=encode_error(child_error(key)))
        else:
            self._append(EventKind.CHILD_COMPLETED, corr, name=run_id, data=_codec.encode(child_result(key, arg)))

    def _attempt(self, step: _SimStep) -> None:
        step.attempt += 1
        self._append(EventKind.STEP_STARTED, step.corr, attempt=step.attempt)
        key, arg, fails, fatal, chunks = step.args
        plan = plan_attempt(key, arg, fails, fatal, chunks, step.attempt)
        for chunk in plan.chunks:
            self._write(f"s{key}", _codec.encode(chunk), step.corr, step.attempt)
        if plan.outcome == "completed":
            if plan.chunks:
                self.closed[f"s{key}"] = True
            step.ready_at = None
            self._append(EventKind.STEP_COMPLETED, step.corr, data=_codec.encode(plan.value), attempt=step.attempt)
        elif plan.outcome == "retry":
            assert plan.error is not None
            retry_at = self.now + STEP_DELAY * 2 ** (step.attempt - 1)
            step.ready_at = retry_at
            self._append(EventKind.STEP_RETRYING, step.corr, data=encode_error(plan.error, retry_at=retry_at), attempt=step.attempt)
        else:
            assert plan.error is not None
            step.ready_at = None
            self._append(EventKind.STEP_FAILED, step.corr, data=encode_error(plan.error), attempt=step.attempt)

    def _send(self, corr: str) -> None:
        payload = self.unsent[corr].pop(0)
        self._append(EventKind.HOOK_RECEIVED, corr, name=self.hooks[corr], data=_codec.encode(payload))

    def _fire(self, corr: str) -> None:
        del self.waits[corr]
        self._append(EventKind.WAIT_COMPLETED, corr)


def simulate(program: Program, *, seed: str, rng: random.Random, **options: Any) -> History:
    return Simulator(program, seed, rng, **options).run()


# -- replay checks -------------------------------------------------------------------------------------


def _speculative_events(history: History, commit: Commit) -> list[Event]:
    """The log entries a commit appended for the events its instance consumed before they were stored."""
    found = []
    for kind, corr in commit.speculative:
        match = next(
            (e for e in history.events if e.seq > commit.known_seq and e.kind == kind and e.correlation_id == corr), None
        )
        assert match is not None, f"speculative {kind} {corr} of a successful commit is not in the log"
        found.append(match)
    return found


def _describe(outcome: Outcome) -> tuple[Any, ...]:
    error = decode_error(outcome.error) if outcome.error else None
    return (outcome.status, tuple(outcome.commands), outcome.result, error and (error.type, error.message))


def _expected(commit: Commit) -> tuple[Any, ...]:
    error = decode_error(commit.error) if commit.error else None
    return (commit.status, commit.commands, commit.result, error and (error.type, error.message))


def _mismatch(how: str, index: int, commit: Commit, got: tuple[Any, ...], want: tuple[Any, ...], history: History) -> str:
    return (
        f"{how} replay disagrees with commit #{index} (log up to seq {commit.known_seq}, speculative {commit.speculative}):\n"
        f"  recorded: {want}\n  replayed: {got}\n  log: {history.events}"
    )


def check_commits(workflow: Workflow[Any, Any], history: History, *, first: int = 0) -> None:
    """(b) cold replay at every commit and (c) one sticky instance must reproduce each commit exactly
    (from commit ``first`` on: the commits an upgraded run's new code made)."""
    replayable = [e for e in history.events if e.kind in REPLAY_KINDS]
    # (b) cold, at every suspension point
    for index, commit in enumerate(history.commits):
        if index < first:
            continue
        prefix = [e for e in replayable if e.seq <= commit.known_seq] + _speculative_events(history, commit)
        instance = WorkflowInstance(workflow, run_id=history.run_id, input=history.input, seed=history.seed)
        try:
            got = _describe(instance.advance(prefix))
        finally:
            instance.close()
        assert got == _expected(commit), _mismatch("cold", index, commit, got, _expected(commit), history)
    # (c) sticky: one instance, fed what each commit had seen since the previous one
    instance = WorkflowInstance(workflow, run_id=history.run_id, input=history.input, seed=history.seed)
    try:
        for index, commit in enumerate(history.commits):
            if index < first:
                continue
            fresh = [e for e in replayable if instance.seen_seq < e.seq <= commit.known_seq]
            got = _describe(instance.advance(fresh + _speculative_events(history, commit)))
            assert got == _expected(commit), _mismatch("sticky", index, commit, got, _expected(commit), history)
    finally:
        instance.close()


def replay_slices(workflow: Workflow[Any, Any], history: History) -> Sequence[Outcome]:
    """Feed the whole log to one instance commit by commit; the outcomes, in order (for divergence checks)."""
    replayable = [e for e in history.events if e.kind in REPLAY_KINDS]
    instance = WorkflowInstance(workflow, run_id=history.run_id, input=history.input, seed=history.seed)
    outcomes = []
    try:
        for commit in history.commits:
            fresh = [e for e in replayable if instance.seen_seq < e.seq <= commit.known_seq]
            outcome = instance.advance(fresh + _speculative_events(history, commit))
            outcomes.append(outcome)
            if outcome.status != "suspended":
                break
    finally:
        instance.close()
    return outcomes
