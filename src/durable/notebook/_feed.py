"""Feeds: follow a run (or the list of runs) through the store's notifications, publish states.

::

    runtime ── store transaction ──► Notifier.notify(("run", id) | ("stream", id, ns) | ("runs",))
                                              │ (anyio events; armed *before* each read)
    RunFeed.follow():  wait_any(armed) ──► throttle delay (coalesce) ──► re-arm ──► read what
                       changed (run row + steps + hooks | new chunks) ──► publish(RunState)

Nothing here polls on a timer when the store tells this process about every write (memory
store, PostgreSQL LISTEN). A SQLite file can also be written by *other* processes, which
cannot wake us, so there -- and only there -- a feed also re-reads after an idle back-off
capped at the runtime's poll interval, as ``Run.wait`` and stream readers do.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._client.streams import StreamChunk
from .._core import codec as _codec
from .._core.errors import DurableError, EncryptedValueError
from .._core.ids import DEFAULT_NAMESPACE
from .._workflow.step import steps as registered_steps
from .._workflow.workflow import workflows as registered_workflows
from ._model import RunState, Throttle

if TYPE_CHECKING:
    from .._client.client import Client
    from .._client.projection import RunInfo, StepInfo
    from .._client.run import Run
    from ..stores._base import Store

log = logging.getLogger("durable.notebook")

RUN = "run"
STREAM = "stream"
ALL_PARTS = frozenset({RUN, STREAM})
_PAGE = 512
_PAGES_PER_REFRESH = 8  # a refresh reads at most this many pages; the rest on the next one
_FIRST_POLL = 0.02

#: The latest state any feed or snapshot saw, per run: what the static repr shows when no
#: live view is possible (it cannot read the store itself: reprs are synchronous).
_latest: OrderedDict[str, RunState] = OrderedDict()
_LATEST_MAX = 256


def remember(state: RunState) -> None:
    if not state.loaded:
        return
    _latest[state.run_id] = state
    _latest.move_to_end(state.run_id)
    while len(_latest) > _LATEST_MAX:
        _latest.popitem(last=False)


def latest(run_id: str) -> RunState | None:
    """The most recent state of ``run_id`` seen in this process, if any."""
    return _latest.get(run_id)


async def wait_any(events: Iterable[anyio.Event], timeout: float = math.inf) -> bool:
    """Wait until one of ``events`` is set or ``timeout`` passes; True if one was set."""
    pending = list(events)
    if any(e.is_set() for e in pending):
        return True
    if timeout <= 0:
        return False
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def one(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            for event in pending:
                tg.start_soon(one, event)
    return any(e.is_set() for e in pending)


def polls(store: Store) -> bool:
    """Whether followers must also poll: other processes can write and cannot notify us."""
    return bool(store.cross_process and not store.notifies_across_processes)


class RunFeed:
    """Follows one run and publishes :class:`RunState` snapshots, at most ``max_rate`` per second.

    ``follow()`` runs until the run is settled (terminal, stream drained) or the store goes
    away; ``refresh()`` reads once. ``publish`` is called with each new state (the widget's
    draw function); an exception in it is logged, never allowed to stop the feed.
    """

    def __init__(
        self,
        run: Run,
        publish: Callable[[RunState], object] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_rate: float = 10.0,
        max_chunks: int = 200,
        poll_interval: float | None = None,
    ) -> None:
        self.run = run
        self.namespace = namespace
        self.state = RunState(run.run_id, namespace, max_chunks=max_chunks)
        self.throttle = Throttle(max_rate)
        self.refreshes = 0
        self.publications = 0
        self._publish = publish
        self._poll_cap = poll_interval if poll_interval is not None else run.client.poll_interval
        self._started_stream = False
        self._more_chunks = False
        self._done: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<RunFeed {self.run.run_id} {self.state.status} refreshes={self.refreshes} published={self.publications}>"

    # -- reading -------------------------------------------------------------------------------

    async def refresh(self, parts: Collection[str] = ALL_PARTS) -> RunState:
        """Read ``parts`` ("run": row, steps, hooks; "stream": new chunks) once and apply them."""
        self.refreshes += 1
        state = self.state
        if RUN in parts:
            info = await self.run.info()
            state = state.with_info(info)
            steps = await self.run.steps()
            state = state.with_steps(steps)
            state = state.with_code_changes(redefined_since(info, steps))
            state = state.with_hooks([] if state.terminal else await self.run.hooks())
            state = state.with_values(await _values(self.run))
            if state.status == "completed" and not state.has_result:
                state = state.with_result(await self._result())
        if STREAM in parts or not self._started_stream:
            state = await self._read_chunks(state)
        self.state = state
        remember(state)
        return state

    async def _result(self) -> Any:
        try:
            return await self.run.result()
        except EncryptedValueError:
            return _ENCRYPTED
        except Exception as exc:  # e.g. a result class this process cannot rebuild
            return _Unreadable(f"{type(exc).__name__}: {exc}")

    async def _read_chunks(self, state: RunState) -> RunState:
        store = self.run.store
        if not self._started_stream:
            self._started_stream = True
            for namespace, count, _closed in await self.run.streams():
                if namespace == self.namespace and count > state.max_chunks:
                    state = state.skip_chunks_to(count - state.max_chunks)
        self._more_chunks = False
        for _ in range(_PAGES_PER_REFRESH):
            if state.stream_closed:
                break
            page = await store.read_chunks(self.run.run_id, self.namespace, state.chunk_count, _PAGE)
            chunks = [
                StreamChunk(c.index, _decode_chunk(c.index, c.data), c.step_id, c.attempt, c.created_at)
                for c in page.chunks
            ]
            state = state.with_chunks(chunks, closed=page.closed, error=page.error)
            if page.closed or len(page.chunks) < _PAGE:
                break
        else:
            self._more_chunks = True
        return state

    # -- following -----------------------------------------------------------------------------

    def _arm(self) -> dict[tuple[str, ...], anyio.Event]:
        notifier = self.run.store.notifier
        run_id = self.run.run_id
        topics: list[tuple[str, ...]] = [("run", run_id), ("stream", run_id, self.namespace), ("stream", run_id)]
        return {topic: notifier.listen(*topic) for topic in topics}

    def _done_event(self) -> anyio.Event:
        if self._done is None:
            self._done = anyio.Event()
        return self._done

    async def follow(self) -> RunState:
        """Publish the run's state until it is settled; returns the final state.

        Listeners are armed before each read, so a write that lands between the read and
        the wait is never missed; redraws are coalesced by the throttle, so a stream of
        thousands of chunks a second costs at most ``max_rate`` reads and redraws.
        """
        done = self._done_event()
        poll = polls(self.run.store)
        idle = _FIRST_POLL
        armed = self._arm()
        parts: Collection[str] = ALL_PARTS
        try:
            while True:
                started = self.throttle.now()
                try:
                    await self.refresh(parts)
                except (DurableError, LookupError) as exc:
                    self.state = self.state.with_problem(f"{type(exc).__name__}: {exc}")
                self._emit()
                self.throttle.record(started)
                if self.state.settled:
                    return self.state
                fired = await wait_any(armed.values(), idle if poll else math.inf)
                idle = _FIRST_POLL if fired else min(self._poll_cap, idle * 2)
                delay = self.throttle.delay()
                if delay > 0:
                    await anyio.sleep(delay)  # coalesce: everything that lands meanwhile is read below
                rearmed = self._arm()
                if fired:
                    parts = {RUN if topic[0] == "run" else STREAM for topic, ev in armed.items() if ev.is_set()}
                    if self._more_chunks:
                        parts.add(STREAM)
                else:
                    parts = ALL_PARTS
                armed = rearmed
        finally:
            done.set()

    def _emit(self) -> None:
        self.publications += 1
        if self._publish is None:
            return
        try:
            self._publish(self.state)
        except Exception:
            log.exception("drawing the view of run %s failed", self.run.run_id)

    async def settled(self, timeout: float | None = None) -> RunState:
        """Wait until :meth:`follow` has published the settled state (TimeoutError after ``timeout``)."""
        done = self._done_event()
        with anyio.fail_after(timeout):
            await done.wait()
        return self.state


def redefined_since(info: RunInfo, steps: Sequence[StepInfo]) -> list[str]:
    """The workflow and steps of a run that this process redefined after the run started.

    A notebook cell re-run replaces a definition while runs are in flight; the workflow body of
    such a run calls the name it sees at that moment, so its next steps run the new code. The
    view says so rather than leave a result that matches neither version unexplained.
    """
    since = info.created_at.timestamp()
    changed = []
    workflow = registered_workflows.resolve(info.workflow_name)
    at = registered_workflows.defined_at(workflow.name) if workflow is not None else None
    if at is not None and at > since:
        changed.append(f"workflow {info.workflow_name}")
    for name in sorted({s.name for s in steps}):
        step = registered_steps.resolve(name)
        at = registered_steps.defined_at(step.name) if step is not None else None
        if at is not None and at > since:
            changed.append(f"step {name}")
    return changed


class _Unreadable:
    """Stands for a value the view could not decode, with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<not decodable here: {self.reason}>"


