"""A plain in-memory model of the store, for the state-machine property (test_store_model.py).

It says what each :class:`~durable.stores._base.Store` call must return and how the state must
change, in dictionaries and lists, with none of the SQL. Where the store may legitimately choose
(which of several equally due runs a limited claim takes, the order of steps claimed in one
call), the model accepts the store's choice: :class:`ModelEvent.block` marks events whose order
within one transaction is not specified.
"""

from __future__ import annotations

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
    SetValue,
    StartChild,
    StartWait,
    WriteChunk,
)
from durable._core.errorinfo import decode_error, encode_error
from durable._core.errors import DurableError, HookNotFound, RunConflict, RunNotFound, StreamClosedError
from durable._core.events import REPLAY_KINDS, EventKind
from durable.stores._base import Chunk as StoreChunk
from durable.stores._base import (
    ChunkPage,
    CommitResult,
    HookRecord,
    Invocation,
    NewRun,
    PublishedWorkflow,
    RunRecord,
    StepClaim,
    StepRecord,
    Versions,
)

ACTIVE = ("pending", "running")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class ModelEvent:
    seq: int
    kind: str
    corr: str | None
    created_at: float
    name: str | None = None
    data: bytes | None = None
    attempt: int | None = None
    block: int | None = None  # events of one block may be stored in any order among themselves

    def key(self) -> tuple[Any, ...]:
        return (str(self.kind), self.corr, self.created_at, self.name, self.data, self.attempt)


@dataclass
class ModelRun:
    run_id: str
    workflow_name: str
    status: str
    input: bytes
    seed: str
    created_at: float
    idempotency_key: str | None
    owner: str | None
    wake_at: float | None
    started_at: float | None = None
    completed_at: float | None = None
    output: bytes | None = None
    error: bytes | None = None
    trace_link: str | None = None
    events: list[ModelEvent] = field(default_factory=list)
    parent_run_id: str | None = None  # a child run: who started it, at which position, and its close policy
    parent_corr: str | None = None
    on_parent_close: str | None = None
    cancel_reason: str | None = None
    deadline: float | None = None
    version: str | None = None
    inline: str | None = None  # the step its own commit claimed into its one inline slot (no steps row while it runs)

    @property
    def last_seq(self) -> int:
        return len(self.events)

    def record(self) -> RunRecord:
        return RunRecord(
            self.run_id, self.workflow_name, self.status, self.input, self.seed, self.created_at, 0.0,
            self.started_at, self.completed_at, self.output, self.error, self.idempotency_key, self.last_seq,
            self.trace_link, parent_run_id=self.parent_run_id, cancel_reason=self.cancel_reason, deadline=self.deadline,
            version=self.version,
        )


@dataclass
class ModelStep:
    run_id: str
    step_id: str
    name: str
    status: str
    attempt: int
    max_attempts: int
    input: bytes
    created_at: float
    ready_at: float | None
    owner: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    output: bytes | None = None
    error: bytes | None = None
    row: bool = True  # False once it completed as its run's inline step: the store keeps only its events

    def record(self) -> StepRecord:
        return StepRecord(
            self.run_id, self.step_id, self.name, self.status, self.attempt, self.max_attempts, self.created_at,
            self.started_at, self.completed_at, self.output, self.error, self.ready_at, self.input,
        )


@dataclass
class ModelHook:
    run_id: str
    hook_id: str
    token: str
    status: str
    metadata: bytes | None
    created_at: float

    def record(self) -> HookRecord:
        return HookRecord(self.run_id, self.hook_id, self.token, self.status, self.metadata, self.created_at)


@dataclass
class ModelStream:
    chunks: list[StoreChunk] = field(default_factory=list)
    closed: bool = False
    error: str | None = None
    closed_by: str | None = None  # "step_id#attempt" of the step attempt that closed it by appending

    def refuses(self, step_id: str | None, attempt: int | None) -> bool:
        """Closed to this writer: only a later attempt of the step whose attempt closed it may reopen it."""
        if not self.closed:
            return False
        writer = f"{step_id}#{attempt}" if step_id is not None else None
        reopen = step_id is not None and self.closed_by is not None and self.closed_by.startswith(f"{step_id}#") \
            and self.closed_by != writer
        return not reopen


