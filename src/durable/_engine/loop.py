"""The deterministic event loop that workflow code runs on.

The replay engine drives it by hand: :meth:`run_until_idle` runs ready callbacks until none
remain; then the engine delivers the next recorded event and runs it to idle again. Nothing
here reads a clock or touches I/O, so the same events always produce the same interleaving
of tasks -- which is what makes ``asyncio.gather``, task groups and ``asyncio.wait`` replay
identically.

Timers (``call_at``/``call_later``) in the future are handed to the engine, which turns them
into durable waits; ``loop.time()`` is workflow time, the timestamp of the last event
consumed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any, Protocol

from .._core.durations import MAX_DURATION

log = logging.getLogger("durable.replay")


class TimerSink(Protocol):
    def timer_scheduled(self, handle: asyncio.TimerHandle) -> None: ...
    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None: ...


class WorkflowIOError(RuntimeError):
    """Raised when workflow code tries to do I/O or threads on the deterministic loop."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not allowed in workflow code: do I/O in a @durable.step instead")


class DurableTimer(asyncio.TimerHandle):
    """A timer of the workflow loop; ``durable_id`` names the durable wait it became."""

    durable_id: str | None = None


class _Activation:
    """``with loop.activate():`` -- a plain class, not ``contextlib.contextmanager``: it is entered
    on every delivery, and the generator-based manager costs a few µs more each time."""

    __slots__ = ("_loop", "_outer_hooks", "_outer_loop")

    def __init__(self, loop: DeterministicLoop) -> None:
        self._loop = loop

    def __enter__(self) -> None:
        loop = self._loop
        self._outer_loop = asyncio.events._get_running_loop()
        self._outer_hooks = sys.get_asyncgen_hooks()
        asyncio.events._set_running_loop(loop)
        sys.set_asyncgen_hooks(loop._asyncgen_firstiter, loop._asyncgen_finalizer)  # positional: parsed faster
        loop._running = True

    def __exit__(self, *exc: object) -> None:
        self._loop._running = False
        sys.set_asyncgen_hooks(*self._outer_hooks)
        asyncio.events._set_running_loop(self._outer_loop)


# Tasks a loop keeps before it drops those that finished (see DeterministicLoop.create_task).
_KEEP_TASKS = 8


