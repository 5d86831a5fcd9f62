"""Hooks and webhooks as workflow code sees them: a workflow pauses until something outside resumes it.

A hook is created by a recorded command (``hook_created``, or ``hook_conflict`` when another
live hook holds the token). Each ``resume_hook`` appends one ``hook_received`` event to the
hook's run; replay delivers them in log order, each to the oldest awaiter still waiting, or
buffers it until the workflow awaits. An awaiter that is cancelled (a lost race against a
timeout) is removed, so it never swallows a payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections import deque
from collections.abc import Generator
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

from .._core import codec as _codec
from .._core.errors import HookConflictError
from .._core.events import Event
from .._core.ids import WEBHOOK_PATH, check_token
from .._core.registry import Registry
from .context import WorkflowHost, workflow_host
from .http import Request, Response

T = TypeVar("T")


class TypedHook(Protocol):
    """A hook definition a resume validates payloads with (``durable.define_hook``)."""

    name: str

    def validate(self, payload: Any) -> Any: ...


#: Typed hooks defined in this process, by name: every resume path looks their schema up here.
hook_definitions: Registry[TypedHook] = Registry("hook")


class Hook(Generic[T]):
    """Awaitable (one payload per ``await``) and async-iterable (every payload, in order)."""

    def __init__(self, instance: WorkflowHost, token: str | None, metadata: dict[str, Any] | None) -> None:
        self._instance = instance
        self._payloads: deque[Any] = deque()
        self._awaiters: deque[asyncio.Future[Any]] = deque()
        self._conflict = False
        self._disposed = False
        encoded = _codec.encode(metadata, root="hook metadata") if metadata else None
        self.correlation_id, self.token = instance.create_hook(self, token, encoded)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.token!r}>"

    # -- awaiting ---------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, T]:
        return self._next().__await__()

    async def _next(self) -> T:
        if self._conflict:
            raise HookConflictError(self.token)
        if self._payloads:
            return typing.cast(T, self._payloads.popleft())
        if self._disposed:
            raise RuntimeError(f"hook {self.token!r} was disposed")
        future: asyncio.Future[Any] = self._instance.loop.create_future()
        self._awaiters.append(future)
        try:
            return typing.cast(T, await future)
        except asyncio.CancelledError:
            # A lost race (timeout, cancelled task): give back a payload that reached this
            # awaiter too late, and never let a cancelled awaiter swallow the next one.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._payloads.appendleft(future.result())
            raise
        finally:
            if not future.done():
                future.cancel()
            with contextlib.suppress(ValueError):  # already taken by a delivery
                self._awaiters.remove(future)

    def __aiter__(self) -> Hook[T]:
        return self

    async def __anext__(self) -> T:
        return await self._next()

    # -- lifecycle --------------------------------------------------------------------------

    def dispose(self) -> None:
        """Free the token now (it is freed anyway when the run ends); later resumes get HookNotFound."""
        if self._disposed:
            return
        self._disposed = True
        self._instance.dispose_hook(self.correlation_id)
        for future in self._awaiters:
            if not future.done():
                future.set_exception(RuntimeError(f"hook {self.token!r} was disposed"))
        self._awaiters.clear()

    def __enter__(self) -> Hook[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    # -- deliveries from the replay engine ---------------------------------------------------

    def deliver(self, event: Event) -> None:
        try:
            value: Any = _codec.decode(event.data or b"", allow_pickle=False, root="hook payload")
            error: BaseException | None = None
        except Exception as exc:
            value, error = None, exc
        while self._awaiters:
            future = self._awaiters.popleft()
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)
                return
        if error is None:
            self._payloads.append(value)

    def conflict(self) -> None:
        self._conflict = True
        error = HookConflictError(self.token)
        while self._awaiters:
            future = self._awaiters.popleft()
            if not future.done():
                future.set_exception(error)


def create_hook(*, token: str | None = None, metadata: dict[str, Any] | None = None) -> Hook[Any]:
    """Create a hook in a workflow. ``token`` defaults to a random unguessable one (same on replay)."""
    instance = workflow_host("create_hook")
    check_token(token)
    # User metadata lives under "user": it can never look like our own keys ("webhook", "schema").
    return Hook(instance, token, {"user": metadata} if metadata else None)


RespondWith = Response | Literal["manual"] | None


class Webhook(Hook[Request]):
    """A hook resumed by plain HTTP requests at :attr:`url`; each ``await`` yields a :class:`Request`."""

    def __init__(self, instance: WorkflowHost, token: str | None, respond_with: RespondWith) -> None:
        if respond_with is not None and respond_with != "manual" and not isinstance(respond_with, Response):
            raise TypeError(f"respond_with must be a durable.Response, 'manual' or None, got {respond_with!r}")
        mode = "manual" if respond_with == "manual" else ("static" if respond_with is not None else "default")
        metadata: dict[str, Any] = {"webhook": mode}
        if isinstance(respond_with, Response):
            metadata["response"] = respond_with
        super().__init__(instance, token, metadata)
        self.respond_with = respond_with

    @property
    def url(self) -> str:
        base = (self._instance.metadata.url or "").rstrip("/")
        return f"{base}{WEBHOOK_PATH}{quote(self.token, safe='')}"


def create_webhook(*, token: str | None = None, respond_with: RespondWith = None) -> Webhook:
    """Create a webhook in a workflow: ``respond_with`` a static :class:`Response`, ``"manual"``, or None (202)."""
    instance = workflow_host("create_webhook")
    check_token(token)
    return Webhook(instance, token, respond_with)
