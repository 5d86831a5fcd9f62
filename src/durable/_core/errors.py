"""Every error durable raises, in one place.

::

    DurableError
    ├── SerializationError (TypeError)     a value the codec cannot encode or decode
    ├── NonDeterminismError                replayed code issued something the log does not hold
    ├── NonDeterministicCallError (RuntimeError)  time.time(), random.random(), ... in workflow code (strict=True)
    ├── NameConflict (ValueError)          an explicit name another module's definition already has
    ├── NotInWorkflowError (RuntimeError)  a workflow-only API called elsewhere
    ├── NotInStepError (RuntimeError)      a step-only API called elsewhere
    ├── SideEffectInWorkflowError (RuntimeError)  start/resume_hook/... called in workflow code
    ├── WorkflowNotFound (LookupError)     no workflow registered under that name
    ├── RunNotFound (LookupError)          no run with that id
    ├── ScheduleNotFound (LookupError)     no schedule with that name in the store
    ├── RunConflict                        that run id / idempotency key names another call (workflow or arguments)
    ├── ForkError (ValueError)             a run cannot be forked or rerun there (no such step, a token in use, ...)
    ├── RunFailed                          result() of a run that failed
    ├── RunCancelled                       result() of a run that was cancelled
    ├── StepFailed                         a step failed with an error type that cannot be re-created
    ├── ChildFailed                        a child run failed with an error type that cannot be re-created
    ├── StepTimeout (TimeoutError)         a step attempt ran past its timeout
    ├── FatalError                         raised by user code: fail the step, do not retry
    ├── RetryableError                     raised by user code: retry, optionally after a delay
    ├── HookNotFound (LookupError)         no live hook with that token
    ├── HookConflictError                  another live hook already holds that token
    ├── HookValidationError (ValueError)   a payload that does not match the hook's schema
    ├── HookSchemaUnknown                  the hook's schema is not defined in this process
    ├── WebhookResponseTimeout (TimeoutError)  a manual webhook got no response in time
    ├── WebhookNotAnswered                 a manual webhook's run ended without responding
    ├── StreamClosedError                  writing to a closed stream
    ├── StreamFailed                       a stream whose run failed: readers see the error
    ├── InvalidStoreURL (ValueError)       a store URL that cannot be understood
    ├── EncryptionKeyError                 encrypted data, and no key (or a wrong one) for its key id
    │   └── EncryptedValueError (SerializationError)  decoding a value that is still encrypted
    └── StoreError                         the store failed (corrupt file, lost connection, ...)
        └── StoreCorrupt                   not a durable database, or a newer schema

Messages are built in ``__init__`` from structured attributes, so callers can branch on
the attributes and people can read the message.
"""

from __future__ import annotations

from typing import Any

from .durations import check_duration_or_deadline


class DurableError(Exception):
    """Raised for every failure that durable itself detects; the root of the tree above."""


