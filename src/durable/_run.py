"""``Run``: a handle on one run -- status, result, cancel, events, steps, hooks and streams."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._core import codec as _codec
from ._core.durations import Duration, parse_duration
from ._core.errorinfo import ErrorInfo, decode_error
from ._core.errors import RunCancelled, RunFailed, RunNotFound
from ._core.events import Event
from ._hooks import hook_metadata
from ._replay import DEFAULT_NAMESPACE
from ._streams import read_stream

if TYPE_CHECKING:
    from ._runtime import Runtime
    from .stores._base import HookRecord, RunRecord, StepRecord, Store


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    workflow_name: str
    status: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: ErrorInfo | None
    idempotency_key: str | None

    @classmethod
    def from_record(cls, r: RunRecord) -> RunInfo:
        return cls(
            r.run_id, r.workflow_name, r.status, _dt(r.created_at) or datetime.now(UTC), _dt(r.started_at),
            _dt(r.completed_at), decode_error(r.error) if r.error else None, r.idempotency_key,
        )

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class StepInfo:
    step_id: str
    name: str
    status: str
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    retry_at: datetime | None
    error: ErrorInfo | None

    @classmethod
    def from_record(cls, r: StepRecord) -> StepInfo:
        return cls(
            r.step_id, r.name, r.status, r.attempt, r.max_attempts, _dt(r.created_at) or datetime.now(UTC),
            _dt(r.started_at), _dt(r.completed_at), _dt(r.ready_at) if r.status == "pending" else None,
            decode_error(r.error) if r.error else None,
        )

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class HookInfo:
    hook_id: str
    token: str
    status: str
    created_at: datetime
    metadata: Any  # what the workflow passed to create_hook(metadata=...)
    is_webhook: bool = False
    schema: str | None = None  # the define_hook name, for typed hooks

    @classmethod
    def from_record(cls, r: HookRecord) -> HookInfo:
        meta = hook_metadata(r)
        return cls(
            r.hook_id, r.token, r.status, _dt(r.created_at) or datetime.now(UTC), meta.get("user"),
            "webhook" in meta, meta.get("schema"),
        )


class Run:
    """A run of a workflow. Cheap to create; every method reads the store."""

    def __init__(self, run_id: str, runtime: Runtime | None = None, *, store: Store | None = None) -> None:
        if runtime is None and store is None:
            raise TypeError("Run needs a runtime or a store")
        self.run_id = run_id
        self._runtime = runtime
        self._store: Store = store if store is not None else runtime.store  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<durable.Run {self.run_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)

    @property
    def store(self) -> Store:
        return self._store

    async def _record(self) -> RunRecord:
        record = await self._store.get_run(self.run_id)
        if record is None:
            raise RunNotFound(self.run_id)
        return record

    async def info(self) -> RunInfo:
        return RunInfo.from_record(await self._record())

    async def status(self) -> str:
        """One of ``pending running completed failed cancelled``."""
        return (await self._record()).status

    async def wait(self, timeout: Duration | None = None) -> RunInfo:
        """Wait until the run is completed, failed or cancelled; TimeoutError after ``timeout``
        (seconds, ``"5m"``, or a timedelta)."""
        deadline = math.inf if timeout is None else time.monotonic() + parse_duration(timeout, what="timeout")
        idle = 0.01
        notifier = self._store.notifier
        poll = self._store.cross_process and not self._store.notifies_across_processes
        while True:
            listener = notifier.listen("run-end", self.run_id)
            record = await self._record()
            if record.status in ("completed", "failed", "cancelled"):
                return RunInfo.from_record(record)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                shown = f"{timeout}s" if isinstance(timeout, int | float) else repr(timeout)
                raise TimeoutError(f"run {self.run_id} did not finish within {shown} (status: {record.status})")
            await notifier.wait(listener, min(remaining, idle if poll else math.inf))
            idle = min(1.0, idle * 2)

    async def result(self, timeout: Duration | None = None) -> Any:
        """The workflow's return value; RunFailed / RunCancelled otherwise; TimeoutError after ``timeout``."""
        await self.wait(timeout)
        record = await self._record()
        if record.status == "completed":
            # Outputs are written by our own runtime; pickle only appears if the workflow opted in.
            return _codec.decode(record.output or b"", allow_pickle=True, root="result")
        if record.status == "cancelled":
            raise RunCancelled(self.run_id)
        info = decode_error(record.error or b"")
        raise RunFailed(self.run_id, info.type, info.message, info.traceback, info.exception)

    async def cancel(self) -> str:
        """Cancel the run: its running steps are cancelled, its streams closed, its hooks disposed."""
        if self._runtime is not None:
            return await self._runtime.cancel(self.run_id)
        record = await self._store.cancel_run(self.run_id, time.time())
        if record is None:
            raise RunNotFound(self.run_id)
        return record.status

    async def events(self) -> list[Event]:
        """The run's event log, oldest first."""
        await self._record()
        return await self._store.load_events(self.run_id)

    async def steps(self) -> list[StepInfo]:
        await self._record()
        return [StepInfo.from_record(s) for s in await self._store.list_steps(self.run_id)]

    async def hooks(self, *, active_only: bool = True) -> list[HookInfo]:
        await self._record()
        return [HookInfo.from_record(h) for h in await self._store.list_hooks(self.run_id, active_only=active_only)]

    async def streams(self) -> list[tuple[str, int, bool]]:
        """(namespace, number of chunks, closed) for each stream the run has written."""
        await self._record()  # RunNotFound, as every other method raises
        return await self._store.list_streams(self.run_id)

    def stream(
        self, namespace: str = DEFAULT_NAMESPACE, *, start_index: int = 0, with_metadata: bool = False
    ) -> AsyncIterator[Any]:
        """Chunks from ``start_index`` (negative counts from the end), then live ones until the stream closes."""
        return read_stream(
            self._store, self.run_id, namespace, start_index=start_index, with_metadata=with_metadata,
            poll_interval=self._runtime.poll_interval if self._runtime else 0.5,
        )

    # -- notebooks ----------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            from .notebook import mimebundle
        except ImportError:
            return {"text/plain": repr(self)}
        bundle: dict[str, Any] = mimebundle(self)
        return bundle

