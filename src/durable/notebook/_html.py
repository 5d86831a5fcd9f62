"""Drawing a :class:`RunState` as HTML fragments, plain text and notebook outputs.

Pure functions of a state (and of ``now``, for running durations). The widget puts the
fragments into ipywidgets; the static repr (no widgets, or a saved notebook) joins them into
one HTML block. Everything user-provided is escaped; rich chunks keep their own repr.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from .._core.durations import local_time
from ._model import ChunkItem, RunState, StepRow, image_type

if TYPE_CHECKING:
    from .._client.projection import RunInfo

#: Badge colours by status (background, text). Unknown statuses get the neutral pair.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "pending": ("#e5e7eb", "#374151"),
    "running": ("#dbeafe", "#1d4ed8"),
    "retrying": ("#fef3c7", "#92400e"),
    "completed": ("#dcfce7", "#166534"),
    "failed": ("#fee2e2", "#991b1b"),
    "cancelled": ("#f3f4f6", "#4b5563"),
}
_NEUTRAL = ("#f3f4f6", "#374151")
_MAX_ROWS = 100
_STEPS_HEIGHT = "240px"
_MAX_REPR = 2_000

_TABLE = "border-collapse:collapse;font-size:12px;margin:2px 0"
_MUTED = "color:var(--jp-ui-font-color2, #4b5563)"
_TH = "text-align:left;padding:2px 10px 2px 0;border-bottom:1px solid var(--jp-border-color1, #d1d5db);" + _MUTED + ";font-weight:600"
_TD = "padding:2px 10px 2px 0;border-bottom:1px solid var(--jp-border-color3, #f3f4f6);vertical-align:top"
_MONO = "font-family:SFMono-Regular,Menlo,Consolas,monospace"
# Text that must stay readable in JupyterLab's light and dark themes alike (JupyterLab's own red
# and orange text colours fall below 4.5:1 on one of them): errors take JupyterLab's error
# background with its primary text colour (a light red pair where no theme is set); warnings a
# fixed amber pair, like the status badges.
ERROR_STYLE = "background:var(--jp-rendermime-error-background, #fee2e2);color:var(--jp-ui-font-color1, #991b1b)"
WARN_STYLE = "background:#fef3c7;color:#92400e"


def now_utc() -> datetime:
    return datetime.now(UTC)


def step_status(row: StepRow) -> str:
    """The status a person expects: a step waiting to be retried is *retrying*, not pending."""
    return row.shown_status


def badge(status: str) -> str:
    bg, fg = STATUS_COLOURS.get(status, _NEUTRAL)
    return (
        f'<span class="durable-badge durable-{escape(status)}" style="background:{bg};color:{fg};'
        f'border-radius:9px;padding:1px 8px;font-size:12px;font-weight:600">{escape(status)}</span>'
    )


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_time(dt: datetime | None) -> str:
    return "" if dt is None else local_time(dt).strftime("%H:%M:%S")


def short_repr(value: Any, limit: int = _MAX_REPR) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the view
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_html(state: RunState, now: datetime) -> str:
    """Status badge, workflow name, run id and timing, on one line."""
    if not state.loaded:
        what = escape(state.problem or "loading…")
        return f'<div style="font-size:13px">{badge(state.status)} <code>{escape(state.run_id)}</code> · {what}</div>'
    parts = [f"<b>{escape(state.workflow_name)}</b>", f'<code style="font-size:11px">{escape(state.run_id)}</code>']
    if state.version:
        parts.append(f"version {escape(state.version)}")
    if state.forked_from:
        parts.append(f"fork of <code>{escape(state.forked_from)}</code> at {escape(state.forked_step or '')}")
    if state.started_at is not None:
        verb = "took" if state.terminal else "running for"
        parts.append(f"started {fmt_time(state.started_at)}, {verb} {fmt_duration(state.duration(now))}")
    elif state.created_at is not None:
        parts.append(f"created {fmt_time(state.created_at)}")
    return f'<div style="font-size:13px;line-height:1.8">{badge(state.status)} {" · ".join(parts)}</div>'


def steps_html(state: RunState, now: datetime, max_rows: int = _MAX_ROWS) -> str:
    """The step table (name, status, attempt, duration, error); the newest ``max_rows`` rows."""
    if not state.steps:
        return ""
    counts = state.step_counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    rows = state.steps[-max_rows:]
    hidden = len(state.steps) - len(rows)
    body = []
    if hidden:
        body.append(f'<tr><td colspan="5" style="{_TD};{_MUTED}">… {hidden} earlier steps</td></tr>')
    for row in rows:
        status = step_status(row)
        attempt = f"{row.attempt}/{row.max_attempts}" if row.attempt else f"-/{row.max_attempts}"
        note, colour = "", ERROR_STYLE
        if row.error:
            note = escape(row.error if len(row.error) < 300 else row.error[:299] + "…")
            if status == "retrying" and row.retry_at is not None:
                note += f" <i>(retry at {fmt_time(row.retry_at)})</i>"
            elif status == "completed":  # what an earlier attempt died of: history, not a problem
                note, colour = f"attempt {row.attempt - 1}: {note}", _MUTED
            elif status == "cancelled":  # why it stopped, not an error of its own
                colour = _MUTED
        arguments = f'<span style="{_MONO};{_MUTED}">{escape(row.arguments)}</span>' if row.arguments else ""
        body.append(
            f'<tr><td style="{_TD};{_MONO}">{escape(row.name)}{arguments}</td><td style="{_TD}">{badge(status)}</td>'
            f'<td style="{_TD}">{attempt}</td><td style="{_TD}">{fmt_duration(row.duration(now))}</td>'
            f'<td style="{_TD};{colour if note else ""}">{note}</td></tr>'
        )
    head = "".join(f'<th style="{_TH}">{h}</th>' for h in ("step", "status", "attempt", "duration", ""))
    # A run of thousands of steps must not push the rest of the view off screen: the table scrolls.
    return (
        f'<div style="font-size:12px;{_MUTED}">{len(state.steps)} steps: {escape(summary)}</div>'
        f'<div class="durable-steps-box" style="max-height:{_STEPS_HEIGHT};overflow:auto">'
        f'<table class="durable-steps" style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        "</div>"
    )


def hooks_html(state: RunState) -> str:
    if not state.hooks:
        return ""
    rows = "".join(
        f'<tr><td style="{_TD};{_MONO}">{escape(h.token)}</td><td style="{_TD}">{"webhook" if h.webhook else "hook"}</td>'
        f'<td style="{_TD}">since {fmt_time(h.created_at)}</td></tr>'
        for h in state.hooks
    )
    return (
        f'<div style="font-size:12px;{_MUTED}">waiting on {len(state.hooks)} hook(s):</div>'
        f'<table class="durable-hooks" style="{_TABLE}"><tbody>{rows}</tbody></table>'
    )


def error_html(state: RunState) -> str:
    """The run's error, with the traceback recorded where it was raised."""
    if state.status != "failed" or state.error_type is None:
        return ""
    tb = escape(state.traceback or "")
    return (
        f'<div class="durable-error" style="border-left:3px solid #dc2626;padding:2px 8px;margin:4px 0;{ERROR_STYLE}">'
        f'<b>{escape(state.error_type)}</b>: {escape(state.error_message or "")}'
        f'<details open><summary style="cursor:pointer;font-size:12px">traceback</summary>'
        f'<pre style="font-size:11px;white-space:pre-wrap;margin:2px 0">{tb}</pre></details></div>'
    )


