"""Identifiers: run ids (``run_`` + a ULID: 48-bit millisecond time, 80 random bits, so ids sort by
creation time), and the check that a caller's names can be stored as text."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


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
