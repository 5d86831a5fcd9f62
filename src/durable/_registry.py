"""Process-wide registries of workflows, steps and typed hooks, by name.

Replay never re-imports user modules: a runtime finds code here, registered by the
decorators when the defining module (or script, or notebook cell) ran. Re-running a notebook
cell replaces the entry under the same name.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._hooks import HookDefinition
    from ._step import Step
    from ._workflow import Workflow

log = logging.getLogger("durable")
_lock = threading.Lock()
workflows: dict[str, Workflow[Any, Any]] = {}
steps: dict[str, Step[Any, Any]] = {}
hook_definitions: dict[str, HookDefinition[Any]] = {}


def _origin(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"


def add(table: dict[str, Any], kind: str, name: str, item: Any, fn: Any) -> None:
    with _lock:
        previous = table.get(name)
        if previous is not None and _origin(getattr(previous, "fn", previous)) != _origin(fn):
            log.warning(
                "%s name %r now refers to %s (was %s); pass name=... to keep both",
                kind, name, _origin(fn), _origin(getattr(previous, "fn", previous)),
            )
        table[name] = item


def default_name(fn: Any) -> str:
    """A function's qualified name: stable whether its module runs as a script or is imported."""
    return str(getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn))))