def result_html(state: RunState) -> str:
    if state.status != "completed" or not state.has_result or state.result is None:
        return ""
    return f'<div style="font-size:12px">result: <code>{escape(short_repr(state.result, 500))}</code></div>'


def footer_html(state: RunState) -> str:
    """Where the view stands: why it stopped, or how the stream ended."""
    if state.problem:
        return f'<div style="{WARN_STYLE};font-size:12px">view stopped: {escape(state.problem)}</div>'
    if state.stream_closed and state.stream_error and state.status != "cancelled":
        return f'<div style="{ERROR_STYLE};font-size:12px">stream ended with an error: {escape(state.stream_error)}</div>'
    return ""


# -- chunks ---------------------------------------------------------------------------------------


def chunk_line(item: ChunkItem) -> str:
    """A chunk as one line of text: JSON compactly, text as is, other values by repr."""
    if item.kind == "text":  # one chunk, one line (a chunk that ends its own line keeps it)
        text = str(item.value)
        return text if text.endswith("\n") else text + "\n"
    if item.kind == "json":
        return json.dumps(item.value, ensure_ascii=False, default=str) + "\n"
    if item.kind == "bytes":
        data = bytes(item.value)
        return f"<{len(data)} bytes: {data[:24].hex()}{'…' if len(data) > 24 else ''}>\n"
    return short_repr(item.value) + "\n"


