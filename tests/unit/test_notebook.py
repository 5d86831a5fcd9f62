"""The notebook view: its model driven by real runs, the throttle, the widgets, and real kernels.

The fast tests drive the view model and the ipywidgets (without a front end: their comms are
inert) from real runs on every store. The ``slow`` tests start real IPython kernels with
nbclient: every notebook in notebooks/ runs top to bottom, and the notebook story of the
issue -- top-level await, responsive cells, re-defined workflows, a kernel restart -- is
checked in kernels of its own.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

import durable
from durable._client.projection import HookInfo, RunInfo, StepInfo
from durable._client.streams import StreamChunk
from durable._core import codec
from durable.notebook import Progress, RunFeed, RunState, Throttle, _html, mimebundle, snapshot
from durable.notebook._html import chunk_outputs, error_html, state_text, step_status, steps_html
from durable.notebook._model import classify, progress_of
from tests.helpers import ROOT, wait_until

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STATUS_ORDER = {"unknown": -1, "pending": 0, "running": 1, "completed": 2, "failed": 2, "cancelled": 2}


# -- workflows used below ------------------------------------------------------------------------


class Chart:
    """A chunk value with a notebook repr of its own, stored through the codec's class hooks."""

    def __init__(self, values: list[int]) -> None:
        self.values = values

    def __durable_serialize__(self) -> dict[str, list[int]]:
        return {"values": self.values}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, list[int]]) -> Chart:
        return cls(data["values"])

    def _repr_html_(self) -> str:
        return "<b class='chart'>" + ",".join(map(str, self.values)) + "</b>"


@durable.step(max_retries=2, retry_delay=0.5)
async def nb_flaky(i: int) -> int:
    if i == 1 and durable.get_step_metadata().attempt == 1:
        raise ConnectionError("flaky on its first attempt")
    return i


@durable.workflow(name="nb_lifecycle")
async def nb_lifecycle(n: int) -> Any:
    for i in range(n):
        yield {"done": i + 1, "of": n}
        await nb_flaky(i)
    yield "a line of text\n"
    yield {"key": "value"}
    decision = await durable.create_hook(token=f"nb:{durable.get_workflow_metadata().run_id}")
    yield {"decision": decision}


@durable.step(max_retries=0)
async def nb_broken(what: str) -> None:
    raise KeyError(what)


@durable.workflow(name="nb_fails")
async def nb_fails() -> Any:
    yield {"done": 1, "of": 2, "label": "half way"}
    yield "before the failure\n"
    yield Chart([1, 2, 3])
    yield b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    await nb_broken("missing-thing")


@durable.workflow(name="nb_waits")
async def nb_waits() -> Any:
    return await durable.create_hook(token=f"wait:{durable.get_workflow_metadata().run_id}")


@durable.step
async def nb_firehose(batches: int, size: int) -> int:
    writer = durable.get_writable()
    total = batches * size
    for b in range(batches):
        for i in range(size):
            await writer.write({"done": b * size + i + 1, "of": total})
        await writer.flush()
        await anyio.sleep(0.03)
    return total


@durable.workflow(name="nb_stream")
async def nb_stream(batches: int, size: int) -> int:
    return await nb_firehose(batches, size)


# -- the pure model ------------------------------------------------------------------------------


def _info(status: str, **kw: Any) -> RunInfo:
    now = datetime.now(UTC)
    return RunInfo("r1", "wf", status, now, kw.get("started_at", now), kw.get("completed_at"), None, None)


def test_progress_is_read_from_done_and_of_or_total() -> None:
    """Chunks with a numeric `done` carry progress (`of` or `total`); booleans and text do not."""
    assert progress_of({"done": 3, "of": 10}) == Progress(3.0, 10.0, None)
    assert progress_of({"done": 1, "total": 4, "label": "x"}) == Progress(1.0, 4.0, "x")
    assert progress_of({"done": 2}) == Progress(2.0, None, None)
    assert progress_of({"done": True, "of": 2}) is None
    assert progress_of({"done": "3", "of": 10}) is None
    assert progress_of([3, 10]) is None
    assert Progress(15, 10).fraction == 1.0 and Progress(1, 0).fraction is None


