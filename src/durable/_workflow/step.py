"""``@step``: functions that do the real I/O, retried, with their results recorded exactly once."""

from __future__ import annotations

import inspect
import random as _random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .._core.codec import Serializer
from .._core.durations import Duration, parse_duration
from .._core.queues import Queue, QueueSpec, resolve_queue
from .._core.registry import Registry, default_name, short_name
from .calls import Binder
from .context import current_instance

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter: attempt *n* waits ``initial * 2**(n-1)``, capped, times 0.5-1.0."""

    max_retries: int = 3
    initial_delay: float = 1.0
    max_delay: float = 300.0

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.initial_delay * (2 ** max(0, attempt - 1)))
        return float(base * (0.5 + _random.random() / 2))


class Step(Generic[P, R]):
    """A registered step. Inside a workflow, calling it schedules a durable step; anywhere else
    it simply runs the function (handy in tests).

    A step is a descriptor, like a function: defined in a class it binds ``self`` when called on
    an instance, and the class when it wraps a ``classmethod`` (the bound object or class is
    recorded as the first argument, so it must be encodable). Passed as a value -- to another
    step, or as a workflow argument -- it travels as a reference by name.
    """

    def __init__(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        *,
        name: str,
        retry: RetryPolicy,
        timeout: float | None,
        serializer: Serializer,
        queue: str | Queue | None = None,
    ) -> None:
        self.binds_class = isinstance(fn, classmethod)
        if isinstance(fn, classmethod):
            fn = fn.__func__  # the classmethod's own function
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@durable.step needs an async def function, got {fn!r}")
        if serializer not in ("json", "pickle"):
            raise ValueError(f"serializer must be 'json' or 'pickle', got {serializer!r}")
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.serializer: Serializer = serializer
        # The queue's name; its definition is looked up when the step is called (it may be defined later).
        self.queue: str | None = queue.name if isinstance(queue, Queue) else queue
        self.binder = Binder(fn, f"step {name!r}")
        # Error-path roots, built once: replay passes them for every step it resolves.
        self.arguments_root = f"arguments of step {name!r}"
        self.result_root = f"result of step {name!r}"
        self._short_name = short_name(name)
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        instance = current_instance.get()
        if instance is None:
            return self.fn(*args, **kwargs)
        # Bound here, at the call: a call that does not fit raises TypeError in the workflow
        # (catchable there) and records nothing.
        bound_args, bound_kwargs = self.binder.bind(args, kwargs)
        return instance.call_step(self, bound_args, bound_kwargs, spelled=(args, kwargs))

    def queue_spec(self) -> QueueSpec | None:
        """The limits of the queue this step waits in (ValueError if that queue is not defined here)."""
        queue = resolve_queue(self.queue)
        return None if queue is None else queue.spec()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if self.binds_class:
            return BoundStep(self, owner if owner is not None else type(obj))
        if obj is None:
            return self
        return BoundStep(self, obj)

    def __repr__(self) -> str:
        return f"<durable.Step {self.name!r}>"

    def matches(self, recorded: str) -> bool:
        """Whether a recorded step name names this step (also the bare name older runs carry)."""
        return recorded == self.name or (self._short_name is not None and recorded == self._short_name)

    def __durable_serialize__(self) -> dict[str, str]:
        return {"name": self.name}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, str]) -> Step[Any, Any]:
        found = steps.resolve(data["name"])
        if found is None:
            raise LookupError(f"step {data['name']!r} is not defined in this process")
        return found


class BoundStep:
    """A method step bound to its instance (or a classmethod step to its class): called like the
    step, with what it is bound to as the first argument; a value that travels as both."""

    __slots__ = ("bound", "step")

    def __init__(self, step: Step[Any, Any], bound: Any) -> None:
        self.step = step
        self.bound = bound

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self.step(self.bound, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<durable.Step {self.step.name!r} bound to {self.bound!r}>"

    def __durable_serialize__(self) -> dict[str, Any]:
        return {"step": self.step, "bound": self.bound}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, Any]) -> BoundStep:
        return cls(data["step"], data["bound"])


#: Every step defined in this process, by name: a worker runs the steps it finds here.
steps: Registry[Step[Any, Any]] = Registry("step")


@overload
def step(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Step[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    max_retries: int = 3,
    timeout: Duration | None = None,
    retry_delay: Duration = 1.0,
    max_retry_delay: Duration = 300.0,
    serializer: Serializer = "json",
    queue: str | Queue | None = None,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Step[P, R]]: ...


def step(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    timeout: Duration | None = None,
    retry_delay: Duration = 1.0,
    max_retry_delay: Duration = 300.0,
    serializer: Serializer = "json",
    queue: str | Queue | None = None,
) -> Any:
    """Declare a durable step.

    It runs at least once and its result is recorded exactly once. ``max_retries`` counts
    retries after the first attempt (default 3, so up to 4 attempts); ``timeout`` cancels an
    attempt that runs too long; ``retry_delay``/``max_retry_delay`` shape the back-off.
    ``queue`` (a :class:`~durable.Queue` or its name) makes each attempt wait for that queue's
    admission: its concurrency and rate limits hold across every worker of the store.
    """
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    policy = RetryPolicy(
        max_retries=max_retries,
        initial_delay=parse_duration(retry_delay, what="retry_delay"),
        max_delay=parse_duration(max_retry_delay, what="max_retry_delay"),
    )
    if policy.initial_delay > policy.max_delay:
        raise ValueError(f"retry_delay ({retry_delay!r}) must not exceed max_retry_delay ({max_retry_delay!r})")
    timeout_s = None if timeout is None else parse_duration(timeout, what="step timeout")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"step timeout must be positive, got {timeout!r}")

    def decorate(f: Callable[P, Coroutine[Any, Any, R]]) -> Step[P, R]:
        target = f.__func__ if isinstance(f, classmethod) else f
        s = Step(f, name=name or default_name(target), retry=policy, timeout=timeout_s, serializer=serializer, queue=queue)
        steps.add(s.name, s, target, explicit=name is not None)
        return s

    return decorate(fn) if fn is not None else decorate
