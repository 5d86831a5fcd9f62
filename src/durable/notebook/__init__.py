"""Notebooks: watch, inspect and resume durable runs in Jupyter (extra ``notebook``: ipywidgets).

::

    run = await durable.start(pipeline, "input.csv")   # top-level await, on the kernel's loop
    run                                                 # a live widget (Run._repr_mimebundle_)
    durable.notebook.watch(run)                         # the same widget, as an object
    await durable.notebook.snapshot(run)                # a static view of the state right now
    durable.notebook.runs()                             # recent runs; pick one to inspect it

Three layers, so that the rules are testable without a front end:

- ``_model``: :class:`RunState`, an immutable snapshot of what a view shows, its transitions
  and the :class:`Throttle` (pure);
- ``_feed``: :class:`RunFeed`, which follows the store's notifications and publishes states;
- ``_widgets``: :class:`RunView` / :class:`RunsView`, ipywidgets drawing those states.

Importing this module does not import ipywidgets; the widget classes load on first use, so the
static repr works where ipywidgets is missing.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import TYPE_CHECKING, Any

from .._client.run import Run
from .._core.ids import DEFAULT_NAMESPACE
from ._feed import RunFeed as RunFeed
from ._feed import latest
from ._feed import snapshot as snapshot
from ._html import state_html, state_text
from ._model import ChunkItem as ChunkItem
from ._model import HookRow as HookRow
from ._model import Progress as Progress
from ._model import RunState as RunState
from ._model import StepRow as StepRow
from ._model import Throttle as Throttle

if TYPE_CHECKING:
    from .._client.client import Client
    from ._widgets import RunsView, RunView

__all__ = [
    "ChunkItem", "HookRow", "Progress", "RunFeed", "RunState", "RunView", "RunsView", "StepRow", "Throttle",
    "mimebundle", "runs", "snapshot", "watch", "widgets_available",
]


def __getattr__(name: str) -> Any:
    if name in ("RunView", "RunsView"):
        from . import _widgets

        return getattr(_widgets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def widgets_available() -> bool:
    """True in a Jupyter kernel with ipywidgets installed, on the kernel's running loop."""
    try:
        import ipywidgets  # noqa: F401  # only checking that it is installed
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def watch(
    run: Run, *, namespace: str = DEFAULT_NAMESPACE, max_rate: float = 10.0, max_chunks: int = 200
) -> RunView:
    """A live widget of ``run``: status, steps, progress, the ``namespace`` stream, hooks, cancel, error.

    Updates are pushed by the runtime's notifications and redrawn at most ``max_rate`` times a
    second; the view keeps the latest ``max_chunks`` chunks. Call it where the runtime's loop is
    running (a notebook cell); ``view.close()`` stops it.
    """
    from ._widgets import RunView

    return RunView(run, namespace=namespace, max_rate=max_rate, max_chunks=max_chunks)


def runs(
    limit: int = 20, *, status: str | None = None, workflow: str | None = None, runtime: Client | None = None
) -> RunsView:
    """A live table of the ``limit`` most recent runs (optionally filtered); pick one to inspect it.

    Uses ``runtime``, else the runtime module-level calls use here (the current one, or the
    default runtime, started if needed).
    """
    from .._worker.runtime import current_runtime
    from ._widgets import RunsView

    return RunsView(limit=limit, status=status, workflow=workflow, runtime=runtime or current_runtime.get())


def mimebundle(run: Run) -> dict[str, Any]:
    """What a notebook shows for a :class:`~durable.Run`: a live widget where one can work,
    else the latest state this process has seen as text and HTML (reprs cannot read the store:
    they are synchronous, and the store lives on the event loop)."""
    if widgets_available():
        view = watch(run)
        bundle: dict[str, Any] | None = view._repr_mimebundle_()
        if bundle:
            return bundle
        view.close()
    return static_bundle(run)


def static_bundle(run: Run) -> dict[str, Any]:
    """The text/plain and text/html repr of a run without widgets."""
    state = latest(run.run_id)
    if state is not None:
        return {"text/plain": state_text(state), "text/html": state_html(state)}
    hint = (
        f"durable run {run.run_id} (store {run.store.url}): its state is read asynchronously; "
        "`await run.info()` or `await durable.notebook.snapshot(run)` shows it here, "
        "`durable.notebook.watch(run)` follows it live in Jupyter."
    )
    return {"text/plain": hint, "text/html": f'<div class="durable-run"><code>{escape(hint)}</code></div>'}


# A Run in a notebook cell shows as this module draws it (Run._repr_mimebundle_ asks here).
Run.display = mimebundle


# How IPython shows a RunState (the value of ``await durable.notebook.snapshot(run)``): the model
# stays free of HTML, and the renderers are attached here, where both are known.
def _state_pretty(state: RunState, printer: Any, cycle: bool) -> None:
    printer.text(state_text(state))


RunState._repr_html_ = state_html  # type: ignore[attr-defined]
RunState._repr_pretty_ = _state_pretty  # type: ignore[attr-defined]