def test_chunks_are_classified_for_display() -> None:
    """Text, JSON, images, bytes, rich objects and other values each get their own display."""
    assert classify("hi") == "text"
    assert classify({"a": [1, 2.5, None, True]}) == "json"
    assert classify(b"\x89PNG\r\n\x1a\nrest") == "image"
    assert classify(b"\x00\x01") == "bytes"
    assert classify(Chart([1])) == "rich"
    assert classify({1: "non-string key"}) == "object"
    assert classify(datetime(2024, 1, 1)) == "object"


def test_state_transitions_keep_what_the_log_says() -> None:
    """A terminal status is never undone, hooks vanish with the run, chunks apply once, in order."""
    state = RunState("r1", max_chunks=3)
    hook = HookInfo("hook_1", "tok", "active", datetime.now(UTC), None)
    state = state.with_info(_info("running")).with_hooks([hook])
    assert state.hooks[0].token == "tok" and not state.settled
    chunks = [StreamChunk(i, v, None, None, 0.0) for i, v in enumerate(["a", {"done": 1, "of": 2}, "b", "c", "d"])]
    state = state.with_chunks(chunks[:3])
    state = state.with_chunks(chunks[1:])  # overlapping re-read: nothing doubles
    assert state.chunk_count == 5
    assert [c.value for c in state.chunks] == ["b", "c", "d"]  # pure progress is not listed; tail of 3
    assert state.hidden_chunks == 1 and state.progress == Progress(1.0, 2.0, None)
    state = state.with_info(_info("completed", completed_at=datetime.now(UTC)))
    assert state.hooks == () and state.terminal and not state.settled  # stream still open
    assert state.with_info(_info("running")).status == "completed"
    state = state.with_chunks([], closed=True)
    assert state.settled and state.progress == Progress(1.0, 2.0, None)


def test_throttle_spaces_redraws_and_backs_off_when_they_are_costly() -> None:
    """At most max_rate redraws a second, and redraw cost is held under max_share of the time."""
    now = [100.0]
    throttle = Throttle(10.0, max_share=0.2, clock=lambda: now[0])
    assert throttle.delay() == 0.0
    throttle.record(100.0)
    assert throttle.delay() == pytest.approx(0.1)
    now[0] += 0.04
    assert throttle.delay() == pytest.approx(0.06)
    now[0] += 0.06
    assert throttle.delay() == 0.0
    started = now[0]
    now[0] += 0.05  # a redraw that took 50 ms: next one no sooner than 250 ms later
    throttle.record(started)
    assert throttle.interval == pytest.approx(0.25)
    assert throttle.delay() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="max_rate"):
        Throttle(0)


def test_step_table_names_retries_and_keeps_big_runs_short() -> None:
    """A step waiting to retry reads 'retrying' with its error; a long table shows its newest rows."""
    now = datetime.now(UTC)
    from durable._core.errorinfo import ErrorInfo

    err = ErrorInfo("ConnectionError", "reset", "Traceback ...")
    retrying = StepInfo("step_1", "fetch", "pending", 1, 4, now, now, None, now + timedelta(seconds=1), err)
    done = [StepInfo(f"step_{i}", "work", "completed", 1, 4, now, now, now, None, None) for i in range(2, 152)]
    state = RunState("r1").with_info(_info("running")).with_steps([retrying, *done])
    assert step_status(state.steps[0]) == "retrying"
    html = steps_html(state, now, max_rows=100)
    assert "151 steps: 1 retrying, 150 completed" in html  # the summary counts what the rows say
    assert "… 51 earlier steps" in html and html.count("<tr>") == 1 + 1 + 100


def test_step_rows_show_their_arguments_in_a_table_that_scrolls() -> None:
    """Each step is labelled with its call's arguments; the table has a bounded height of its own."""
    now = datetime.now(UTC)
    call = codec.encode({"args": ["A-1", 42], "kwargs": {"retry": True}})
    row = StepInfo("step_1", "charge", "completed", 1, 4, now, now, now, None, None, call)
    html = steps_html(RunState("r1").with_info(_info("running")).with_steps([row]), now)
    assert '(&quot;A-1&quot;, 42, retry=true)' in html
    assert 'class="durable-steps-box" style="max-height:' in html and "overflow:auto" in html


