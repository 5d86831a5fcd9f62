"""``Run``: a handle on one run -- status, result, cancel, events, steps, hooks and streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol

from .._core import codec as _codec
from .._core.checks import check_int
from .._core.durations import Duration
from .._core.errorinfo import decode_error
from .._core.errors import HookNotFound, RunCancelled, RunFailed, RunNotFound
from .._core.events import Event
from .._core.ids import DEFAULT_NAMESPACE, is_text
from .._workflow.workflow import Workflow
from .._workflow.workflow import workflows as registered_workflows
from ..stores._base import MAX_INDEX, TERMINAL, RunRecord, Store
from .fork import fork_run
from .projection import HookInfo, ResumeResult, RunInfo, StepInfo
from .resume import resume_hook
from .streams import read_stream
from .waiting import wait_until


class RunSource(Protocol):
    """What a :class:`Run` reads and acts through: a :class:`~durable.Client` (or a Runtime, which is one)."""

    @property
    def store(self) -> Store: ...
    @property
    def poll_interval(self) -> float: ...
    async def cancel(self, run_id: str) -> str: ...
    async def resume_hook(self, token: str, payload: Any) -> Any: ...
    def get_workflow(self, name: str) -> Workflow[Any, Any] | None: ...
    def holds_run(self, run_id: str) -> bool: ...


class BareStore:
    """The :class:`RunSource` of a run handle made from a store alone (``Run(run_id, store=s)``)."""

    poll_interval = 0.5

    def __init__(self, store: Store) -> None:
        self.store = store

    async def cancel(self, run_id: str) -> str:
        record = await self.store.cancel_run(run_id, time.time())
        if record is None:
            raise RunNotFound(run_id)
        return record.status

    async def resume_hook(self, token: str, payload: Any) -> ResumeResult:
        return await resume_hook(self.store, token, payload)

    def get_workflow(self, name: str) -> Workflow[Any, Any] | None:
        return registered_workflows.resolve(name)

    def holds_run(self, run_id: str) -> bool:
        return False


class Run:
    """A run of a workflow. Cheap to create; every method reads the store.

    ``client`` is the :class:`~durable.Client` (or Runtime) it reads and acts through;
    ``Run(run_id, store=store)`` makes one over a bare store.
    """

    def __init__(self, run_id: str, client: RunSource | None = None, *, store: Store | None = None) -> None:
        if client is None:
            if store is None:
                raise TypeError("Run needs a client (or runtime) or a store")
            client = BareStore(store)
        self.run_id = run_id
        self.client = client
        self._store: Store = client.store

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
        return RunInfo.from_record(await self._wait_record(timeout))

    async def _wait_record(self, timeout: Duration | None) -> RunRecord:
        last = "unknown"

        async def check() -> RunRecord | None:
            nonlocal last
            record = await self._record()
            last = record.status
            return record if record.status in TERMINAL else None

        def describe() -> str:
            shown = f"{timeout}s" if isinstance(timeout, int | float) else repr(timeout)
            return f"run {self.run_id} did not finish within {shown} (status: {last})"

        run_id, client = self.run_id, self.client
        return await wait_until(
            self._store, ("run-end", run_id), check, timeout, describe, held=lambda: client.holds_run(run_id)
        )

    async def wait_for_hook(self, token: str, timeout: Duration | None = None) -> HookInfo:
        """Wait until this run has a live hook holding ``token`` (created by its workflow) and return it.

        The way to resume a hook right after starting its run without racing its creation:
        ``await run.wait_for_hook("approval:1", timeout="10s")``, then ``resume_hook``. Raises
        HookNotFound if the run ends first, TimeoutError after ``timeout``.
        """
        async def check() -> HookInfo | None:
            hook = await self._store.get_hook(token) if is_text(token) else None
            if hook is not None and hook.run_id == self.run_id:
                return HookInfo.from_record(hook)
            record = await self._record()
            if record.status in TERMINAL:
                raise HookNotFound(token)
            return None

        return await wait_until(
            self._store, ("run", self.run_id), check, timeout,
            lambda: f"run {self.run_id} has no live hook with token {token!r}",
        )

    async def result(self, timeout: Duration | None = None) -> Any:
        """The workflow's return value; RunFailed / RunCancelled otherwise; TimeoutError after ``timeout``."""
        record = await self._wait_record(timeout)
        if record.status == "completed":
            # Outputs are written by our own runtime; pickle only appears if the workflow opted in.
            return _codec.decode(record.output or b"", allow_pickle=True, root="result")
        if record.status == "cancelled":
            raise RunCancelled(self.run_id, record.cancel_reason)
        info = decode_error(record.error or b"")
        raise RunFailed(self.run_id, info.type, info.message, info.traceback, info.exception)

    async def cancel(self) -> str:
        """Cancel the run: its running steps are cancelled, its streams closed, its hooks disposed."""
        return await self.client.cancel(self.run_id)

    async def fork(self, from_step: int | str, *, input: Any = None) -> Run:
        """A new run that reuses this run's history before ``from_step`` (its position, ``4``, or id,
        ``"step_4"``) -- every step recorded before it keeps its result -- and runs the rest with the
        code deployed now; ``input`` (a list of arguments, or ``{"args": [...], "kwargs": {...}}``)
        replaces the arguments. This run is untouched; the new one records ``forked_from``."""
        new = await fork_run(self._store, self.run_id, from_step, input, find=self.client.get_workflow)
        return Run(new, self.client)

    async def events(self) -> list[Event]:
        """The run's event log, oldest first."""
        await self._record()
        return await self._store.load_events(self.run_id)

    async def steps(self) -> list[StepInfo]:
        await self._record()
        return [StepInfo.from_record(s) for s in await self._store.list_steps(self.run_id)]

    async def get_event(self, key: str, timeout: Duration | None = None) -> Any:
        """The value the run's workflow last published under ``key`` (``durable.set_event``), waiting
        until it has published one. LookupError if the run ends first; TimeoutError after ``timeout``."""
        async def check() -> tuple[Any] | None:
            found = await self._store.list_values(self.run_id, key)
            if found:
                return (_codec.decode(found[0][1], allow_pickle=False, root=f"event {key!r}"),)
            record = await self._record()
            if record.status in TERMINAL:
                raise LookupError(f"run {self.run_id} ended ({record.status}) without setting event {key!r}")
            return None

        (value,) = await wait_until(
            self._store, ("run", self.run_id), check, timeout, lambda: f"run {self.run_id} has not set event {key!r}"
        )
        return value

    async def values(self) -> dict[str, Any]:
        """Every value the run's workflow has published (``durable.set_event``), by key: the latest of each."""
        await self._record()
        return {k: _codec.decode(data, root=f"event {k!r}") for k, data, _, _ in await self._store.list_values(self.run_id)}

    async def children(self) -> list[RunInfo]:
        """The child runs this run's workflow started (``await child_wf(...)``, ``start_child``), oldest first."""
        await self._record()
        return [RunInfo.from_record(r) for r in await self._store.list_children(self.run_id)]

    async def parent(self) -> Run | None:
        """The run that started this one as its child (None for a run started from outside)."""
        record = await self._record()
        return None if record.parent_run_id is None else Run(record.parent_run_id, self.client)

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
        check_int("start_index", start_index, minimum=-MAX_INDEX, maximum=MAX_INDEX)  # at the call, not the first read
        return read_stream(
            self._store, self.run_id, namespace, start_index=start_index, with_metadata=with_metadata,
            poll_interval=self.client.poll_interval,
        )

    # -- notebooks ----------------------------------------------------------------------------

    #: How a notebook shows a run: installed by ``durable.notebook`` (a live widget, or the
    #: latest state seen as HTML); plain text until then.
    display: ClassVar[Callable[[Run], dict[str, Any]] | None] = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if Run.display is None:
            return {"text/plain": repr(self)}
        return Run.display(self)



async def rerun(run: Run) -> Run:
    """Run a failed or cancelled run again from its first failed step with the code deployed now:
    a fork (``run.fork``) that reuses every step recorded before that point. The old run is untouched."""
    new = await fork_run(run.store, run.run_id, None, None, find=run.client.get_workflow, rerun=True)
    return Run(new, run.client)
