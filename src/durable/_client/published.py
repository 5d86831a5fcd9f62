"""Workflows as workers publish them in the store, for processes that do not have their code.

A worker publishes, when it opens, each workflow it executes: its name, its parameters (name,
kind, default as JSON where it is JSON), its serializer and its version label. A store-only
``durable serve`` or ``durable start`` then lists them and starts runs of them with JSON
arguments, checked against the published signature the way :class:`~durable.Client.start`
checks them against the function: a call that does not fit is ``TypeError`` before anything is
recorded, and one that fits is recorded bound (defaults applied), so it is the same run a
Python caller would have started.
"""

from __future__ import annotations

import inspect
import json
import weakref
from dataclasses import dataclass
from typing import Any

from .._core import codec as _codec
from .._core.errors import SerializationError
from .._core.registry import short_name
from .._workflow.workflow import Workflow
from ..stores._base import PublishedWorkflow

_KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}
_KIND_NAMES = {kind: name for name, kind in _KINDS.items()}


class _Unshown:
    """The default of a parameter whose default is not JSON: the worker applies it, not us."""

    def __repr__(self) -> str:
        return "<default>"


_UNSHOWN = _Unshown()


# A workflow's signature does not change: described once per definition, not at every runtime open.
_described: weakref.WeakKeyDictionary[Workflow[Any, Any], str] = weakref.WeakKeyDictionary()


def describe(wf: Workflow[Any, Any], worker_id: str, now: float) -> PublishedWorkflow:
    """What a worker publishes about ``wf``."""
    parameters = _described.get(wf)
    if parameters is None:
        parameters = _described[wf] = _parameters(wf)
    version = getattr(wf, "version", None)
    return PublishedWorkflow(
        name=wf.name, parameters=parameters, serializer=wf.serializer,
        version=None if version is None else str(version), worker_id=worker_id, published_at=now,
    )


def _parameters(wf: Workflow[Any, Any]) -> str:
    params: list[dict[str, Any]] = []
    for p in inspect.signature(wf.fn).parameters.values():
        entry: dict[str, Any] = {"name": p.name, "kind": _KIND_NAMES[p.kind]}
        if p.default is not p.empty:
            try:
                _codec.check_plain_json(p.default, p.name)
                json.dumps(p.default, allow_nan=False)
                entry["default"] = p.default
            except (SerializationError, TypeError, ValueError):
                entry["default_repr"] = repr(p.default)[:200]
        if p.annotation is not p.empty:
            entry["annotation"] = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
        params.append(entry)
    return json.dumps(params, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Published:
    """A published workflow, its parameters decoded."""

    record: PublishedWorkflow
    parameters: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def startable(self) -> bool:
        """Whether a process without the code can start it: JSON arguments only (never unpickled)."""
        return self.record.serializer == "json"

    @classmethod
    def from_record(cls, record: PublishedWorkflow) -> Published:
        try:
            params = json.loads(record.parameters)
        except ValueError:
            params = []
        return cls(record, params if isinstance(params, list) else [])

    def signature(self) -> inspect.Signature:
        out = []
        for p in self.parameters:
            kind = _KINDS.get(str(p.get("kind")), inspect.Parameter.POSITIONAL_OR_KEYWORD)
            default = p.get("default", _UNSHOWN if "default_repr" in p else inspect.Parameter.empty)
            out.append(inspect.Parameter(str(p["name"]), kind, default=default))
        return inspect.Signature(out)

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call as the worker's own binding would record it; TypeError naming the workflow if it does not fit."""
        try:
            bound = self.signature().bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r}: {exc}") from None
        bound.apply_defaults()
        for name in [n for n, v in bound.arguments.items() if v is _UNSHOWN]:
            del bound.arguments[name]  # left to the function: its default is not JSON
        return bound.args, bound.kwargs

    def encode(self, args: list[Any], kwargs: dict[str, Any]) -> bytes:
        if not self.startable:
            raise ValueError(
                f"workflow {self.name!r} uses serializer={self.record.serializer!r}: only a process that defines it can "
                "start it (arguments from outside are JSON only)"
            )
        bound_args, bound_kwargs = self.bind(args, kwargs)
        return _codec.encode({"args": list(bound_args), "kwargs": bound_kwargs}, root=f"arguments of {self.name}")


def find(published: list[Published], name: str) -> Published | None:
    """The published workflow ``name`` names: exactly, or by its bare qualname when only one has it."""
    for p in published:
        if p.name == name:
            return p
    if ":" in name:
        return None
    matches = [p for p in published if short_name(p.name) == name]
    return matches[0] if len(matches) == 1 else None
