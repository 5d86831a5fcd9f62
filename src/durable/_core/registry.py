"""A process-wide table of definitions by name (workflows, steps, typed hooks).

Replay never re-imports user modules: a runtime finds code in these tables, filled by the
decorators when the defining module (or script, or notebook cell) ran. Re-running a notebook
cell replaces the entry under the same name. Each table is created by the module that defines
what it holds (``_workflow``), so this module knows nothing of workflows or steps.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

log = logging.getLogger("durable")
T = TypeVar("T")


def origin(fn: Any) -> str:
    """Where a function (or class) was defined: ``module.qualname``."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"


def default_name(fn: Any) -> str:
    """A function's qualified name: stable whether its module runs as a script or is imported."""
    return str(getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn))))


class Registry(dict[str, T]):
    """Definitions of one ``kind`` by name; a dict, so tests can patch it like one."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._lock = threading.Lock()
        self._origins: dict[str, str] = {}

    def add(self, name: str, item: T, fn: Any) -> None:
        """Register ``item`` (defined by ``fn``) under ``name``, replacing an earlier definition."""
        where = origin(fn)
        with self._lock:
            before = self._origins.get(name)
            if name in self and before != where:
                log.warning("%s name %r now refers to %s (was %s); pass name=... to keep both", self.kind, name, where, before)
            self[name] = item
            self._origins[name] = where

    def names(self) -> list[str]:
        return sorted(self)
