"""Errors as recorded in the log: type, message, traceback text, cause, and the exception itself.

The exception is kept so that a workflow catching a failed step sees the original type; the
type name, message and traceback text are kept beside it so that a process that cannot
re-create the class (or a person reading the log) still sees what happened.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any

from . import codec as _codec
from .errors import ChildFailed, EncryptedValueError, SerializationError, StepFailed


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str
    exception: BaseException | None = None
    retry_at: float | None = None

    def to_exception(self, step_name: str) -> BaseException:
        """The exception to raise in a workflow for a step that failed with this error.

        It carries the step's own traceback as a note, so ``traceback.format_exception(e)`` in
        the workflow (or a log of it) shows where the step raised, not only workflow frames.
        """
        exc = self.exception
        # A step that raised SystemExit or KeyboardInterrupt failed like any other: the workflow
        # sees an ordinary (catchable) StepFailed, not a control-flow exception.
        if exc is None or not isinstance(exc, Exception) or (isinstance(exc, StepFailed) and exc.step_name == "?"):
            exc = StepFailed(step_name, self.type, self.message, self.traceback)
            exc.__durable_traceback__ = self.traceback  # type: ignore[attr-defined]
        if self.traceback:
            exc.add_note(f"The step's own traceback (step {step_name!r}, as recorded when it failed):\n{self.traceback.rstrip()}")
        return exc

    def to_child_exception(self, run_id: str) -> BaseException:
        """The exception a parent awaiting child run ``run_id`` raises for this error: the child's
        own when it could be re-created here, else :class:`ChildFailed`."""
        exc = self.exception
        if exc is None or not isinstance(exc, Exception):
            exc = ChildFailed(run_id, self.type, self.message, self.traceback)
            exc.__durable_traceback__ = self.traceback  # type: ignore[attr-defined]
        return exc

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def traceback_text(exc: BaseException) -> str:
    recorded = getattr(exc, "__durable_traceback__", None)
    if recorded:
        return str(recorded)
    return "".join(traceback.format_exception(exc))


# An error record must always be storable, however big what was raised: message and traceback
# are cut to these many characters, and a record still larger keeps its text without the exception.
_MAX_MESSAGE = 64 * 1024
_MAX_TRACEBACK = 256 * 1024
_MAX_RECORD = 1024 * 1024


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}\n… ({len(text) - limit:,} characters left out) …\n{text[-limit // 2:]}"


def encode_error(exc: BaseException, *, retry_at: float | None = None) -> bytes:
    """Encode ``exc`` for the log; never fails (an unencodable exception keeps its text only), and
    stays under ~1 MB (long messages and tracebacks are cut in the middle)."""
    try:
        message = str(exc)
    except Exception:
        message = repr(exc)
    record: dict[str, Any] = {
        "type": type_name(exc),
        "message": _cut(message, _MAX_MESSAGE),
        "traceback": _cut(traceback_text(exc), _MAX_TRACEBACK),
        "exception": exc,
    }
    if retry_at is not None:
        record["retry_at"] = retry_at
    try:
        data = _codec.encode(record, root="error")
        if len(data) <= _MAX_RECORD:
            return data
    except SerializationError:
        pass
    record["exception"] = None
    return _codec.encode(record, root="error")


# What views show for an error recorded encrypted when they hold no key for it.
ENCRYPTED_ERROR = ErrorInfo(_codec.ENCRYPTED, _codec.ENCRYPTED, "")


def decode_error(data: bytes, *, encrypted_ok: bool = False) -> ErrorInfo:
    """The recorded error. A still-encrypted one raises EncryptedValueError, or with ``encrypted_ok``
    (views: a run's list, its status) is :data:`ENCRYPTED_ERROR`."""
    if data[:4] == _codec.ENCRYPTED_TAG:
        if encrypted_ok:
            return ENCRYPTED_ERROR
        raise EncryptedValueError(_codec.encrypted_key_id(data), "error")
    try:
        record = _codec.decode(data, root="error")
    except SerializationError:
        # The exception payload refers to something this process cannot rebuild: keep the text.
        raw = json.loads(bytes(data)[4:])
        return ErrorInfo(str(raw.get("type")), str(raw.get("message")), str(raw.get("traceback", "")), None)
    return ErrorInfo(
        type=record["type"],
        message=record["message"],
        traceback=record.get("traceback", ""),
        exception=record.get("exception"),
        retry_at=record.get("retry_at"),
    )