def rich_bundle(value: Any) -> dict[str, Any]:
    """The MIME bundle of an object with a notebook repr (IPython's formatter when present)."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        mime = image_type(data) or "application/octet-stream"
        return {mime: base64.b64encode(data).decode("ascii"), "text/plain": f"<{len(data)} bytes {mime}>"}
    try:
        from IPython.core.formatters import format_display_data
    except ImportError:
        return _manual_bundle(value)
    try:
        data, _ = format_display_data(value)  # type: ignore[no-untyped-call]  # IPython is untyped
    except Exception:
        return _manual_bundle(value)
    return _jsonable_bundle(data)


def _manual_bundle(value: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {}
    method = getattr(value, "_repr_mimebundle_", None)
    if callable(method):
        try:
            got = method()
            bundle.update(got[0] if isinstance(got, tuple) else got or {})
        except Exception:
            pass
    for name, mime in (("_repr_html_", "text/html"), ("_repr_markdown_", "text/markdown"), ("_repr_svg_", "image/svg+xml"),
                       ("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg"), ("_repr_latex_", "text/latex"),
                       ("_repr_json_", "application/json")):
        fn = getattr(value, name, None)
        if mime not in bundle and callable(fn):
            try:
                out = fn()
            except Exception:
                continue
            if out is not None:
                bundle[mime] = out
    bundle.setdefault("text/plain", short_repr(value))
    return _jsonable_bundle(bundle)


def _jsonable_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mime, data in bundle.items():
        if isinstance(data, bytes | bytearray):
            data = base64.b64encode(bytes(data)).decode("ascii")
        out[mime] = data
    return out


def chunk_outputs(state: RunState) -> list[dict[str, Any]]:
    """The listed chunks as notebook outputs: text and JSON lines as a printed stream (one block
    per consecutive run, as ``print`` would look), rich objects and images as display data."""
    outputs: list[dict[str, Any]] = []
    if state.hidden_chunks:
        outputs.append(_stream(f"… {state.hidden_chunks} earlier chunks not shown\n"))
    text: list[str] = []

    def flush() -> None:
        if text:
            outputs.append(_stream("".join(text)))
            text.clear()

    for item in state.chunks:
        if item.kind in ("rich", "image"):
            flush()
            outputs.append({"output_type": "display_data", "data": rich_bundle(item.value), "metadata": {}})
            continue
        line = chunk_line(item)
        if item.kind != "text" and text and not text[-1].endswith("\n"):
            text.append("\n")  # a JSON line starts on its own line even after unterminated text
        text.append(line)
    flush()
    return outputs


def _stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def chunks_html(state: RunState) -> str:
    """The listed chunks as static HTML (the repr used where widgets are unavailable)."""
    parts: list[str] = []
    for out in chunk_outputs(state):
        if out["output_type"] == "stream":
            parts.append(f'<pre style="font-size:12px;margin:2px 0;white-space:pre-wrap">{escape(out["text"])}</pre>')
            continue
        data = out["data"]
        if "text/html" in data:
            parts.append(f"<div>{data['text/html']}</div>")
        elif any(m.startswith("image/") and m != "image/svg+xml" for m in data):
            mime = next(m for m in data if m.startswith("image/") and m != "image/svg+xml")
            parts.append(f'<img src="data:{mime};base64,{data[mime]}" style="max-width:100%">')
        elif "image/svg+xml" in data:
            parts.append(f"<div>{data['image/svg+xml']}</div>")
        else:
            parts.append(f'<pre style="font-size:12px;margin:2px 0">{escape(str(data.get("text/plain", "")))}</pre>')
    if not parts:
        return ""
    label = f'stream "{escape(state.namespace)}": {state.chunk_count} chunks' + (" (closed)" if state.stream_closed else "")
    return f'<div style="font-size:12px;{_MUTED}">{label}</div>' + "".join(parts)


def progress_html(state: RunState) -> str:
    p = state.progress
    if p is None:
        return ""
    fraction = p.fraction
    bar = ""
    if fraction is not None:
        bar = (
            f'<div style="display:inline-block;width:200px;height:10px;background:#e5e7eb;border-radius:5px;'
            f'vertical-align:middle"><div style="width:{fraction * 100:.1f}%;height:10px;background:#2563eb;'
            f'border-radius:5px"></div></div> '
        )
    return f'<div style="font-size:12px">{bar}{escape(p.describe())}</div>'


def code_changes_html(state: RunState) -> str:
    """A warning when definitions the run uses were redefined here after it started."""
    if not state.code_changes:
        return ""
    what = ", ".join(escape(c) for c in state.code_changes)
    return (
        f'<div class="durable-code-changed" style="font-size:12px;background:#fef3c7;color:#92400e;padding:2px 6px;'
        f'border-radius:4px;margin:2px 0">redefined after this run started: {what}. Its next steps call the new '
        "code (what already ran keeps its recorded results); a change in what it calls at a recorded position "
        "fails the run with NonDeterminismError.</div>"
    )


def stale_html(state: RunState) -> str:
    """The saved form of a live view: what a notebook shows once the kernel that drew it is gone."""
    note = (
        f'<div style="font-size:12px;{_MUTED}">A saved view: the kernel that followed '
        f"this run has stopped. To follow it again: <code>await durable.get_run({escape(repr(state.run_id))})</code>.</div>"
    )
    return state_html(state).replace('<div class="durable-run"', '<div class="durable-run durable-stale"', 1)[:-6] + note + "</div>"


def values_html(state: RunState) -> str:
    """The run's live values (durable.set_event), one row per key."""
    if not state.values:
        return ""
    rows = "".join(
        f'<tr><td style="{_TD};{_MONO}">{escape(k)}</td><td style="{_TD};{_MONO}">{escape(v)}</td></tr>'
        for k, v in state.values
    )
    return (
        f'<div style="font-size:12px;{_MUTED}">values:</div>'
        f'<table class="durable-values" style="{_TABLE}"><tbody>{rows}</tbody></table>'
    )


