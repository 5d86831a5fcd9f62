"""``SQLStore``: the :class:`Store` methods SQLite and PostgreSQL share, each one transaction of ``_sql``.

A subclass only says how to run a transaction function (:meth:`SQLStore._run`): SQLite inline
on the loop or on its database thread, PostgreSQL on a pooled connection in a worker thread.
Everything else -- which function, which arguments, read or write -- is written once, here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._core.checks import check_int
from .._core.events import Event
from .._core.queues import QueueSpec, QueueState
from . import _sql
from ._base import (
    MAX_INDEX,
    MAX_LIST_LIMIT,
    ChunkPage,
    Collected,
    CommitResult,
    ForkRun,
    HookRecord,
    Invocation,
    NewRun,
    PublishedWorkflow,
    RunRecord,
    ScheduleDef,
    ScheduleRecord,
    StepClaim,
    StepRecord,
    Store,
    TickRun,
    Versions,
)

T = TypeVar("T")


class SQLStore(Store):
    _host = ""  # this worker's host name, given at register_worker (heartbeats look for its neighbours)

    @abc.abstractmethod
    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``fn(db, *args)`` as one transaction (read-only if not ``write``) and return its value."""

    # -- workers ---------------------------------------------------------------------------

    async def register_worker(self, worker_id: str, host: str, pid: int, pid_start: str, ttl: float, now: float) -> None:
        self._host = host
        await self._run(_sql.register_worker, worker_id, host, pid, pid_start, ttl, now)

    async def heartbeat(self, worker_id: str, ttl: float, now: float) -> list[tuple[str, int, str]]:
        return await self._run(_sql.heartbeat, worker_id, self._host, ttl, now)

    async def mark_workers_dead(self, worker_ids: Sequence[str]) -> None:
        await self._run(_sql.mark_workers_dead, sorted(worker_ids))  # sorted: one lock order, no deadlock

    async def unregister_worker(self, worker_id: str) -> None:
        await self._run(_sql.unregister_worker, worker_id)

    # -- published workflows ---------------------------------------------------------------

    async def publish_workflows(self, published: Sequence[PublishedWorkflow]) -> None:
        if published:
            await self._run(_sql.publish_workflows, sorted(published, key=lambda p: p.name))

    async def list_workflows(self) -> list[PublishedWorkflow]:
        return await self._run(_sql.list_workflows, write=False)

    # -- runs ------------------------------------------------------------------------------

    async def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        return await self._run(_sql.create_run, new)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._run(_sql.get_run, run_id, write=False)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 100, before: str | None = None,
        queue: str | None = None,
        version: str | None = None,
    ) -> list[RunRecord]:
        check_int("limit", limit, minimum=1, maximum=MAX_LIST_LIMIT)
        return await self._run(_sql.list_runs, status, workflow, limit, before, queue, version, write=False)

    async def load_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        return await self._run(_sql.load_events, run_id, after_seq, False, write=False)

    async def read_log(self, run_id: str, after_seq: int) -> tuple[list[Event], int]:
        return await self._run(_sql.read_log, run_id, after_seq, write=False)

    async def claim_runs(
        self, worker_id: str, workflow_names: Sequence[str], now: float, limit: int, versions: Versions | None = None
    ) -> list[RunRecord]:
        return await self._run(_sql.claim_runs, worker_id, workflow_names, now, limit, versions)

    async def release_run(self, run_id: str, worker_id: str, now: float, retry_at: float | None = None) -> None:
        await self._run(_sql.release_run, run_id, worker_id, now, retry_at)

    async def commit(self, invocation: Invocation) -> CommitResult:
        return await self._run(_sql.commit, invocation)

    async def cancel_run(self, run_id: str, now: float) -> RunRecord | None:
        return await self._run(_sql.cancel_run, run_id, now)

    async def fork_run(self, fork: ForkRun) -> RunRecord:
        return await self._run(_sql.fork_run, fork)

    async def next_wake(
        self, workflow_names: Sequence[str], step_names: Sequence[str], now: float, versions: Versions | None = None
    ) -> float | None:
        return await self._run(_sql.next_wake, workflow_names, step_names, now, versions, write=False)

    async def active_workflows(self) -> dict[str, int]:
        return await self._run(_sql.active_workflows, write=False)

    async def active_versions(self) -> dict[tuple[str, str | None], int]:
        return await self._run(_sql.active_versions, write=False)

    async def terminal_runs(self, run_ids: Sequence[str]) -> list[str]:
        return await self._run(_sql.terminal_runs, run_ids, write=False)

    async def list_children(self, run_id: str) -> list[RunRecord]:
        return await self._run(_sql.list_children, run_id, write=False)

    # -- retention -------------------------------------------------------------------------

    async def collect_runs(
        self, before: float, statuses: Sequence[str], *, limit: int, max_rows: int, now: float
    ) -> Collected:
        return await self._run(_sql.collect_runs, before, sorted(statuses), limit, max_rows, now)

    # -- store settings ----------------------------------------------------------------------

    async def read_meta(self, prefix: str) -> dict[str, str]:
        return await self._run(_sql.read_meta, prefix, write=False)

    async def add_meta(self, key: str, value: str) -> str:
        return await self._run(_sql.add_meta, key, value)

    # -- live values -----------------------------------------------------------------------

    async def list_values(self, run_id: str, key: str | None = None) -> list[tuple[str, bytes, int, float]]:
        return await self._run(_sql.list_values, run_id, key, write=False)

    # -- schedules -------------------------------------------------------------------------

    async def define_schedules(self, defs: Sequence[ScheduleDef], now: float) -> None:
        await self._run(_sql.define_schedules, list(defs), now)

    async def list_schedules(self, names: Sequence[str] | None = None) -> list[ScheduleRecord]:
        return await self._run(_sql.list_schedules, None if names is None else list(names), write=False)

    async def fire_schedule(
        self, name: str, expected_next_at: float, ticks: Sequence[TickRun], skipped: int, next_at: float, now: float
    ) -> list[str]:
        return await self._run(_sql.fire_schedule, name, expected_next_at, list(ticks), skipped, next_at, now)

    async def set_schedule_paused(self, name: str, paused: bool, now: float) -> bool:
        return await self._run(_sql.set_schedule_paused, name, paused, now)

    async def delete_schedule(self, name: str) -> bool:
        return await self._run(_sql.delete_schedule, name)

    async def trigger_schedule(self, name: str, run_id: str, now: float) -> str | None:
        return await self._run(_sql.trigger_schedule, name, run_id, now)

    # -- queues ----------------------------------------------------------------------------

    async def define_queues(self, specs: Sequence[QueueSpec], now: float) -> None:
        await self._run(_sql.define_queues, list(specs), now)

    async def queue_states(self, names: Sequence[str] | None, now: float) -> list[QueueState]:
        return await self._run(_sql.queue_states, None if names is None else list(names), now, write=False)

    # -- steps -----------------------------------------------------------------------------

    async def claim_steps(self, worker_id: str, step_names: Sequence[str], now: float, limit: int) -> list[StepClaim]:
        return await self._run(_sql.claim_steps, worker_id, step_names, now, limit)

    async def finish_step(
        self, run_id: str, step_id: str, kind: str, data: bytes, attempt: int, now: float, retry_at: float | None = None
    ) -> bool:
        return await self._run(_sql.finish_step, run_id, step_id, kind, data, attempt, now, retry_at)

    async def list_steps(self, run_id: str) -> list[StepRecord]:
        return await self._run(_sql.list_steps, run_id, write=False)

    # -- hooks -----------------------------------------------------------------------------

    async def get_hook(self, token: str) -> HookRecord | None:
        return await self._run(_sql.get_hook, token, write=False)

    async def list_hooks(self, run_id: str, *, active_only: bool = True) -> list[HookRecord]:
        return await self._run(_sql.list_hooks, run_id, active_only, write=False)

    async def resume_hook(
        self, token: str, payload: bytes, now: float, *, expect: tuple[str, str] | None = None
    ) -> HookRecord:
        return await self._run(_sql.resume_hook, token, payload, now, expect)

    # -- streams ---------------------------------------------------------------------------

    async def append_chunks(
        self, run_id: str, namespace: str, chunks: Sequence[bytes], step_id: str | None, attempt: int | None,
        now: float, *, close: bool = False,
    ) -> int:
        return await self._run(_sql.append_chunks, run_id, namespace, chunks, step_id, attempt, now, close)

    async def close_stream(self, run_id: str, namespace: str, error: str | None, now: float) -> None:
        await self._run(_sql.close_stream, run_id, namespace, error)

    async def read_chunks(self, run_id: str, namespace: str, start: int, limit: int) -> ChunkPage:
        check_int("start_index", start, minimum=-MAX_INDEX, maximum=MAX_INDEX)
        check_int("limit", limit, minimum=1, maximum=MAX_INDEX)
        return await self._run(_sql.read_chunks, run_id, namespace, start, limit, write=False)

    async def list_streams(self, run_id: str) -> list[tuple[str, int, bool]]:
        return await self._run(_sql.list_streams, run_id, write=False)
