"""``define_hook``: typed hooks, whose payloads are validated against a schema before they are recorded.

A definition is registered by name, so that every resume path in this process (the HTTP
endpoint and the CLI included) validates payloads for hooks created from it.
"""

from __future__ import annotations

import typing
from typing import Any, Generic, TypeVar

from ._api import get_runtime
from ._client.projection import ResumeResult
from ._core.durations import Duration
from ._core.ids import check_token
from ._core.registry import default_name
from ._workflow.context import workflow_host
from ._workflow.hooks import Hook, hook_definitions
from ._workflow.schemas import check_schema, validate_payload

T = TypeVar("T")


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
        instance = workflow_host("create_hook")
        check_token(token)
        return Hook(instance, token, {"schema": self.name, **({"user": metadata} if metadata else {})})

    def validate(self, payload: Any) -> T:
        """Check ``payload`` against the schema and return the converted value; HookValidationError lists the problems."""
        return typing.cast(T, validate_payload(self.schema, payload))

    async def resume(self, token: str, payload: Any, *, wait: Duration | None = None) -> ResumeResult:
        """Validate ``payload`` and resume the hook holding ``token``; ``wait`` waits for it to be created."""
        # Validated (and converted) once, here: the runtime must not validate the converted value again.
        return await (await get_runtime()).resume_hook(token, self.validate(payload), validate=False, wait=wait)


def define_hook(*, schema: type[T] | Any, name: str | None = None) -> HookDefinition[T]:
    """Define a typed hook. ``schema``: a pydantic model, a dataclass, an object with ``validate(value)``, or a callable."""
    check_schema(schema)
    hook_name = name or default_name(schema if hasattr(schema, "__qualname__") else type(schema))
    definition: HookDefinition[T] = HookDefinition(schema, hook_name)
    hook_definitions.add(hook_name, definition, schema, explicit=name is not None)
    return definition