def test_text_chunks_are_one_per_line() -> None:
    """Two text chunks are two lines, not one run-on line."""
    state = RunState("r1").with_info(_info("running")).with_chunks(
        [StreamChunk(0, "first", None, None, 0.0), StreamChunk(1, "second\n", None, None, 0.0)], closed=False, error=None
    )
    assert [o["text"] for o in chunk_outputs(state)] == ["first\nsecond\n"]  # (was "firstsecond\n")


def test_the_view_is_readable_in_a_dark_theme() -> None:
    """Text and borders use JupyterLab's theme variables (dark-on-dark would be unreadable)."""
    now = datetime.now(UTC)
    row = StepInfo("step_1", "work", "completed", 1, 4, now, now, now, None, None)
    html = steps_html(RunState("r1").with_info(_info("running")).with_steps([row]), now)
    assert "var(--jp-ui-font-color2" in html and "var(--jp-border-color1" in html
    assert "color:#4b5563" not in html and "color:#374151" not in html


# -- the feed, driven by real runs ---------------------------------------------------------------

@pytest.mark.anyio
async def test_feed_follows_a_run_through_its_states(runtime: durable.Runtime) -> None:
    """Published states go from pending/running through a retry and a pending hook to completed."""
    run = await runtime.start(nb_lifecycle, 3)
    published: list[RunState] = []
    feed = RunFeed(run, published.append)
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.follow)
        await wait_until(lambda: bool(feed.state.hooks))
        waiting = feed.state
        assert waiting.status == "running"
        assert [h.token for h in waiting.hooks] == [f"nb:{run.run_id}"]
        assert [(s.name, s.status, s.attempt) for s in waiting.steps] == [
            (nb_flaky.name, "completed", 1), (nb_flaky.name, "completed", 2), (nb_flaky.name, "completed", 1)
        ]
        assert waiting.progress == Progress(3.0, 3.0, None)
        assert [(c.kind, c.value) for c in waiting.chunks] == [("text", "a line of text\n"), ("json", {"key": "value"})]
        assert waiting.chunk_count == 5 and not waiting.stream_closed
        await runtime.resume_hook(f"nb:{run.run_id}", {"ok": True})
        final = await feed.settled(20)
    assert final.status == "completed" and final.settled and final.hooks == ()
    assert final.chunks[-1].value == {"decision": {"ok": True}} and final.stream_closed
    ranks = [STATUS_ORDER[s.status] for s in published]
    assert ranks == sorted(ranks) and published[-1].status == "completed"
    # the retry was visible while it waited (its back-off is at least 0.25 s, the view redraws at 10/s)
    assert any(step_status(row) == "retrying" and row.error for s in published for row in s.steps)
    assert feed.publications == len(published) <= feed.refreshes


@pytest.mark.anyio
async def test_a_failed_run_shows_its_error_traceback_and_chunks(runtime: durable.Runtime) -> None:
    """A failing run settles with the error type, message and the step's traceback; chunks stay listed."""
    run = await runtime.start(nb_fails)
    final = await RunFeed(run).follow()
    assert final.status == "failed" and final.settled
    assert final.error_type is not None and "KeyError" in final.error_type + (final.error_message or "")
    assert "nb_broken" in (final.traceback or "")
    html = error_html(final)
    assert "missing-thing" in html and "traceback" in html
    assert [c.kind for c in final.chunks] == ["text", "rich", "image"]
    assert final.progress == Progress(1.0, 2.0, "half way")
    outputs = chunk_outputs(final)
    assert outputs[0] == {"output_type": "stream", "name": "stdout", "text": "before the failure\n"}
    assert outputs[1]["data"]["text/html"] == "<b class='chart'>1,2,3</b>"
    assert "image/png" in outputs[2]["data"]
    assert "nb_broken" in state_text(final) or "KeyError" in state_text(final)


