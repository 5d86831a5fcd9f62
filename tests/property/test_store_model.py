"""Property 5: the store behaves like a simple in-memory model (store_model.py).

A ``RuleBasedStateMachine`` creates runs, commits invocations with every kind of command (and
speculative events), claims, leases and releases runs, claims and finishes steps, appends
chunks, closes streams, resumes and disposes hooks, cancels runs, kills and renews workers, and
moves a virtual clock -- on the real store and on the model at once. Every return value must
match, and after every step the whole visible state must too: runs, event logs, steps, hooks
(by run and by token), streams and their chunk pages, terminal runs, wake-up times.

Rules are synchronous (Hypothesis's stateful testing is), so the async store is driven through
one ``anyio.from_thread.start_blocking_portal()`` held for the machine's lifetime. The machine
runs against SQLite on a file, SQLite in memory (``memory://``), and PostgreSQL when
``DURABLE_TEST_POSTGRES`` names a server (``durable.stores.store_from_url``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import uuid
from collections import Counter
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

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
from durable._core.errorinfo import encode_error
from durable._core.errors import DurableError, HookNotFound, RunNotFound, StreamClosedError
from durable._core.events import REPLAY_KINDS, Event, EventKind
from durable.stores import store_from_url
from durable.stores._base import Invocation, NewRun, PublishedWorkflow, StepClaim, Store, Versions
from durable.stores._encrypted import EncryptedStore, Encryption

from .conftest import examples
from .store_model import TERMINAL, ModelEvent, StoreModel

HOST = "model-host"
WORKERS = ("w1", "w2")
WORKFLOWS = ("wf.a", "wf.b")
STEP_NAMES = ("s.a", "s.b")
TOKENS = ("t1", "t2", "t3")
NAMESPACES = ("default", "logs")
TTL = 30.0
# What a worker's versions= may say: nothing, one version of one workflow, or unversioned runs of
# one workflow and none of the other.
VERSION_FILTERS: tuple[Versions | None, ...] = (None, {"wf.a": {"1"}}, {"wf.a": {None, "2"}, "wf.b": set()})
payloads = st.binary(max_size=6).map(lambda b: _codec.encode(b))


def _url(backend: str, tmp: str) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp}/model.db?synchronous=normal"
    from tests.pg import fresh_database

    return fresh_database(os.environ["DURABLE_TEST_POSTGRES"], f"t_model_{uuid.uuid4().hex[:10]}")


class StoreMachine(RuleBasedStateMachine):
    """One store and its model, driven side by side (``encrypted``: the store behind the
    encryption wrapper, which must be invisible to everything the model sees)."""

    backend = "sqlite"
    encrypted = False

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.mkdtemp(prefix="durable-model-")
        self._portal_cm = start_blocking_portal(backend="asyncio")
        self.portal = self._portal_cm.__enter__()
        self.store: Store = store_from_url(_url(self.backend, self._tmp))
        if self.encrypted:
            self.store = EncryptedStore(self.store, Encryption(bytes(range(32)), key_id="model"))
        self.portal.call(self.store.open)
        self.deleted: set[str] = set()  # runs a collection deleted
        self.model = StoreModel(HOST)
        self.now = 1000.0
        self.positions: dict[str, int] = {}  # run -> last correlation position used
        # The claims handed out, by (run, step): a commit of a step's result passes its claim, as the
        # runtime does for an inline one (Invocation.finished: the store may skip reading the run row).
        self.claims: dict[tuple[str, str], StepClaim] = {}
        self.names = 0

    def teardown(self) -> None:
        try:
            self.portal.call(self.store.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- plumbing -----------------------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.store, method)
        return self.portal.call(lambda: fn(*args, **kwargs))

    def tick(self) -> float:
        """Every operation happens at its own instant (so the order of equal times never matters)."""
        self.now += 0.25
        return self.now

    def next_corr(self, run_id: str, kind: str) -> str:
        self.positions[run_id] = self.positions.get(run_id, 0) + 1
        return f"{kind}_{self.positions[run_id]}"

    def run_ids(self) -> list[str]:
        return sorted(self.model.runs)

    # -- workers and time ----------------------------------------------------------------------------

    @initialize()
    def workers_and_two_runs(self) -> None:
        now = self.tick()
        for worker in WORKERS:
            self.call("register_worker", worker, HOST, 4242, "start", TTL, now)
            self.model.register_worker(worker, TTL, now)
        for workflow in WORKFLOWS:
            self.names += 1
            new = NewRun(f"run_{self.names:03d}", workflow, _codec.encode([workflow]), "seed", None, self.tick(), None)
            assert _same_record(self.call("create_run", new)[0], self.model.create_run(new)[0])
        # The first run's first invocation, as the runtime commits it: started, with a step, a
        # hook, a timer and a write, so that every example begins with something to act on.
        now = self.tick()
        chunk = _codec.encode("first")
        first = Invocation(
            run_id="run_001", worker_id="w1", known_seq=1, now=now, status="suspended",
            commands=[
                ScheduleStep(self.next_corr("run_001", "step"), STEP_NAMES[0], _codec.encode([1]), 2),
                CreateHook(self.next_corr("run_001", "hook"), TOKENS[0], None),
                StartWait(self.next_corr("run_001", "wait"), now + 3.0),
                WriteChunk(self.next_corr("run_001", "write"), NAMESPACES[0], chunk, hashlib.blake2b(chunk, digest_size=8).digest()),
            ],
            speculative=[Event("run_001", 0, EventKind.RUN_STARTED, None, now)], next_wake=now + 3.0,
        )
        got, expected = self.call("commit", first), self.model.commit(first)
        assert (got.ok, got.last_seq) == (expected.ok, expected.last_seq) == (True, 6), (got, expected)

    @rule(seconds=st.sampled_from([1.0, 5.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(worker=st.sampled_from(WORKERS))
    def heartbeat(self, worker: str) -> None:
        now = self.tick()
        others = self.call("heartbeat", worker, TTL, now)
        assert {w for w, _, _ in others} == self.model.heartbeat(worker, TTL, now)

    @rule(worker=st.sampled_from(WORKERS))
    def worker_dies(self, worker: str) -> None:
        self.call("mark_workers_dead", [worker])
        self.model.mark_workers_dead([worker])

    # -- runs -------------------------------------------------------------------------------------

    @rule(
        workflow=st.sampled_from(WORKFLOWS),
        key=st.none() | st.sampled_from(["k1", "k2"]),
        reuse_id=st.booleans(),
        owner=st.none() | st.sampled_from(WORKERS),
        data=st.data(),
    )
    def create_run(self, workflow: str, key: str | None, reuse_id: bool, owner: str | None, data: st.DataObject) -> None:
        now = self.tick()
        if reuse_id and self.model.runs:
            run_id = data.draw(st.sampled_from(self.run_ids()), label="existing run id")
        else:
            self.names += 1
            run_id = f"run_{self.names:03d}"
        timeout = data.draw(st.sampled_from([None, None, 2.0, 50.0]), label="timeout")
        version = data.draw(st.sampled_from([None, "1", "2"]), label="version")
        new = NewRun(run_id, workflow, _codec.encode({"args": [run_id]}), f"seed-{run_id}", key, now, owner,
                     deadline=None if timeout is None else now + timeout, version=version)
        try:
            expected: Any = self.model.create_run(new)
        except DurableError as exc:
            expected = exc
        if isinstance(expected, Exception):
            with pytest.raises(DurableError):
                self.call("create_run", new)
            return
        got = self.call("create_run", new)
        assert _same_record(got[0], expected[0]) and got[1] == expected[1], (got, expected)

    @rule(worker=st.sampled_from(WORKERS), names=st.sampled_from([WORKFLOWS, WORKFLOWS[:1]]), limit=st.sampled_from([1, 2, 64]),
          versions=st.sampled_from(VERSION_FILTERS))
    def claim_runs(self, worker: str, names: tuple[str, ...], limit: int, versions: Versions | None) -> None:
        now = self.tick()
        self.model.time_out_runs(worker, now)
        eligible = self.model.claimable_runs(names, worker, now, versions)
        got = self.call("claim_runs", worker, list(names), now, limit, versions)
        event(f"claim_runs: {len(got)}")
        chosen = [r.run_id for r in got]
        assert len(chosen) == len(set(chosen)) == min(limit, len(eligible)), (chosen, [r.run_id for r in eligible])
        by_id = {r.run_id: r for r in eligible}
        assert set(chosen) <= set(by_id), (chosen, list(by_id))
        # A limited claim takes the most overdue runs (ties may go either way).
        left = [r.wake_at for r in eligible if r.run_id not in chosen]
        assert not left or all((by_id[c].wake_at or 0) <= min(t or 0 for t in left) for c in chosen)
        for record in got:
            expected = self.model.claim_run(record.run_id, worker, now)
            assert _same_record(record, expected), (record, expected)

    @precondition(lambda self: self.model.runs)
    @rule(worker=st.sampled_from(WORKERS), data=st.data())
    def release_run(self, worker: str, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(self.run_ids()))
        self.call("release_run", run_id, worker, self.tick())
        self.model.release_run(run_id, worker)

    @precondition(lambda self: self.model.runs)
    @rule(data=st.data())
    def cancel_run(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(self.run_ids()))
        now = self.tick()
        got = self.call("cancel_run", run_id, now)
        expected = self.model.cancel_run(run_id, now)
        assert got is not None and expected is not None and _same_record(got, expected), (got, expected)

    @precondition(lambda self: self.model.runs)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(self.run_ids()), label="run")
        run = self.model.runs[run_id]
        now = self.tick()
        # Mostly what the runtime does (the lease holder, or nobody's lease, with the log it read);
        # sometimes a lost lease or a stale view, which must be refused or flagged unclean.
        honest = data.draw(st.sampled_from([True, True, True, False]), label="honest")
        owner = run.owner if run.owner in WORKERS else None
        worker = owner if honest and owner else data.draw(st.sampled_from(WORKERS), label="worker")
        holds_lease = owner is not None if honest else data.draw(st.booleans(), label="holds lease")
        stale = 0 if honest else data.draw(st.sampled_from([0, 1, 2]), label="staleness")
        commands: list[Command | None] = []
        for _ in range(data.draw(st.integers(0, 4), label="commands")):
            command = self._command(run_id, data)
            if isinstance(command, CancelWait | DisposeHook) and command in commands:
                command = None  # at most once, in one commit too
            commands.append(command)
        speculative = [self._speculative(run_id, data) for _ in range(data.draw(st.sampled_from([0, 0, 1, 1, 2]), label="speculative"))]
        status = data.draw(st.sampled_from(["suspended"] * 6 + ["completed", "failed"]), label="status")
        lone = [s for s in speculative if s is not None]
        finished = self.claims.get((run_id, lone[0].correlation_id or "")) if len(lone) == 1 else None
        inv = Invocation(
            run_id=run_id, worker_id=worker, known_seq=max(1, run.last_seq - stale), now=now,
            commands=[c for c in commands if c is not None], status=status,  # type: ignore[arg-type]
            result=_codec.encode(["done", run_id]) if status == "completed" else None,
            error=encode_error(ValueError(f"boom {run_id}")) if status == "failed" else None,
            speculative=[s for s in speculative if s is not None], holds_lease=holds_lease,
            claim_steps=data.draw(st.sampled_from([0, 0, 1, 2]), label="claim"),
            next_wake=data.draw(st.none() | st.sampled_from([now + 2.0, now + 50.0]), label="next wake"),
            finished=finished if data.draw(st.booleans(), label="with its claim") else None,
        )
        try:
            expected = self.model.commit(inv)
        except StreamClosedError:
            # A workflow write to a closed stream: the whole commit is refused and changes nothing.
            event("commit: write to a closed stream")
            with pytest.raises(StreamClosedError):
                self.call("commit", inv)
            return
        got = self.call("commit", inv)
        self.claims.update({(c.run_id, c.step_id): c for c in got.claimed})
        event(f"commit: {'ok' if got.ok else got.reason.split(':')[0]}")
        if inv.finished is not None and inv.finished.inline and got.ok:
            event("commit: an inline step's result, with its claim")
        if got.ok and got.run_status in TERMINAL and any(h.run_id == run_id for h in self.model.hooks.values()):
            event("a run with hooks ended")
        if got.ok and got.run_status in TERMINAL and run.parent_run_id is not None:
            event("a child run ended")
        if got.ok and any(isinstance(c, StartChild) for c in inv.commands):
            event("commit: started a child")
        if any(r.cancel_reason == "timeout" for r in self.model.runs.values()):
            event("a run timed out")
        assert (got.ok, got.reason.split(":")[0] if not got.ok else "") == (expected.ok, expected.reason if not expected.ok else ""), (got, expected)
        if got.ok:
            assert (got.last_seq, got.clean, got.run_status, got.conflicts) == (
                expected.last_seq, expected.clean, expected.run_status, expected.conflicts
            ), (got, expected)
            assert Counter(map(repr, got.claimed)) == Counter(map(repr, expected.claimed)), (got.claimed, expected.claimed)

    def _command(self, run_id: str, data: st.DataObject) -> Command | None:
        kind = data.draw(
            st.sampled_from(
                ["step", "step", "hook", "wait", "cancel", "dispose", "write", "close", "child", "cancel child", "value",
                 "patch"]
            ),
            label="command",
        )
        now = self.now
        if kind == "step":
            return ScheduleStep(self.next_corr(run_id, "step"), data.draw(st.sampled_from(STEP_NAMES)),
                                data.draw(payloads), data.draw(st.integers(1, 3)))
        if kind == "hook":
            return CreateHook(self.next_corr(run_id, "hook"), data.draw(st.sampled_from(TOKENS)), data.draw(st.none() | payloads))
        if kind == "wait":
            return StartWait(self.next_corr(run_id, "wait"), now + data.draw(st.sampled_from([0.5, 3.0, 60.0])))
        if kind == "child":
            corr = self.next_corr(run_id, "child")
            # Mostly the derived id of a new run; sometimes an id another run has (the child fails at once).
            child_id = data.draw(st.sampled_from([f"{run_id}-c{corr.rpartition('_')[2]}"] * 3 + self.run_ids()), label="child id")
            return StartChild(corr, data.draw(st.sampled_from(WORKFLOWS)), data.draw(payloads), child_id, f"seed-{child_id}",
                              data.draw(st.sampled_from(["cancel", "abandon"]), label="on parent close"),
                              data.draw(st.sampled_from([None, None, 2.0]), label="child timeout"))
        if kind == "value":
            return SetValue(self.next_corr(run_id, "value"), data.draw(st.sampled_from(["stage", "progress"])), data.draw(payloads))
        if kind == "cancel child":
            started = sorted({e.corr for e in self.model.runs[run_id].events if e.kind == EventKind.CHILD_STARTED and e.corr})
            return CancelChild(data.draw(st.sampled_from(started))) if started else None
        # The engine cancels a wait, and disposes a hook, at most once (possibly after the store
        # fired the wait): duplicates are not something a store has to take.
        done = {(e.kind, e.corr) for e in self.model.runs[run_id].events}
        if kind == "cancel":
            waits = sorted(w for (r, w) in self.model.waits if r == run_id and (EventKind.WAIT_CANCELLED, w) not in done)
            return CancelWait(data.draw(st.sampled_from(waits))) if waits else None
        if kind == "dispose":
            hooks = sorted(h for (r, h) in self.model.hooks if r == run_id and (EventKind.HOOK_DISPOSED, h) not in done)
            return DisposeHook(data.draw(st.sampled_from(hooks))) if hooks else None
        if kind == "write":
            chunk = data.draw(payloads)
            return WriteChunk(self.next_corr(run_id, "write"), data.draw(st.sampled_from(NAMESPACES)), chunk,
                              hashlib.blake2b(chunk, digest_size=8).digest())
        if kind == "patch":
            return MarkPatch(self.next_corr(run_id, "patch"), data.draw(st.sampled_from(["fee-v2", "tax-v3"])))
        return CloseStream(self.next_corr(run_id, "close"), data.draw(st.sampled_from(NAMESPACES)))

    def _speculative(self, run_id: str, data: st.DataObject) -> Event | None:
        kind = data.draw(st.sampled_from(["started", "step", "wait"]), label="speculative kind")
        now = self.now
        if kind == "started":
            return Event(run_id, 0, EventKind.RUN_STARTED, None, now)
        if kind == "step":
            steps = sorted(s for (r, s) in self.model.steps if r == run_id)
            if not steps:
                return None
            step_id = data.draw(st.sampled_from(steps))
            done = data.draw(st.sampled_from([EventKind.STEP_COMPLETED, EventKind.STEP_FAILED]))
            return Event(run_id, 0, done, step_id, now, None, data.draw(payloads), self.model.steps[(run_id, step_id)].attempt)
        waits = sorted(w for (r, w) in self.model.waits if r == run_id)
        return Event(run_id, 0, EventKind.WAIT_COMPLETED, data.draw(st.sampled_from(waits)), now) if waits else None

    # -- steps ------------------------------------------------------------------------------------

    @rule(worker=st.sampled_from(WORKERS), names=st.sampled_from([STEP_NAMES, STEP_NAMES[1:]]))
    def claim_steps(self, worker: str, names: tuple[str, ...]) -> None:
        now = self.tick()
        got = self.call("claim_steps", worker, list(names), now, 64)
        self.claims.update({(c.run_id, c.step_id): c for c in got})
        expected = self.model.claim_steps(worker, names, now)
        event(f"claim_steps: {'some' if got else 'none'}")
        assert Counter(map(repr, got)) == Counter(map(repr, expected)), (got, expected)

    @precondition(lambda self: self.model.steps)
    @rule(data=st.data(), kind=st.sampled_from([EventKind.STEP_COMPLETED, EventKind.STEP_FAILED, EventKind.STEP_RETRYING, EventKind.STEP_CANCELLED]))
    def finish_step(self, data: st.DataObject, kind: str) -> None:
        self._finish(data, kind, data.draw(st.sampled_from(sorted(self.model.steps))))

    @precondition(lambda self: any(s.status == "running" for s in self.model.steps.values()))
    @rule(data=st.data(), kind=st.sampled_from([EventKind.STEP_COMPLETED, EventKind.STEP_FAILED, EventKind.STEP_RETRYING, EventKind.STEP_CANCELLED]))
    def finish_a_running_step(self, data: st.DataObject, kind: str) -> None:
        """Where outcomes are recorded (and runs woken); a step drawn blindly is often not running."""
        running = sorted(key for key, s in self.model.steps.items() if s.status == "running")
        self._finish(data, kind, data.draw(st.sampled_from(running)))

    def _finish(self, data: st.DataObject, kind: str, key: tuple[str, str]) -> None:
        run_id, step_id = key
        now = self.tick()
        payload = data.draw(payloads)
        attempt = self.model.steps[(run_id, step_id)].attempt - data.draw(st.sampled_from([0, 0, 0, 1]), label="late")
        retry_at = data.draw(st.none() | st.just(now + 3.0)) if kind == EventKind.STEP_RETRYING else None
        got = self.call("finish_step", run_id, step_id, kind, payload, attempt, now, retry_at)
        assert got == self.model.finish_step(run_id, step_id, kind, payload, attempt, now, retry_at)

    # -- hooks ------------------------------------------------------------------------------------

    @rule(data=st.data(), token=st.sampled_from(TOKENS), payload=payloads)
    def resume_hook(self, data: st.DataObject, token: str, payload: bytes) -> None:
        self._resume(data, token, payload)

    @precondition(lambda self: any(h.status == "active" for h in self.model.hooks.values()))
    @rule(data=st.data(), payload=payloads)
    def resume_a_live_hook(self, data: st.DataObject, payload: bytes) -> None:
        """Where deliveries (and re-bound tokens) happen; a token drawn blindly rarely has a live hook."""
        live_tokens = sorted({h.token for h in self.model.hooks.values() if h.status == "active"})
        self._resume(data, data.draw(st.sampled_from(live_tokens), label="token"), payload)

    def _resume(self, data: st.DataObject, token: str, payload: bytes) -> None:
        # expect: the hook the caller looked the token up as -- the live one, or one since disposed
        # or re-bound (any hook the store has seen).
        live = self.model.get_hook(token)
        live_key = [(live.run_id, live.hook_id)] if live else []
        expect = data.draw(st.sampled_from([None, *live_key, ("run_gone", "hook_1"), *sorted(self.model.hooks)]))
        now = self.tick()
        try:
            expected: Any = self.model.resume_hook(token, payload, now, expect)
        except HookNotFound as exc:
            expected = exc
        moved = live is not None and expect is not None and (live.run_id, live.hook_id) != expect
        event(f"resume_hook: {'refused' if isinstance(expected, HookNotFound) else 'delivered'}"
              f"{', the token moved' if moved else ''}")
        if isinstance(expected, HookNotFound):
            with pytest.raises(HookNotFound):
                self.call("resume_hook", token, payload, now, expect=expect)
        else:
            assert self.call("resume_hook", token, payload, now, expect=expect) == expected

    # -- streams ----------------------------------------------------------------------------------

    @rule(data=st.data(), namespace=st.sampled_from(NAMESPACES), chunks=st.lists(payloads, max_size=3), close=st.booleans())
    def append_chunks(self, data: st.DataObject, namespace: str, chunks: list[bytes], close: bool) -> None:
        run_id = data.draw(st.sampled_from([*self.run_ids(), "run_missing"]))
        step = data.draw(st.none() | st.sampled_from(["step_1", "step_2"]))  # a retry may reopen what its step closed
        attempt = None if step is None else data.draw(st.integers(1, 3))
        now = self.tick()
        try:
            expected: Any = self.model.append_chunks(run_id, namespace, chunks, step, attempt, now, close)
        except (RunNotFound, StreamClosedError) as exc:
            expected = exc
        if isinstance(expected, Exception):
            with pytest.raises(type(expected)):
                self.call("append_chunks", run_id, namespace, chunks, step, attempt, now, close=close)
        else:
            assert self.call("append_chunks", run_id, namespace, chunks, step, attempt, now, close=close) == expected

    @precondition(lambda self: self.model.runs)
    @rule(data=st.data(), namespace=st.sampled_from(NAMESPACES), error=st.none() | st.just("writer failed"))
    def close_stream(self, data: st.DataObject, namespace: str, error: str | None) -> None:
        run_id = data.draw(st.sampled_from(self.run_ids()))
        self.call("close_stream", run_id, namespace, error, self.tick())
        self.model.close_stream(run_id, namespace, error)

    @rule(worker=st.sampled_from(WORKERS), names=st.lists(st.sampled_from(WORKFLOWS), unique=True, max_size=2),
          serializer=st.sampled_from(["json", "pickle"]), version=st.none() | st.just("v2"))
    def publish_workflows(self, worker: str, names: list[str], serializer: str, version: str | None) -> None:
        now = self.tick()
        published = [PublishedWorkflow(name, f'[{{"kind": "positional_or_keyword", "name": "{worker}"}}]', serializer,
                                       version, worker, now) for name in names]
        self.call("publish_workflows", published)
        self.model.publish_workflows(published)

    # -- retention ------------------------------------------------------------------------------

    @precondition(lambda self: any(r.status in TERMINAL for r in self.model.runs.values()))
    @rule(
        age=st.sampled_from([0.0, 0.0, 2.0, 60.0]), statuses=st.sampled_from([TERMINAL, ("completed",), ("cancelled", "failed")]),
        limit=st.sampled_from([1, 2, 64]), max_rows=st.sampled_from([4, 10_000]),
    )
    def collect_runs(self, age: float, statuses: tuple[str, ...], limit: int, max_rows: int) -> None:
        now = self.tick()
        before = now - age
        eligible = self.model.collectable(before, statuses, now)
        got = self.call("collect_runs", before, list(statuses), limit=limit, max_rows=max_rows, now=now)
        ids = got.run_ids
        event(f"collect_runs: {'none' if not ids else 'all due' if len(ids) == len(eligible) else 'a bounded batch'}")
        by_id = {r.run_id: r for r in eligible}
        assert len(ids) == len(set(ids)) and set(ids) <= set(by_id), (ids, list(by_id))
        assert (1 <= len(ids) <= limit) if eligible else ids == [], (ids, list(by_id))
        # The oldest first (runs that ended at the same moment may go either way).
        left = [r for r in eligible if r.run_id not in ids]
        assert not left or max(by_id[i].completed_at or 0.0 for i in ids) <= min(r.completed_at or 0.0 for r in left)
        # Bounded: no more than max_rows events and chunks (one run at least); short only where the budget says so.
        weight = sum(self.model.cost(i) for i in ids)
        assert len(ids) <= 1 or weight <= max_rows, (ids, weight)
        if ids and left and len(ids) < limit:
            oldest = min(r.completed_at or 0.0 for r in left)
            assert any(weight + self.model.cost(r.run_id) > max_rows for r in left if r.completed_at == oldest)
        assert got.more == bool(left), (got, left)
        expected = self.model.delete_runs(ids)
        assert {t: n for t, n in got.counts.items() if t != "queue_admissions"} == (expected if ids else {}), (got, expected)
        assert got.counts.get("queue_admissions", 0) == 0  # nothing queued here
        self.deleted.update(ids)

    # The rules that move runs forward, registered twice more: uniform choice among seventeen rules
    # would otherwise rarely get a run through a few commits, claims and step outcomes.
    commit_more = commit
    commit_even_more = commit
    commit_once_more = commit
    claim_runs_more = claim_runs
    claim_steps_more = claim_steps
    finish_step_more = finish_step
    collect_runs_more = collect_runs  # runs finish late in an example: give the collector more chances

    # -- the whole visible state, after every step ------------------------------------------------------

    @invariant()
    def everything_agrees(self) -> None:
        for run_id, run in self.model.runs.items():
            record = self.call("get_run", run_id)
            assert record is not None and _same_record(record, run.record()), (record, run.record())
            stored = self.call("load_events", run_id)
            _same_log(stored, run.events)
            after = run.last_seq // 2
            replay, last = self.call("read_log", run_id, after)  # what replay reads: its kinds, in order
            assert last == run.last_seq
            assert replay == [e for e in stored if e.seq > after and e.kind in REPLAY_KINDS], (replay, stored)
            assert self.call("list_steps", run_id) == self.model.list_steps(run_id)
            for active_only in (True, False):
                assert self.call("list_hooks", run_id, active_only=active_only) == self.model.list_hooks(run_id, active_only)
            assert self.call("list_streams", run_id) == self.model.list_streams(run_id)
            assert [_strip(r) for r in self.call("list_children", run_id)] == [_strip(r) for r in self.model.list_children(run_id)]
            assert self.call("list_values", run_id) == self.model.list_values(run_id)
            for namespace in NAMESPACES:
                for start, limit in ((0, 100), (-2, 1)):
                    got = self.call("read_chunks", run_id, namespace, start, limit)
                    expected = self.model.read_chunks(run_id, namespace, start, limit)
                    assert _page(got) == _page(expected), (run_id, namespace, start, limit, got, expected)
        for run_id in sorted(self.deleted):  # gone, with everything that was theirs
            assert self.call("get_run", run_id) is None and self.call("load_events", run_id) == []
            assert (self.call("list_steps", run_id), self.call("list_hooks", run_id, active_only=False)) == ([], [])
            assert (self.call("list_streams", run_id), self.call("list_values", run_id)) == ([], [])
            with pytest.raises(RunNotFound):
                self.call("read_chunks", run_id, NAMESPACES[0], 0, 1)
        for token in TOKENS:
            assert self.call("get_hook", token) == self.model.get_hook(token)
        with pytest.raises(RunNotFound):
            self.call("read_chunks", "run_missing", NAMESPACES[0], 0, 1)
        ids = [*self.run_ids(), "run_missing"]
        assert sorted(self.call("terminal_runs", ids)) == self.model.terminal_runs(ids)
        assert self.call("active_workflows") == self.model.active_workflows()
        assert self.call("list_workflows") == self.model.list_workflows()
        assert self.call("active_versions") == self.model.active_versions()
        for names, steps in ((WORKFLOWS, STEP_NAMES), (WORKFLOWS[1:], ())):
            for versions in VERSION_FILTERS:
                assert self.call("next_wake", list(names), list(steps), self.now, versions) == self.model.next_wake(
                    names, steps, self.now, versions
                )


def _same_record(got: Any, expected: Any) -> bool:
    """Run records agree on everything but ``updated_at`` (bookkeeping the model does not keep)."""
    return bool(got._replace(updated_at=0.0) == expected) if hasattr(got, "_replace") else bool(
        (got.run_id, got.workflow_name, got.status, got.input, got.seed, got.created_at, got.started_at, got.completed_at,
         got.output, got.error, got.idempotency_key, got.last_seq, got.parent_run_id, got.cancel_reason, got.deadline,
         got.version, got.forked_from, got.forked_step)
        == (expected.run_id, expected.workflow_name, expected.status, expected.input, expected.seed, expected.created_at,
            expected.started_at, expected.completed_at, expected.output, expected.error, expected.idempotency_key,
            expected.last_seq, expected.parent_run_id, expected.cancel_reason, expected.deadline, expected.version,
            expected.forked_from, expected.forked_step)
    )


def _strip(record: Any) -> Any:
    """A run record without ``updated_at`` (bookkeeping the model does not keep)."""
    return dataclasses.replace(record, updated_at=0.0)


def _page(page: Any) -> tuple[Any, ...]:
    return ([(c.index, c.data, c.step_id, c.attempt, c.created_at) for c in page.chunks], page.closed, page.error)


def _same_log(stored: list[Any], model: list[ModelEvent]) -> None:
    """The stored log is the model's, event for event; within a model block any order is fine."""
    assert [e.seq for e in stored] == list(range(1, len(model) + 1)), ([e.seq for e in stored], len(model))
    i = 0
    while i < len(model):
        j = i + 1
        if model[i].block is not None:
            while j < len(model) and model[j].block == model[i].block:
                j += 1
        want = Counter(m.key() for m in model[i:j])
        got = Counter((str(e.kind), e.correlation_id, e.created_at, e.name, e.data, e.attempt) for e in stored[i:j])
        assert got == want, f"events {i + 1}..{j} differ:\n  stored {stored[i:j]}\n  model  {model[i:j]}"
        i = j


