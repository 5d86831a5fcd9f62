"""The replay engine: a workflow function, its arguments and its events in; commands and an outcome out.

Pure: no store, no clock, no network. :meth:`WorkflowInstance.advance` takes the events the
instance has not seen yet, delivers them one per idle point of the deterministic loop, and
returns what the workflow asked for since the last call (the *commands*) plus whether it is
suspended, completed or failed. A live instance is kept by the runtime between calls (the
sticky cache), so each new event costs one delivery, not a replay of the whole history.

Positions: the k-th step/hook/wait/stream write/child start the workflow *calls* gets correlation id
``<kind>_<k>``, whatever order results arrive in. Each call is checked against the creation
record at its position, and a result for a position the code never reached is refused, so
code that no longer matches its log raises :class:`NonDeterminismError` instead of hanging or
returning a wrong result.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import secrets
import warnings
from collections.abc import Sequence
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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
    NonDeterminismError,
    NonDeterministicCallError,
    NonDeterministicCallWarning,
    RunCancelled,
    SerializationError,
)
from .._core.events import CHILD_ENDS, CREATION_KINDS, DELIVERY_KINDS, TERMINAL_KINDS, Event, EventKind
from .._core.ids import DEFAULT_NAMESPACE, child_run_id
from .._core.queues import QueueSpec
from .._workflow.children import ChildHandle
from .._workflow.context import HookSubscriber, WorkflowMetadata, current_instance
from .._workflow.step import Step
from .._workflow.workflow import Workflow
from . import guard
from .loop import DeterministicLoop

# The kinds compared once or more per replayed event, as plain str: looking up an enum member
# costs several times the comparison itself.
_RUN_STARTED = EventKind.RUN_STARTED.value
_STEP_CREATED = EventKind.STEP_CREATED.value
_STEP_COMPLETED = EventKind.STEP_COMPLETED.value
_RESOLVED_ONCE = frozenset(
    {EventKind.STEP_COMPLETED.value, EventKind.STEP_FAILED.value, EventKind.WAIT_COMPLETED.value, *CHILD_ENDS}
)
_PATCH_MARKED = EventKind.PATCH_MARKED.value
_NOTED_KINDS = frozenset({EventKind.WAIT_CANCELLED.value, EventKind.HOOK_DISPOSED.value}) | TERMINAL_KINDS
Status = Literal["suspended", "completed", "failed"]
# (workflow name, call) pairs already warned about in this process: once each is enough.
_warned: set[tuple[str, str]] = set()


@dataclass(slots=True)
class Outcome:
    """What one :meth:`WorkflowInstance.advance` produced."""

    status: Status
    commands: list[Command] = field(default_factory=list)
    result: bytes | None = None  # encoded return value when completed
    error: bytes | None = None  # encoded error record when failed
    diverged: bool = False  # the failure is a NonDeterminismError
    # The earliest deadline among the durable timers the workflow still waits on: the run
    # must be woken then (None: no timer pending).
    next_wake: float | None = None


class _StepWaiter:
    __slots__ = ("future", "step")

    def __init__(self, future: asyncio.Future[Any], step: Step[Any, Any]) -> None:
        self.future = future
        self.step = step


class _ChildWaiter:
    __slots__ = ("future", "run_id", "workflow")

    def __init__(self, future: asyncio.Future[Any], workflow: Workflow[Any, Any], run_id: str) -> None:
        self.future = future
        self.workflow = workflow
        self.run_id = run_id


def _new_token() -> str:
    """192 random bits from ``secrets``, URL-safe (32 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()


def describe_record(event: Event) -> str:
    if event.kind == EventKind.STEP_CREATED:
        return f"step {event.name!r} with arguments {_short(event.data)}"
    if event.kind == EventKind.CHILD_STARTED:
        return f"child workflow {event.name!r} with arguments {_short(event.data)}"
    if event.kind == EventKind.VALUE_SET:
        return f"setting event {event.name!r} to {_short(event.data)}"
    if event.kind in (EventKind.HOOK_CREATED, EventKind.HOOK_CONFLICT):
        return f"hook with token {event.name!r}"
    if event.kind == EventKind.WAIT_CREATED:
        return "a durable sleep"
    if event.kind == EventKind.STREAM_WRITTEN:
        return f"a write to stream {event.name!r}"
    if event.kind == EventKind.STREAM_CLOSED:
        return f"closing stream {event.name!r}"
    if event.kind == EventKind.PATCH_MARKED:
        return f"patch marker {event.name!r} (the run took durable.patched({event.name!r}) there)"
    return event.kind


def _short(data: bytes | None, limit: int = 80) -> str:
    if data is None:
        return "()"
    text = bytes(data[4:]).decode("utf-8", "replace") if data[:4] == _codec.JSON_TAG else "<pickled>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# What WorkflowInstance._noted holds a correlation id for (see there).
_CANCELLED_WAIT, _DISPOSED_HOOK, _ENDED_CHILD, _CANCELLED_CHILD = "wait", "hook", "ended child", "cancelled child"
# WorkflowInstance._noted until its first note (see there).
_NOTHING_NOTED: frozenset[tuple[str, str]] = frozenset()


class WorkflowInstance:
    """One live execution of a workflow run, advanced event by event."""

    # Slots, not a __dict__: a sticky cache holds thousands of suspended instances, and the
    # dict of ~30 attributes was the largest single allocation of each (~1.6 KiB).
    __slots__ = (
        "__weakref__", "_base_url", "_delivered_seq", "_deliveries", "_divergence", "_ended", "_input", "_main", "_new",
        "_new_positions", "_noted", "_patches", "_pending_error", "_position", "_records", "_replay_until",
        "_scheduled_at", "_seed", "_subscribers", "_timers", "_user_random", "issued_steps", "loop",
        "max_value_size", "metadata", "notice_calls", "run_id", "seen_seq", "status", "strict", "workflow",
    )

    def __init__(
        self,
        workflow: Workflow[Any, Any],
        *,
        run_id: str,
        input: bytes,
        seed: str,
        base_url: str | None = None,
        replay_until: float = 0,
        scheduled_at: float | None = None,
        max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE,
        strict: bool = False,
        notice_calls: bool = True,
    ) -> None:
        guard.install()  # time.time(), datetime.now(), ... in workflow code are reported (see guard.py)
        self.workflow = workflow
        self.strict = strict  # such calls raise instead of warning once
        # False where a checker finds such calls itself (check_determinism runs the code under
        # another clock and seed): a warning there -- an error under -W error -- would make the
        # same example behave differently the second time, which Hypothesis calls flaky.
        self.notice_calls = notice_calls
        self.max_value_size = max_value_size  # new values over it fail where made (recorded ones replay as they are)
        self._scheduled_at = None if scheduled_at is None else datetime.fromtimestamp(scheduled_at, UTC)
        self.run_id = run_id
        self._input = input
        self._seed = seed
        self._base_url = base_url
        self.loop = DeterministicLoop(self)  # type: ignore[abstract]  # typeshed marks I/O methods abstract
        self._user_random: random.Random | None = None  # made on first use: see user_random
        self.seen_seq = 0  # last event consumed (or known to be this instance's own record)
        # Events up to this seq were consumed by an execution already committed: code running on
        # them is re-living history (durable.logger stays quiet); what follows a later one is new.
        self._replay_until = replay_until
        self._delivered_seq = 0
        self.status: Literal["new", "running", "completed", "failed", "closed"] = "new"
        self.metadata = WorkflowMetadata(run_id, workflow.name, datetime.fromtimestamp(0, UTC), base_url)

        self._position = 0
        self._records: dict[int, Event] = {}
        # (what, correlation id) of: a wait cancelled, a hook disposed, a child whose end is in
        # the log (read ahead), a child this instance asked to cancel. One set, not four, made at
        # the first note (_note): most runs never note anything, and an empty set is 216 bytes of
        # every suspended instance.
        self._noted: set[tuple[str, str]] | frozenset[tuple[str, str]] = _NOTHING_NOTED
        self._patches: dict[str, int] = {}  # patch id -> the position it was checked at
        self._ended = False  # the events fed include the run's terminal event: the history is complete
        self._deliveries: list[Event] = []  # a list, not a deque: see DeterministicLoop._ready
        self._subscribers: dict[str, Any] = {}  # correlation id -> what waits for its result
        self._timers: dict[str, asyncio.TimerHandle] = {}  # pending durable timers
        self._new: list[Command] = []
        self._new_positions: dict[str, int] = {}  # correlation id -> index in _new, until committed
        # The step object each step position was called with: what the worker runs for it, so a
        # step defined inside the workflow body runs the closure its own run made.
        self.issued_steps: dict[str, Step[Any, Any]] = {}
        self._main: asyncio.Task[Any] | None = None
        self._divergence: NonDeterminismError | None = None
        self._pending_error: BaseException | None = None

    @property
    def user_random(self) -> random.Random:
        """``durable.random`` and ``durable.uuid4`` of this run: seeded by the run, made on first use.

        Most runs never call either, and a ``random.Random`` is ~2.9 KiB of every live instance
        (a quarter of a suspended sticky run's heap). Its sequence depends only on the seed and the
        calls made on it, so making it later changes nothing a replay sees.
        """
        rng = self._user_random
        if rng is None:
            rng = self._user_random = self._seeded_random()
        return rng

    def _seeded_random(self) -> random.Random:
        return random.Random(f"{self._seed}:random")

    # ------------------------------------------------------------------------------------
    # driving

    def advance(self, events: Sequence[Event]) -> Outcome:
        """Feed events the instance has not seen, run the workflow as far as they allow."""
        for event in events:
            if event.seq <= self.seen_seq:
                continue
            self.seen_seq = event.seq
            kind = event.kind
            if kind in CREATION_KINDS and event.correlation_id:  # (a stream closed at run end has no position)
                position = int(event.correlation_id.rpartition("_")[2])
                if position > self._position:  # not reached yet (re-read own records are skipped)
                    self._records[position] = event
            if kind in DELIVERY_KINDS:
                self._deliveries.append(event)
                if kind in CHILD_ENDS:
                    self._note(_ENDED_CHILD, event.correlation_id or "")
            elif kind in _NOTED_KINDS:
                if kind == EventKind.WAIT_CANCELLED:
                    self._note(_CANCELLED_WAIT, event.correlation_id or "")
                elif kind == EventKind.HOOK_DISPOSED:
                    self._note(_DISPOSED_HOOK, event.correlation_id or "")
                else:
                    self._ended = True
        return self._drive()

    def _drive(self) -> Outcome:
        if self.status == "closed":
            raise RuntimeError(f"the workflow instance of run {self.run_id} was closed")
        if self.status in ("completed", "failed"):
            return Outcome(self.status)
        loop = self.loop
        deliveries = self._deliveries
        with loop.activate():
            loop.run_until_idle()
            if deliveries:
                taken = 0  # consumed from the front (a list, so no popleft); advance() alone appends
                try:
                    for event in deliveries:
                        if self._divergence is not None or (self._main is not None and self._main.done()):
                            break
                        taken += 1
                        self._deliver(event)
                        loop.run_until_idle()
                finally:
                    del deliveries[:taken]
            return self._outcome()

    def _outcome(self) -> Outcome:
        if self._divergence is None:
            # Also when the workflow finished: returning (or raising) before a command the log
            # holds means the code changed, and its result must not be taken for the run's.
            self._check_unissued()
        if self._divergence is not None:
            self.status = "failed"
            return Outcome("failed", error=encode_error(self._divergence), diverged=True)
        commands = self._take_commands()
        main = self._main
        if main is None or not main.done():
            timers = self._timers
            return Outcome("suspended", commands, next_wake=min(h.when() for h in timers.values()) if timers else None)
        error = main.exception() if not main.cancelled() else asyncio.CancelledError("workflow task was cancelled")
        if error is None:
            try:
                result = _codec.encode(main.result(), serializer=self.workflow.serializer, root="result")
                _codec.check_size(result, self.max_value_size, "result")
            except Exception as exc:  # SerializationError, or whatever a pickler raised
                error = exc
            else:
                self.status = "completed"
                return Outcome("completed", commands, result=result)
        self.status = "failed"
        return Outcome("failed", commands, error=encode_error(error))

    def _take_commands(self) -> list[Command]:
        commands, self._new = self._new, []
        self._new_positions.clear()
        return commands

    def _check_unissued(self) -> None:
        """Idle with every delivery consumed: a recorded command the code never reached is divergence."""
        later = [p for p in self._records if p > self._position] if self._records else []
        if later:
            first = min(later)
            finished = self._main is not None and self._main.done()
            actual = "nothing more: it finished" if finished else "nothing: it is waiting for something else"
            self._diverge(first, describe_record(self._records[first]), actual)

    def close(self) -> None:
        """Drop the instance: cancel its tasks so user ``finally`` blocks run here, not at garbage collection."""
        loop = self.loop
        if loop.is_closed():
            return
        self._new.clear()
        self.status = "closed"
        tasks = loop.pending_tasks() if self._main is not None else []
        for task in tasks:
            task.cancel()
        try:
            with loop.activate():
                for _ in range(3):
                    loop.run_until_idle()
        finally:
            loop.close()

    # ------------------------------------------------------------------------------------
    # deliveries

    @property
    def is_replaying(self) -> bool:
        """Whether workflow code is running through history an earlier execution already lived."""
        return self._delivered_seq <= self._replay_until

    def _deliver(self, event: Event) -> None:
        self._delivered_seq = event.seq
        self.loop.set_time(event.created_at)
        kind = event.kind
        if kind == _RUN_STARTED:
            self._start(event)
            return
        corr = event.correlation_id or ""
        # A step or a wait resolves once: forget its subscriber. Hooks take many deliveries.
        if kind in _RESOLVED_ONCE:
            sub = self._subscribers.pop(corr, None)
            self.issued_steps.pop(corr, None)
        else:
            sub = self._subscribers.get(corr)
        if sub is None:
            position = event.position or 0
            if position > self._position:
                self._diverge(position, f"a result for {corr}", f"only {self._position} command(s) so far, none of them {corr}")
            return  # a result for something the workflow stopped waiting for (a cancelled timer, ...)
        if kind == _STEP_COMPLETED:
            self._resolve_step(sub, event)
        elif kind == EventKind.STEP_FAILED:
            if isinstance(sub, _StepWaiter) and not sub.future.done():
                sub.future.set_exception(decode_error(event.data or b"").to_exception(sub.step.name))
        elif kind == EventKind.WAIT_COMPLETED:
            if isinstance(sub, asyncio.TimerHandle):
                self._timers.pop(corr, None)
                self.loop.fire_timer(sub)
        elif kind == EventKind.HOOK_RECEIVED:
            sub.deliver(event)
        elif kind == EventKind.HOOK_CONFLICT:
            sub.conflict()
        elif kind in CHILD_ENDS:
            self._resolve_child(sub, event)

    def _resolve_child(self, waiter: Any, event: Event) -> None:
        if not isinstance(waiter, _ChildWaiter) or waiter.future.done():
            return
        kind = event.kind
        if kind == EventKind.CHILD_CANCELLED:
            reason = _codec.decode(event.data, root="child_cancelled.data").get("reason") if event.data else None
            waiter.future.set_exception(RunCancelled(waiter.run_id, reason))
        elif kind == EventKind.CHILD_FAILED:
            waiter.future.set_exception(decode_error(event.data or b"").to_child_exception(waiter.run_id))
        else:
            try:
                value = _codec.decode(
                    event.data or b"", allow_pickle=waiter.workflow.serializer == "pickle",
                    root=f"result of child workflow {waiter.workflow.name!r}",
                )
            except SerializationError as exc:
                waiter.future.set_exception(exc)
            else:
                waiter.future.set_result(value)

    def _resolve_step(self, waiter: Any, event: Event) -> None:
        if not isinstance(waiter, _StepWaiter) or waiter.future.done():
            return  # the workflow stopped waiting for it (cancelled awaiter): the result is ignored
        try:
            value = _codec.decode(
                event.data or b"", allow_pickle=waiter.step.serializer == "pickle", root=waiter.step.result_root
            )
        except SerializationError as exc:
            waiter.future.set_exception(exc)
        else:
            waiter.future.set_result(value)

    def _start(self, event: Event) -> None:
        if self._main is not None:
            return
        self.status = "running"
        self.metadata = WorkflowMetadata(
            self.run_id, self.workflow.name, datetime.fromtimestamp(event.created_at, UTC), self._base_url, self._scheduled_at
        )
        context = copy_context()
        context.run(current_instance.set, self)
        self._main = self.loop.create_task(self._run_main(), name=f"workflow {self.workflow.name}", context=context)

    def _call_workflow(self) -> Any:
        """The workflow function called on the run's input (its coroutine or async generator).

        Apart from ``_run_main``, so that frame, alive for the whole run, keeps neither the decoded
        payload nor the encoded input: the instance drops it, it is read once.
        """
        payload = _codec.decode(self._input, allow_pickle=self.workflow.serializer == "pickle", root="workflow input")
        self._input = b""
        return self.workflow.fn(*payload["args"], **payload["kwargs"])

    async def _run_main(self) -> Any:
        call = self._call_workflow()
        if not self.workflow.is_generator:
            return await call
        agen = call
        try:
            async for item in agen:
                self.write_chunk(DEFAULT_NAMESPACE, item, root="yielded value")
        finally:
            await agen.aclose()
        return None

    def nondeterministic_call(self, call: str, instead: str) -> None:
        """Workflow code called ``call`` (a wall clock, global randomness): warn once per workflow and
        call, or raise under ``strict`` (the run then fails, unless the workflow catches it)."""
        if not self.notice_calls:
            return
        if self.strict:
            raise NonDeterministicCallError(self.workflow.name, call, instead)
        key = (self.workflow.name, call)
        if key not in _warned:
            _warned.add(key)
            # stacklevel 4: the workflow's own line (this method <- guard._report <- the guard <- workflow code)
            warnings.warn(NonDeterministicCallWarning(self.workflow.name, call, instead), stacklevel=4)

    # ------------------------------------------------------------------------------------
    # commands (called from workflow code running on the deterministic loop)

    def _next(self, kind: str) -> tuple[int, str]:
        self._position += 1
        return self._position, f"{kind}_{self._position}"

    def _diverge(self, position: int, recorded: str, actual: str) -> None:
        if self._divergence is None:
            self._divergence = NonDeterminismError(position, recorded, actual)

    def _record_at(self, position: int, kinds: tuple[str, ...], describe: str) -> Event | None:
        """The creation record at ``position`` if the log has one; divergence if it is of another kind.

        Records are dropped once their position is reached, so the instance keeps only those
        ahead of it (none, for a live instance) and the check below stays O(1) per command.
        """
        record = self._records.pop(position, None)
        if record is not None and record.kind not in kinds:
            self._diverge(position, describe_record(record), describe)
        return record

    def _issue(self, command: Command) -> None:
        self._new_positions[command.correlation_id] = len(self._new)
        self._new.append(command)

    async def call_step(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        *, spelled: tuple[tuple[Any, ...], dict[str, Any]],
    ) -> Any:
        """A step call (its arguments bound by the step); ``spelled`` is the call as written."""
        position, corr = self._next("step")
        data = step.binder.encode(args, kwargs, serializer=step.serializer, root=step.arguments_root)
        future: asyncio.Future[Any] = self.loop.create_future()
        record = self._records.pop(position, None)
        if record is None:
            _codec.check_size(data, self.max_value_size, step.arguments_root)  # raised at the call, nothing issued
            queue = step.queue_spec() if step.queue is not None else None
            self._issue(ScheduleStep(corr, step.name, data, step.retry.max_attempts, queue))
        elif record.kind != _STEP_CREATED or not step.matches(record.name or "") or (
            step.serializer == "json" and record.data != data  # pickled bytes are not canonical: name only
            and record.data != self._as_spelled(step, spelled)
        ):
            self._diverge(position, describe_record(record), f"step {step.name!r} with arguments {_short(data)}")
        if self._divergence is not None:
            return await future  # never resolves: the run fails with the divergence
        self._subscribers[corr] = _StepWaiter(future, step)
        self.issued_steps[corr] = step
        return await future

    @staticmethod
    def _as_spelled(step: Step[Any, Any], spelled: tuple[tuple[Any, ...], dict[str, Any]]) -> bytes | None:
        """A call's arguments as written, for logs recorded before calls were bound (read on a mismatch only)."""
        try:
            return _codec.encode({"args": list(spelled[0]), "kwargs": spelled[1]}, root=step.arguments_root)
        except SerializationError:
            return None

    def create_hook(self, hook: HookSubscriber, token: str | None, metadata: bytes | None) -> tuple[str, str]:
        position, corr = self._next("hook")
        shown = f"hook with token {token!r}" if token is not None else "hook with a default token"
        record = self._record_at(position, (EventKind.HOOK_CREATED, EventKind.HOOK_CONFLICT), shown)
        if token is None:
            # A default token is drawn from the OS's CSPRNG -- never from a generator seeded by the
            # run, whose outputs would let someone who saw some of a run's webhook URLs compute its
            # others -- and recorded in hook_created: a replay reads it back from there.
            token = record.name if record is not None and record.name else _new_token()
        if record is None:
            if metadata is not None:
                _codec.check_size(metadata, self.max_value_size, "hook metadata")
            self._issue(CreateHook(corr, token, metadata))
        elif record.name != token:
            self._diverge(position, describe_record(record), f"hook with token {token!r}")
        self._subscribers[corr] = hook
        return corr, token

    def _note(self, tag: str, corr: str) -> None:
        noted = self._noted
        if not isinstance(noted, set):  # the shared empty one: this instance's first note
            noted = self._noted = set()
        noted.add((tag, corr))

    def dispose_hook(self, corr: str) -> None:
        self._subscribers.pop(corr, None)
        if (_DISPOSED_HOOK, corr) in self._noted:
            return
        self._note(_DISPOSED_HOOK, corr)
        if not self._drop_uncommitted(corr):
            self._issue(DisposeHook(corr))

    def write_chunk(self, namespace: str, value: Any, *, root: str = "chunk") -> None:
        data = _codec.encode(value, root=root)
        digest = hashlib.blake2b(data, digest_size=8).digest()
        position, corr = self._next("write")
        record = self._record_at(position, (EventKind.STREAM_WRITTEN,), f"a write to stream {namespace!r}")
        if record is None:
            _codec.check_size(data, self.max_value_size, root)
            self._issue(WriteChunk(corr, namespace, data, digest))
        elif record.name != namespace or record.data != digest:
            self._diverge(position, describe_record(record), f"a different write to stream {namespace!r}")

    def close_stream(self, namespace: str) -> None:
        position, corr = self._next("close")
        record = self._record_at(position, (EventKind.STREAM_CLOSED,), f"closing stream {namespace!r}")
        if record is None:
            self._issue(CloseStream(corr, namespace))
        elif record.name != namespace:
            self._diverge(position, describe_record(record), f"closing stream {namespace!r}")

    def start_child(
        self, workflow: Workflow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, run_id: str | None,
        on_parent_close: str, queue: QueueSpec | None = None,
    ) -> ChildHandle[Any]:
        """A child run started at this position (its arguments bound by the caller); its handle."""
        position, corr = self._next("child")
        data = workflow.binder.encode(args, kwargs, serializer=workflow.serializer, root=f"arguments of {workflow.name}")
        child_id = run_id if run_id is not None else child_run_id(self.run_id, position)
        future: asyncio.Future[Any] = self.loop.create_future()
        record = self._records.pop(position, None)
        if record is None:
            seed = hashlib.blake2b(f"{self._seed}:{corr}".encode(), digest_size=16).hexdigest()
            self._issue(StartChild(corr, workflow.name, data, child_id, seed, on_parent_close, workflow.timeout, queue))
        elif record.kind != EventKind.CHILD_STARTED or not workflow.matches(record.name or "") or (
            workflow.serializer == "json" and record.data != data
        ):
            self._diverge(position, describe_record(record), f"child workflow {workflow.name!r} with arguments {_short(data)}")
        if self._divergence is None:
            self._subscribers[corr] = _ChildWaiter(future, workflow, child_id)
        return ChildHandle(self, corr, child_id, workflow.name, future)

    def cancel_child(self, corr: str) -> None:
        """Ask for a child's cancellation once, unless its end is already known (then nothing is left to cancel)."""
        if self.status == "closed" or self.loop.is_closed():
            return
        waiter = self._subscribers.get(corr)
        if (_ENDED_CHILD, corr) in self._noted or (_CANCELLED_CHILD, corr) in self._noted or (
            isinstance(waiter, _ChildWaiter) and waiter.future.done() and not waiter.future.cancelled()
        ):
            return
        self._note(_CANCELLED_CHILD, corr)
        self._issue(CancelChild(corr))

    def set_value(self, key: str, value: Any) -> None:
        data = _codec.encode(value, root=f"event {key!r}")
        position, corr = self._next("value")
        record = self._record_at(position, (EventKind.VALUE_SET,), f"setting event {key!r}")
        if record is None:
            self._issue(SetValue(corr, key, data))
        elif record.name != key or record.data != data:
            self._diverge(position, describe_record(record), f"setting event {key!r} to {_short(data)}")
    def patch(self, patch_id: str, *, deprecated: bool) -> bool:
        """``durable.patched`` (``deprecated``: ``durable.deprecate_patch``) at the next position.

        The marker takes a position only when the run records it (or recorded it): at the frontier
        of the log, or where the log holds this marker. Anything else at that position was written
        by code from before the patch, so the position is left to the old branch, which replays it.
        The frontier is where no record lies ahead (a position whose command was undone in its own
        slice leaves a hole, not a frontier) and the history is not complete.
        """
        position = self._position + 1
        if self._divergence is not None:
            return False  # the run fails with its divergence: nothing more is recorded
        first = self._patches.get(patch_id)
        if first is not None:
            self._diverge(
                position, f"patch {patch_id!r} checked already (at command #{first})",
                f"patched({patch_id!r}) a second time: use each patch id once in a workflow run",
            )
            assert self._divergence is not None
            raise self._divergence  # stops the workflow here; the run fails with it whatever the code catches
        self._patches[patch_id] = position
        record = self._records.get(position)
        if record is not None and record.kind == _PATCH_MARKED and record.name == patch_id:
            del self._records[position]
            self._position = position
            return True
        if record is not None or self._records or self._ended:
            return False  # recorded before the patch: the old branch owns this position
        self._position = position
        self._issue(MarkPatch(f"patch_{position}", patch_id))
        return True

    def _drop_uncommitted(self, corr: str) -> bool:
        """Forget a command issued and undone within one slice; nothing needs recording."""
        index = self._new_positions.pop(corr, None)
        if index is None:
            return False
        self._new[index] = None  # type: ignore[call-overload]
        self._new = [c for c in self._new if c is not None]
        self._new_positions.clear()
        self._new_positions.update({c.correlation_id: i for i, c in enumerate(self._new)})
        return True

    # -- timers (TimerSink) ----------------------------------------------------------------

    def timer_scheduled(self, handle: asyncio.TimerHandle) -> None:
        if self._divergence is not None or self.loop.is_closed():
            return
        position, corr = self._next("wait")
        handle.durable_id = corr  # type: ignore[attr-defined]
        record = self._record_at(position, (EventKind.WAIT_CREATED,), "a durable sleep")
        if record is None:
            self._issue(StartWait(corr, handle.when()))
        self._subscribers[corr] = handle
        self._timers[corr] = handle

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        corr = getattr(handle, "durable_id", None)
        if corr is None or self.loop.is_closed() or self._subscribers.pop(corr, None) is None:
            return
        self._timers.pop(corr, None)
        if (_CANCELLED_WAIT, corr) in self._noted:
            return
        self._note(_CANCELLED_WAIT, corr)
        if not self._drop_uncommitted(corr):
            self._issue(CancelWait(corr))
