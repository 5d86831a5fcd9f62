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

from ._context import current_runtime
from ._hooks import Request, ResumeResult
from ._run import Run, RunInfo
from ._runtime import Runtime
from ._workflow import Workflow
from .stores._base import Store

_options: dict[str, Any] = {}
_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = weakref.WeakKeyDictionary()
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[Runtime]] = weakref.WeakKeyDictionary()


def configure(*, store: str | Store | None = None, **runtime_options: Any) -> None:
    """Set the default runtime's store (URL or Store) and options (as for :class:`Runtime`).

    Takes effect for the next default runtime: call it before the first ``durable.start``.
    """
    _options.clear()
    _options.update(runtime_options)
    if store is not None:
        _options["store"] = store
    for loop, runtime in list(_defaults.items()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(lambda rt=runtime: asyncio.ensure_future(rt.aclose()))
    _defaults.clear()


async def get_runtime() -> Runtime:
    """The runtime module-level calls use: the current one, else this loop's default (started now)."""
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
        loop.create_task(_hold_default(loop, pending), name="durable default runtime")
    return await asyncio.shield(pending)


async def _hold_default(loop: asyncio.AbstractEventLoop, ready: asyncio.Future[Runtime]) -> None:
    runtime = Runtime(**_options)
    try:
        async with runtime:
            _defaults[loop] = runtime
            _starting.pop(loop, None)
            ready.set_result(runtime)
            await asyncio.Event().wait()
    except BaseException as exc:
        _starting.pop(loop, None)
        if _defaults.get(loop) is runtime:
            del _defaults[loop]
        if not ready.done():
            ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError("default runtime stopped"))
        raise


async def start(workflow: Workflow[Any, Any] | str, /, *args: Any, run_id: str | None = None,
                idempotency_key: str | None = None, **kwargs: Any) -> Run:
    """Start a run of ``workflow`` and return its :class:`Run` at once."""
    runtime = await get_runtime()
    return await runtime.start(workflow, *args, run_id=run_id, idempotency_key=idempotency_key, **kwargs)


async def get_run(run_id: str) -> Run:
    return await (await get_runtime()).get_run(run_id)


async def list_runs(*, status: str | None = None, workflow: str | None = None, limit: int = 100,
                    before: str | None = None) -> list[RunInfo]:
    return await (await get_runtime()).list_runs(status=status, workflow=workflow, limit=limit, before=before)


async def resume_hook(token: str, payload: Any) -> ResumeResult:
    """Resume the live hook holding ``token`` with ``payload``; HookNotFound if there is none."""
    return await (await get_runtime()).resume_hook(token, payload)


async def resume_webhook(token: str, request: Request, *, timeout: float = 30.0) -> Any:
    """Deliver an HTTP request to a webhook and return the :class:`Response` to send back."""
    return await (await get_runtime()).resume_webhook(token, request, timeout=timeout)
