"""The notebook view model: what a live view of a run shows, as immutable snapshots, plus the throttle.

Pure: no ipywidgets, no store, no clock of its own. :class:`~durable.notebook.RunFeed` reads
the store and applies what it read here (``state.with_info(...)``, ``.with_steps(...)``,
``.with_hooks(...)``, ``.with_chunks(...)``); the widgets only draw a :class:`RunState`. Keeping
the rules here -- how a chunk is classified, when progress is shown, when a view is settled,
how often it may redraw -- makes them testable without a front end, and lets the static HTML
repr and the widget agree on what a run looks like.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .._client.projection import HookInfo, RunInfo, StepInfo
    from .._client.streams import StreamChunk

TERMINAL = frozenset({"completed", "failed", "cancelled"})

#: Keys a chunk may have and still be *only* progress. Such chunks drive the progress bar and
#: are not listed among the stream's chunks (a 10,000-step progress stream would bury the rest).
PROGRESS_KEYS = frozenset({"done", "of", "total", "label", "message"})

ChunkKind = Literal["text", "json", "image", "bytes", "rich", "object"]

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

#: The IPython display protocol: an object with any of these has a notebook repr of its own.
RICH_METHODS = (
    "_repr_mimebundle_", "_repr_html_", "_repr_markdown_", "_repr_svg_", "_repr_png_", "_repr_jpeg_",
    "_repr_latex_", "_repr_json_", "_repr_javascript_", "_repr_pdf_", "_ipython_display_",
)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Progress:
    """Progress carried by a chunk such as ``{"done": 3, "of": 10}`` (``total`` works for ``of``)."""

    done: float
    total: float | None = None
    label: str | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` clamped to [0, 1]; None when the total is unknown or not positive."""
        if self.total is None or self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def describe(self) -> str:
        done = _fmt_number(self.done)
        text = f"{done}/{_fmt_number(self.total)}" if self.total is not None else done
        return f"{self.label} · {text}" if self.label else text


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def progress_of(value: Any) -> Progress | None:
    """The progress a chunk carries, if it is a mapping with a numeric ``done`` (and ``of``/``total``)."""
    if not isinstance(value, Mapping):
        return None
    done = value.get("done")
    total = value.get("of", value.get("total"))
    if not isinstance(done, int | float) or not _is_number(done) or (total is not None and not _is_number(total)):
        return None
    label = value.get("label", value.get("message"))
    return Progress(float(done), None if total is None else float(total), None if label is None else str(label))


def image_type(data: bytes) -> str | None:
    """The image MIME type of ``data`` from its magic bytes, so a step can stream plots as PNG bytes."""
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    return None


def _json_like(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if depth > 20:
        return False
    if isinstance(value, list | tuple):
        return all(_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v, depth + 1) for k, v in value.items())
    return False


def classify(value: Any) -> ChunkKind:
    """How a chunk is shown: text is printed as is, JSON as one line, rich objects with their own repr."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes | bytearray | memoryview):
        return "image" if image_type(bytes(value)) else "bytes"
    if not isinstance(value, type) and any(hasattr(value, m) for m in RICH_METHODS):
        return "rich"
    if _json_like(value):
        return "json"
    return "object"


@dataclass(frozen=True, slots=True)
class ChunkItem:
    """One chunk of the watched stream, decoded and classified."""

    index: int
    value: Any
    kind: ChunkKind
    progress: Progress | None = None
    attempt: int | None = None

    @property
    def listed(self) -> bool:
        """Whether the chunk appears in the chunk list (pure progress chunks only move the bar)."""
        if self.progress is None:
            return True
        return not set(self.value) <= PROGRESS_KEYS

    @classmethod
    def from_value(cls, index: int, value: Any, attempt: int | None = None) -> ChunkItem:
        return cls(index, value, classify(value), progress_of(value), attempt)


def arguments_preview(arguments: tuple[list[Any], dict[str, Any]] | None, limit: int = 80) -> str | None:
    """``("A-1", 42, retry=True)``: a step's arguments on one line, shortened to ``limit`` characters."""
    if arguments is None:
        return None
    args, kwargs = arguments
    parts = [_preview(a) for a in args] + [f"{k}={_preview(v)}" for k, v in kwargs.items()]
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= limit else text[: limit - 2] + "…)"


