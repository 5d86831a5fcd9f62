"""One step attempt on the real event loop: run, time out, flush streams, classify the outcome."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from .._core import codec as _codec
from .._core.durations import deadline_from
from .._core.errorinfo import encode_error
from .._core.errors import (
    EncryptedValueError,
    FatalError,
    RetryableError,
    RunCancelled,
    SerializationError,
    StepTimeout,
    StreamClosedError,
)
from .._core.events import EventKind
from .._workflow.context import StepMetadata, WorkflowMetadata, current_step
from .._workflow.step import Step
from ..stores._base import StepClaim, Store
from .writers import StreamWriter

log = logging.getLogger("durable")
# Every step returns it: a module constant, not an enum lookup; a plain str, as the log holds it.
_STEP_COMPLETED = EventKind.STEP_COMPLETED.value


@dataclass(slots=True)
class StepContext:
    """What ``get_step_metadata()``, ``get_writable()`` and friends see while a step attempt runs."""

    store: Store
    claim: StepClaim
    base_url: str | None
    spawn: Callable[..., Any]
    max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE
    writers: dict[tuple[str, str], StreamWriter] = field(default_factory=dict)

    # Built when asked for: most steps never look, and every step attempt would pay for them.
    @property
    def metadata(self) -> StepMetadata:
        claim = self.claim
        started = datetime.fromtimestamp(claim.first_started_at, UTC)
        return StepMetadata(claim.step_id, claim.name, claim.attempt, started, claim.run_id)

    @property
    def workflow_metadata(self) -> WorkflowMetadata:
        claim = self.claim
        started = datetime.fromtimestamp(claim.run_started_at, UTC)  # the run's start, not this step's
        scheduled = None if claim.run_scheduled_at is None else datetime.fromtimestamp(claim.run_scheduled_at, UTC)
        return WorkflowMetadata(claim.run_id, claim.workflow_name, started, self.base_url, scheduled)

    def writer(self, namespace: str, run_id: str | None = None) -> StreamWriter:
        key = (run_id or self.claim.run_id, namespace)
        writer = self.writers.get(key)
        if writer is None:
            writer = StreamWriter(
                self.store, key[0], namespace, step_id=self.claim.step_id, attempt=self.claim.attempt, spawn=self.spawn,
                max_value_size=self.max_value_size,
            )
            self.writers[key] = writer
        return writer

    def abandon_writers(self) -> None:
        for writer in self.writers.values():
            writer.abandon()

    async def settle_writers(self) -> BaseException | None:
        """Flush every writer of this attempt (its chunks reach the log before its outcome does)."""
        first_error: BaseException | None = None
        for writer in self.writers.values():
            try:
                await writer.end_attempt()
            except Exception as exc:
                first_error = first_error or exc
        return first_error


@dataclass(slots=True)  # not frozen: made on every step attempt (see StepClaim)
class StepOutcome:
    kind: str  # step_completed | step_retrying | step_failed | step_cancelled
    data: bytes
    retry_at: float | None = None
    cancelled: bool = False
    error: BaseException | None = field(default=None, compare=False)  # what failed it, for tracing (not stored)


async def run_step(
    step: Step[Any, Any],
    claim: StepClaim,
    *,
    store: Store,
    base_url: str | None,
    spawn: Callable[..., Any],
    cancel_scope: anyio.CancelScope,
    now: Callable[[], float] = time.time,
    body: Callable[..., Any] | None = None,
    max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE,
) -> StepOutcome:
    """Run one attempt of ``claim`` and say what to record. Never raises for user errors.

    ``body`` runs instead of the step's own function (a test's fake: async or not), with the same
    arguments, recording, retries and metadata."""
    context = StepContext(store=store, claim=claim, base_url=base_url, spawn=spawn, max_value_size=max_value_size)
    token = current_step.set(context)
    error: BaseException | None = None
    result: Any = None
    try:
        try:
            payload = _codec.decode(claim.input, allow_pickle=step.serializer == "pickle", root=step.arguments_root)
        except EncryptedValueError as exc:
            # Arguments encrypted with a key this process does not hold: a process that holds it
            # can run the step; try again later (each try is an attempt, as for a missing step).
            log.error("durable: step %s of run %s cannot run here: %s", claim.step_id, claim.run_id, exc)
            return StepOutcome(EventKind.STEP_RETRYING, encode_error(exc), retry_at=now() + 1.0)
        except Exception as exc:
            # Depends on this process (a class it cannot import): another attempt, maybe on
            # another worker, may succeed, so this is a retryable failure, not a fatal one.
            return _failure(step, claim, RuntimeError(f"cannot decode the arguments here: {exc}"), now())
        with cancel_scope:
            try:
                if body is not None:
                    result = await _call(body, payload, step.timeout, step.name)
                elif step.timeout is None:
                    result = await step.fn(*payload["args"], **payload["kwargs"])
                else:
                    with anyio.move_on_after(step.timeout) as timeout_scope:
                        result = await step.fn(*payload["args"], **payload["kwargs"])
                    if timeout_scope.cancelled_caught:
                        raise StepTimeout(step.name, step.timeout)
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                # sys.exit() or argparse in a step fails this attempt, never the whole worker.
                error = exc
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A real cancellation (the run was cancelled, or the runtime is closing):
                    # nothing more is written; release the writers' channels without waiting.
                    context.abandon_writers()
                    raise
                error = exc  # raised by the step's own code: a failure like any other
    finally:
        current_step.reset(token)
    flush_error = await context.settle_writers() if context.writers else None  # most steps write no stream
    if cancel_scope.cancelled_caught:
        return StepOutcome(
            EventKind.STEP_CANCELLED, encode_error(RunCancelled(claim.run_id)), cancelled=True
        )
    if error is None and flush_error is not None:
        error = flush_error
    if error is None:
        try:
            data = _codec.encode(result, serializer=step.serializer, root=step.result_root)
            _codec.check_size(data, max_value_size, step.result_root)
        except Exception as exc:  # SerializationError, or whatever a pickler raised
            # Re-running will not make the value serializable (or smaller): fail now, with the path.
            return StepOutcome(EventKind.STEP_FAILED, encode_error(exc), error=exc)
        return StepOutcome(_STEP_COMPLETED, data)
    return _failure(step, claim, error, now())


async def _call(body: Callable[..., Any], payload: Any, timeout: float | None, name: str) -> Any:
    """A replacement body, called like the step (its value awaited if it is awaitable), with the step's timeout."""
    with anyio.move_on_after(math.inf if timeout is None else timeout) as timeout_scope:
        result = body(*payload["args"], **payload["kwargs"])
        if inspect.isawaitable(result):
            result = await result
        return result
    assert timeout is not None and timeout_scope.cancelled_caught
    raise StepTimeout(name, timeout)


