"""Module-level ``durable.start/get_run/list_runs/resume_hook``: the current runtime, or a default one.

Inside ``async with durable.Runtime(...)`` they act on that runtime (a context variable).
Elsewhere -- scripts, notebooks -- they use a default runtime started lazily on the running
event loop and kept by a background task until the loop ends (``asyncio.run`` cancels it,
which closes the store cleanly). ``configure()`` sets the default runtime's options.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from ._client.projection import ResumeResult, RunInfo
from ._client.run import Run
from ._core.durations import Duration
from ._core.queues import Queue
from ._worker.runtime import Runtime, current_runtime
from ._workflow.context import refuse_in_workflow
from ._workflow.http import Request
from ._workflow.workflow import Workflow
from .stores._base import Store

_options: dict[str, Any] = {}
_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = weakref.WeakKeyDictionary()
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[Runtime]] = weakref.WeakKeyDictionary()
# The loop keeps only weak references to tasks: without this one, the garbage collector can
# destroy the pending task that holds the default runtime open (seen in Jupyter kernels).
_holders: set[asyncio.Task[None]] = set()
_stops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()


def configure(*, store: str | Store | None = None, **runtime_options: Any) -> None:
    """Set the default runtime's store (URL or Store) and options (as for :class:`Runtime`).

    Takes effect for the next default runtime: call it before the first ``durable.start``.
    """
    options = dict(runtime_options)
    if store is not None:
        options["store"] = store
    if options == _options:
        # Re-running a notebook's set-up cell must not stop the runtime its runs are on.
        return
    _options.clear()
    _options.update(options)
    for loop in list(_defaults):
        stop = _stops.get(loop)
        if stop is not None and not loop.is_closed():
            # The holder task closes its runtime itself: a task group must exit in its own task.
            loop.call_soon_threadsafe(stop.set)
    _defaults.clear()


async def get_runtime() -> Runtime:
    """The runtime module-level calls use: the current one, else this loop's default (started now)."""
    return await _runtime_for("get_runtime")


async def _runtime_for(api: str) -> Runtime:
    refuse_in_workflow(api)  # before a default runtime could be started on the workflow's own loop
    current = current_runtime.get()
    if current is not None:
        return current
    loop = asyncio.get_running_loop()
    runtime = _defaults.get(loop)
    if runtime is not None:
        return runtime
    pending = _starting.get(loop)
    if pending is None:
        pending = _starting[loop] = loop.create_future()
        holder = loop.create_task(_hold_default(loop, pending), name="durable default runtime")
        _holders.add(holder)
        holder.add_done_callback(_holders.discard)
    return await asyncio.shield(pending)


async def _hold_default(loop: asyncio.AbstractEventLoop, ready: asyncio.Future[Runtime]) -> None:
    runtime = Runtime(**_options)
    stop = _stops[loop] = asyncio.Event()
    try:
        await runtime.open()
    except BaseException as exc:
        _starting.pop(loop, None)
        if not ready.done():
            ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError("default runtime stopped"))
        raise
    _defaults[loop] = runtime
    _starting.pop(loop, None)
    ready.set_result(runtime)
    close = True
    try:
        await stop.wait()
    except GeneratorExit:
        # The loop is torn down without cancelling its tasks (a kernel exiting): nothing can be
        # awaited any more. Nothing is lost either -- the next process sees this one is gone.
        close = False
        raise
    finally:
        if _defaults.get(loop) is runtime:
            del _defaults[loop]
        if close:
            await runtime.aclose()


async def start(workflow: Workflow[Any, Any] | str, /, *args: Any, run_id: str | None = None,
                idempotency_key: str | None = None, timeout: Duration | None = None, queue: str | Queue | None = None,
                priority: int | None = None, key: str | None = None, dedupe_id: str | None = None, **kwargs: Any) -> Run:
    """Start a run of ``workflow`` and return its :class:`Run` at once (options as for ``Runtime.start``)."""
    runtime = await _runtime_for("start")
    return await runtime.start(
        workflow, *args, run_id=run_id, idempotency_key=idempotency_key, timeout=timeout, queue=queue, priority=priority,
        key=key, dedupe_id=dedupe_id, **kwargs,
    )


async def get_run(run_id: str) -> Run:
    return await (await _runtime_for("get_run")).get_run(run_id)


async def list_runs(*, status: str | None = None, workflow: str | None = None, limit: int = 100,
                    before: str | None = None, version: str | None = None) -> list[RunInfo]:
    return await (await _runtime_for("list_runs")).list_runs(
        status=status, workflow=workflow, limit=limit, before=before, version=version
    )


async def resume_hook(token: str, payload: Any, *, wait: Duration | None = None) -> ResumeResult:
    """Resume the live hook holding ``token`` with ``payload``; HookNotFound if there is none.

    ``wait`` (e.g. ``"10s"``) first waits for a hook with that token to be created.
    """
    return await (await _runtime_for("resume_hook")).resume_hook(token, payload, wait=wait)


async def resume_webhook(token: str, request: Request, *, timeout: float = 30.0) -> Any:
    """Deliver an HTTP request to a webhook and return the :class:`Response` to send back."""
    return await (await _runtime_for("resume_webhook")).resume_webhook(token, request, timeout=timeout)
