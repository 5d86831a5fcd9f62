"""``@workflow``: async functions (or async generators) replayed from their event log."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .._core.codec import Serializer
from .._core.ids import check_label
from .._core.registry import Registry, default_name, short_name
from .calls import Binder

P = ParamSpec("P")
R = TypeVar("R")


class Workflow(Generic[P, R]):
    """A registered workflow. Start it with ``durable.start(wf, ...)`` or ``runtime.start(wf, ...)``.

    Calling it directly runs the function as plain async code, without durability. ``version``
    is the label each run it starts records (see ``Runtime(versions=...)``).
    """

    def __init__(self, fn: Callable[P, Any], *, name: str, serializer: Serializer, version: str | None = None) -> None:
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError(f"@durable.workflow needs an async def function or async generator, got {fn!r}")
        if serializer not in ("json", "pickle"):
            raise ValueError(f"serializer must be 'json' or 'pickle', got {serializer!r}")
        self.fn = fn
        self.name = name
        self.serializer: Serializer = serializer
        self.version = None if version is None else check_label(version, "workflow version")
        self.is_generator = inspect.isasyncgenfunction(fn)
        self.binder = Binder(fn, f"workflow {name!r}")
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<durable.Workflow {self.name!r}" + (f" version {self.version!r}>" if self.version else ">")

    def matches(self, recorded: str) -> bool:
        """Whether a stored run's workflow name names this workflow (also the bare name older runs carry)."""
        return recorded == self.name or (":" not in recorded and short_name(self.name) == recorded)


#: Every workflow defined in this process, by name: what a runtime executes by default.
workflows: Registry[Workflow[Any, Any]] = Registry("workflow")


@overload
def workflow(fn: Callable[P, Any], /) -> Workflow[P, Any]: ...
@overload
def workflow(
    *, name: str | None = None, serializer: Serializer = "json", version: str | None = None
) -> Callable[[Callable[P, Any]], Workflow[P, Any]]: ...


def workflow(
    fn: Callable[P, Any] | None = None, /, *, name: str | None = None, serializer: Serializer = "json",
    version: str | None = None,
) -> Any:
    """Declare a durable workflow: an ``async def`` function (or async generator) replayed from its event log.

    ``name`` defaults to ``module:qualname`` (unique; an explicit name another module already
    uses is refused with NameConflict); ``serializer="pickle"`` lets its arguments and result be
    any picklable (trusted) value. ``version`` (e.g. ``"2"``) is recorded by every run this code
    starts, so old and new workers can split runs by version during a rolling deploy.
    """

    def decorate(f: Callable[P, Any]) -> Workflow[P, Any]:
        wf: Workflow[P, Any] = Workflow(f, name=name or default_name(f), serializer=serializer, version=version)
        workflows.add(wf.name, wf, f, explicit=name is not None)
        return wf

    return decorate(fn) if fn is not None else decorate
