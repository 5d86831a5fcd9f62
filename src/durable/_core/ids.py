"""Identifiers and names: run ids (``run_`` + a ULID: 48-bit millisecond time, 80 random bits, so
ids sort by creation time), the default stream namespace, the webhook path, and the checks that
the names a caller picks (run ids, idempotency keys, hook tokens) can be stored and routed."""

from __future__ import annotations

import hashlib
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
#: The stream a workflow's yields and a bare ``get_writable()`` write to.
DEFAULT_NAMESPACE = "default"
#: Where webhooks are reached over HTTP, followed by the (URL-quoted) token.
WEBHOOK_PATH = "/.well-known/workflow/v1/webhook/"


def new_run_id() -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "run_" + "".join(reversed(chars))


def is_text(value: object) -> bool:
    """A non-empty str that is valid Unicode text: no lone surrogate (``"\\ud800"``), which a
    Python str may hold but no database text column can. Payloads keep them (the codec
    round-trips them); names the store indexes -- tokens, namespaces, keys -- cannot."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_token(token: str | None) -> None:
    """Refuse a hook token that cannot be stored or routed (``None``: the engine picks one)."""
    if token is not None and (not is_text(token) or len(token) > 512):
        raise ValueError(f"hook token must be non-empty text of at most 512 characters, got {token!r}")


def check_run_id(run_id: str) -> str:
    if (
        not isinstance(run_id, str) or not run_id or len(run_id) > 200 or not run_id.isprintable() or "/" in run_id
        or run_id in (".", "..")  # a URL path segment that clients normalise away
    ):
        raise ValueError(f"run_id must be a printable string of 1-200 characters without '/' (and not . or ..), got {run_id!r}")
    return run_id


def check_idempotency_key(key: str) -> str:
    if not is_text(key) or len(key) > 512:
        raise ValueError(f"idempotency_key must be non-empty text of at most 512 characters, got {key!r}")
    return key


def child_run_id(parent_run_id: str, position: int) -> str:
    """The id of the child run a parent starts at ``position``: derived, so that a parent replayed
    after a crash names the same child (and the store creates it once). Readable while it fits."""
    derived = f"{parent_run_id}-c{position}"
    if len(derived) <= 200:
        return derived
    digest = hashlib.blake2b(derived.encode(), digest_size=16).hexdigest()
    return f"run_{digest}"
def check_label(value: object, what: str) -> str:
    """A patch id or a version label: printable text of 1-200 characters (it is stored and shown)."""
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable() or not is_text(value):
        raise ValueError(f"{what} must be printable text of 1-200 characters, got {value!r}")
    return value
