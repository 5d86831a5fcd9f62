"""Running generated programs on the real runtime, and what a run is observed to have done.

- :class:`RecordingStore`: the real SQLite store (``memory://`` or a file) that also keeps each
  successful commit, so the replay checks can re-derive every commit the runtime made.
- :func:`drive_hooks`: the outside world. It resumes each live hook of the program with its
  payloads, counting what the log already holds, so after a crash it sends only the rest.
- :func:`observe`: a schedule-independent summary of a run -- its outcome, each step's event
  kinds and outcome (by the step's key, not its correlation id, which depends on the order in
  which parallel branches reached it), hook payloads in order, stream contents, timers fired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

import durable
from durable._core import codec as _codec
from durable._core.errorinfo import decode_error
from durable._core.events import EventKind
from durable.stores._base import CommitResult, Invocation, Store
from durable.stores._sqlite import SQLiteStore

from .programs import CHILD_WORKFLOWS, Program, to_workflow
from .sim import Commit, History, StoredChunk
from .values import strict_eq


class RecordingStore(SQLiteStore):
    """The SQLite store, keeping every commit that succeeded (for the replay checks)."""

    def __init__(self, path: str = ":memory:", **options: Any) -> None:
        super().__init__(path, **options)
        self.commits: dict[str, list[Commit]] = {}

    async def commit(self, invocation: Invocation) -> CommitResult:
        result = await super().commit(invocation)
        if result.ok:
            self.commits.setdefault(invocation.run_id, []).append(
                Commit(
                    invocation.known_seq,
                    tuple((e.kind, e.correlation_id) for e in invocation.speculative),
                    tuple(invocation.commands),
                    invocation.status,
                    invocation.result,
                    invocation.error,
                )
            )
        return result


async def drive_hooks(runtime: durable.Runtime, run_id: str, program: Program, poll: float = 0.002) -> None:
    """Resume every hook the run creates with its payloads, as soon as it is live (runs until cancelled)."""
    pending = {token: list(h.payloads) for token, h in program.hooks().items() if h.payloads}
    while pending:
        for token in list(pending):
            hook = await runtime.store.get_hook(token)
            if hook is None or hook.run_id != run_id:
                continue
            events = await runtime.store.load_events(run_id)
            delivered = sum(1 for e in events if e.kind == EventKind.HOOK_RECEIVED and e.correlation_id == hook.hook_id)
            try:
                for payload in pending[token][delivered:]:
                    await runtime.resume_hook(token, payload)
            except durable.HookNotFound:
                pass
            del pending[token]
        await anyio.sleep(poll)


async def read_history(store: Store, run_id: str, commits: Sequence[Commit] = ()) -> History:
    record = await store.get_run(run_id)
    assert record is not None
    events = await store.load_events(run_id)
    chunks: dict[str, list[StoredChunk]] = {}
    closed: dict[str, bool] = {}
    for namespace, _count, is_closed in await store.list_streams(run_id):
        page = await store.read_chunks(run_id, namespace, 0, 100_000)
        chunks[namespace] = [StoredChunk(c.index, c.data, c.step_id, c.attempt) for c in page.chunks]
        closed[namespace] = is_closed
    return History(
        run_id, record.input, record.seed, events, list(commits), chunks, closed, record.status, record.output, record.error
    )


async def run_on_runtime(program: Program, store: RecordingStore | None = None, *, timeout: float = 20.0) -> History:
    """(a) Run ``program`` uninterrupted on the real runtime (``memory://`` unless a store is given)."""
    store = store if store is not None else RecordingStore()
    workflow = to_workflow(program)
    async with durable.Runtime(store, workflows=[workflow, *CHILD_WORKFLOWS], poll_interval=0.05, heartbeat_interval=0.2) as rt:
        run = await rt.start(workflow)
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive_hooks, rt, run.run_id, program)
            with anyio.fail_after(timeout):
                await run.wait()
            tg.cancel_scope.cancel()
        return await read_history(rt.store, run.run_id, store.commits.get(run.run_id, []))


# -- observations -------------------------------------------------------------------------------------


@dataclass
class Observation:
    outcome: tuple[Any, ...]
    steps: dict[int, tuple[str, tuple[str, ...], Any]]  # key -> (name, event kinds in order, outcome)
    hooks: dict[str, tuple[tuple[str, ...], list[Any]]]  # token -> (event kinds, payloads in delivery order)
    streams: dict[str, tuple[list[tuple[Any, int | None]], bool]]  # namespace -> ([(value, attempt)], closed)
    timers_fired: int
    children: dict[int, tuple[str, tuple[str, ...], Any]] = dataclasses.field(default_factory=dict)  # like steps


