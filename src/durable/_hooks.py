"""Hooks and webhooks: a workflow pauses until something outside resumes it.

A hook is created by a recorded command (``hook_created``, or ``hook_conflict`` when another
live hook holds the token). Each ``resume_hook`` appends one ``hook_received`` event to the
hook's run; replay delivers them in log order, each to the oldest awaiter still waiting, or
buffers it until the workflow awaits. An awaiter that is cancelled (a lost race against a
timeout) is removed, so it never swallows a payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import types
import typing
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import parse_qsl

from ._context import current_instance, current_step
from ._core import codec as _codec
from ._core.errors import HookConflictError, HookValidationError, NotInWorkflowError
from ._core.events import Event
from ._core.ids import is_text
from ._core.registry import Registry

if TYPE_CHECKING:
    from ._replay import WorkflowInstance
    from .stores._base import HookRecord

T = TypeVar("T")
WEBHOOK_PATH = "/.well-known/workflow/v1/webhook/"


def hook_metadata(record: HookRecord | None) -> dict[str, Any]:
    """What a stored hook carries: ``"schema"`` (a define_hook name), ``"webhook"`` (its answer
    mode) and ``"user"`` (create_hook's metadata); ``{}`` when it has none. Raises
    SerializationError when it cannot be decoded here: callers that check a schema must not
    skip the check because of it."""
    if record is None or not record.metadata:
        return {}
    value = _codec.decode(record.metadata, root="hook metadata")
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class ResumeResult:
    run_id: str
    hook_id: str
    token: str


class Hook(Generic[T]):
    """Awaitable (one payload per ``await``) and async-iterable (every payload, in order)."""

    def __init__(self, instance: WorkflowInstance, token: str | None, metadata: dict[str, Any] | None) -> None:
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
    instance = current_instance.get()
    if instance is None:
        raise NotInWorkflowError("create_hook")
    _check_token(token)
    # User metadata lives under "user": it can never look like our own keys ("webhook", "schema").
    return Hook(instance, token, {"user": metadata} if metadata else None)


def _check_token(token: str | None) -> None:
    if token is not None and (not is_text(token) or len(token) > 512):
        raise ValueError(f"hook token must be non-empty text of at most 512 characters, got {token!r}")


# -- typed hooks ---------------------------------------------------------------------------------


class HookDefinition(Generic[T]):
    """A typed hook: ``.create()`` in workflows awaits to ``T``; ``.resume()`` validates first.

    The definition is registered by ``name`` so that any resume path in this process (the HTTP
    endpoint included) validates payloads for hooks created from it.
    """

    def __init__(self, schema: Any, name: str) -> None:
        self.schema = schema
        self.name = name

    def __repr__(self) -> str:
        return f"<HookDefinition {self.name!r}>"

    def create(self, *, token: str | None = None, metadata: dict[str, Any] | None = None) -> Hook[T]:
        instance = current_instance.get()
        if instance is None:
            raise NotInWorkflowError("create_hook")
        _check_token(token)
        return Hook(instance, token, {"schema": self.name, **({"user": metadata} if metadata else {})})

    def validate(self, payload: Any) -> T:
        """Check ``payload`` against the schema and return the converted value; HookValidationError lists the problems."""
        return typing.cast(T, validate_payload(self.schema, payload))

    async def resume(self, token: str, payload: Any) -> ResumeResult:
        from ._api import get_runtime

        # Validated (and converted) once, here: the runtime must not validate the converted value again.
        return await (await get_runtime()).resume_hook(token, self.validate(payload), validate=False)


#: Typed hooks defined in this process, by name: resumes look their schema up here.
hook_definitions: Registry[HookDefinition[Any]] = Registry("hook")


def define_hook(*, schema: type[T] | Any, name: str | None = None) -> HookDefinition[T]:
    """Define a typed hook. ``schema``: a pydantic model, a dataclass, an object with ``validate(value)``, or a callable."""
    _check_schema(schema)
    hook_name = name or getattr(schema, "__qualname__", None) or type(schema).__qualname__
    definition: HookDefinition[T] = HookDefinition(schema, hook_name)
    hook_definitions.add(hook_name, definition, schema)
    return definition


def _check_schema(schema: Any) -> None:
    """Refuse at definition what could never validate a payload (rather than at the first resume)."""
    if hasattr(schema, "model_validate"):
        return
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        _field_types(schema)  # annotations that cannot be resolved fail here, not at a resume
        return
    if callable(getattr(schema, "validate", None)) or callable(schema):
        return
    raise TypeError(f"hook schema must be a pydantic model, a dataclass, an object with validate(), or a callable; got {schema!r}")


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as exc:  # NameError for a type defined where the module cannot see it
        raise TypeError(
            f"cannot resolve the field types of {cls.__qualname__}: {exc} (define the types it uses at module level)"
        ) from None


def validate_payload(schema: Any, payload: Any) -> Any:
    if hasattr(schema, "model_validate"):  # pydantic
        try:
            return schema.model_validate(payload)
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            if callable(errors):
                raise HookValidationError(
                    [f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg')}" for e in errors()]
                ) from None
            raise HookValidationError([str(exc)]) from None
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        return _validate_dataclass(schema, payload)
    validate = getattr(schema, "validate", None)
    check: Callable[[Any], Any] | None = validate if callable(validate) else (schema if callable(schema) else None)
    if check is None:
        raise TypeError(f"hook schema must be a pydantic model, a dataclass, or have validate(); got {schema!r}")
    try:
        result = check(payload)
    except HookValidationError:
        raise
    except Exception as exc:
        raise HookValidationError([f"{type(exc).__name__}: {exc}"]) from None
    if result is False:
        raise HookValidationError([f"rejected by {getattr(check, '__qualname__', check)!s}"])
    return payload if result is None or result is True else result


def _validate_dataclass(cls: type, payload: Any) -> Any:
    problems: list[str] = []
    value = _convert(payload, cls, "", problems)
    if problems:
        raise HookValidationError(problems)
    return value


def _convert(value: Any, expected: Any, path: str, problems: list[str]) -> Any:
    """``value`` (plain JSON data, or already the right type) as ``expected``; appends problems.

    Follows the annotations a dataclass schema uses: nested dataclasses from objects, list /
    tuple / set / dict element types, Optional and unions, Literal, and the JSON scalars
    (an int is a float; a bool is not an int).
    """
    where = path or "(root)"
    if expected is Any:
        return value
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if value is not None and len(others) == 1:  # Optional[X]: report X's own problems
            return _convert(value, others[0], path, problems)
        for option in args:
            attempt: list[str] = []
            converted = _convert(value, option, path, attempt)
            if not attempt:
                return converted
        problems.append(f"{where}: expected {_type_name(expected)}, got {type(value).__name__}")
        return value
    if origin is Literal:
        if value not in args:
            problems.append(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if isinstance(expected, type) and dataclasses.is_dataclass(expected):
        return _convert_dataclass(value, expected, path, problems)
    if origin in (list, tuple, set, frozenset) or expected in (list, tuple, set, frozenset):
        container = origin or expected
        if not isinstance(value, list | tuple | set | frozenset) or (container is list and not isinstance(value, list)):
            problems.append(f"{where}: expected {_type_name(expected)}, got {type(value).__name__}")
            return value
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                problems.append(f"{where}: expected {len(args)} items, got {len(value)}")
                return value
            return tuple(_convert(v, t, f"{path}[{i}]", problems) for i, (v, t) in enumerate(zip(value, args, strict=True)))
        item_type = args[0] if args else Any
        return container(_convert(v, item_type, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object, got {type(value).__name__}")
            return value
        value_type = args[1] if len(args) == 2 else Any
        return {k: _convert(v, value_type, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    if expected is None or expected is type(None):
        ok = value is None
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(origin or expected, type):
        ok = isinstance(value, origin or expected)
    else:
        ok = True  # an annotation we cannot check (a TypeVar, a string, ...): accept the value
    if not ok:
        problems.append(f"{where}: expected {_type_name(expected)}, got {type(value).__name__}")
    return value


def _convert_dataclass(value: Any, cls: type, path: str, problems: list[str]) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        problems.append(f"{path or '(root)'}: expected an object with the fields of {cls.__name__}, got {type(value).__name__}")
        return value
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _field_types(cls)
    prefix = f"{path}." if path else ""
    before = len(problems)
    problems.extend(f"{prefix}{key}: unknown field" for key in value if key not in fields)
    kwargs = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{prefix}{name}: field required")
            continue
        kwargs[name] = _convert(value[name], hints.get(name, Any), f"{prefix}{name}", problems)
    if len(problems) > before:
        return value
    return cls(**kwargs)


def _type_name(t: Any) -> str:
    return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")


# -- webhooks ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Response:
    """An HTTP response a webhook answers with: ``Response(json={...})``, ``Response(text=...)`` or raw ``body``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __init__(
        self, body: bytes | str | None = None, *, status: int = 200, headers: dict[str, str] | None = None,
        json: Any = None, text: str | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if json is not None:
            self.body = _json_dumps(json)
            self.headers.setdefault("content-type", "application/json")
        elif text is not None:
            self.body = text.encode()
            self.headers.setdefault("content-type", "text/plain; charset=utf-8")
        elif isinstance(body, str):
            self.body = body.encode()
        else:
            self.body = body or b""

    def __durable_serialize__(self) -> dict[str, Any]:
        return {"status": self.status, "headers": self.headers, "body": self.body}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, Any]) -> Response:
        return cls(data["body"], status=data["status"], headers=data["headers"])


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(slots=True)
class Request:
    """An HTTP request delivered to a webhook. Headers are lower-case; ``query`` keeps repeated keys as pairs."""

    method: str
    url: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    body: bytes
    run_id: str = ""
    response_namespace: str | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.text(), keep_blank_values=True))

    async def respond_with(self, response: Response) -> None:
        """Answer a manual-mode webhook; call it from a step (pass the request to the step)."""
        if self.response_namespace is None:
            raise RuntimeError("this webhook does not take a manual response (respond_with was not 'manual')")
        step = current_step.get()
        if step is None:
            raise RuntimeError("request.respond_with() must be called from within a @durable.step")
        writer = step.writer(self.response_namespace, self.run_id)
        await writer.write(response)
        await writer.close()

    def __durable_serialize__(self) -> dict[str, Any]:
        return {
            "method": self.method, "url": self.url, "headers": self.headers, "query": [list(p) for p in self.query],
            "body": self.body, "run_id": self.run_id, "response_namespace": self.response_namespace,
        }

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, Any]) -> Request:
        return cls(
            data["method"], data["url"], dict(data["headers"]), [tuple(p) for p in data["query"]], data["body"],
            data.get("run_id", ""), data.get("response_namespace"),
        )


RespondWith = Response | Literal["manual"] | None


class Webhook(Hook[Request]):
    """A hook resumed by plain HTTP requests at :attr:`url`; each ``await`` yields a :class:`Request`."""

    def __init__(self, instance: WorkflowInstance, token: str | None, respond_with: RespondWith) -> None:
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
        from urllib.parse import quote

        return f"{base}{WEBHOOK_PATH}{quote(self.token, safe='')}"


def create_webhook(*, token: str | None = None, respond_with: RespondWith = None) -> Webhook:
    """Create a webhook in a workflow: ``respond_with`` a static :class:`Response`, ``"manual"``, or None (202)."""
    instance = current_instance.get()
    if instance is None:
        raise NotInWorkflowError("create_webhook")
    _check_token(token)
    return Webhook(instance, token, respond_with)
