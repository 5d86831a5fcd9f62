"""OpenTelemetry traces and metrics, off -- and free -- unless the API is installed and a provider is set.

::

    start()  ── span "workflow.start <name>" (PRODUCER, in the caller's trace) ── records its context
                    │ link
    run span "workflow.run <name>"  (trace id and span id derived from the run id: stable, and
      │                              known to every process without being stored)
      ├── "step <name>"  one per attempt, emitted by the process that ran it
      └── events: sleeps, hook waits and deliveries, retries, stream closes (from the event log)

The run span lasts from ``start()`` to the terminal event, though a run may be executed by
several processes over days: it is emitted once, by the process that commits the terminal
event, with the recorded start time and its derived ids; the attempt spans emitted earlier,
anywhere, name it as their parent. Replay emits nothing: a recorded step is not run again, so
it gets no second span; the attempt that re-runs after a crash gets its own (attempt + 1).

Attributes follow one convention (the README's table): ``durable.run.id``,
``durable.workflow.name``, ``durable.run.status``, ``durable.step.name``, ``durable.step.id``,
``durable.step.attempt``, ``durable.step.status``, ``durable.version``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._core.errorinfo import decode_error
from .._core.events import Event, EventKind
from ..stores._base import RunRecord, Store

log = logging.getLogger("durable")

_TRACER = "durable"
# Span events the run span carries, from the event log: kind -> event name.
_RUN_EVENTS = {
    EventKind.WAIT_CREATED.value: "sleep.started",
    EventKind.WAIT_COMPLETED.value: "sleep.ended",
    EventKind.HOOK_CREATED.value: "hook.waiting",
    EventKind.HOOK_RECEIVED.value: "hook.delivered",
    EventKind.STEP_RETRYING.value: "step.retry_scheduled",
    EventKind.STREAM_CLOSED.value: "stream.closed",
}


def run_trace_id(run_id: str) -> int:
    """The run's trace id: the same in every process, and on every replay."""
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=16, person=b"durable-trace").digest(), "big") or 1