@pytest.mark.anyio
async def test_a_fast_stream_is_coalesced_to_max_rate(runtime: durable.Runtime) -> None:
    """Thousands of chunks in dozens of flushes reach the view in at most max_rate redraws a second."""
    batches, size, rate = 30, 100, 5.0
    run = await runtime.start(nb_stream, batches, size)
    stamps: list[float] = []
    feed = RunFeed(run, lambda state: stamps.append(time.monotonic()), max_rate=rate)
    started = time.monotonic()
    final = await feed.follow()
    elapsed = time.monotonic() - started
    assert final.status == "completed" and final.chunk_count == batches * size
    assert final.progress == Progress(float(batches * size), float(batches * size), None)
    assert final.chunks == ()  # pure progress: drives the bar, is not listed
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 1 / rate - 0.02, gaps
    assert len(stamps) <= elapsed * rate + 2 < batches  # fewer redraws than the 30 flushes that notified


@pytest.mark.anyio
async def test_updates_are_pushed_by_notifications_not_polled() -> None:
    """On a store that notifies every write, an idle view reads nothing; a change shows within ms."""
    async with durable.Runtime("memory://") as rt:
        run = await rt.start(nb_waits)
        feed = RunFeed(run)
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.follow)
            await wait_until(lambda: bool(feed.state.hooks))
            await anyio.sleep(0.15)  # let the throttle window pass
            reads = feed.refreshes
            await anyio.sleep(0.6)
            assert feed.refreshes == reads  # no timer: nothing happened, nothing was read
            resumed = time.monotonic()
            await rt.resume_hook(f"wait:{run.run_id}", 7)
            await wait_until(lambda: feed.state.settled, 5)
            assert time.monotonic() - resumed < 0.5
        assert feed.state.status == "completed" and feed.state.result == 7


@pytest.mark.anyio
async def test_the_repr_without_a_kernel_is_a_static_view(runtime: durable.Runtime) -> None:
    """Outside Jupyter a Run shows as text and HTML: a hint first, then the latest state seen."""
    run = await runtime.start(nb_waits)
    bundle = run._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"} and run.run_id in bundle["text/plain"]
    assert "snapshot" in bundle["text/plain"]
    with anyio.fail_after(10):
        while not (await snapshot(run)).hooks:
            await anyio.sleep(0.01)
    await runtime.resume_hook(f"wait:{run.run_id}", "fine")
    await run.wait(10)
    state = await snapshot(run)
    bundle = mimebundle(run)
    assert "completed" in bundle["text/plain"] and "'fine'" in bundle["text/plain"]
    assert 'class="durable-badge durable-completed"' in bundle["text/html"]
    html = cast(Any, state)._repr_html_()  # durable.notebook attaches it to RunState at import
    assert html.startswith('<div class="durable-run"')


def test_importing_durable_does_not_import_ipywidgets() -> None:
    """`import durable` (and durable.notebook) leave ipywidgets unimported until a widget is made."""
    code = "import sys, durable, durable.notebook; assert 'ipywidgets' not in sys.modules, 'imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# -- the widgets, without a front end --------------------------------------------------------------


@pytest.mark.anyio
async def test_run_view_form_resumes_a_hook_and_rejects_bad_json(runtime: durable.Runtime) -> None:
    """The hook form lists the token, refuses invalid JSON, and delivers a valid payload."""
    from durable.notebook import RunView

    run = await runtime.start(nb_waits)
    view = RunView(run)
    try:
        await wait_until(lambda: bool(view.state.hooks))
        token = f"wait:{run.run_id}"
        assert view.hook_token.options == (token,) and view.hook_token.value == token
        assert view._hook_form.layout.display != "none" and token in view._hooks.value
        view.hook_payload.value = "{not json"
        view.resume_button.click()
        assert "not JSON" in view._hook_message.value
        await anyio.sleep(0.2)
        assert await run.status() == "running"
        view.hook_payload.value = '{"approved": true}'
        view.resume_button.click()
        assert await run.result(timeout=10) == {"approved": True}
        final = await view.settled(10)
        assert final.status == "completed"
        assert "durable-completed" in view._header.value
        assert view._hook_form.layout.display == "none" and view._actions.layout.display == "none"
        assert "delivered" in view._hook_message.value
    finally:
        view.close()


