"""The ipywidgets on top of the view model: :class:`RunView` (one run) and :class:`RunsView` (a table).

They only draw states (from ``_html``) and turn clicks into calls on the run's runtime. All
async work runs as tasks on the kernel's event loop -- the loop the default runtime lives on --
created with an *empty* context: ipykernel looks up the request a message answers in a
context variable, and a task that inherited the cell's context would attribute every later
update to that (finished) cell. With no value in the context, ipykernel falls back to the
latest request, exactly as it does for output from threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Coroutine
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._core.ids import DEFAULT_NAMESPACE
from . import _html
from ._feed import RunFeed, RunsFeed, latest
from ._model import RunState

if TYPE_CHECKING:
    from .._client.client import Client
    from .._client.projection import RunInfo
    from .._client.run import Run

log = logging.getLogger("durable.notebook")

_HIDDEN = "none"
_SHOWN = ""


def running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "a live durable view needs the event loop it follows runs on: use it in a Jupyter kernel "
            "(or inside async code); elsewhere use `await durable.notebook.snapshot(run)`"
        ) from None


class _Tasks:
    """Tasks a view started on the kernel's loop, kept referenced until done and cancelled on close."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        def create() -> None:
            task = self.loop.create_task(coro, name=name, context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._done)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            create()
        else:  # a click handled on another thread: hand the coroutine to the view's loop
            self.loop.call_soon_threadsafe(create)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("durable notebook task failed", exc_info=task.exception())

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _show(widget: widgets.DOMWidget, shown: bool) -> None:
    display = _SHOWN if shown else _HIDDEN
    if widget.layout.display != display:
        widget.layout.display = display