def run_span_id(run_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8, person=b"durable-span").digest(), "big") or 1


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Telemetry:
    """Emits durable's spans and metrics through the OpenTelemetry API (the user brings the SDK)."""

    def __init__(self, trace: Any, metrics: Any, propagate: Any) -> None:
        self._trace = trace
        self._propagate = propagate
        # A run's steps follow one another: its context (two hashes and three objects) is made once.
        self._run_context: Callable[[str], Any] = functools.lru_cache(maxsize=1024)(self._make_run_context)
        self.tracer = trace.get_tracer(_TRACER)
        meter = metrics.get_meter(_TRACER)
        self.runs = {
            status: meter.create_counter(f"durable.runs.{status}", unit="{run}", description=f"Runs {status}")
            for status in ("started", "completed", "failed", "cancelled")
        }
        self.steps = {
            status: meter.create_counter(f"durable.steps.{status}", unit="{step}", description=f"Step attempts {status}")
            for status in ("completed", "failed", "retried")
        }
        self.step_duration = meter.create_histogram("durable.step.duration", unit="s", description="Step attempt duration")
        self.run_duration = meter.create_histogram("durable.run.duration", unit="s", description="Run duration, start to end")
        self.replay_cost = meter.create_histogram(
            "durable.replay.event_cost", unit="s", description="Time to replay one event of a run's log"
        )
        self.chunk_latency = meter.create_histogram(
            "durable.stream.latency", unit="s", description="Stream chunk written -> read by a live reader"
        )
        self.sticky = meter.create_up_down_counter(
            "durable.sticky.instances", unit="{instance}", description="Live workflow instances kept between events"
        )
        # Read when metrics are collected, not counted per step (two measurements a step cost ~10%
        # of a traced step): the sum over this process's step executors of what they hold.
        self._queued_sources: weakref.WeakSet[Any] = weakref.WeakSet()
        meter.create_observable_up_down_counter(
            "durable.steps.queued", callbacks=[self._observe_queued], unit="{step}",
            description="Steps claimed by this worker and not finished yet",
        )
        self._metrics = metrics

    def count_queued(self, source: Any) -> None:
        """Report ``len(source.running)`` (claimed, unfinished steps) in ``durable.steps.queued`` for
        as long as ``source`` lives (held weakly: a closed runtime's executor drops out)."""
        self._queued_sources.add(source)

    def _observe_queued(self, options: Any) -> Iterable[Any]:
        yield self._metrics.Observation(sum(len(source.running) for source in list(self._queued_sources)))

    # -- runs ---------------------------------------------------------------------------------

    def run_started(self, workflow: str, run_id: str, version: str | None = None) -> str | None:
        """The ``workflow.start`` span (in the caller's trace); returns its W3C traceparent, to record
        with the run so the run span can link to it."""
        with self.tracer.start_as_current_span(
            f"workflow.start {workflow}", kind=self._trace.SpanKind.PRODUCER,
            attributes=_attrs(run_id, workflow, version=version),
        ):
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
            span_link = carrier.get("traceparent")
        return span_link

    def run_created(self, workflow: str) -> None:
        self.runs["started"].add(1, {"durable.workflow.name": workflow})

    def run_context(self, run_id: str) -> Any:
        """A context whose current span is the run span (by its derived ids): the parent of attempts."""
        return self._run_context(run_id)

    def _make_run_context(self, run_id: str) -> Any:
        trace = self._trace
        parent = trace.SpanContext(
            run_trace_id(run_id), run_span_id(run_id), is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))

    def run_ended(
        self, run_id: str, workflow: str, status: str, created_at: float, link: str | None, events: list[Event],
        *, error: tuple[str, str] | None = None, version: str | None = None,
    ) -> None:
        """Emit the run span, once, from its start to now, with the log's events on it."""
        now = time.time()
        trace = self._trace
        links = []
        if link:
            linked = trace.get_current_span(self._propagate.extract({"traceparent": link})).get_span_context()
            if linked.is_valid:
                links.append(trace.Link(linked))
        tracer = _tracer_with_ids(self.tracer, run_trace_id(run_id), run_span_id(run_id))
        span = tracer.start_span(
            f"workflow.run {workflow}", context=trace.set_span_in_context(trace.INVALID_SPAN), kind=trace.SpanKind.CONSUMER,
            attributes=_attrs(run_id, workflow, version=version, status=status), links=links, start_time=_ns(created_at),
        )
        for event in events:
            name = _RUN_EVENTS.get(event.kind)
            if name is not None:
                attributes = {"durable.event.correlation_id": event.correlation_id or ""}
                if event.name:
                    attributes["durable.event.name"] = event.name
                span.add_event(name, attributes, timestamp=_ns(event.created_at))
        if status == "failed":
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{error[0]}: {error[1]}" if error else "failed"))
        span.end(end_time=_ns(now))
        self.runs.get(status, self.runs["failed"]).add(1, {"durable.workflow.name": workflow})
        self.run_duration.record(max(0.0, now - created_at), {"durable.workflow.name": workflow, "durable.run.status": status})

    # -- steps --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step_attempt(self, run_id: str, workflow: str, step: str, step_id: str, attempt: int) -> Iterator[Any]:
        """The span of one step attempt, child of the run span; the caller sets its outcome."""
        attributes = _attrs(run_id, workflow)
        attributes.update({"durable.step.name": step, "durable.step.id": step_id, "durable.step.attempt": attempt})
        with self.tracer.start_as_current_span(
            f"step {step}", context=self.run_context(run_id), attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            yield span

    def step_finished(self, span: Any, step: str, outcome: str, seconds: float, error: BaseException | None) -> None:
        trace = self._trace
        span.set_attribute("durable.step.status", outcome)
        if error is not None and outcome in ("failed", "retrying"):
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        if outcome == "retrying":
            span.add_event("retry.scheduled")
        counter = {"completed": "completed", "failed": "failed", "retrying": "retried"}.get(outcome)
        if counter is not None:
            self.steps[counter].add(1, {"durable.step.name": step})
        self.step_duration.record(seconds, {"durable.step.name": step, "durable.step.status": outcome})


def _attrs(run_id: str, workflow: str, *, version: str | None = None, status: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"durable.run.id": run_id, "durable.workflow.name": workflow}
    if version is not None:
        attributes["durable.version"] = version
    if status is not None:
        attributes["durable.run.status"] = status
    return attributes


class _FixedIds:
    """An id generator that hands out the run span's derived ids (one span, then discarded)."""

    def __init__(self, trace_id: int, span_id: int) -> None:
        self._trace_id = trace_id
        self._span_id = span_id

    def generate_trace_id(self) -> int:
        return self._trace_id

    def generate_span_id(self) -> int:
        return self._span_id

    def is_trace_id_random(self) -> bool:
        return False


def _tracer_with_ids(tracer: Any, trace_id: int, span_id: int) -> Any:
    """A tracer whose next root span gets exactly these ids.

    The OpenTelemetry SDK's tracer draws ids from its ``id_generator``; a copy with a generator
    of our own gives the run span the ids every attempt span already names as its parent. Other
    tracer implementations get the tracer itself (the run span then has ids of its own, and the
    trace id is still the run's: attempts and run are one trace).
    """
    if not hasattr(tracer, "id_generator"):
        return tracer
    copied = copy.copy(tracer)
    copied.id_generator = _FixedIds(trace_id, span_id)
    return copied


async def emit_run_span(tracing: Telemetry, store: Store, record: RunRecord) -> None:
    """Emit the span of a run that just ended (the caller committed its terminal event)."""
    try:
        events = await store.load_events(record.run_id)
        error = decode_error(record.error, encrypted_ok=True) if record.error else None
        tracing.run_ended(
            record.run_id, record.workflow_name, record.status, record.created_at, record.trace_link, events,
            error=(error.type, error.message) if error is not None else None,
        )
    except Exception:  # tracing must never fail a run
        log.exception("durable: emitting the span of run %s failed", record.run_id)


_telemetry: Telemetry | None = None
_checked = False


def telemetry() -> Telemetry | None:
    """The process's Telemetry, or None when tracing is off: OpenTelemetry is not installed, or no
    tracer provider has been set (the API's default, which records nothing). Decided once, the
    first time it is asked -- set your provider before you open a runtime."""
    global _telemetry, _checked
    if _checked:
        return _telemetry
    _checked = True
    try:
        from opentelemetry import metrics, propagate, trace
    except ImportError:
        return None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    _telemetry = Telemetry(trace, metrics, propagate)
    return _telemetry


def reset() -> None:
    """Decide again at the next call (tests that install a provider)."""
    global _telemetry, _checked
    _telemetry, _checked = None, False
