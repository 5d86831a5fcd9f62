"""Hook payload schemas: a pydantic model, a dataclass, an object with ``validate()``, or a callable.

``validate_payload`` checks a payload (plain JSON data from outside, or already the right
type) against a schema and returns the converted value, or raises HookValidationError listing
every problem. Dataclass schemas are followed field by field: nested dataclasses, list / tuple /
set / dict element types, Optional and unions, Literal, and the JSON scalars.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from .._core.errors import HookValidationError


def check_schema(schema: Any) -> None:
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