@pytest.mark.anyio
async def test_run_view_cancel_button_cancels_the_run(runtime: durable.Runtime) -> None:
    """Clicking Cancel cancels the run through its runtime; the view settles on 'cancelled'."""
    from durable.notebook import RunView

    run = await runtime.start(nb_waits)
    view = RunView(run)
    try:
        await wait_until(lambda: view.state.status == "running")
        assert view._actions.layout.display != "none"
        view.cancel_button.click()
        final = await view.settled(10)
        assert final.status == "cancelled" and await run.status() == "cancelled"
        assert "durable-cancelled" in view._header.value
    finally:
        view.close()


@pytest.mark.anyio
async def test_a_step_redefined_while_its_run_is_in_flight_is_flagged(runtime: durable.Runtime) -> None:
    """Re-running the cell that defines a step while a run that uses it waits: the view says so."""
    from durable._workflow.step import steps

    run = await runtime.start(nb_lifecycle, 2)
    await run.wait_for_hook(f"nb:{run.run_id}", timeout=20)
    assert (await snapshot(run)).code_changes == ()
    # What a cell re-run does: the same module defines the same name again.
    steps.add(nb_flaky.name, steps[nb_flaky.name], nb_flaky.fn, explicit=False)
    state = await snapshot(run)
    assert state.code_changes == (f"step {nb_flaky.name}",)
    assert "redefined after this run started" in _html.state_html(state)
    await runtime.resume_hook(f"nb:{run.run_id}", "ok")


@pytest.mark.anyio
async def test_a_saved_view_says_it_is_stale_instead_of_offering_cancel(runtime: durable.Runtime) -> None:
    """The widget's bundle carries a static HTML form that says the kernel is gone, with no Cancel button."""
    from durable.notebook import RunView

    run = await runtime.start(nb_waits)
    view = RunView(run)
    try:
        await wait_until(lambda: view.state.status == "running")
        bundle = view._repr_mimebundle_()
        assert bundle is not None and "application/vnd.jupyter.widget-view+json" in bundle
        saved = bundle["text/html"]
        assert "A saved view" in saved and "durable.get_run" in saved and "Cancel" not in saved
    finally:
        view.close()
        await run.cancel()


@pytest.mark.anyio
async def test_run_view_draws_progress_chunks_and_the_error(runtime: durable.Runtime) -> None:
    """The widget shows the progress bar, the listed chunks as outputs, and the failure's traceback."""
    from durable.notebook import RunView

    run = await runtime.start(nb_fails)
    view = RunView(run)
    try:
        await view.settled(20)
        assert view._progress.layout.display != "none" and view._progress_bar.value == 0.5
        assert "half way" in view._progress_text.value
        assert view._chunks.outputs[0]["text"] == "before the failure\n"
        assert view._chunks.outputs[1]["data"]["text/html"] == "<b class='chart'>1,2,3</b>"
        assert "nb_broken" in view._error.value and "missing-thing" in view._error.value
        assert "4 chunks" in view._chunks_label.value
    finally:
        view.close()


@pytest.mark.anyio
async def test_runs_view_lists_runs_and_inspects_one(runtime: durable.Runtime) -> None:
    """The runs table lists recent runs live; picking one shows its run view below."""
    from durable.notebook import RunsView

    first = await runtime.start(nb_waits)
    table = RunsView(runtime=runtime, limit=5)
    try:
        await wait_until(lambda: first.run_id in table._table.value)
        second = await runtime.start(nb_waits)
        await wait_until(lambda: second.run_id in table._table.value, 10)
        assert [value for _, value in table.picker.options][1:3] == [second.run_id, first.run_id]
        table.picker.value = first.run_id
        (view,) = table.detail.children
        await wait_until(lambda: view.state.loaded and bool(view.state.hooks))
        assert view.run.run_id == first.run_id
        table.picker.value = ""
        assert table.detail.children == ()
    finally:
        table.close()


# -- real kernels ---------------------------------------------------------------------------------