def state_html(state: RunState, now: datetime | None = None) -> str:
    """The whole run as one static HTML block."""
    now = now or now_utc()
    body = "".join(
        part
        for part in (
            header_html(state, now), code_changes_html(state), error_html(state), result_html(state),
            progress_html(state), steps_html(state, now), hooks_html(state), values_html(state), chunks_html(state),
            footer_html(state),
        )
        if part
    )
    return f'<div class="durable-run" style="font-family:system-ui,sans-serif">{body}</div>'


def state_text(state: RunState, now: datetime | None = None) -> str:
    """The run as a few lines of plain text (terminals, static renderers, logs)."""
    now = now or now_utc()
    if not state.loaded:
        return f"durable run {state.run_id}: {state.problem or 'not loaded'}"
    lines = [f"durable run {state.run_id} · {state.workflow_name} · {state.status}"]
    if state.started_at is not None:
        lines[0] += f" · {fmt_duration(state.duration(now))}"
    if state.version:
        lines.append(f"  version: {state.version}")
    if state.forked_from:
        lines.append(f"  forked from run {state.forked_from} at {state.forked_step}")
    if state.status == "failed" and state.error_type:
        lines.append(f"  error: {state.error_type}: {state.error_message}")
    if state.has_result and state.status == "completed" and state.result is not None:
        lines.append(f"  result: {short_repr(state.result, 200)}")
    if state.progress is not None:
        lines.append(f"  progress: {state.progress.describe()}")
    if state.steps:
        lines.append("  steps: " + ", ".join(f"{n} {s}" for s, n in state.step_counts().items()))
        for row in state.steps[-10:]:
            lines.append(
                f"    {row.name:<24} {step_status(row):<10} attempt {row.attempt}/{row.max_attempts}"
                f"  {fmt_duration(row.duration(now))}"
            )
    for hook in state.hooks:
        lines.append(f"  waiting on hook {hook.token!r}")
    for key, value in state.values:
        lines.append(f"  value {key}: {value}")
    if state.chunk_count:
        lines.append(f"  stream {state.namespace!r}: {state.chunk_count} chunks{' (closed)' if state.stream_closed else ''}")
    if state.problem:
        lines.append(f"  view stopped: {state.problem}")
    return "\n".join(lines)


# -- the runs table -------------------------------------------------------------------------------


def runs_html(runs: Sequence[RunInfo], now: datetime | None = None, *, selected: str | None = None) -> str:
    now = now or now_utc()
    if not runs:
        return f'<div style="font-size:12px;{_MUTED}">no runs yet</div>'
    head = "".join(f'<th style="{_TH}">{h}</th>' for h in ("run", "workflow", "status", "created", "duration"))
    rows = []
    for r in runs:
        mark = "background:#eff6ff;" if r.run_id == selected else ""
        rows.append(
            f'<tr style="{mark}"><td style="{_TD};{_MONO}">{escape(r.run_id)}</td><td style="{_TD}">{escape(r.workflow_name)}</td>'
            f'<td style="{_TD}">{badge(r.status)}</td><td style="{_TD}">{fmt_time(r.created_at)}</td>'
            f'<td style="{_TD}">{fmt_duration(_run_duration(r, now))}</td></tr>'
        )
    return f'<table class="durable-runs" style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def runs_text(runs: Iterable[RunInfo], now: datetime | None = None) -> str:
    now = now or now_utc()
    lines = [
        f"{r.run_id}  {r.workflow_name:<20} {r.status:<10} {fmt_time(r.created_at)}  {fmt_duration(_run_duration(r, now))}"
        for r in runs
    ]
    return "\n".join(lines) or "no runs yet"


def _run_duration(r: RunInfo, now: datetime) -> float | None:
    if r.started_at is None:
        return None
    return max(0.0, ((r.completed_at or now) - r.started_at).total_seconds())

