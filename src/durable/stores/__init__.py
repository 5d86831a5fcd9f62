"""Stores: where runs, events, hooks and stream chunks live. Chosen by URL, loaded on demand.

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (add ``?synchronous=normal`` for speed,
  ``?mode=ro`` to read a store without ever writing to it)
- ``memory://`` (a private in-memory database, for tests)
- ``postgresql://user:pass@host/db`` (needs the ``postgres`` extra)
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._core.checks import check_number
from .._core.errors import InvalidStoreURL
from ._base import Store as Store

DEFAULT_URL = "sqlite:///.durable/durable.db"
_SCHEMES = ("sqlite", "memory", "postgresql", "postgres")


def default_url() -> str:
    return os.environ.get("DURABLE_STORE") or DEFAULT_URL


def store_from_url(url: str | None = None) -> Store:
    """Build (but do not open) the store a URL names; raise InvalidStoreURL naming the problem."""
    url = url or default_url()
    if not isinstance(url, str):
        raise InvalidStoreURL(repr(url), "a store URL must be a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        guess = f" (did you mean {_closest(scheme)}://...?)" if scheme else ""
        raise InvalidStoreURL(url, f"unknown scheme {scheme!r}{guess}; use sqlite:///file.db, memory:// or postgresql://...")
    if scheme == "memory":
        from ._sqlite import SQLiteStore

        return SQLiteStore(":memory:")
    if scheme == "sqlite":
        return _sqlite_store(url, parts)
    try:
        module = import_module("durable.stores._postgres")
    except ImportError as exc:
        raise InvalidStoreURL(url, f"PostgreSQL needs the postgres extra: pip install 'durable-workflows[postgres]' ({exc})") from None
    store: Store = module.PostgresStore(url)
    return store


def _sqlite_store(url: str, parts: Any) -> Store:
    from ._sqlite import SQLiteStore

    if not url.partition(":")[2].startswith("//"):
        raise InvalidStoreURL(url, "use sqlite:///relative/path.db or sqlite:////absolute/path.db (three or four slashes)")
    if parts.netloc:
        raise InvalidStoreURL(
            url, f"a SQLite URL has no host part: use sqlite:///{parts.netloc}{parts.path} (three slashes) for a relative path"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise InvalidStoreURL(url, "no database file: use sqlite:///relative.db or sqlite:////absolute/path.db")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    synchronous = options.pop("synchronous", "full")
    if synchronous.lower() not in ("full", "normal", "extra", "off"):
        raise InvalidStoreURL(url, f"synchronous must be full or normal, got {synchronous!r}")
    busy = options.pop("busy_timeout", "30")
    try:
        busy_timeout = check_number("busy_timeout", float(busy), minimum=0.0, maximum=86_400.0, unit=" s")
    except ValueError:
        raise InvalidStoreURL(url, f"busy_timeout must be a number of seconds from 0 to 86400, got {busy!r}") from None
    mode = options.pop("mode", "rw")
    if mode not in ("ro", "rw"):
        raise InvalidStoreURL(url, f"mode must be ro (read only) or rw, got {mode!r}")
    if options:
        raise InvalidStoreURL(
            url, f"unknown option(s) {', '.join(sorted(options))} (known: synchronous, busy_timeout, mode)"
        )
    return SQLiteStore(path, synchronous=synchronous, busy_timeout=busy_timeout, read_only=True if mode == "ro" else None)


def _closest(scheme: str) -> str:
    import difflib

    match = difflib.get_close_matches(scheme, _SCHEMES, n=1, cutoff=0.3)
    return match[0] if match else "sqlite"
