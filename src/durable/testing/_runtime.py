"""``TestRuntime``: a real runtime on a memory store, in virtual time, with step fakes.

Everything the runtime records -- events, durable sleeps and ``asyncio.sleep``/``wait_for``
deadlines in workflows, step retry back-offs, hook timeouts, leases -- reads the time from its
:class:`VirtualClock`. With ``autojump`` (the default), when the runtime has nothing to do but
wait for a deadline and nothing else on the event loop is ready to run, the clock jumps to that
deadline (as trio's ``MockClock(autojump_threshold=0)`` does and Temporal's time-skipping test
server does for timers), so a workflow that sleeps three days finishes in milliseconds. With
``autojump=False`` time moves only through ``await rt.clock.advance("3 days")``, which steps
through each deadline on the way, in order, as the days would pass.

Steps run for real (step bodies, and real ``asyncio.sleep`` inside them, are not virtual), unless
replaced: ``rt.replace_step(charge, fake)`` runs ``fake`` with the step's arguments instead,
recorded, retried and with metadata exactly as the step would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import anyio

from .._core.durations import Duration, parse_duration
from .._worker.runtime import Runtime
from .._workflow.step import BoundStep, Step
from .._workflow.workflow import Workflow
from ..stores._base import Store

# Loop iterations with nothing ready before the runtime counts as idle (tasks woken by a
# notification need a few to get going: a resumed hook, a test awaiting a run's result).
_QUIET_ROUNDS = 3
_MAX_SETTLE_ROUNDS = 200


class VirtualClock:
    """The time of a :class:`TestRuntime`: starts at ``start`` (default: now), moves by itself when
    ``autojump`` and the runtime only waits for a deadline, or by :meth:`advance`."""

    def __init__(self, start: datetime | float | None = None, *, autojump: bool = True) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValueError("start must be an aware datetime (e.g. datetime(2025, 1, 1, tzinfo=UTC)) or epoch seconds")
            start = start.timestamp()
        self._now = float(start) if start is not None else datetime.now(UTC).timestamp()
        self.autojump = autojump
        self._runtime: TestRuntime | None = None
        self.jumps = 0  # how many times autojump moved the clock

    def __repr__(self) -> str:
        return f"<VirtualClock {self.now().isoformat()}{' autojump' if self.autojump else ''}>"

    # -- the Clock protocol (what the runtime calls) -------------------------------------------

    def time(self) -> float:
        return self._now

    def now(self) -> datetime:
        """The virtual time as an aware datetime (``durable.now()`` in a workflow follows it)."""
        return datetime.fromtimestamp(self._now, UTC)

    async def sleep_until(self, wake: anyio.Event, due: float | None, poll: float) -> bool:
        if due is not None and due <= self._now:
            return False
        if self.autojump and due is not None and await self._idle(wake):
            await self._move_to(due)
            self.jumps += 1
            return False
        with anyio.move_on_after(poll):  # woken by the store, or by advance() (it notifies "work")
            await wake.wait()
            return True
        return wake.is_set()

    # -- moving it by hand ---------------------------------------------------------------------

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward by ``duration`` (``"3 days"``, seconds, a timedelta), firing every
        deadline on the way in order and letting the runtime run what each one wakes; returns when
        the runtime is idle at the new time."""
        seconds = parse_duration(duration, what="clock.advance duration")  # ValueError if negative
        target = self._now + seconds
        runtime = self._attached()
        while True:
            await self.settle()
            due = await runtime.next_due()
            if due is None or due > target:
                break
            await self._move_to(max(due, self._now))
        await self._move_to(target)
        await self.settle()

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait (in real time, up to ``timeout`` seconds) until the runtime has nothing left to do now."""
        runtime = self._attached()
        with anyio.fail_after(timeout):
            await self._until_idle()
            while await runtime.due_now():
                runtime.store.notifier.notify("work")
                await anyio.sleep(0.001)
                await self._until_idle()

    async def _until_idle(self) -> None:
        while True:
            if await self._idle(None):
                return
            await anyio.sleep(0.001)  # a step or an invocation is running: give it real time

    # -- internals -------------------------------------------------------------------------------

    def _attached(self) -> TestRuntime:
        if self._runtime is None or not self._runtime.running:
            raise RuntimeError("the clock moves its TestRuntime: use it inside `async with TestRuntime() as rt:`")
        return self._runtime

    async def _move_to(self, when: float) -> None:
        self._now = max(self._now, when)
        runtime = self._runtime
        if runtime is not None and runtime.running:
            await runtime.liveness.beat()  # the leases live in virtual time too
            runtime.store.notifier.notify("work")

    async def _idle(self, wake: anyio.Event | None) -> bool:
        """True once nothing else is ready to run for a few loop iterations and the runtime runs no
        step or invocation (False at once if ``wake`` is set meanwhile: there is work)."""
        runtime = self._runtime
        if runtime is None:
            return False
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's queue of callbacks to run next
        quiet = 0
        for _ in range(_MAX_SETTLE_ROUNDS):
            await asyncio.sleep(0)
            if wake is not None and wake.is_set():
                return False
            if runtime.busy() or (ready is not None and len(ready) > 0):
                quiet = 0
                continue
            quiet += 1
            if quiet >= _QUIET_ROUNDS:
                return True
        return False


class StepReplacement:
    """A step's body replaced for one runtime; ``with`` restores it on exit (or call :meth:`restore`)."""

    def __init__(self, bodies: dict[str, Callable[..., Any]], name: str, fake: Callable[..., Any]) -> None:
        self._bodies = bodies
        self.name = name
        self._previous = bodies.get(name)
        bodies[name] = fake

    def __enter__(self) -> StepReplacement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        if self._previous is None:
            self._bodies.pop(self.name, None)
        else:
            self._bodies[self.name] = self._previous


