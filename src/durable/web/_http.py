"""Request helpers shared by the endpoints: bounded bodies, strict JSON, errors, bearer auth."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._codec import check_plain_json
from .._errors import SerializationError

Endpoint = Callable[[Request], Awaitable[Response]]


class HTTPError(Exception):
    """Raised by endpoint code to answer with ``status`` and a JSON body ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status = status
        self.message = message
        self.extra = extra
        super().__init__(message)

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": self.message, **self.extra}, status_code=self.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it exceeds ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise HTTPError(413, f"request body is larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN/Infinity) that is plain data, or 400 saying what is wrong."""
    if not body.strip():
        raise HTTPError(400, "the request body is empty: send a JSON document")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"malformed JSON: {exc}") from None
    try:
        check_plain_json(value, "body")
    except SerializationError as exc:
        raise HTTPError(400, f"malformed JSON: {exc}") from None
    return value


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HTTPError(400, f"query parameter {name!r} must be an integer, got {raw!r}") from None


def token_matches(request: Request, token: str) -> bool:
    """A bearer header, or ``?access_token=`` on GET (browsers' EventSource cannot send headers)."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        given = request.query_params.get("access_token", "") if request.method in ("GET", "HEAD") else ""
    return bool(given) and hmac.compare_digest(given.strip().encode(), token.encode())


def guarded(endpoint: Endpoint, token: str | None) -> Endpoint:
    """``endpoint`` behind bearer auth when a token is configured."""
    if not token:
        return endpoint

    async def check(request: Request) -> Response:
        if not token_matches(request, token):
            raise HTTPError(401, "missing or invalid bearer token (send 'Authorization: Bearer <token>')")
        return await endpoint(request)

    check.__name__ = getattr(endpoint, "__name__", "endpoint")
    return check