def _failure(step: Step[Any, Any], claim: StepClaim, error: BaseException, now: float) -> StepOutcome:
    # Errors a retry cannot fix fail at once: an explicit FatalError, a result that cannot be
    # encoded, a write to a stream that is already closed.
    if isinstance(error, FatalError | SerializationError | StreamClosedError) or claim.attempt >= claim.max_attempts:
        log.info(
            "step %s of run %s failed at attempt %d/%d: %s: %s (not retried)",
            step.name, claim.run_id, claim.attempt, claim.max_attempts, type(error).__name__, _one_line(error),
        )
        return StepOutcome(EventKind.STEP_FAILED, encode_error(error), error=error)
    if isinstance(error, RetryableError) and error.retry_after is not None:
        try:
            retry_at = deadline_from(error.retry_after, now, what="retry_after")
        except (TypeError, ValueError) as exc:  # set after the constructor checked it: no retry time to store
            return StepOutcome(EventKind.STEP_FAILED, encode_error(exc))
    else:
        retry_at = now + step.retry.delay(claim.attempt)
    log.info(
        "step %s of run %s: attempt %d/%d failed with %s: %s; retry at %s (in %.3gs)",
        step.name, claim.run_id, claim.attempt, claim.max_attempts, type(error).__name__, _one_line(error),
        _iso(retry_at), retry_at - now,
    )
    return StepOutcome(EventKind.STEP_RETRYING, encode_error(error, retry_at=retry_at), retry_at=retry_at, error=error)


def _one_line(error: BaseException) -> str:
    return str(error).replace("\r", "\\r").replace("\n", "\\n")


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return repr(ts)
