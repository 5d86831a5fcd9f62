"""OpenTelemetry, with the real SDK in real processes: one run span, one span per step attempt, none
repeated by replay, one trace across a SIGKILL; metrics; and nothing at all when tracing is off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def _app(spans: Path, url: str, mode: str, run_id: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.unit.tracing_app", str(spans), url, mode, *([run_id] if run_id else [])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _lines(out: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for line in out.splitlines():
        merged.update(json.loads(line))
    return merged


def test_a_run_is_one_span_with_a_child_per_step_attempt_and_none_repeated_by_replay(tmp_path: Path) -> None:
    """Every invocation replays cold here (sticky_cache_size=0), yet each attempt and the run appear once."""
    spans_file = tmp_path / "spans.jsonl"
    proc = _app(spans_file, f"sqlite:///{tmp_path / 'db.sqlite'}?synchronous=normal", "run")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    printed = _lines(out)
    assert printed["result"] == 4
    spans = _spans(spans_file)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    (run_span,) = by_name["workflow.run tracing.flow"]
    (start_span,) = by_name["workflow.start tracing.flow"]
    (request,) = by_name["http request"]
    flaky = sorted(by_name["step tests.unit.tracing_app:traced_flaky"], key=lambda s: s["attributes"]["durable.step.attempt"])
    (slow,) = by_name["step tests.unit.tracing_app:traced_slow"]
    assert [s["attributes"]["durable.step.attempt"] for s in flaky] == [1, 2]  # one span per attempt, no replay copies
    assert (flaky[0]["status"], flaky[1]["status"]) == ("ERROR", "UNSET")
    assert "exception" in flaky[0]["events"] and "retry.scheduled" in flaky[0]["events"]
    # The attempts are children of the run span, in the run's own trace; the run links to its start.
    for step in [*flaky, slow]:
        assert (step["trace_id"], step["parent_id"]) == (run_span["trace_id"], run_span["span_id"])
        assert step["attributes"]["durable.run.id"] == printed["run_id"]
    assert run_span["links"] == [start_span["span_id"]] and start_span["parent_id"] == request["span_id"]
    assert run_span["attributes"]["durable.run.status"] == "completed"
    assert run_span["start"] <= min(s["start"] for s in flaky) and run_span["end"] >= slow["end"]
    assert {"sleep.started", "sleep.ended", "step.retry_scheduled"} <= set(run_span["events"])
    metrics = printed["metrics"]
    assert metrics["durable.runs.started"] == 1 and metrics["durable.runs.completed"] == 1
    assert metrics["durable.steps.completed"] == 2 and metrics["durable.steps.retried"] == 1
    assert metrics["durable.step.duration"] == 3 and metrics["durable.replay.event_cost"] >= 1
    # The steps-queued gauge is read at collection: the running step while it runs, none after.
    assert printed["queued_in_step"] == 1 and metrics["durable.steps.queued"] == 0


def test_spans_across_a_sigkill_and_recovery_in_another_process_form_one_trace(tmp_path: Path) -> None:
    """The recovering process emits the re-run attempt and the one run span; all of them one trace."""
    spans_file = tmp_path / "spans.jsonl"
    url = f"sqlite:///{tmp_path / 'db.sqlite'}?synchronous=normal"
    first = _app(spans_file, url, "crash", "traced-crash-1")
    gate = Path(str(spans_file) + ".gate")
    deadline = time.monotonic() + 60
    while not gate.exists():
        assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.stderr else ""
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()  # reaps it and closes its pipes
    before = _spans(spans_file)
    assert not [s for s in before if s["name"].startswith("workflow.run")]  # the run has not ended yet
    second = _app(spans_file, url, "recover", "traced-crash-1")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert _lines(out)["result"] == 4
    spans = [s for s in _spans(spans_file) if s["name"] != "http request" and not s["name"].startswith("workflow.start")]
    (run_span,) = [s for s in spans if s["name"] == "workflow.run tracing.flow"]
    assert {s["trace_id"] for s in spans} == {run_span["trace_id"]}
    assert all(s["parent_id"] == run_span["span_id"] for s in spans if s is not run_span)
    slow = [s for s in spans if s["name"] == "step tests.unit.tracing_app:traced_slow"]
    assert [s["attributes"]["durable.step.attempt"] for s in slow] == [2]  # the killed attempt never ended


def test_tracing_is_off_and_opentelemetry_not_imported_without_a_provider() -> None:
    """No provider set: durable never imports the SDK, and the telemetry hook is off."""
    code = (
        "import sys, durable\n"
        "from durable._client.telemetry import telemetry\n"
        "assert telemetry() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