def _preview(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True, slots=True)
class StepRow:
    """A row of the step table."""

    step_id: str
    name: str
    status: str
    attempt: int
    max_attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    retry_at: datetime | None
    error: str | None = None
    traceback: str | None = None
    arguments: str | None = None  # a one-line preview of the call's arguments, e.g. ("A-1", 42)

    @property
    def shown_status(self) -> str:
        """The status a person expects: a step waiting to be retried is *retrying*, not pending."""
        return "retrying" if self.status == "pending" and self.attempt >= 1 and self.error else self.status

    def duration(self, now: datetime) -> float | None:
        """Seconds from the first start to completion, or to ``now`` while the step is unfinished."""
        if self.started_at is None:
            return None
        return max(0.0, ((self.completed_at or now) - self.started_at).total_seconds())

    @classmethod
    def from_info(cls, s: StepInfo) -> StepRow:
        error = f"{s.error.type}: {s.error.message}" if s.error else None
        return cls(
            s.step_id, s.name, s.status, s.attempts, s.max_attempts, s.started_at, s.completed_at, s.retry_at,
            error, s.error.traceback if s.error else None, arguments_preview(s.arguments),
        )


@dataclass(frozen=True, slots=True)
class HookRow:
    """A hook the run is waiting on (active), with the token a resume needs."""

    hook_id: str
    token: str
    created_at: datetime
    webhook: bool = False

    @classmethod
    def from_info(cls, h: HookInfo) -> HookRow:
        return cls(h.hook_id, h.token, h.created_at, h.is_webhook)


