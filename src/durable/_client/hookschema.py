"""What a typed hook expects, for people resuming it by hand: a JSON Schema and an example payload.

Known only in a process where the hook's ``define_hook`` ran (it is looked up by name, as a
resume's validation is). A pydantic model describes itself; a dataclass is described from
its field types, following what ``validate_payload`` checks (unknown fields refused, fields
without a default required). A validator object or callable has no schema to show.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal

from .._workflow.hooks import hook_definitions

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
    type(None): {"type": "null"}, None: {"type": "null"},
}


def expected_payload(schema_name: str) -> tuple[dict[str, Any] | None, Any, bool]:
    """``(json_schema, example, known)`` for the hook definition ``schema_name``.

    ``known`` is False when no definition of that name exists in this process (a resume here
    is then refused rather than passed on unchecked); a known definition without a describable
    schema gives ``(None, None, True)``.
    """
    definition = hook_definitions.resolve(schema_name)
    if definition is None:
        return None, None, False
    schema = getattr(definition, "schema", None)  # HookDefinition keeps it; other TypedHooks may not
    try:
        described = json_schema(schema)
    except Exception:  # a schema we cannot describe still validates: only its description is missing
        described = None
    return described, (example(described) if described is not None else None), True


def json_schema(schema: Any) -> dict[str, Any] | None:
    """A JSON Schema for a hook schema (pydantic model or dataclass); None for anything else."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        value = schema.model_json_schema()
        return value if isinstance(value, dict) else None
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        return _of(schema, depth=0)
    return None


def _of(t: Any, depth: int) -> dict[str, Any]:
    if depth > 8:  # a recursive dataclass: stop describing, accept anything below
        return {}
    if t is Any:
        return {}
    if t in _SCALARS:
        return dict(_SCALARS[t])
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_of(a, depth + 1) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return {"enum": [m.value for m in t]}
    if isinstance(t, type) and dataclasses.is_dataclass(t):
        hints = typing.get_type_hints(t)
        fields = [f for f in dataclasses.fields(t) if f.init]
        out: dict[str, Any] = {
            "title": t.__name__, "type": "object",
            "properties": {f.name: _of(hints.get(f.name, Any), depth + 1) for f in fields},
            "required": [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING],
            "additionalProperties": False,
        }
        for f in fields:
            if f.default is not dataclasses.MISSING and _is_plain(f.default):
                out["properties"][f.name]["default"] = f.default
        return out
    container = origin or t
    if container in (list, tuple, set, frozenset):
        if container is tuple and args and args[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [_of(a, depth + 1) for a in args], "minItems": len(args),
                    "maxItems": len(args)}
        return {"type": "array", "items": _of(args[0], depth + 1) if args else {}}
    if container is dict:
        return {"type": "object", "additionalProperties": _of(args[1], depth + 1) if len(args) == 2 else {}}
    return {}  # an annotation the validator does not check either


def _is_plain(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def example(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A payload that fits ``schema``: required fields only, each its default or the simplest value
    of its type. ``$ref``s are followed into ``root``'s ``$defs`` (where pydantic puts nested models)."""
    root = schema if root is None else root
    if depth > 8 or not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return example(root.get("$defs", {}).get(ref[len("#/$defs/"):], {}), root, depth + 1)
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        usable = [o for o in options if o.get("type") != "null"] or options
        return example(usable[0], root, depth + 1)
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("prefixItems"), list):  # a fixed tuple: one of each
        return [example(item, root, depth + 1) for item in schema["prefixItems"]]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: example(properties.get(name, {}), root, depth + 1) for name in schema.get("required", [])}
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}.get(str(kind))