def _error_text(error: bytes | None) -> str:
    if not error:
        return "failed"
    info = decode_error(error)
    return f"{info.type}: {info.message}"


def _order_key(created_at: float, ident: str) -> tuple[float, int, str]:
    return (created_at, len(ident), ident)


class StoreModel:
    """What the store holds, as plain data; each method is one store call."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.runs: dict[str, ModelRun] = {}
        self.steps: dict[tuple[str, str], ModelStep] = {}
        self.hooks: dict[tuple[str, str], ModelHook] = {}
        self.waits: dict[tuple[str, str], tuple[float, str]] = {}  # -> (resume_at, status)
        self.streams: dict[tuple[str, str], ModelStream] = {}
        self.workers: dict[str, float] = {}  # worker -> alive_until
        self.published: dict[str, PublishedWorkflow] = {}  # name -> the latest definition published
        self.values: dict[tuple[str, str], tuple[bytes, int, float]] = {}  # (run, key) -> (value, seq, updated_at)
        self.blocks = 0

    # -- helpers -------------------------------------------------------------------------------

    def alive(self, worker: str | None, now: float) -> bool:
        return worker is not None and self.workers.get(worker, 0.0) > now

    def _append(self, run: ModelRun, kind: str, corr: str | None, now: float, *, name: str | None = None,
                data: bytes | None = None, attempt: int | None = None, block: int | None = None) -> None:
        run.events.append(ModelEvent(run.last_seq + 1, kind, corr, now, name, data, attempt, block))

    @staticmethod
    def _finished(run: ModelRun, step: ModelStep, kind: str) -> None:
        """``step`` took the outcome ``kind``: as its run's inline step, it leaves the slot, completed
        without a row (any other end gives it one)."""
        if run.inline == step.step_id:
            run.inline = None
            step.row = kind != EventKind.STEP_COMPLETED

    def _finalize(self, run: ModelRun, stream_error: str | None, now: float) -> None:
        """The run ends: each hook disposed, wait cancelled and stream closed is an event (hooks,
        then waits by position, then streams by namespace), before the terminal event. Its inline
        step, if still running, runs on as a row."""
        run_id = run.run_id
        run.inline = None

        def position(key: str) -> tuple[int, str]:
            return (len(key), key)
        for hook in sorted((h for h in self.hooks.values() if h.run_id == run_id and h.status == "active"),
                           key=lambda h: position(h.hook_id)):
            hook.status = "disposed"
            self._append(run, EventKind.HOOK_DISPOSED, hook.hook_id, now, name=hook.token)
        for key, (resume_at, status) in sorted(self.waits.items(), key=lambda kv: position(kv[0][1])):
            if key[0] == run_id and status == "waiting":
                self.waits[key] = (resume_at, "cancelled")
                self._append(run, EventKind.WAIT_CANCELLED, key[1], now)
        for step in self.steps.values():
            if step.run_id == run_id and step.status == "pending":
                step.status, step.owner = "cancelled", None
        for (rid, namespace), stream in sorted(self.streams.items()):
            if rid == run_id and not stream.closed:
                stream.closed, stream.error = True, stream_error
                self._append(run, EventKind.STREAM_CLOSED, None, now, name=namespace)
        # Then its unfinished children whose policy is "cancel" (and theirs, recursively).
        for child in sorted((r for r in self.runs.values() if r.parent_run_id == run_id and r.on_parent_close == "cancel"
                             and r.status in ACTIVE), key=lambda r: _order_key(r.created_at, r.run_id)):
            self._cancel(child, now, "parent closed")

    def _cancel(self, run: ModelRun, now: float, reason: str | None) -> None:
        self._finalize(run, "run cancelled", now)
        self._append(run, EventKind.RUN_CANCELLED, None, now, data=_codec.encode({"reason": reason}) if reason else None)
        run.status, run.completed_at, run.owner, run.wake_at, run.cancel_reason = "cancelled", now, None, None, reason

    def _deliver_to_parent(self, child: ModelRun, data: bytes | None, now: float) -> None:
        """A child ended: its end is appended to its parent's log (while the parent runs), which is woken."""
        parent = self.runs.get(child.parent_run_id or "")
        if parent is None or parent.status in TERMINAL:
            return
        kind = {"completed": EventKind.CHILD_COMPLETED, "failed": EventKind.CHILD_FAILED}.get(child.status, EventKind.CHILD_CANCELLED)
        self._append(parent, kind, child.parent_corr, now, name=child.run_id, data=data)
        parent.wake_at = now

    def _stream(self, run_id: str, namespace: str) -> ModelStream:
        return self.streams.setdefault((run_id, namespace), ModelStream())

    # -- workers -----------------------------------------------------------------------------------

    def register_worker(self, worker: str, ttl: float, now: float) -> None:
        self.workers[worker] = now + ttl

    def heartbeat(self, worker: str, ttl: float, now: float) -> set[str]:
        self.workers[worker] = now + ttl
        return {w for w, until in self.workers.items() if w != worker and until > now}

    def mark_workers_dead(self, workers: Sequence[str]) -> None:
        for worker in workers:
            if worker in self.workers:
                self.workers[worker] = 0.0

    # -- published workflows -------------------------------------------------------------------------

    def publish_workflows(self, published: Sequence[PublishedWorkflow]) -> None:
        for p in published:
            self.published[p.name] = p

    def list_workflows(self) -> list[PublishedWorkflow]:
        return [self.published[name] for name in sorted(self.published)]

    # -- runs --------------------------------------------------------------------------------------

    def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        by_key = next((r for r in self.runs.values() if new.idempotency_key and r.idempotency_key == new.idempotency_key), None)
        if new.run_id in self.runs or by_key is not None:
            existing = by_key if by_key is not None else self.runs[new.run_id]
            if existing.workflow_name != new.workflow_name:
                raise DurableError("exists for another workflow")
            if existing.input != new.input:
                raise DurableError("exists with other arguments")
            return existing.record(), False
        run = ModelRun(new.run_id, new.workflow_name, "pending", new.input, new.seed, new.now, new.idempotency_key,
                       new.owner, new.now, trace_link=new.trace_link, deadline=new.deadline, version=new.version)
        self._append(run, EventKind.RUN_CREATED, None, new.now, name=new.workflow_name, data=new.input)
        self.runs[new.run_id] = run
        return run.record(), True

    def free(self, owner: str | None, worker: str, now: float) -> bool:
        """A lease ``worker`` may take over: nobody's, or another worker's that is not alive (its own never lapses)."""
        return owner is None or (owner != worker and not self.alive(owner, now))

    @staticmethod
    def served(run: ModelRun, names: Sequence[str], versions: Versions | None) -> bool:
        """A worker executing ``names`` takes this run: a workflow it names, in a version it serves."""
        return run.workflow_name in names and (
            versions is None or run.workflow_name not in versions or run.version in versions[run.workflow_name]
        )

    def claimable_runs(self, names: Sequence[str], worker: str, now: float, versions: Versions | None = None) -> list[ModelRun]:
        return sorted(
            (r for r in self.runs.values()
             if r.wake_at is not None and r.wake_at <= now and r.status in ACTIVE and self.served(r, names, versions)
             and self.free(r.owner, worker, now)),
            key=lambda r: r.wake_at or 0.0,
        )

    def time_out_runs(self, worker: str, now: float) -> None:
        """What every claim_runs does first: cancel unfinished runs past their deadline that nobody alive holds."""
        due = sorted((r for r in self.runs.values() if r.deadline is not None and r.deadline <= now and r.status in ACTIVE
                      and self.free(r.owner, worker, now)), key=lambda r: (r.deadline or 0.0, r.run_id))
        for run in due[:16]:
            if run.status in ACTIVE:  # a parent timed out just before may have cancelled it already
                self.cancel_run(run.run_id, now, "timeout")

    def claim_run(self, run_id: str, worker: str, now: float) -> RunRecord:
        """One run the store chose in claim_runs: fire its due waits, lease it."""
        run = self.runs[run_id]
        due = sorted(
            ((resume_at, wait_id) for (rid, wait_id), (resume_at, status) in self.waits.items()
             if rid == run_id and status == "waiting" and resume_at <= now),
        )
        for resume_at, wait_id in due:
            self._append(run, EventKind.WAIT_COMPLETED, wait_id, now)
            self.waits[(run_id, wait_id)] = (resume_at, "completed")
        run.owner = worker
        return run.record()

    def release_run(self, run_id: str, worker: str) -> None:
        run = self.runs.get(run_id)
        if run is not None and run.owner == worker:
            run.owner = None

    def cancel_run(self, run_id: str, now: float, reason: str | None = None) -> RunRecord | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        if run.status not in TERMINAL:
            self._cancel(run, now, reason)
            self._deliver_to_parent(run, _codec.encode({"reason": reason}) if reason else None, now)
        return run.record()

    def commit(self, inv: Invocation) -> CommitResult:
        run = self.runs.get(inv.run_id)
        if run is None:
            return CommitResult(False, "no such run")
        if run.status in TERMINAL:
            return CommitResult(False, "run is " + run.status, run_status=run.status)
        if inv.holds_lease and run.owner != inv.worker_id:
            return CommitResult(False, "lease lost", run_status=run.status)
        if run.deadline is not None and run.deadline <= inv.now:
            self.cancel_run(run.run_id, inv.now, "timeout")
            return CommitResult(False, "run timed out", run_status="cancelled")
        clean = run.last_seq == inv.known_seq or not any(
            e.seq > inv.known_seq and e.kind in REPLAY_KINDS for e in run.events
        )
        if inv.speculative:
            if not clean:
                return CommitResult(False, "log moved", run_status=run.status)
            if run.owner is not None and run.owner != inv.worker_id and self.alive(run.owner, inv.now):
                return CommitResult(False, "run is leased", run_status=run.status)
        # A refused speculative event refuses the whole commit: nothing of it may stay. Each event
        # is checked against the state the earlier ones of the same commit leave.
        seen: set[tuple[str, str | None]] = set()
        for ev in inv.speculative:
            corr = ev.correlation_id or ""
            if (str(ev.kind), ev.correlation_id) in seen:
                return CommitResult(False, f"{ev.kind} twice", run_status=run.status)
            seen.add((str(ev.kind), ev.correlation_id))
            if ev.kind == EventKind.RUN_STARTED and run.status != "pending":
                return CommitResult(False, "run already started", run_status=run.status)
            if ev.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
                if {(str(EventKind.STEP_COMPLETED), ev.correlation_id), (str(EventKind.STEP_FAILED), ev.correlation_id)} <= seen:
                    return CommitResult(False, "step finished twice", run_status=run.status)
                if not self.step_accepts(inv.run_id, corr, ev.kind, ev.attempt):
                    return CommitResult(False, "step not running", run_status=run.status)
            if ev.kind == EventKind.WAIT_COMPLETED:
                wait = self.waits.get((inv.run_id, corr))
                if wait is None or wait[1] != "waiting":
                    return CommitResult(False, "wait not pending", run_status=run.status)
        # A workflow write to a stream that is closed (by a step, or earlier in this commit) is
        # refused with the whole commit: what becomes of the run is the runtime's call.
        closing: set[str] = set()
        for cmd in inv.commands:
            if isinstance(cmd, CloseStream):
                closing.add(cmd.namespace)
            elif isinstance(cmd, WriteChunk):
                stream = self.streams.get((inv.run_id, cmd.namespace))
                if cmd.namespace in closing or (stream is not None and stream.refuses(None, None)):
                    raise StreamClosedError(inv.run_id, cmd.namespace)
        now = inv.now
        for ev in inv.speculative:
            if ev.kind == EventKind.RUN_STARTED:
                run.status, run.started_at = "running", ev.created_at
            elif ev.kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
                step = self.steps[(inv.run_id, ev.correlation_id or "")]
                self._finished(run, step, ev.kind)
                step.status = "completed" if ev.kind == EventKind.STEP_COMPLETED else "failed"
                if ev.kind == EventKind.STEP_COMPLETED:
                    step.output = ev.data
                else:
                    step.error = ev.data
                step.completed_at, step.owner = ev.created_at, None
            else:
                wait_key = (inv.run_id, ev.correlation_id or "")
                self.waits[wait_key] = (self.waits[wait_key][0], "completed")
            self._append(run, ev.kind, ev.correlation_id, ev.created_at, data=ev.data, attempt=ev.attempt)

        conflicts = False
        new_steps = [c for c in inv.commands if isinstance(c, ScheduleStep)]
        claiming = {c.correlation_id for c in new_steps[: inv.claim_steps]} if inv.status == "suspended" else set()
        claimed: list[StepClaim] = []
        for cmd in inv.commands:
            seq = run.last_seq
            written = self._command(run, cmd, inv, now, claiming, claimed)
            if isinstance(cmd, CreateHook) and run.events[-1].kind == EventKind.HOOK_CONFLICT:
                conflicts = True
            if isinstance(cmd, StartChild | CancelChild) and any(
                e.kind in (EventKind.CHILD_FAILED, EventKind.CHILD_CANCELLED) for e in run.events[seq:]
            ):
                conflicts = True  # a delivery the instance has not seen
            assert written, "checked above"
        if inv.status == "suspended":
            wake = inv.next_wake
            if run.deadline is not None and (wake is None or run.deadline < wake):
                wake = run.deadline  # a run is invoked at its deadline at the latest (and then timed out)
            run.wake_at = now if (not clean or conflicts) else wake
            run.owner = None
            run_status = run.status
        else:
            kind = EventKind.RUN_COMPLETED if inv.status == "completed" else EventKind.RUN_FAILED
            run_status = "completed" if inv.status == "completed" else "failed"
            self._finalize(run, None if run_status == "completed" else _error_text(inv.error), now)
            self._append(run, kind, None, now, data=inv.result if inv.status == "completed" else inv.error)
            run.status, run.output, run.error, run.completed_at = run_status, inv.result, inv.error, now
            run.owner, run.wake_at = None, None
            self._deliver_to_parent(run, inv.result if run_status == "completed" else inv.error, now)
        return CommitResult(True, last_seq=run.last_seq, clean=clean, claimed=claimed, run_status=run_status,
                            conflicts=conflicts)

    def _command(self, run: ModelRun, cmd: Command, inv: Invocation, now: float, claiming: set[str],
                 claimed: list[StepClaim]) -> bool:
        """Apply one command; False only for a write to a closed stream (it is lost)."""
        corr, run_id = cmd.correlation_id, run.run_id
        if isinstance(cmd, ScheduleStep):
            # a step claimed here starts with its step_created (attempt 1), without a step_started
            self._append(run, EventKind.STEP_CREATED, corr, now, name=cmd.name, data=cmd.input,
                         attempt=1 if corr in claiming else None)
            if corr in claiming:
                inline = run.inline is None
                if inline:
                    run.inline = corr
                self.steps[(run_id, corr)] = ModelStep(run_id, corr, cmd.name, "running", 1, cmd.max_attempts, cmd.input,
                                                       now, None, inv.worker_id, now)
                claimed.append(StepClaim(run_id, corr, cmd.name, cmd.input, 1, cmd.max_attempts, now, run.workflow_name,
                                         run.started_at or now, inline=inline))
            else:
                self.steps[(run_id, corr)] = ModelStep(run_id, corr, cmd.name, "pending", 0, cmd.max_attempts, cmd.input,
                                                       now, now)
        elif isinstance(cmd, CreateHook):
            taken = any(h.token == cmd.token and h.status == "active" for h in self.hooks.values())
            if taken or (run_id, corr) in self.hooks:
                self._append(run, EventKind.HOOK_CONFLICT, corr, now, name=cmd.token, data=cmd.metadata)
            else:
                self.hooks[(run_id, corr)] = ModelHook(run_id, corr, cmd.token, "active", cmd.metadata, now)
                self._append(run, EventKind.HOOK_CREATED, corr, now, name=cmd.token, data=cmd.metadata)
        elif isinstance(cmd, StartWait):
            self.waits[(run_id, corr)] = (cmd.resume_at, "waiting")
            self._append(run, EventKind.WAIT_CREATED, corr, now, data=_codec.encode(cmd.resume_at))
        elif isinstance(cmd, CancelWait):
            wait = self.waits.get((run_id, corr))
            if wait is not None and wait[1] == "waiting":
                self.waits[(run_id, corr)] = (wait[0], "cancelled")
            self._append(run, EventKind.WAIT_CANCELLED, corr, now)
        elif isinstance(cmd, DisposeHook):
            hook = self.hooks.get((run_id, corr))
            if hook is not None and hook.status == "active":
                hook.status = "disposed"
            self._append(run, EventKind.HOOK_DISPOSED, corr, now)
        elif isinstance(cmd, WriteChunk):
            stream = self._stream(run_id, cmd.namespace)
            if stream.refuses(None, None):
                return False
            stream.chunks.append(StoreChunk(len(stream.chunks), cmd.data, None, None, now))
            stream.closed, stream.closed_by = False, None
            self._append(run, EventKind.STREAM_WRITTEN, corr, now, name=cmd.namespace, data=cmd.digest)
        elif isinstance(cmd, CloseStream):
            stream = self._stream(run_id, cmd.namespace)
            if not stream.closed:
                stream.closed, stream.error = True, None
            self._append(run, EventKind.STREAM_CLOSED, corr, now, name=cmd.namespace)
        elif isinstance(cmd, StartChild):
            self._append(run, EventKind.CHILD_STARTED, corr, now, name=cmd.workflow_name, data=cmd.input)
            existing = self.runs.get(cmd.run_id)
            if existing is None:
                child = ModelRun(cmd.run_id, cmd.workflow_name, "pending", cmd.input, cmd.seed, now, None, None, now,
                                 parent_run_id=run_id, parent_corr=corr, on_parent_close=cmd.on_parent_close,
                                 deadline=None if cmd.timeout is None else now + cmd.timeout)
                self._append(child, EventKind.RUN_CREATED, None, now, name=cmd.workflow_name, data=cmd.input)
                self.runs[cmd.run_id] = child
            else:  # an explicit id naming another run: the child fails at once
                same = existing.workflow_name == cmd.workflow_name
                error = RunConflict(cmd.run_id, "run_id", cmd.run_id, existing.workflow_name, cmd.workflow_name,
                                    other_arguments=same)
                self._append(run, EventKind.CHILD_FAILED, corr, now, name=cmd.run_id, data=encode_error(error))
        elif isinstance(cmd, SetValue):
            self._append(run, EventKind.VALUE_SET, corr, now, name=cmd.key, data=cmd.data)
            self.values[(run_id, cmd.key)] = (cmd.data, run.last_seq, now)
        elif isinstance(cmd, CancelChild):
            found = next((r for r in self.runs.values() if r.parent_run_id == run_id and r.parent_corr == corr), None)
            if found is not None and found.status in ACTIVE:
                self._cancel(found, now, None)
                self._append(run, EventKind.CHILD_CANCELLED, corr, now, name=found.run_id)
        elif isinstance(cmd, MarkPatch):
            self._append(run, EventKind.PATCH_MARKED, corr, now, name=cmd.patch_id)
        return True

    def list_values(self, run_id: str) -> list[tuple[str, bytes, int, float]]:
        return sorted((key, *v) for (rid, key), v in self.values.items() if rid == run_id)

    def list_children(self, run_id: str) -> list[RunRecord]:
        children = [r for r in self.runs.values() if r.parent_run_id == run_id]
        return [r.record() for r in sorted(children, key=lambda r: _order_key(r.created_at, r.run_id))]

    # -- steps -------------------------------------------------------------------------------------

    def claim_steps(self, worker: str, names: Sequence[str], now: float) -> list[StepClaim]:
        """All claimable steps (the test asks for more than there can be, so the choice is the model's)."""
        pending = sorted(
            (s for s in self.steps.values() if s.status == "pending" and s.ready_at is not None and s.ready_at <= now
             and s.name in names),
            key=lambda s: s.ready_at or 0.0,
        )
        orphans = [s for s in self.steps.values() if s.status == "running" and s.name in names
                   and self.free(s.owner, worker, now)]
        self.blocks += 1
        claims = []
        for step in [*pending, *orphans]:
            run = self.runs[step.run_id]
            if run.inline == step.step_id:
                run.inline = None  # claimed again as a row
            if run.status in TERMINAL:
                step.status, step.owner = "cancelled", None
                continue
            attempt = step.attempt + 1  # even past max_attempts: whether it may run is the runtime's call
            self._append(run, EventKind.STEP_STARTED, step.step_id, now, attempt=attempt, block=self.blocks)
            step.status, step.attempt, step.owner = "running", attempt, worker
            step.started_at = step.started_at if step.started_at is not None else now
            step.ready_at = None
            claims.append(StepClaim(step.run_id, step.step_id, step.name, step.input, attempt, step.max_attempts,
                                    step.started_at, run.workflow_name, run.started_at or now))
        return claims

    def step_accepts(self, run_id: str, step_id: str, kind: str, attempt: int | None) -> bool:
        """A running step takes a result from any attempt, a failure or retry only from the attempt now running."""
        step = self.steps.get((run_id, step_id))
        if step is None or step.status != "running":
            return False
        return kind == EventKind.STEP_COMPLETED or attempt is None or attempt == step.attempt

    def finish_step(self, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float,
                    retry_at: float | None) -> bool:
        run = self.runs.get(run_id)
        step = self.steps.get((run_id, step_id))
        if run is None or step is None or not self.step_accepts(run_id, step_id, kind, attempt):
            return False
        self._finished(run, step, kind)
        if kind == EventKind.STEP_COMPLETED:
            step.status, step.output, step.completed_at = "completed", data, now
        elif kind == EventKind.STEP_FAILED:
            step.status, step.error, step.completed_at = "failed", data, now
        elif kind == EventKind.STEP_CANCELLED:
            step.status, step.error, step.completed_at = "cancelled", data, now
        else:
            step.status, step.error, step.ready_at = "pending", data, retry_at if retry_at is not None else now
        step.owner = None
        self._append(run, kind, step_id, now, data=data, attempt=attempt)
        if run.status in ACTIVE and kind not in (EventKind.STEP_RETRYING, EventKind.STEP_CANCELLED):
            run.wake_at = now
        return True

    def list_steps(self, run_id: str) -> list[StepRecord]:
        steps = [s for s in self.steps.values() if s.run_id == run_id]
        return [s.record() for s in sorted(steps, key=lambda s: _order_key(s.created_at, s.step_id))]

    # -- hooks -------------------------------------------------------------------------------------

    def get_hook(self, token: str) -> HookRecord | None:
        hook = next((h for h in self.hooks.values() if h.token == token and h.status == "active"), None)
        return hook.record() if hook else None

    def list_hooks(self, run_id: str, active_only: bool) -> list[HookRecord]:
        hooks = [h for h in self.hooks.values() if h.run_id == run_id and (h.status == "active" or not active_only)]
        return [h.record() for h in sorted(hooks, key=lambda h: _order_key(h.created_at, h.hook_id))]

    def resume_hook(self, token: str, payload: bytes, now: float, expect: tuple[str, str] | None = None) -> HookRecord:
        hook = next((h for h in self.hooks.values() if h.token == token and h.status == "active"), None)
        if hook is None or self.runs[hook.run_id].status in TERMINAL:
            raise HookNotFound(token)
        if expect is not None and (hook.run_id, hook.hook_id) != expect:
            raise HookNotFound(token)
        run = self.runs[hook.run_id]
        self._append(run, EventKind.HOOK_RECEIVED, hook.hook_id, now, name=token, data=payload)
        run.wake_at = now
        return hook.record()

    # -- streams -----------------------------------------------------------------------------------

    def append_chunks(self, run_id: str, namespace: str, chunks: Sequence[bytes], step_id: str | None,
                      attempt: int | None, now: float, close: bool) -> int:
        run = self.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        stream = self.streams.get((run_id, namespace))
        if run.status in TERMINAL or (stream is not None and stream.refuses(step_id, attempt)):
            raise StreamClosedError(run_id, namespace)
        stream = self._stream(run_id, namespace)
        for data in chunks:
            stream.chunks.append(StoreChunk(len(stream.chunks), data, step_id, attempt, now))
        stream.closed = close
        stream.closed_by = (f"{step_id}#{attempt}" if step_id is not None else None) if close else None
        return len(stream.chunks)

    def close_stream(self, run_id: str, namespace: str, error: str | None) -> None:
        if run_id not in self.runs:
            raise RunNotFound(run_id)
        stream = self._stream(run_id, namespace)
        if not stream.closed:
            stream.closed, stream.error = True, error

    def read_chunks(self, run_id: str, namespace: str, start: int, limit: int) -> ChunkPage:
        stream = self.streams.get((run_id, namespace))
        if start < 0:
            start = max(0, (len(stream.chunks) if stream else 0) + start)
        if stream is not None:
            chunks = [c for c in stream.chunks if c.index >= start][:limit]
            end = start + len(chunks)
            closed = stream.closed and self._close_is_final(run_id, stream.closed_by)
            return ChunkPage(chunks, closed and end >= len(stream.chunks), stream.error if closed else None)
        run = self.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status in TERMINAL:
            error = None if run.status == "completed" else ("run cancelled" if run.status == "cancelled" else _error_text(run.error))
            return ChunkPage([], True, error)
        return ChunkPage([], False, None)

    def _close_is_final(self, run_id: str, closed_by: str | None) -> bool:
        """A step attempt's close holds once that step finished or the run ended (a retry may reopen it)."""
        if closed_by is None:
            return True
        step = self.steps.get((run_id, closed_by.rpartition("#")[0]))
        return self.runs[run_id].status in TERMINAL or step is None or step.status in ("completed", "failed", "cancelled")

    def list_streams(self, run_id: str) -> list[tuple[str, int, bool]]:
        return sorted((ns, len(s.chunks), s.closed) for (rid, ns), s in self.streams.items() if rid == run_id)

    # -- retention ---------------------------------------------------------------------------------

    def collectable(self, before: float, statuses: Sequence[str], now: float) -> list[ModelRun]:
        """The runs a collection may delete, oldest first: finished (of ``statuses``) at or before
        ``before``, no unfinished parent, no unfinished child, no step running on a live worker."""
        def deletable(r: ModelRun) -> bool:
            parent = self.runs.get(r.parent_run_id or "")
            return (
                r.status in statuses and r.completed_at is not None and r.completed_at <= before
                and not (parent is not None and parent.status in ACTIVE)
                and not any(c.parent_run_id == r.run_id and c.status in ACTIVE for c in self.runs.values())
                and not any(s.run_id == r.run_id and s.status == "running" and self.alive(s.owner, now)
                            for s in self.steps.values())
            )
        return sorted(filter(deletable, self.runs.values()), key=lambda r: (r.completed_at or 0.0, r.run_id))

    def cost(self, run_id: str) -> int:
        """What a run weighs against a batch's row budget: its events and its chunks."""
        return len(self.runs[run_id].events) + sum(len(s.chunks) for (rid, _), s in self.streams.items() if rid == run_id)

    def delete_runs(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Delete these runs with everything that belongs to them; the rows removed per table."""
        ids = set(run_ids)
        counts = {
            "runs": len(ids), "events": sum(len(self.runs[r].events) for r in ids),
            "steps": sum(1 for k, s in self.steps.items() if k[0] in ids and s.row), "hooks": sum(1 for k in self.hooks if k[0] in ids),
            "waits": sum(1 for k in self.waits if k[0] in ids), "streams": sum(1 for k in self.streams if k[0] in ids),
            "chunks": sum(len(s.chunks) for k, s in self.streams.items() if k[0] in ids),
            "run_values": sum(1 for k in self.values if k[0] in ids),
        }
        for table in (self.steps, self.hooks, self.waits, self.streams, self.values):
            for key in [k for k in table if k[0] in ids]:
                del table[key]
        for run_id in ids:
            del self.runs[run_id]
        return counts

    # -- queries -----------------------------------------------------------------------------------

    def next_wake(self, names: Sequence[str], step_names: Sequence[str], now: float,
                  versions: Versions | None = None) -> float | None:
        times = [r.wake_at for r in self.runs.values() if r.wake_at is not None and r.status in ACTIVE
                 and self.served(r, names, versions) and not self.alive(r.owner, now)]
        times += [s.ready_at for s in self.steps.values() if s.status == "pending" and s.name in step_names
                  and s.ready_at is not None]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def terminal_runs(self, run_ids: Sequence[str]) -> list[str]:
        return sorted(r for r in run_ids if r in self.runs and self.runs[r].status in TERMINAL)

    def active_workflows(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs.values():
            if run.status in ACTIVE:
                counts[run.workflow_name] = counts.get(run.workflow_name, 0) + 1
        return counts

    def active_versions(self) -> dict[tuple[str, str | None], int]:
        counts: dict[tuple[str, str | None], int] = {}
        for run in self.runs.values():
            if run.status in ACTIVE:
                key = (run.workflow_name, run.version)
                counts[key] = counts.get(key, 0) + 1
        return counts
