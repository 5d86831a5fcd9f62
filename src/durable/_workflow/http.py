"""The HTTP messages of webhooks: the :class:`Request` a workflow receives and the :class:`Response` it answers with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .context import current_step


@dataclass(slots=True)
class Response:
    """An HTTP response a webhook answers with: ``Response(json={...})``, ``Response(text=...)`` or raw ``body``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __init__(
        self, body: bytes | str | None = None, *, status: int = 200, headers: dict[str, str] | None = None,
        json: Any = None, text: str | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if json is not None:
            self.body = _json_dumps(json)
            self.headers.setdefault("content-type", "application/json")
        elif text is not None:
            self.body = text.encode()
            self.headers.setdefault("content-type", "text/plain; charset=utf-8")
        elif isinstance(body, str):
            self.body = body.encode()
        else:
            self.body = body or b""

    def __durable_serialize__(self) -> dict[str, Any]:
        return {"status": self.status, "headers": self.headers, "body": self.body}

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, Any]) -> Response:
        return cls(data["body"], status=data["status"], headers=data["headers"])


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(slots=True)
class Request:
    """An HTTP request delivered to a webhook. Headers are lower-case; ``query`` keeps repeated keys as pairs."""

    method: str
    url: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    body: bytes
    run_id: str = ""
    response_namespace: str | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.text(), keep_blank_values=True))

    async def respond_with(self, response: Response) -> None:
        """Answer a manual-mode webhook; call it from a step (pass the request to the step)."""
        if self.response_namespace is None:
            raise RuntimeError("this webhook does not take a manual response (respond_with was not 'manual')")
        step = current_step.get()
        if step is None:
            raise RuntimeError("request.respond_with() must be called from within a @durable.step")
        writer = step.writer(self.response_namespace, self.run_id)
        await writer.write(response)
        await writer.close()

    def __durable_serialize__(self) -> dict[str, Any]:
        return {
            "method": self.method, "url": self.url, "headers": self.headers, "query": [list(p) for p in self.query],
            "body": self.body, "run_id": self.run_id, "response_namespace": self.response_namespace,
        }

    @classmethod
    def __durable_deserialize__(cls, data: dict[str, Any]) -> Request:
        return cls(
            data["method"], data["url"], dict(data["headers"]), [tuple(p) for p in data["query"]], data["body"],
            data.get("run_id", ""), data.get("response_namespace"),
        )