class SerializationError(DurableError, TypeError):
    """Raised when a value cannot be encoded or decoded by the codec.

    ``path`` says where the value sits inside what was being encoded, e.g.
    ``result["items"][3]``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class NonDeterminismError(DurableError):
    """Raised when a replay of a workflow does something its event log says it did not do.

    The run is marked failed with this error; its log is left as it was, so the code can be
    fixed (or rolled back) and the history inspected.
    """

    def __init__(self, position: int, recorded: str, actual: str) -> None:
        self.position = position
        self.recorded = recorded
        self.actual = actual
        super().__init__(
            f"workflow code no longer matches its event log at command #{position}: "
            f"the log holds {recorded}, the code did {actual}"
        )


def _nondeterministic(workflow: str, call: str, instead: str) -> str:
    return (
        f"workflow {workflow!r} called {call}, which gives another value when the run is replayed "
        f"(after a restart, say); use {instead}, which is the same on every replay"
    )


class NonDeterministicCallError(DurableError, RuntimeError):
    """Raised in workflow code, under ``Runtime(strict=True)``, when it reads the wall clock or the
    global random generators (``time.time()``, ``datetime.now()``, ``random.random()``,
    ``uuid.uuid4()``, ...): unless the workflow catches it, the run fails with it."""

    def __init__(self, workflow: str, call: str, instead: str) -> None:
        self.workflow = workflow
        self.call = call
        self.instead = instead
        super().__init__(_nondeterministic(workflow, call, instead))


class NonDeterministicCallWarning(RuntimeWarning):
    """Warned (once per workflow and call) when workflow code reads the wall clock or the global
    random generators; ``Runtime(strict=True)`` raises :class:`NonDeterministicCallError` instead."""

    def __init__(self, workflow: str, call: str, instead: str) -> None:
        self.workflow = workflow
        self.call = call
        self.instead = instead
        super().__init__(_nondeterministic(workflow, call, instead) + " (Runtime(strict=True) makes this an error)")


class NameConflict(DurableError, ValueError):
    """Raised when a workflow, step or hook definition takes an explicit name that a definition
    in another module already has: starting or running it by name would pick one of them."""

    def __init__(self, kind: str, name: str, existing: str, new: str) -> None:
        self.kind = kind
        self.name = name
        self.existing = existing
        self.new = new
        super().__init__(
            f"{kind} name {name!r} is already defined by {existing}; {new} cannot take it too "
            f"(pass another name=..., or leave name out: the default {kind} name is module:qualname)"
        )


class NotInWorkflowError(DurableError, RuntimeError):
    """Raised when a workflow-only API (``sleep``, ``create_hook``, ``now``, ...) is called outside a workflow."""

    def __init__(self, api: str) -> None:
        self.api = api
        super().__init__(
            f"durable.{api}() can only be called inside a @durable.workflow function "
            "(steps and plain code use the ordinary library instead)"
        )


class NotInStepError(DurableError, RuntimeError):
    """Raised when a step-only API (``get_step_metadata``) is called outside a step."""

    def __init__(self, api: str) -> None:
        self.api = api
        super().__init__(f"durable.{api}() can only be called while a @durable.step runs")


class SideEffectInWorkflowError(DurableError, RuntimeError):
    """Raised when workflow code calls an API that acts on the world (``durable.start``,
    ``resume_hook``, ...): a replay would do it again. Such calls belong in a step."""

    def __init__(self, api: str) -> None:
        self.api = api
        super().__init__(
            f"durable.{api}() cannot be called in workflow code: a replay would do it again. Call it from a @durable.step"
        )


class WorkflowNotFound(DurableError, LookupError):
    """Raised when no workflow is registered (or, for a process without the code, published) under a name."""

    def __init__(self, name: str, known: list[str] | None = None, *, where: str = "registered with this runtime") -> None:
        self.name = name
        self.known = sorted(known or [])
        hint = f" (known: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"no workflow named {name!r} is {where}{hint}")


class RunNotFound(DurableError, LookupError):
    """Raised when no run has the given id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class ScheduleNotFound(DurableError, LookupError):
    """Raised when the store keeps no schedule of that name (no runtime registered it, or it was deleted)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r} in this store (a runtime registers it: Runtime(schedules=[...]))")


class RunFailed(DurableError):
    """Raised by ``Run.result()`` when the run failed.

    ``error`` is the original exception re-created when its type could be, else ``None``;
    ``error_type``, ``message`` and ``traceback`` are always there.
    """

    def __init__(
        self,
        run_id: str,
        error_type: str,
        message: str,
        traceback: str = "",
        error: BaseException | None = None,
    ) -> None:
        self.run_id = run_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.error = error
        super().__init__(f"run {run_id} failed: {error_type}: {message}")


class RunCancelled(DurableError):
    """Raised by ``Run.result()`` when the run was cancelled (and in a parent awaiting a cancelled
    child). ``reason`` says why when the run did not end by a plain cancel: ``"timeout"`` (it ran
    past its ``timeout=``), ``"parent closed"`` (its parent ended)."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id} was cancelled" + (f" ({reason})" if reason else ""))


class StepFailed(DurableError):
    """Raised in a workflow when a step failed with an error whose type cannot be re-created.

    Also used when the original exception class is unknown in this process.
    """

    def __init__(self, step_name: str, error_type: str, message: str, traceback: str = "") -> None:
        self.step_name = step_name
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(f"step {step_name!r} failed: {error_type}: {message}")


class ChildFailed(DurableError):
    """Raised in a parent workflow awaiting a child run that failed with an error whose type
    cannot be re-created here (the child's own error type and message are kept)."""

    def __init__(self, run_id: str, error_type: str, message: str, traceback: str = "") -> None:
        self.run_id = run_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(f"child run {run_id} failed: {error_type}: {message}")


class StepTimeout(DurableError, TimeoutError):
    """Raised when a step attempt runs longer than its ``timeout``; counts as a failed attempt."""

    def __init__(self, step_name: str, timeout: float) -> None:
        self.step_name = step_name
        self.timeout = timeout
        super().__init__(f"step {step_name!r} timed out after {timeout:g}s")


class FatalError(DurableError):
    """Raise this in a step to fail it at once, without retries."""


class RetryableError(DurableError):
    """Raise this in a step to have it retried; ``retry_after`` (seconds, a duration string,
    a ``timedelta`` or an aware ``datetime``) sets the delay instead of the back-off. A delay that
    is not a finite duration from 0 to 100 years raises ValueError here, naming the value."""

    def __init__(self, message: str = "", retry_after: Any = None) -> None:
        if retry_after is not None:
            # Checked here, where the mistake is made (NaN, negative, epoch milliseconds taken as
            # seconds): a retry time that cannot be stored must never reach the store.
            check_duration_or_deadline(retry_after, what="retry_after")
        self.retry_after = retry_after
        super().__init__(message)


class HookNotFound(DurableError, LookupError):
    """Raised when no live hook holds a token (never created, disposed, or its run ended)."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(f"no live hook with token {token!r}")


class HookConflictError(DurableError):
    """Raised in a workflow awaiting a hook whose token another live hook already holds."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(f"hook token {token!r} is already in use by another live hook")


