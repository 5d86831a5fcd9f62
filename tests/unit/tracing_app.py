"""A process that traces durable with the real OpenTelemetry SDK, writing finished spans as JSON lines.

Usage: ``python -m tests.unit.tracing_app SPANS_FILE STORE_URL MODE [RUN_ID]`` where MODE is
``run`` (start the traced workflow and finish it), ``crash`` (start it and wait to be SIGKILLed in
its second step) or ``recover`` (finish whatever is unfinished). Metrics are printed as JSON at
the end of ``run``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import durable


class FileExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (flushed: a SIGKILL loses nothing written)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Any) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                out.write(json.dumps(_as_dict(span)) + "\n")
        return SpanExportResult.SUCCESS


def _as_dict(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [e.name for e in span.events],
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "start": span.start_time,
        "end": span.end_time,
    }


reader = InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(sys.argv[1])))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
gate = Path(sys.argv[1] + ".gate")


@durable.step(max_retries=2, retry_delay="10ms")
async def traced_flaky(x: int) -> int:
    if durable.get_step_metadata().attempt == 1:
        raise ConnectionError("first attempt fails")
    return x + 1


def queued_now() -> int:
    """What durable.steps.queued reads at a collection made now."""
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "durable.steps.queued":
                    return sum(int(getattr(p, "value", 0)) for p in metric.data.data_points)
    return -1


@durable.step
async def traced_slow(x: int) -> int:
    print(json.dumps({"queued_in_step": queued_now()}), flush=True)
    if sys.argv[3] == "crash":
        gate.write_text("in the second step")
        await asyncio.sleep(60)  # SIGKILLed here
    return x * 2


@durable.workflow(name="tracing.flow")
async def traced_flow(x: int) -> int:
    durable.logger.info("starting with %s", x)
    a = await traced_flaky(x)
    await durable.sleep(0.05)
    b = await traced_slow(a)
    return b


async def main() -> None:
    url, mode = sys.argv[2], sys.argv[3]
    async with durable.Runtime(url, sticky_cache_size=0, heartbeat_interval=0.1, lease_ttl=2.0) as rt:
        if mode in ("run", "crash"):
            with trace.get_tracer("the.app").start_as_current_span("http request"):
                run = await rt.start(traced_flow, 1, run_id=sys.argv[4] if len(sys.argv) > 4 else None)
            print(json.dumps({"run_id": run.run_id}), flush=True)
            print(json.dumps({"result": await run.result(timeout=60)}), flush=True)
        else:
            run = await rt.get_run(sys.argv[4])
            print(json.dumps({"result": await run.result(timeout=60)}), flush=True)
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                found[metric.name] = sum(getattr(p, "value", getattr(p, "count", 0)) for p in points)
    print(json.dumps({"metrics": found}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