class DeterministicLoop(asyncio.AbstractEventLoop):
    """An asyncio loop with no clock and no I/O, run to idle by the replay engine."""

    def __init__(self, sink: TimerSink, now: float = 0.0) -> None:
        self._sink = sink
        self._ready: list[asyncio.Handle] = []
        self._now = now
        self._running = False
        self._closed = False
        self._task_factory: Any = None
        self._asyncgens: list[Any] = []
        # The tasks made here, finished ones dropped now and then (see create_task): a list, not a
        # set with a done callback per task -- most runs make one task, and a set is 216 bytes.
        self._tasks: list[asyncio.Task[Any]] = []
        self._tasks_kept = _KEEP_TASKS

    # -- driving -------------------------------------------------------------------------

    def set_time(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def activate(self) -> _Activation:
        """Make this the running loop of the thread (and own async-generator hooks) for a while.

        The engine activates the loop once per batch of deliveries, not per idle point: saving
        and restoring the outer loop and hooks is a large part of a delivery's cost.
        """
        return _Activation(self)

    def run_until_idle(self) -> None:
        """Run every ready callback, including those they schedule, until none is left (inside :meth:`activate`).

        ``SystemExit`` or ``KeyboardInterrupt`` raised by workflow code (``sys.exit()``, argparse)
        is the raising task's exception -- asyncio has set it there -- and fails that run; it must
        not escape into the runtime and end the whole worker with every other run in it.
        """
        # Batches in FIFO order, as asyncio's own loop does; a list, not a deque: the queue of an
        # idle loop is an empty list (56 bytes) where a deque keeps a 624-byte block per instance.
        while self._ready:
            batch, self._ready = self._ready, []
            for handle in batch:
                if not handle._cancelled and not self._closed:  # close() drops what was still ready
                    try:  # noqa: SIM105  # contextlib.suppress costs a context manager per callback here
                        handle._run()
                    except (SystemExit, KeyboardInterrupt):
                        pass

    def _asyncgen_firstiter(self, agen: Any) -> None:
        self._asyncgens.append(agen)

    def _asyncgen_finalizer(self, agen: Any) -> None:
        # A workflow's async generator collected unfinished: close it on this loop, never on
        # the runtime's real loop (that would run workflow code with real I/O and time).
        if not self._closed:
            self.call_soon(self.create_task, agen.aclose())

    # -- scheduling ------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    # typeshed types these with TypeVarTuple; the loose signatures below accept the same calls.
    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Context | None = None) -> asyncio.Handle:  # type: ignore[override]
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self, delay: float, callback: Callable[..., Any], *args: Any, context: Context | None = None
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., Any], *args: Any, context: Context | None = None
    ) -> asyncio.TimerHandle:
        if not when - self._now <= MAX_DURATION:  # NaN, infinite, or past 100 years: it could not be stored
            raise ValueError(
                "a timer in workflow code (asyncio.sleep, wait_for, a timeout) must be a finite delay of at "
                f"most 100 years; got {when - self._now!r} seconds"
            )
        handle = DurableTimer(when, callback, args, self, context)
        if when <= self._now:
            self._ready.append(handle)
        else:
            handle._scheduled = True  # type: ignore[attr-defined]
            self._sink.timer_scheduled(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._sink.timer_cancelled(handle)

    def fire_timer(self, handle: asyncio.TimerHandle) -> None:
        handle._scheduled = False  # type: ignore[attr-defined]
        if not handle._cancelled:
            self._ready.append(handle)

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any], *, name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[Any]:
        if self._task_factory is not None:
            task: asyncio.Task[Any] = self._task_factory(self, coro, context=context)
        else:
            task = asyncio.Task(coro, loop=self, name=name, context=context)
        tasks = self._tasks
        if len(tasks) >= self._tasks_kept:  # (amortised: at most as many finished ones as live ones are kept)
            tasks[:] = [t for t in tasks if not t.done()]
            self._tasks_kept = max(_KEEP_TASKS, 2 * len(tasks))
        tasks.append(task)
        return task

    def pending_tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks made on this loop that have not finished.

        Its own record, not ``asyncio.all_tasks(loop)``: that walks every task of the process
        -- with a thousand runs live, closing each run's instance would cost a thousand steps.
        """
        return [task for task in self._tasks if not task.done()]

    def set_task_factory(self, factory: Any) -> None:
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        return self._task_factory

    # -- state -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # "Task was destroyed but it is pending" and friends are expected when a suspended
        # workflow is evicted; they are not errors of the run.
        log.debug("workflow loop: %s", context.get("message"), exc_info=context.get("exception"))

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def get_exception_handler(self) -> Any:
        return None

    def set_exception_handler(self, handler: Any) -> None:
        pass

    # -- everything real is refused --------------------------------------------------------

    def run_forever(self) -> None:
        raise WorkflowIOError("running the workflow loop directly")

    def run_until_complete(self, future: Any) -> Any:
        raise WorkflowIOError("running the workflow loop directly")

    def stop(self) -> None:
        pass

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any, context: Context | None = None) -> Any:  # type: ignore[override]
        raise WorkflowIOError("call_soon_threadsafe")

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:  # type: ignore[override]
        raise WorkflowIOError("run_in_executor / asyncio.to_thread")



def _refuse(name: str) -> Callable[..., Any]:
    def refuse(self: DeterministicLoop, *args: Any, **kwargs: Any) -> Any:
        raise WorkflowIOError(f"loop.{name}()")

    refuse.__name__ = name
    return refuse


# Sockets, subprocesses, signal handlers, file descriptors and DNS: all real I/O.
for _name in (
    "create_connection", "create_server", "create_unix_connection", "create_unix_server",
    "create_datagram_endpoint", "getaddrinfo", "getnameinfo", "subprocess_exec", "subprocess_shell",
    "add_reader", "add_writer", "add_signal_handler", "sock_recv", "sock_sendall", "sock_connect",
    "sock_accept", "connect_read_pipe", "connect_write_pipe", "sendfile", "start_tls",
):
    setattr(DeterministicLoop, _name, _refuse(_name))