class HookValidationError(DurableError, ValueError):
    """Raised when a hook payload does not match the hook's schema; nothing is recorded."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid hook payload: " + "; ".join(self.problems))


class RunConflict(DurableError):
    """Raised by ``start`` when its run id or idempotency key already names a run of another
    workflow, or of the same workflow with other arguments: a key names one call."""

    def __init__(
        self, run_id: str, key_kind: str, key: str, existing_workflow: str, workflow: str, *, other_arguments: bool = False
    ) -> None:
        self.run_id = run_id
        self.key_kind = key_kind
        self.key = key
        self.existing_workflow = existing_workflow
        self.workflow = workflow
        self.other_arguments = other_arguments
        if key_kind == "dedupe_id":
            message = (
                f"dedupe_id {key!r} already names live run {run_id!r} (workflow {existing_workflow!r}) in its queue: "
                "a second live entry is refused until that run ends"
            )
        elif other_arguments:
            message = (
                f"{key_kind} {key!r} already names run {run_id!r} of workflow {workflow!r}, started with other arguments "
                f"(one {key_kind} names one call: to call it with these, use a new {key_kind})"
            )
        else:
            message = f"run {run_id!r} ({key_kind} {key!r}) already exists for workflow {existing_workflow!r}, not {workflow!r}"
        super().__init__(message)


class ForkError(DurableError, ValueError):
    """Raised by ``run.fork`` / ``durable.rerun`` when the run cannot be forked at that point: it has no
    such step, it is not failed or cancelled (rerun), or a hook it held there is live elsewhere."""

    def __init__(self, run_id: str, problem: str) -> None:
        self.run_id = run_id
        self.problem = problem
        super().__init__(f"cannot fork run {run_id!r}: {problem}")


class HookSchemaUnknown(DurableError):
    """Raised when a hook expects a ``define_hook`` schema this process does not define, so its
    payload cannot be checked; nothing is recorded. Import the module that defines it."""

    def __init__(self, token: str, schema: str) -> None:
        self.token = token
        self.schema = schema
        super().__init__(
            f"hook {token!r} expects payloads of schema {schema!r}, which is not defined in this process: "
            "import the module that defines it (e.g. `durable serve --app module:app`, `durable resume --app module`)"
        )


class WebhookResponseTimeout(DurableError, TimeoutError):
    """Raised when a manual-mode webhook got no response from its workflow in time."""

    def __init__(self, token: str, timeout: float) -> None:
        self.token = token
        self.timeout = timeout
        super().__init__(f"webhook {token!r} got no response within {timeout:g}s")


class WebhookNotAnswered(DurableError):
    """Raised when a manual-mode webhook's run ended (or its step finished) without sending a response."""

    def __init__(self, token: str, why: str) -> None:
        self.token = token
        self.why = why
        super().__init__(f"webhook {token!r} got no response: {why}")


class StreamClosedError(DurableError):
    """Raised when writing to a stream that is closed."""

    def __init__(self, run_id: str, namespace: str) -> None:
        self.run_id = run_id
        self.namespace = namespace
        super().__init__(f"stream {namespace!r} of run {run_id} is closed")


class StreamFailed(DurableError):
    """Raised to a stream reader, after the last chunk, when the stream ended with an error."""

    def __init__(self, run_id: str, namespace: str, error: str) -> None:
        self.run_id = run_id
        self.namespace = namespace
        self.error = error
        super().__init__(f"stream {namespace!r} of run {run_id} ended with an error: {error}")


class InvalidStoreURL(DurableError, ValueError):
    """Raised when a store URL cannot be understood."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"invalid store URL {url!r}: {problem}")


class EncryptionKeyError(DurableError):
    """Raised when encrypted data cannot be decrypted with the keys this process holds: none has
    its key id, or the key given for that id is not the one it was encrypted with.

    ``key_id`` names the key the data needs; ``problem`` says what is wrong with the keys here.
    """

    def __init__(self, key_id: str, problem: str) -> None:
        self.key_id = key_id
        self.problem = problem
        super().__init__(f"encryption key {key_id!r}: {problem}")


class EncryptedValueError(EncryptionKeyError, SerializationError):
    """Raised when a value is decoded that is still encrypted: it was read by a process without
    its key (no ``encryption=``, the key id not among its keys, or a wrong key for that id).
    Views show such values as ``"<encrypted>"`` instead."""

    def __init__(self, key_id: str, path: str = "value") -> None:
        self.key_id = key_id
        self.path = path
        self.problem = (
            f"{path} is encrypted with key {key_id!r}, which this process does not hold (or holds a wrong key for): "
            f"open the client or runtime with encryption=durable.Encryption(...) holding key {key_id!r} "
            "(as its key, or in old_keys)"
        )
        Exception.__init__(self, self.problem)


class StoreError(DurableError):
    """Raised when the store fails; the driver's own exception is the ``__cause__``."""


class StoreUnavailable(StoreError):
    """Raised when the store stayed out of reach for longer than its reconnect budget.

    Transient by nature: nothing was half-written, and the same call can succeed once the store is
    back. ``Run.wait``/``result``/``wait_for_hook`` keep waiting through it until their own timeout.
    """


class StoreCorrupt(StoreError):
    """Raised when a database is not a durable store, or was written by a newer version."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")
