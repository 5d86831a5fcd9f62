"""``@workflow``: async functions (or async generators) replayed from their event log."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .._core.codec import Serializer
from .._core.durations import Duration, parse_duration
from .._core.ids import check_label, check_run_id
from .._core.queues import Queue, resolve_queue
from .._core.registry import Registry, default_name, short_name
from .calls import Binder
from .children import ChildHandle, ParentClose, check_parent_close
from .context import current_instance, workflow_host

P = ParamSpec("P")
R = TypeVar("R")


class Workflow(Generic[P, R]):
    """A registered workflow. Start it with ``durable.start(wf, ...)`` or ``runtime.start(wf, ...)``.

    Called inside another workflow, ``await wf(...)`` starts a child run and waits for its
    result; called anywhere else it runs the function as plain async code, without durability.
    ``version`` is the label each run it starts records (see ``Runtime(versions=...)``).
    """

    def __init__(
        self, fn: Callable[P, Any], *, name: str, serializer: Serializer, timeout: float | None = None,
        version: str | None = None,
    ) -> None:
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError(f"@durable.workflow needs an async def function or async generator, got {fn!r}")
        if serializer not in ("json", "pickle"):
            raise ValueError(f"serializer must be 'json' or 'pickle', got {serializer!r}")
        self.fn = fn
        self.name = name
        self.serializer: Serializer = serializer
        self.timeout = timeout  # seconds a run may take before it is cancelled (reason "timeout"); None: no limit
        self.version = None if version is None else check_label(version, "workflow version")
        self.is_generator = inspect.isasyncgenfunction(fn)
        self.binder = Binder(fn, f"workflow {name!r}")
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        host = current_instance.get()
        if host is None:
            return self.fn(*args, **kwargs)
        # Bound here, at the call: a call that does not fit raises TypeError in the parent and records nothing.
        bound_args, bound_kwargs = self.binder.bind(args, kwargs)
        handle: ChildHandle[Any] = host.start_child(
            self, bound_args, bound_kwargs, run_id=None, on_parent_close="cancel", queue=None
        )
        return handle._wait_or_cancel()

    def __repr__(self) -> str:
        return f"<durable.Workflow {self.name!r}" + (f" version {self.version!r}>" if self.version else ">")

    def matches(self, recorded: str) -> bool:
        """Whether a stored run's workflow name names this workflow (also the bare name older runs carry)."""
        return recorded == self.name or (":" not in recorded and short_name(self.name) == recorded)


async def start_child(
    workflow: Workflow[..., R], /, *args: Any, run_id: str | None = None, on_parent_close: ParentClose = "cancel",
    queue: str | Queue | None = None, **kwargs: Any,
) -> ChildHandle[R]:
    """Start a child run of ``workflow`` from workflow code and return its handle at once.

    ``run_id`` defaults to one derived from this run's id and the call's position (a replay
    names the same child, so it is started once). ``on_parent_close``: ``"cancel"`` (default)
    cancels the child if this run ends -- completes, fails or is cancelled -- before it;
    ``"abandon"`` lets it run on. ``queue`` makes the child wait for that queue's admission.
    ``run_id``, ``on_parent_close`` and ``queue`` are options, not workflow arguments.
    """
    host = workflow_host("start_child")
    if not isinstance(workflow, Workflow):
        raise TypeError(f"start_child needs a @durable.workflow function, got {workflow!r}")
    policy = check_parent_close(on_parent_close)
    if run_id is not None:
        check_run_id(run_id)
    bound_args, bound_kwargs = workflow.binder.bind(args, kwargs)
    found = resolve_queue(queue)
    handle: ChildHandle[R] = host.start_child(
        workflow, bound_args, bound_kwargs, run_id=run_id, on_parent_close=policy,
        queue=None if found is None else found.spec(),
    )
    return handle


def check_timeout(timeout: Duration | None) -> float | None:
    """A run timeout in seconds (None: no limit); a clear error for anything that is not a positive duration."""
    if timeout is None:
        return None
    seconds = parse_duration(timeout, what="workflow timeout")
    if seconds <= 0:
        raise ValueError(f"workflow timeout must be positive, got {timeout!r}")
    return seconds


#: Every workflow defined in this process, by name: what a runtime executes by default.
workflows: Registry[Workflow[Any, Any]] = Registry("workflow")


@overload
def workflow(fn: Callable[P, Any], /) -> Workflow[P, Any]: ...
@overload
def workflow(
    *, name: str | None = None, serializer: Serializer = "json", timeout: Duration | None = None,
    version: str | None = None,
) -> Callable[[Callable[P, Any]], Workflow[P, Any]]: ...


def workflow(
    fn: Callable[P, Any] | None = None, /, *, name: str | None = None, serializer: Serializer = "json",
    timeout: Duration | None = None,
    version: str | None = None,
) -> Any:
    """Declare a durable workflow: an ``async def`` function (or async generator) replayed from its event log.

    ``name`` defaults to ``module:qualname`` (unique; an explicit name another module already
    uses is refused with NameConflict); ``serializer="pickle"`` lets its arguments and result be
    any picklable (trusted) value. ``timeout`` (``"1h"``, seconds, a timedelta) is how long a run
    may take from its creation: one still unfinished then is cancelled, with reason ``"timeout"``
    (``start(..., timeout=...)`` sets it per run). ``version`` (e.g. ``"2"``) is recorded by every
    run this code starts, so old and new workers can split runs by version during a rolling deploy.
    """
    timeout_s = check_timeout(timeout)

    def decorate(f: Callable[P, Any]) -> Workflow[P, Any]:
        wf: Workflow[P, Any] = Workflow(
            f, name=name or default_name(f), serializer=serializer, timeout=timeout_s, version=version
        )
        workflows.add(wf.name, wf, f, explicit=name is not None)
        return wf

    return decorate(fn) if fn is not None else decorate
