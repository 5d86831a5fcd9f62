"""Resuming from outside: ``POST /hooks/{token}`` (JSON, authenticated) and the webhook URL
(any method, protected only by its unguessable token).

The webhook URL is public by design (third parties call it), so it defends itself: the token
is looked up from the path before a byte of the body is read (a made-up token is 404 at once),
and bodies are bounded in size (413), in read time (408) and in how many are read at once
(503 when full). Answers sent before the body was read close the connection.

Every check -- size, JSON, plain data, the hook's schema -- happens before the payload is
appended, so a refused request leaves the run's log as it was. Payloads are parsed as JSON
and stored through the JSON codec; nothing from a request is ever unpickled.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .._client.projection import hook_metadata
from .._core.errors import (
    HookNotFound,
    HookSchemaUnknown,
    HookValidationError,
    SerializationError,
    WebhookNotAnswered,
    WebhookResponseTimeout,
)
from .._workflow.http import Request as DurableRequest
from .._workflow.http import Response as DurableResponse
from ._context import Context
from ._http import HTTPError, JSONResponse, parse_json, read_body


class HookEndpoints:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def resume_hook(self, request: Request) -> Response:
        token = request.path_params["token"]
        payload = parse_json(await read_body(request, self.ctx.max_body, self.ctx.body_timeout))
        if await self._is_webhook(token):
            # A webhook's workflow expects a durable.Request, not bare JSON: it has its own URL.
            raise HTTPError(404, f"no live hook with token {token!r} (it is a webhook: send the request to its URL)")
        try:
            result = await self.ctx.client.resume_hook(token, payload)
        except HookNotFound:
            raise HTTPError(404, f"no live hook with token {token!r}") from None
        except HookValidationError as exc:
            raise HTTPError(422, "the payload does not match the hook's schema", problems=exc.problems) from None
        except HookSchemaUnknown as exc:  # this server cannot check it: refuse rather than pass it on unchecked
            raise HTTPError(503, str(exc)) from None
        except SerializationError as exc:  # a schema that returned a value the codec cannot store
            raise HTTPError(422, str(exc)) from None
        return JSONResponse({"run_id": result.run_id, "hook_id": result.hook_id, "token": result.token}, status_code=202)

    async def _is_webhook(self, token: str) -> bool:
        try:
            return "webhook" in hook_metadata(await self.ctx.store.get_hook(token))
        except SerializationError:
            return False

    async def webhook(self, request: Request) -> Response:
        token = request.path_params["token"]
        if not await self._is_webhook(token):
            raise HTTPError(404, "no live webhook at this URL", close=True)
        busy = HTTPError(503, "too many webhook requests are being received: try again shortly", close=True)
        with self.ctx.webhook_bodies.take(busy):
            body = await read_body(request, self.ctx.max_body, self.ctx.body_timeout)
        headers: dict[str, str] = {}
        for key, value in request.headers.items():  # lower-case keys; repeated headers joined as HTTP allows
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        incoming = DurableRequest(
            method=request.method,
            url=str(request.url),
            headers=headers,
            query=list(request.query_params.multi_items()),
            body=body,
        )
        try:
            answer = await self.ctx.client.resume_webhook(token, incoming, timeout=self.ctx.webhook_timeout)
        except HookNotFound:
            raise HTTPError(404, "no live webhook at this URL") from None
        except WebhookResponseTimeout:
            raise HTTPError(504, f"the workflow did not respond within {self.ctx.webhook_timeout:g}s") from None
        except WebhookNotAnswered:  # the request was delivered, but its run ended without answering
            raise HTTPError(502, "the workflow ended without responding") from None
        if not isinstance(answer, DurableResponse):
            return Response(status_code=202)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)