class TestRuntime(Runtime):
    """A :class:`~durable.Runtime` for tests: ``memory://`` store, steps run for real, virtual time.

    ::

        async with durable.testing.TestRuntime() as rt:
            run = await rt.start(reminder, "ann")       # sleeps 3 days, then a step
            assert await run.result() == "reminded ann"  # in milliseconds

    ``autojump=False``: time moves only by ``await rt.clock.advance("1 day")``. ``start``: the
    virtual time it begins at (an aware datetime or epoch seconds; default now). Other options
    are :class:`~durable.Runtime`'s.
    """

    __test__ = False  # pytest: a helper, not a test class
    clock: VirtualClock

    def __init__(
        self,
        store: str | Store = "memory://",
        *,
        workflows: Iterable[Workflow[Any, Any]] | None = None,
        autojump: bool = True,
        start: datetime | float | None = None,
        **options: Any,
    ) -> None:
        clock = VirtualClock(start, autojump=autojump)
        options.setdefault("heartbeat_interval", 0.05)
        options.setdefault("poll_interval", 0.2)
        super().__init__(store, workflows=workflows, clock=clock, **options)
        self.clock = clock
        clock._runtime = self

    async def __aenter__(self) -> TestRuntime:
        await super().__aenter__()
        return self

    def __repr__(self) -> str:
        return f"<durable.testing.TestRuntime {self.store.url} {self.clock!r}>"

    @property
    def running(self) -> bool:
        return self._running

    def replace_step(self, step: Step[Any, Any] | BoundStep, fake: Callable[..., Any]) -> StepReplacement:
        """Run ``fake`` (async or not, called with the step's arguments) instead of ``step``'s body in
        this runtime, recorded, retried and with metadata as the step is; it may raise
        ``RetryableError``/``FatalError`` to test error paths. For the rest of the runtime's life,
        or within ``with rt.replace_step(...):``."""
        target = step.step if isinstance(step, BoundStep) else step
        if not isinstance(target, Step):
            raise TypeError(f"replace_step takes a @durable.step, got {step!r}")
        if not callable(fake):
            raise TypeError(f"the replacement of step {target.name!r} must be callable, got {fake!r}")
        return StepReplacement(self.steps.bodies, target.name, fake)

    # -- what the clock asks -----------------------------------------------------------------

    def busy(self) -> bool:
        """Running a step or an invocation (its only other tasks are the dispatcher and the heartbeat)."""
        return len(self._tasks) > 2 or self.slots.free < self.slots.capacity

    async def next_due(self) -> float | None:
        """The earliest time a run or a step of this runtime becomes due."""
        return await self.store.next_wake(
            self._claimable_workflows(), self._step_names(), self.clock.time(), self._claimed_versions()
        )

    async def due_now(self) -> bool:
        due = await self.next_due()
        return due is not None and due <= self.clock.time()