class SQLiteFileMachine(StoreMachine):
    backend = "sqlite"


class MemoryMachine(StoreMachine):
    backend = "memory"


class PostgresMachine(StoreMachine):
    backend = "postgres"


class EncryptedMemoryMachine(StoreMachine):
    backend = "memory"
    encrypted = True


class EncryptedPostgresMachine(StoreMachine):
    backend = "postgres"
    encrypted = True


_SETTINGS = settings(max_examples=examples(60), stateful_step_count=50)
TestSQLiteStoreAgreesWithTheModel = SQLiteFileMachine.TestCase
TestSQLiteStoreAgreesWithTheModel.settings = _SETTINGS
TestMemoryStoreAgreesWithTheModel = MemoryMachine.TestCase
TestMemoryStoreAgreesWithTheModel.settings = settings(_SETTINGS, max_examples=examples(20))
TestPostgresStoreAgreesWithTheModel = pytest.mark.postgres(
    pytest.mark.skipif(not os.environ.get("DURABLE_TEST_POSTGRES"), reason="DURABLE_TEST_POSTGRES is not set")(
        PostgresMachine.TestCase
    )
)
TestPostgresStoreAgreesWithTheModel.settings = settings(_SETTINGS, max_examples=examples(15))
# Encryption at rest changes nothing the store's callers see (payloads go in and come out as given).
TestEncryptedStoreAgreesWithTheModel = EncryptedMemoryMachine.TestCase
TestEncryptedStoreAgreesWithTheModel.settings = settings(_SETTINGS, max_examples=examples(20))
TestEncryptedPostgresStoreAgreesWithTheModel = pytest.mark.postgres(
    pytest.mark.skipif(not os.environ.get("DURABLE_TEST_POSTGRES"), reason="DURABLE_TEST_POSTGRES is not set")(
        EncryptedPostgresMachine.TestCase
    )
)
TestEncryptedPostgresStoreAgreesWithTheModel.settings = settings(_SETTINGS, max_examples=examples(5))
ACTIVE_TERMINAL = TERMINAL  # re-exported for readers of the model's vocabulary
