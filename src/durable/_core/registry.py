"""A process-wide table of definitions by name (workflows, steps, typed hooks).

Replay never re-imports user modules: a runtime finds code in these tables, filled by the
decorators when the defining module (or script, or notebook cell) ran. Each table is created
by the module that defines what it holds (``_workflow``), so this module knows nothing of
workflows or steps.

Names. A definition's default name is ``module:qualname`` -- unique, and the same whether its
file runs as a script or is imported (a script's ``__main__`` is named after its file, as the
import would name it). An explicit ``name=`` is the caller's promise of uniqueness: a second
module taking the same explicit name is refused (:class:`NameConflict`), while the same module
defining it again -- a notebook cell re-run, a reload -- replaces the entry. Runs recorded
before names were qualified carry the bare qualname; :meth:`Registry.resolve` still finds them
when exactly one definition has that qualname.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from .errors import NameConflict

log = logging.getLogger("durable")
T = TypeVar("T")


def module_of(fn: Any) -> str:
    """The module that defines ``fn``, with ``__main__`` named as importing its file would name it."""
    module = str(getattr(fn, "__module__", None) or "?")
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) and spec.name != "__main__":
        return str(spec.name)  # python -m package.module
    file = getattr(main, "__file__", None)
    if file:
        return Path(file).stem  # python app.py: what `import app` names it
    return "__main__"  # a notebook, a REPL: one process only


def origin(fn: Any) -> str:
    """Where a function (or class) was defined: ``module.qualname``."""
    return f"{module_of(fn)}.{getattr(fn, '__qualname__', '?')}"


def default_name(fn: Any) -> str:
    """A definition's default name: ``module:qualname``."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module_of(fn)}:{qualname}"


def short_name(name: str) -> str | None:
    """The bare qualname a ``module:qualname`` name was recorded under before names were qualified."""
    module, sep, qualname = name.partition(":")
    return qualname if sep and module and qualname else None


class Registry(dict[str, T]):
    """Definitions of one ``kind`` by name; a dict, so tests can patch it like one."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._lock = threading.Lock()
        self._origins: dict[str, str] = {}
        self._modules: dict[str, str] = {}
        self._defined_at: dict[str, float] = {}

    def add(self, name: str, item: T, fn: Any, *, explicit: bool) -> None:
        """Register ``item`` (defined by ``fn``) under ``name``; NameConflict if another module
        already defines that explicit name."""
        module, where = module_of(fn), origin(fn)
        with self._lock:
            before = self._modules.get(name)
            if name in self and before is not None and before != module:
                if explicit:
                    raise NameConflict(self.kind, name, self._origins[name], where)
                log.warning("%s name %r now refers to %s (was %s)", self.kind, name, where, self._origins[name])
            self[name] = item
            self._origins[name] = where
            self._modules[name] = module
            self._defined_at[name] = time.time()

    def defined_at(self, name: str) -> float | None:
        """When ``name`` was last (re)defined in this process (a notebook cell re-run moves it)."""
        return self._defined_at.get(name)

    def names(self) -> list[str]:
        return sorted(self)

    def resolve(self, name: str) -> T | None:
        """The definition ``name`` names: exactly, or -- for a bare name recorded before names were
        qualified -- the one definition whose qualname it is."""
        found = self.get(name)
        if found is not None or ":" in name:
            return found
        matches = [key for key in self if short_name(key) == name]
        return self[matches[0]] if len(matches) == 1 else None

    def claimable(self) -> list[str]:
        """Every name a stored record may carry for these definitions: their names, and the bare
        qualnames older records used where they are unambiguous."""
        names = set(self)
        shorts: dict[str, int] = {}
        for key in self:
            short = short_name(key)
            if short is not None:
                shorts[short] = shorts.get(short, 0) + 1
        names.update(short for short, count in shorts.items() if count == 1 and short not in self)
        return sorted(names)
