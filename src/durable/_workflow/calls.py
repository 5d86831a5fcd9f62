"""Call binding: a call is recorded by its *bound* arguments, not by how it was spelled.

``greet("ann")``, ``greet(name="ann")`` and ``greet("ann", "!")`` (when ``punct="!"`` is the
default) bind to the same arguments, so they are the same recorded call and replay alike;
changing a default changes the bound arguments, so replay still notices. A call that does not
fit the signature raises ``TypeError`` naming the function, before anything is recorded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._core import codec as _codec
from .._core.codec import Serializer
from .._core.errors import SerializationError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Binder:
    """Binds calls to ``fn``'s signature (read once); ``what`` names the function in errors."""

    __slots__ = ("_arity", "_names", "_signature", "what")

    def __init__(self, fn: Callable[..., Any], what: str) -> None:
        self.what = what
        self._signature = inspect.signature(fn)
        params = list(self._signature.parameters.values())
        self._names = [p.name for p in params if p.kind in _POSITIONAL]
        # The fast path: only positional parameters without defaults, called positionally with
        # all of them -- the call is its own bound form, and binding would only cost time.
        self._arity = len(params) if all(p.kind in _POSITIONAL and p.default is p.empty for p in params) else -1

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The canonical ``(args, kwargs)`` of a call: defaults applied, positional where possible."""
        if not kwargs and len(args) == self._arity:
            return args, kwargs
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.what}: {exc}") from None
        bound.apply_defaults()
        return bound.args, bound.kwargs

    def encode(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, serializer: Serializer, root: str) -> bytes:
        """The recorded form of a bound call; a value the codec cannot encode is named by its
        parameter (``arguments of f['items'][3]``), not by its position among the bound arguments."""
        try:
            return _codec.encode({"args": list(args), "kwargs": kwargs}, serializer=serializer, root=root)
        except SerializationError as exc:
            where = exc.path
            for index, name in enumerate(self._names[: len(args)]):
                prefix = f"{root}['args'][{index}]"
                if where == prefix or where.startswith((prefix + "[", prefix + ".")):
                    where = f"{root}[{name!r}]{where[len(prefix):]}"
                    break
            else:
                if where.startswith(f"{root}['kwargs']"):
                    where = root + where[len(f"{root}['kwargs']"):]
            raise SerializationError(where, exc.problem) from None