class _Encrypted:
    """Stands for a value encrypted at rest that this process holds no key for."""

    def __repr__(self) -> str:
        return _codec.ENCRYPTED


_ENCRYPTED = _Encrypted()


def _decode_chunk(index: int, data: bytes, root: str | None = None) -> Any:
    try:
        return _codec.decode(data, allow_pickle=False, root=root or f"chunk #{index}")
    except EncryptedValueError:
        return _ENCRYPTED
    except Exception as exc:
        return _Unreadable(f"{type(exc).__name__}: {exc}")


async def _values(run: Run) -> dict[str, Any]:
    """The run's live values, each decoded as far as this process can (never failing the view)."""
    return {key: _decode_chunk(0, data, f"value {key!r}") for key, data, _, _ in await run.store.list_values(run.run_id)}


async def snapshot(run: Run, *, namespace: str = DEFAULT_NAMESPACE, max_chunks: int = 200) -> RunState:
    """Read a run's state once: steps, hooks, the stream's latest chunks, error or result."""
    feed = RunFeed(run, namespace=namespace, max_chunks=max_chunks)
    return await feed.refresh()


class RunsFeed:
    """Follows the list of recent runs (the ``("runs",)`` topic), publishing it throttled. Never settles."""

    def __init__(
        self,
        get_runtime: Callable[[], Any],
        publish: Callable[[list[RunInfo]], object],
        *,
        limit: int = 20,
        status: str | None = None,
        workflow: str | None = None,
        max_rate: float = 4.0,
    ) -> None:
        self._get_runtime = get_runtime
        self._publish = publish
        self.limit = limit
        self.status = status
        self.workflow = workflow
        self.throttle = Throttle(max_rate)
        self.runtime: Client | None = None
        self.publications = 0

    async def read(self) -> list[RunInfo]:
        if self.runtime is None:
            self.runtime = await self._get_runtime()
        assert self.runtime is not None
        return await self.runtime.list_runs(status=self.status, workflow=self.workflow, limit=self.limit)

    async def follow(self) -> None:
        runtime: Client = self.runtime or await self._get_runtime()
        self.runtime = runtime
        notifier = runtime.store.notifier
        poll = polls(runtime.store)
        idle = _FIRST_POLL
        while True:
            started = self.throttle.now()
            armed = notifier.listen("runs")
            runs = await self.read()
            self.publications += 1
            try:
                self._publish(runs)
            except Exception:
                log.exception("drawing the runs table failed")
            self.throttle.record(started)
            fired = await wait_any([armed], idle if poll else math.inf)
            idle = _FIRST_POLL if fired else min(runtime.poll_interval, idle * 2)
            delay = self.throttle.delay()
            if delay > 0:
                await anyio.sleep(delay)
