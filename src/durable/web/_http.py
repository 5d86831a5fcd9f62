"""Request helpers shared by the endpoints: bounded bodies, strict JSON, errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.responses import Response

from .._client.present import dumps
from .._core.codec import check_plain_json
from .._core.errors import SerializationError

Endpoint = Callable[[Request], Awaitable[Response]]


class JSONResponse(_StarletteJSONResponse):
    """Starlette's JSON response, rendered by the one JSON writer of the web layer (``dumps``)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


class HTTPError(Exception):
    """Raised by endpoint code to answer with ``status`` and a JSON body ``{"error": message, **extra}``.

    ``close``: end the connection after the answer -- for answers sent before the request's
    body was read, so that a client still sending cannot hold the connection open.
    """

    def __init__(self, status: int, message: str, *, close: bool = False, **extra: Any) -> None:
        self.status = status
        self.message = message
        self.close = close
        self.extra = extra
        super().__init__(message)

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.close:
            headers["Connection"] = "close"
        if self.status == 503:
            headers["Retry-After"] = "1"
        return JSONResponse({"error": self.message, **self.extra}, status_code=self.status, headers=headers)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body; 413 as soon as it exceeds ``limit`` bytes (before reading it all), 408 if
    it has not all arrived within ``timeout`` seconds (a client trickling bytes holds a
    connection for as long as it likes otherwise)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is larger than {limit} bytes", close=True)
    parts: list[bytes] = []
    size = 0
    with anyio.move_on_after(timeout) as scope:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise HTTPError(413, f"request body is larger than {limit} bytes", close=True)
            parts.append(part)
    if scope.cancelled_caught:
        raise HTTPError(408, f"the request body did not arrive within {timeout:g}s ({size} bytes came)", close=True)
    return b"".join(parts)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN/Infinity) that is plain data, or 400 saying what is wrong."""
    if not body.strip():
        raise HTTPError(400, "the request body is empty: send a JSON document")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
        check_plain_json(value, "body")
    except RecursionError:
        raise HTTPError(400, "malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError, SerializationError) as exc:
        raise HTTPError(400, f"malformed JSON: {exc}") from None
    return value


MAX_INDEX = 2**53  # chunk indices, sequence numbers and limits stay far below; anything above is not one


def int_param(request: Request, name: str, default: int, *, minimum: int = -MAX_INDEX, maximum: int = MAX_INDEX) -> int:
    """A query parameter written as plain decimal digits (``int()`` would also take ``1_0``, ``+1``
    or `` 1 ``), within ``minimum..maximum``, or 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise HTTPError(400, f"query parameter {name!r} must be an integer, got {raw!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise HTTPError(400, f"query parameter {name!r} must be between {minimum} and {maximum}, got {value}")
    return value


def prefers_ndjson(accept: str) -> bool:
    """Whether an Accept header asks for NDJSON over Server-Sent Events (by q-value; SSE on ties)."""
    quality = {"application/x-ndjson": 0.0, "text/event-stream": 0.0}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() not in quality:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(quality[media.lower()], q)
    return quality["application/x-ndjson"] > quality["text/event-stream"]