def _execute(cells: list[str], workdir: Path, *, timeout: int = 120) -> Any:
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])  # type: ignore[no-untyped-call]  # nbformat is unannotated
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def _texts(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _stderr(nb: Any) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr")


@pytest.mark.slow
def test_the_kernel_runs_this_venvs_python(tmp_path: Path) -> None:
    """nbclient's kernel is this interpreter (the kernelspec's `python` resolves to it)."""
    nb = _execute(["import sys; print(sys.executable)"], tmp_path)
    assert _texts(nb.cells[0]).strip() == sys.executable


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_runs_top_to_bottom(notebook: Path, tmp_path: Path) -> None:
    """Each notebook in notebooks/ executes without a cell error in a real kernel, and is committed clean."""
    import nbclient
    import nbformat

    nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]  # nbformat is unannotated
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    shutil.copy(notebook, tmp_path / notebook.name)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any cell error
    stderr = _stderr(nb)
    for bad in ("Traceback", "Task was destroyed", "Exception ignored"):
        assert bad not in stderr, stderr
    assert (tmp_path / ".durable").is_dir()


@pytest.mark.slow
def test_the_notebook_story_in_real_kernels(tmp_path: Path) -> None:
    """Top-level await on the kernel loop, responsive cells, re-defined workflows, and a kernel
    restart that finds the durable state and resumes the unfinished run."""
    define = """
import asyncio, time, durable
durable.configure(store="sqlite:///story.db")
FACTOR = {factor}

@durable.step
async def story_work(i: int) -> int:
    await asyncio.sleep(0.25)
    return i * FACTOR

@durable.workflow
async def story(n: int) -> int:
    total = 0
    for i in range(n):
        total += await story_work(i)
    return total

@durable.workflow
async def story_later() -> str:
    await durable.sleep("2s")
    return await story_step_after()

@durable.step
async def story_step_after() -> str:
    return f"resumed in {{__import__('os').getpid()}}"
"""
    first = _execute(
        [
            define.format(factor=1),
            "t0 = time.monotonic()\nrun = await durable.start(story, 6)\nrun",
            "assert time.monotonic() - t0 < 1.0\nprint(await run.status(), sum(s.status == 'completed' for s in await run.steps()))",
            "await asyncio.sleep(0.6)\nprint(sum(s.status == 'completed' for s in await run.steps()))",
            define.format(factor=10),  # re-run the defining cell while the run is in flight
            "print(await run.result(timeout=30))\nnew = await durable.start(story, 3)\nprint(await new.result(timeout=30))",
            "later = await durable.start(story_later)\nopen('later.txt', 'w').write(later.run_id)\nprint(await later.status())",
        ],
        tmp_path,
    )
    bundle = first.cells[1].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the Run displayed as a live widget
    status, done_early = _texts(first.cells[2]).split()
    assert status in ("pending", "running") and int(done_early) < 6  # the cell returned, the run goes on
    assert int(_texts(first.cells[3])) > int(done_early)  # ... and progressed while the kernel was free
    in_flight, after = (int(x) for x in _texts(first.cells[5]).split())
    assert 15 <= in_flight <= 150 and after == 30  # finished across the re-definition; new code for new runs
    assert _texts(first.cells[6]).strip() in ("pending", "running")
    assert "Task was destroyed" not in _stderr(first)

    # A new kernel (a restart): the state is in the store, the unfinished run resumes here.
    second = _execute(
        [
            define.format(factor=1),
            "run = await durable.get_run(open('later.txt').read())\nprint(await run.status())\nrun",
            "print(await run.result(timeout=30))\nimport os; print(os.getpid())",
        ],
        tmp_path,
    )
    assert _texts(second.cells[1]).split()[0] in ("pending", "running")
    assert "application/vnd.jupyter.widget-view+json" in second.cells[1].outputs[-1]["data"]
    result, pid = _texts(second.cells[2]).split("\n")[:2]
    assert result == f"resumed in {pid}"


def test_notebooks_exist_and_are_named() -> None:
    """notebooks/ holds the quick start, human-in-the-loop and streaming notebooks."""
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "human_in_the_loop", "streaming_progress"}