def _outcome(status: str, result: bytes | None, error: bytes | None) -> tuple[Any, ...]:
    if status == "completed":
        return ("completed", _codec.decode(result or b""))
    info = decode_error(error or b"")
    return (status, info.type, info.message)


def observe(history: History) -> Observation:
    """What a run did, independent of the order in which parallel work happened to complete."""
    by_corr: dict[str, list[Any]] = {}
    steps: dict[int, tuple[str, tuple[str, ...], Any]] = {}
    step_of: dict[str, tuple[int, str]] = {}
    hooks: dict[str, tuple[tuple[str, ...], list[Any]]] = {}
    hook_of: dict[str, str] = {}
    child_of: dict[str, tuple[int, str]] = {}
    for e in history.events:
        if e.correlation_id is not None:
            by_corr.setdefault(e.correlation_id, []).append(e)
        if e.kind == EventKind.STEP_CREATED:
            key = _codec.decode(e.data or b"")["args"][0]
            step_of[e.correlation_id or ""] = (key, e.name or "")
        elif e.kind == EventKind.HOOK_CREATED:
            hook_of[e.correlation_id or ""] = e.name or ""
        elif e.kind == EventKind.CHILD_STARTED:
            child_of[e.correlation_id or ""] = (_codec.decode(e.data or b"")["args"][0], e.name or "")
    for corr, (key, name) in step_of.items():
        evs = by_corr[corr]
        final = evs[-1]
        result: Any = None
        if final.kind == EventKind.STEP_COMPLETED:
            result = ("completed", _codec.decode(final.data or b""))
        elif final.kind == EventKind.STEP_FAILED:
            info = decode_error(final.data or b"")
            result = ("failed", info.type, info.message)
        assert key not in steps, f"step key {key} was scheduled twice"
        # A step_created that started the step (schema 9) is the lifecycle of a step_created and a
        # step_started: a step may be claimed as it is created or later, in either order of completion.
        lifecycle: list[str] = []
        for e in evs:
            lifecycle.append(str(e.kind))
            if e.kind == EventKind.STEP_CREATED and e.starts_attempt:
                lifecycle.append(EventKind.STEP_STARTED.value)
        steps[key] = (name, tuple(lifecycle), result)
    for corr, token in hook_of.items():
        evs = by_corr[corr]
        payloads = [_codec.decode(e.data or b"") for e in evs if e.kind == EventKind.HOOK_RECEIVED]
        hooks[token] = (tuple(str(e.kind) for e in evs), payloads)
    streams = {
        ns: ([(_codec.decode(c.data), c.attempt) for c in chunks], history.closed.get(ns, False))
        for ns, chunks in history.chunks.items()
    }
    children: dict[int, tuple[str, tuple[str, ...], Any]] = {}
    for corr, (key, name) in child_of.items():
        evs = by_corr[corr]
        final = evs[-1]
        ended: Any = None
        if final.kind == EventKind.CHILD_COMPLETED:
            ended = ("completed", _codec.decode(final.data or b""))
        elif final.kind == EventKind.CHILD_FAILED:
            info = decode_error(final.data or b"")
            ended = ("failed", info.type, info.message)
        assert key not in children, f"child key {key} was started twice"
        children[key] = (name, tuple(str(e.kind) for e in evs), ended)
    fired = sum(1 for e in history.events if e.kind == EventKind.WAIT_COMPLETED)
    return Observation(_outcome(history.status, history.result, history.error), steps, hooks, streams, fired, children)


def differences(expected: Observation, actual: Observation) -> list[str]:
    """Human-readable differences between two observations (empty when they agree, type-strictly)."""
    out = []
    for name in ("outcome", "steps", "hooks", "streams", "timers_fired", "children"):
        a, b = getattr(expected, name), getattr(actual, name)
        if not strict_eq(a, b):
            out.append(f"{name}:\n    expected {a!r}\n    actual   {b!r}")
    return out


def check_chunk_indices(history: History) -> None:
    """Every stream's chunk indices are exactly 0..n-1: none missing, none twice."""
    for namespace, chunks in history.chunks.items():
        indices = [c.index for c in chunks]
        assert indices == list(range(len(chunks))), f"stream {namespace!r} has indices {indices}"
