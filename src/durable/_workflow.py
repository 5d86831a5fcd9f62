"""What workflow code touches: ``@workflow``, ``sleep``, ``now``/``random``/``uuid4`` and metadata."""

from __future__ import annotations

import asyncio
import inspect
import random as _random
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from ._context import current_instance, current_step
from ._core.codec import Serializer
from ._core.durations import DurationOrDeadline, deadline_from
from ._core.errors import NotInWorkflowError
from ._core.registry import Registry, default_name

if TYPE_CHECKING:
    from ._replay import WorkflowInstance

P = ParamSpec("P")
R = TypeVar("R")



class Workflow(Generic[P, R]):
    """A registered workflow. Start it with ``durable.start(wf, ...)`` or ``runtime.start(wf, ...)``.

    Calling it directly runs the function as plain async code, without durability.
    """

    def __init__(self, fn: Callable[P, Any], *, name: str, serializer: Serializer) -> None:
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError(f"@durable.workflow needs an async def function or async generator, got {fn!r}")
        if serializer not in ("json", "pickle"):
            raise ValueError(f"serializer must be 'json' or 'pickle', got {serializer!r}")
        self.fn = fn
        self.name = name
        self.serializer: Serializer = serializer
        self.is_generator = inspect.isasyncgenfunction(fn)
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<durable.Workflow {self.name!r}>"


#: Every workflow defined in this process, by name: what a runtime executes by default.
workflows: Registry[Workflow[Any, Any]] = Registry("workflow")


@overload
def workflow(fn: Callable[P, Any], /) -> Workflow[P, Any]: ...
@overload
def workflow(*, name: str | None = None, serializer: Serializer = "json") -> Callable[[Callable[P, Any]], Workflow[P, Any]]: ...


def workflow(
    fn: Callable[P, Any] | None = None, /, *, name: str | None = None, serializer: Serializer = "json"
) -> Any:
    """Declare a durable workflow: an ``async def`` function (or async generator) replayed from its event log.

    ``name`` defaults to the function's qualified name; ``serializer="pickle"`` lets its
    arguments and result be any picklable (trusted) value.
    """

    def decorate(f: Callable[P, Any]) -> Workflow[P, Any]:
        wf: Workflow[P, Any] = Workflow(f, name=name or default_name(f), serializer=serializer)
        workflows.add(wf.name, wf, f)
        return wf

    return decorate(fn) if fn is not None else decorate


def _instance(api: str) -> WorkflowInstance:
    inst = current_instance.get()
    if inst is None:
        raise NotInWorkflowError(api)
    return inst


async def sleep(duration: DurationOrDeadline) -> None:
    """Sleep durably: ``"10s"``, ``"1 day"``, ``"2h30m"``, a ``timedelta``, seconds, or an aware ``datetime``.

    The run suspends and survives restarts; ``asyncio.sleep`` inside a workflow does the same.
    """
    inst = _instance("sleep")
    loop = inst.loop
    deadline = deadline_from(duration, loop.time(), what="sleep duration")
    future: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(deadline, _resolve, future)
    try:
        await future
    finally:
        handle.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def now() -> datetime:
    """Workflow time: the timestamp of the last event the workflow consumed (same on every replay)."""
    return datetime.fromtimestamp(_instance("now").loop.time(), UTC)


class _DeterministicRandom:
    """``durable.random()`` is a float in [0, 1); ``durable.random.randint(1, 6)`` and the other
    ``random.Random`` methods work too. Seeded per run, apart from the ids of steps and hooks."""

    def __call__(self) -> float:
        return _instance("random").user_random.random()

    def __getattr__(self, name: str) -> Any:
        return getattr(_instance("random").user_random, name)

    def __repr__(self) -> str:
        return "<durable.random: deterministic random.Random of the current workflow run>"


random = _DeterministicRandom()


def uuid4() -> _uuid.UUID:
    """A random-looking UUID4 that is the same on every replay."""
    rng: _random.Random = _instance("uuid4").user_random
    return _uuid.UUID(int=rng.getrandbits(128), version=4)


@dataclass(frozen=True, slots=True)
class WorkflowMetadata:
    run_id: str
    workflow_name: str
    started_at: datetime
    url: str | None = None


def get_workflow_metadata() -> WorkflowMetadata:
    """The current run's id, workflow name and start time; works in workflows and in steps."""
    inst = current_instance.get()
    if inst is not None:
        return inst.metadata
    step = current_step.get()
    if step is not None:
        return step.workflow_metadata
    raise NotInWorkflowError("get_workflow_metadata")