@dataclass(frozen=True, slots=True)
class RunState:
    """Everything a view of one run shows, at one moment. Immutable: ``with_*`` return a new state.

    The rules that the transitions enforce, so that a view never shows something the log
    contradicts:

    - a terminal status is final: a stale read cannot take the badge back to ``running``;
    - a terminal run has no pending hooks (the run's end disposed them), whatever was read;
    - chunks are applied by index: a chunk already seen is ignored, so re-reading a page is harmless;
    - only the last ``max_chunks`` listed chunks are kept (``hidden_chunks`` counts the rest);
    - progress is that of the latest chunk carrying one, and stays when the stream closes;
    - a view is *settled* once the run is terminal and its stream closed and drained, or the
      view stopped (``problem``): nothing it shows can change any more.
    """

    run_id: str
    namespace: str = "default"
    loaded: bool = False
    workflow_name: str = ""
    version: str | None = None
    forked_from: str | None = None
    forked_step: str | None = None
    status: str = "unknown"
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    has_result: bool = False
    result: Any = None
    steps: tuple[StepRow, ...] = ()
    hooks: tuple[HookRow, ...] = ()
    values: tuple[tuple[str, str], ...] = ()  # (key, preview) of what durable.set_event published, by key
    chunks: tuple[ChunkItem, ...] = ()
    chunk_count: int = 0
    hidden_chunks: int = 0
    progress: Progress | None = None
    stream_closed: bool = False
    stream_error: str | None = None
    problem: str | None = None
    # Definitions this run uses that were redefined in this process after it started (a notebook
    # cell re-run): the run's next steps call the new code.
    code_changes: tuple[str, ...] = ()
    max_chunks: int = field(default=200, compare=False)

    # -- derived -------------------------------------------------------------------------------

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def settled(self) -> bool:
        """Nothing shown can change any more: run ended and stream drained, or the view stopped."""
        return self.problem is not None or (self.terminal and self.stream_closed)

    def duration(self, now: datetime) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, ((self.completed_at or now) - self.started_at).total_seconds())

    def step_counts(self) -> dict[str, int]:
        """Steps by status, in the order statuses first appear: for a one-line summary."""
        counts: dict[str, int] = {}
        for s in self.steps:
            counts[s.shown_status] = counts.get(s.shown_status, 0) + 1
        return counts

    # -- transitions -------------------------------------------------------------------------

    def with_info(self, info: RunInfo) -> RunState:
        """Apply the run's row (status, timings, error). A terminal status is never undone."""
        status = info.status
        if self.terminal and status not in TERMINAL:
            status = self.status
        error = info.error
        state = replace(
            self,
            loaded=True,
            workflow_name=info.workflow_name,
            version=info.version,
            forked_from=info.forked_from,
            forked_step=info.forked_step,
            status=status,
            created_at=info.created_at,
            started_at=info.started_at,
            completed_at=info.completed_at if status in TERMINAL else None,
            error_type=error.type if error else None,
            error_message=error.message if error else None,
            traceback=error.traceback if error else None,
        )
        if state.terminal and state.hooks:
            state = replace(state, hooks=())
        return state

    def with_result(self, value: Any) -> RunState:
        return replace(self, has_result=True, result=value)

    def with_steps(self, steps: Sequence[StepInfo]) -> RunState:
        return replace(self, steps=tuple(StepRow.from_info(s) for s in steps))

    def with_code_changes(self, changed: Sequence[str]) -> RunState:
        return replace(self, code_changes=tuple(changed))

    def with_hooks(self, hooks: Sequence[HookInfo]) -> RunState:
        if self.terminal:
            return replace(self, hooks=()) if self.hooks else self
        return replace(self, hooks=tuple(HookRow.from_info(h) for h in hooks if h.status == "active"))

    def with_values(self, values: dict[str, Any]) -> RunState:
        """The run's current live values (``durable.set_event``), shown by key."""
        shown = tuple((k, _preview(v)) for k, v in sorted(values.items()))
        return self if shown == self.values else replace(self, values=shown)

    def with_chunks(
        self, chunks: Sequence[StreamChunk], *, closed: bool = False, error: str | None = None
    ) -> RunState:
        """Append chunks read from the stream (by index) and note whether it is closed and drained."""
        listed = list(self.chunks)
        count = self.chunk_count
        progress = self.progress
        for c in chunks:
            if c.index < count:
                continue  # already applied: re-reading a page must not duplicate rows
            item = ChunkItem.from_value(c.index, c.value, c.attempt)
            count = c.index + 1
            if item.progress is not None:
                progress = item.progress
            if item.listed:
                listed.append(item)
        hidden = self.hidden_chunks
        if len(listed) > self.max_chunks:
            hidden += len(listed) - self.max_chunks
            del listed[: len(listed) - self.max_chunks]
        return replace(
            self,
            chunks=tuple(listed),
            chunk_count=count,
            hidden_chunks=hidden,
            progress=progress,
            stream_closed=self.stream_closed or closed,
            stream_error=error if closed else self.stream_error,
        )

    def skip_chunks_to(self, index: int) -> RunState:
        """Start the chunk list at ``index`` (a long stream: show its tail, not its whole history)."""
        if index <= self.chunk_count:
            return self
        return replace(self, chunk_count=index, hidden_chunks=self.hidden_chunks + index - self.chunk_count)

    def with_problem(self, problem: str) -> RunState:
        """The view stopped following (the store closed, the run vanished): say why, and settle."""
        return replace(self, problem=problem)


class Throttle:
    """Decides when a view may redraw: at most ``max_rate`` times a second, and -- because a
    redraw reads the store on the kernel's own loop -- spending at most ``max_share`` of the
    time on refreshing, so a run with thousands of steps is not slowed down by its own view.

    Redraws are coalesced, never dropped: the caller waits :meth:`delay` and then reads the
    latest state, which includes every change that arrived meanwhile.
    """

    def __init__(
        self, max_rate: float = 10.0, *, max_share: float = 0.2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_rate <= 0:
            raise ValueError(f"max_rate must be positive, got {max_rate!r}")
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {max_share!r}")
        self.max_rate = max_rate
        self.max_share = max_share
        self._clock = clock
        self._last: float | None = None
        self._cost = 0.0

    @property
    def interval(self) -> float:
        """The current minimum time between two redraws."""
        return max(1.0 / self.max_rate, self._cost / self.max_share)

    def now(self) -> float:
        return self._clock()

    def delay(self) -> float:
        """Seconds to wait before the next redraw is allowed (0 if it may happen now)."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock())

    def record(self, started: float) -> None:
        """A redraw that began at ``started`` (on this throttle's clock) has just finished."""
        now = self._clock()
        self._last = now
        self._cost = max(0.0, now - started)
