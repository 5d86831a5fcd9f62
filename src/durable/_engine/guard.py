"""Wall clocks and global randomness in workflow code, caught while it runs.

``time.time()``, ``datetime.now()``, ``random.random()`` or ``uuid.uuid4()`` in a workflow give
one value live and another on a cold replay; when the value only steers a branch, the replay
silently takes the other branch. Workflow code runs on the deterministic loop, so these
functions are replaced (once, when the first workflow instance is made) by guards that look at
the running loop: on any other loop or thread they call straight through, for the cost of one
check; on the deterministic loop, called from code that is not the standard library's or
durable's own (``logging`` reads the clock for every record), they tell the workflow's instance,
which warns once per workflow and call or, under ``Runtime(strict=True)``, raises.

Replay pays nothing: the engine never calls these functions. Functions imported by name before
the guards were installed (``from time import time``) are not seen, except ``datetime.now()``
and ``date.today()``, which are guarded on their classes.
"""

from __future__ import annotations

import ctypes
import datetime as _datetime
import gc
import logging
import random as _random
import sys
import threading
import time as _time
import uuid as _uuid
from asyncio import events
from collections.abc import Callable
from typing import Any

from .loop import DeterministicLoop

log = logging.getLogger("durable.replay")

_NOW = "durable.now()"
_RANDOM = "durable.random() (or durable.random.randint(...), .choice(...), ...)"
_MODULE_FUNCTIONS: dict[Any, dict[str, str]] = {
    _time: {"time": _NOW, "time_ns": _NOW},
    _uuid: {"uuid1": "durable.uuid4()", "uuid4": "durable.uuid4()"},
    _random: {
        name: _RANDOM
        for name in ("random", "uniform", "randint", "randrange", "choice", "choices", "sample", "shuffle",
                     "getrandbits", "randbytes", "gauss", "normalvariate", "expovariate", "triangular")
    },
}
_CLASSMETHODS: dict[type, dict[str, str]] = {
    _datetime.datetime: {"now": _NOW, "utcnow": _NOW},
    _datetime.date: {"today": _NOW},
}
# Callers whose calls are not the workflow's own: the standard library (logging stamps records,
# uuid1 reads the clock) and the libraries workflow code runs through.
_INTERNAL = frozenset(sys.stdlib_module_names) | {"durable", "anyio", "sniffio", "pydantic", "pydantic_core"}

_installed = False
_lock = threading.Lock()


def install() -> None:
    """Put the guards in place (idempotent; the engine calls it for each new instance)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        for module, names in _MODULE_FUNCTIONS.items():
            for name, instead in names.items():
                original = getattr(module, name, None)
                if original is not None and not getattr(original, "__durable_guard__", False):
                    setattr(module, name, _guard_function(original, f"{module.__name__}.{name}()", instead))
        for cls, names in _CLASSMETHODS.items():
            for name, instead in names.items():
                _guard_classmethod(cls, name, instead)
        _installed = True


def _report(call: str, instead: str) -> None:
    """On the deterministic loop, from workflow code: tell the instance running it."""
    caller = sys._getframe(2)  # _report <- the guard <- whoever called the guarded function
    module = caller.f_globals.get("__name__") or ""
    if module.partition(".")[0] in _INTERNAL:
        return
    loop = events._get_running_loop()
    sink = getattr(loop, "_sink", None)
    notice = getattr(sink, "nondeterministic_call", None)
    if notice is not None:
        notice(call, instead)


def _guard_function(original: Callable[..., Any], call: str, instead: str) -> Callable[..., Any]:
    def guard(*args: Any, **kwargs: Any) -> Any:
        if type(events._get_running_loop()) is DeterministicLoop:
            _report(call, instead)
        return original(*args, **kwargs)

    guard.__name__ = getattr(original, "__name__", call)
    guard.__qualname__ = getattr(original, "__qualname__", call)
    guard.__doc__ = getattr(original, "__doc__", None)
    guard.__wrapped__ = original  # type: ignore[attr-defined]
    guard.__durable_guard__ = True  # type: ignore[attr-defined]
    return guard


def _guard_classmethod(cls: type, name: str, instead: str) -> None:
    """Replace a classmethod of a built-in (C) class, which ``setattr`` refuses: through the class's
    own dict, then telling the interpreter its method cache is stale. Skipped, with a debug note,
    where the interpreter does not allow it."""
    original = cls.__dict__.get(name)
    if original is None or getattr(original, "__durable_guard__", False):
        return
    call = f"{cls.__name__}.{name}()"

    def guard(klass: type, *args: Any, **kwargs: Any) -> Any:
        if type(events._get_running_loop()) is DeterministicLoop:
            _report(call, instead)
        return original.__get__(None, klass)(*args, **kwargs)

    guard.__doc__ = getattr(original, "__doc__", None)
    method: classmethod[Any, ..., Any] = classmethod(guard)
    method.__durable_guard__ = True  # type: ignore[attr-defined]
    try:
        namespace = gc.get_referents(cls.__dict__)[0]
        if not isinstance(namespace, dict) or namespace.get(name) is not original:
            raise TypeError("unexpected type layout")
        namespace[name] = method
        ctypes.pythonapi.PyType_Modified(ctypes.py_object(cls))
    except Exception as exc:  # another interpreter: these calls simply go unseen
        log.debug("durable: cannot guard %s in workflow code (%s)", call, exc)