class RunView(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type hints
    """A live view of one run: status, steps, progress, stream chunks, hooks, cancel, error.

    Fed by a :class:`RunFeed` on the kernel's loop (store notifications, throttled to
    ``max_rate`` redraws a second). ``await view.settled()`` waits for the final state;
    ``view.close()`` stops following.
    """

    def __init__(
        self,
        run: Run,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_rate: float = 10.0,
        max_chunks: int = 200,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.run = run
        self._tasks = _Tasks(loop or running_loop())
        self._header = widgets.HTML()
        self._error = widgets.HTML()
        self._result = widgets.HTML()
        self._progress_bar = widgets.FloatProgress(min=0.0, max=1.0, value=0.0, layout=widgets.Layout(width="240px"))
        self._progress_text = widgets.HTML()
        self._progress = widgets.HBox([self._progress_bar, self._progress_text], layout=widgets.Layout(display=_HIDDEN))
        self._steps = widgets.HTML()
        self._hooks = widgets.HTML()
        self.hook_token = widgets.Dropdown(description="token", options=[], layout=widgets.Layout(width="360px"))
        self.hook_payload = widgets.Textarea(
            value="{}", placeholder='a JSON payload, e.g. {"approved": true}', description="payload",
            layout=widgets.Layout(width="360px", height="56px"),
        )
        self.resume_button = widgets.Button(description="Resume hook", icon="play", button_style="primary")
        self._hook_message = widgets.HTML()
        self._hook_form = widgets.VBox(
            [self._hooks, self.hook_token, self.hook_payload, widgets.HBox([self.resume_button, self._hook_message])],
            layout=widgets.Layout(display=_HIDDEN, border="1px solid #e5e7eb", padding="4px", margin="4px 0"),
        )
        self.cancel_button = widgets.Button(description="Cancel run", icon="stop", button_style="danger")
        self._cancel_message = widgets.HTML()
        self._actions = widgets.HBox([self.cancel_button, self._cancel_message], layout=widgets.Layout(margin="6px 0 0 0"))
        self._chunks_label = widgets.HTML()
        self._chunks = widgets.Output(
            layout=widgets.Layout(max_height="260px", overflow="auto", border="1px solid #e5e7eb", display=_HIDDEN)
        )
        self._footer = widgets.HTML()
        self.resume_button.on_click(self._on_resume)
        self.cancel_button.on_click(self._on_cancel)
        super().__init__(
            [
                self._header, self._error, self._result, self._progress, self._steps, self._hook_form,
                self._chunks_label, self._chunks, self._actions, self._footer,
            ],
            layout=widgets.Layout(padding="4px"),
        )
        self.add_class("durable-run-view")
        self.feed = RunFeed(run, self.draw, namespace=namespace, max_rate=max_rate, max_chunks=max_chunks)
        self.draw(self.feed.state)
        self._tasks.spawn(self.feed.follow(), f"durable view of {run.run_id}")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget, plus what a saved notebook shows once this kernel is gone: the last state
        as static HTML that says it is a saved view -- not a Cancel button that no longer works."""
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            state = self.feed.state if self.feed.state.loaded else latest(self.run.run_id) or self.feed.state
            bundle["text/html"] = _html.stale_html(state)
        return bundle

    def __repr__(self) -> str:
        state = self.feed.state if self.feed.state.loaded else latest(self.run.run_id)
        if state is None:
            return f"<durable live view of run {self.run.run_id}>"
        return _html.state_text(state)

    @property
    def state(self) -> RunState:
        """What the view shows now."""
        return self.feed.state

    async def settled(self, timeout: float | None = None) -> RunState:
        """Wait until the view shows the run's final state (ended, stream drained)."""
        return await self.feed.settled(timeout)

    # -- drawing -------------------------------------------------------------------------------

    def draw(self, state: RunState) -> None:
        """Make every widget show ``state`` (traits that do not change send nothing)."""
        now = _html.now_utc()
        self._header.value = _html.header_html(state, now) + _html.code_changes_html(state)
        self._error.value = _html.error_html(state)
        self._result.value = _html.result_html(state)
        progress = state.progress
        _show(self._progress, progress is not None)
        if progress is not None:
            fraction = progress.fraction
            self._progress_bar.value = 1.0 if fraction is None and state.terminal else (fraction or 0.0)
            style = "success" if state.status == "completed" else "danger" if state.status == "failed" else ""
            self._progress_bar.bar_style = style
            self._progress_text.value = f'<span style="font-size:12px">{escape(progress.describe())}</span>'
        self._steps.value = _html.steps_html(state, now)
        self._draw_hooks(state)
        listed = tuple(_html.chunk_outputs(state))
        _show(self._chunks, bool(listed))
        if self._chunks.outputs != listed:
            self._chunks.outputs = listed
        closed = " · closed" if state.stream_closed else ""
        self._chunks_label.value = (
            f'<div style="font-size:12px;color:var(--jp-ui-font-color2, #4b5563)">stream "{escape(state.namespace)}": '
            f"{state.chunk_count} chunks{closed}</div>"
            if state.chunk_count
            else ""
        )
        _show(self._actions, state.loaded and not state.terminal)
        self._footer.value = _html.footer_html(state)

    def _draw_hooks(self, state: RunState) -> None:
        hooks = [h for h in state.hooks if not h.webhook]
        _show(self._hook_form, bool(state.hooks))
        self._hooks.value = _html.hooks_html(state)
        tokens = [h.token for h in hooks]
        if list(self.hook_token.options) != tokens:
            keep = self.hook_token.value
            self.hook_token.options = tokens
            # A Dropdown with nothing selected keeps nothing selected when its options change.
            self.hook_token.value = keep if keep in tokens else (tokens[0] if tokens else None)
        _show(self.hook_token, bool(tokens))
        _show(self.hook_payload, bool(tokens))
        self.resume_button.disabled = not tokens

    # -- actions -------------------------------------------------------------------------------

    def _on_resume(self, _button: Any = None) -> None:
        token = self.hook_token.value
        if not token:
            self._hook_message.value = _note("no hook to resume", error=True)
            return
        text = self.hook_payload.value.strip() or "null"
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            self._hook_message.value = _note(f"not JSON: {exc}", error=True)
            return
        self._hook_message.value = _note("sending…")
        self._tasks.spawn(self._resume(token, payload), f"resume hook {token}")

    async def _resume(self, token: str, payload: Any) -> None:
        try:
            result = await resume_hook_for(self.run, token, payload)
        except Exception as exc:
            self._hook_message.value = _note(f"{type(exc).__name__}: {exc}", error=True)
        else:
            self._hook_message.value = _note(f"delivered to {result.token!r}")

    def _on_cancel(self, _button: Any = None) -> None:
        self.cancel_button.disabled = True
        self._cancel_message.value = _note("cancelling…")
        self._tasks.spawn(self._cancel(), f"cancel run {self.run.run_id}")

    async def _cancel(self) -> None:
        try:
            status = await self.run.cancel()
        except Exception as exc:
            self._cancel_message.value = _note(f"{type(exc).__name__}: {exc}", error=True)
            self.cancel_button.disabled = False
        else:
            self._cancel_message.value = _note(f"run is {status}")

    def close(self) -> None:
        """Stop following the run and close every widget of the view."""
        self._tasks.cancel()
        for child in self._all_children():
            child.close()
        super().close()

    def _all_children(self) -> list[widgets.Widget]:
        out: list[widgets.Widget] = []
        stack = list(self.children)
        while stack:
            w = stack.pop()
            out.append(w)
            stack.extend(getattr(w, "children", ()))
        return out


async def resume_hook_for(run: Run, token: str, payload: Any) -> Any:
    """Resume a hook through the client (or runtime) the run handle came from."""
    return await run.client.resume_hook(token, payload)


def _note(text: str, *, error: bool = False) -> str:
    style = _html.ERROR_STYLE if error else "color:var(--jp-ui-font-color1, #374151)"
    return f'<span style="font-size:12px;{style}">{escape(text)}</span>'


class RunsView(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type hints
    """A live table of recent runs; pick one to inspect it in a :class:`RunView` below."""

    def __init__(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        workflow: str | None = None,
        runtime: Client | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._tasks = _Tasks(loop or running_loop())
        self._runtime = runtime
        self.runs: list[RunInfo] = []
        self._table = widgets.HTML('<div style="font-size:12px">loading…</div>')
        self.picker = widgets.Dropdown(description="inspect", options=[("—", "")], value="",
                                       layout=widgets.Layout(width="520px"))
        self.detail = widgets.VBox()
        self._updating = False
        self.picker.observe(self._on_pick, names="value")
        super().__init__([self._table, self.picker, self.detail])
        self.add_class("durable-runs-view")
        self.feed = RunsFeed(self._get_runtime, self.draw, limit=limit, status=status, workflow=workflow)
        self._tasks.spawn(self.feed.follow(), "durable runs table")

    def __repr__(self) -> str:
        return f"<durable runs table: {len(self.runs)} runs>"

    async def _get_runtime(self) -> Client:
        if self._runtime is None:
            from .._api import get_runtime

            self._runtime = await get_runtime()
        return self._runtime

    def draw(self, runs: list[RunInfo]) -> None:
        self.runs = list(runs)
        selected = self.picker.value or None
        self._table.value = _html.runs_html(runs, selected=selected)
        options = [("—", "")] + [(f"{r.run_id} · {r.workflow_name} · {r.status}", r.run_id) for r in runs]
        if selected and selected not in {r.run_id for r in runs}:
            options.append((selected, selected))  # keep inspecting a run that scrolled off the list
        if list(self.picker.options) != options:
            self._updating = True
            try:
                self.picker.options = options
                self.picker.value = selected or ""
            finally:
                self._updating = False

    def inspect(self, run_id: str) -> RunView | None:
        """Show the run ``run_id`` below the table (what picking it in the list does)."""
        for old in self.detail.children:
            old.close()
        self.detail.children = ()
        if not run_id or self._runtime is None:
            return None
        view = RunView(self._runtime.run(run_id), loop=self._tasks.loop)
        self.detail.children = (view,)
        self._table.value = _html.runs_html(self.runs, selected=run_id)
        return view

    def _on_pick(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.inspect(change["new"])

    def close(self) -> None:
        self._tasks.cancel()
        for old in self.detail.children:
            old.close()
        for w in (self._table, self.picker, self.detail):
            w.close()
        super().close()
