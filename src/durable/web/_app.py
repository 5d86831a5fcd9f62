"""``create_app``: the routes, their guards, error mapping and lifespan of the durable web app."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .._client.client import Client
from .._core.errors import StoreError
from .._core.ids import WEBHOOK_PATH
from .._worker.runtime import Runtime
from ..stores._base import Store
from ._context import Context, Slots
from ._guard import Guard
from ._hooks import HookEndpoints
from ._http import Endpoint, HTTPError, JSONResponse, parse_json, read_body
from ._runs import RunEndpoints
from ._schedules import ScheduleEndpoints
from ._streams import SharedReads
from ._values import ValueEndpoints

log = logging.getLogger("durable.web")
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# The page runs only its own script and talks only to this server, whatever a chunk contains.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The page's files (its script is a set of plain ES modules): only these are served.
_STATIC = {
    item.name: _MEDIA_TYPES[suffix]
    for item in resources.files(__package__).joinpath("static").iterdir()
    if (suffix := "." + item.name.rpartition(".")[2]) in _MEDIA_TYPES
}


def create_app(
    runtime_or_store: Runtime | Store,
    *,
    api_token: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    manage: bool = True,
    max_body: int = 1 << 20,
    body_timeout: float = 10.0,
    max_webhook_bodies: int = 64,
    webhook_timeout: float = 30.0,
    ping: float = 15.0,
) -> Starlette:
    """A Starlette app serving runs: JSON API, SSE streams, hooks, webhooks and the live runs page.

    Given a :class:`~durable.Runtime`, the app's lifespan opens and closes it, so one server
    runs both the API and the workflows; given a bare store it serves reads, cancels and
    resumes, and starts runs of the workflows that workers publish in the store (a worker
    elsewhere runs them). Pass ``manage=False`` when you open and close the runtime or store
    yourself -- needed when the app is mounted under another, since Starlette does not run a
    mounted app's lifespan.

    ``api_token`` (default: ``$DURABLE_API_TOKEN``; ``""`` for none) puts the API behind
    ``Authorization: Bearer <token>`` or the session cookie that ``POST /login`` sets for the
    page; a token in a URL is refused. Webhook URLs are protected by their unguessable tokens.
    ``allowed_hosts``: the names the ``Host`` header may carry (``["*"]``: any); by default only
    loopback names when the server listens on a loopback address (against DNS rebinding).
    ``max_body`` bounds request bodies (413), ``body_timeout`` the seconds to receive one (408),
    ``max_webhook_bodies`` how many webhook bodies are read at once (503 beyond it),
    ``webhook_timeout`` the wait for a manual webhook response (504), and ``ping`` is the SSE
    keep-alive interval in seconds.
    """
    if isinstance(runtime_or_store, Runtime):
        runtime: Runtime | None = runtime_or_store
        store = runtime_or_store.store
    elif isinstance(runtime_or_store, Store):
        runtime, store = None, runtime_or_store
    else:
        raise TypeError(f"create_app needs a durable.Runtime or a Store, got {runtime_or_store!r}")
    token = api_token if api_token is not None else os.environ.get("DURABLE_API_TOKEN") or None
    guard = Guard(token, allowed_hosts)
    ctx = Context(
        store=store,
        client=runtime if runtime is not None else Client(store),
        runtime=runtime,
        max_body=max_body,
        body_timeout=body_timeout,
        webhook_timeout=webhook_timeout,
        webhook_bodies=Slots(max_webhook_bodies),
        ping=ping,
        poll_interval=runtime.poll_interval if runtime is not None else 0.5,
        reads=SharedReads(store),
        tracebacks=guard.shows_tracebacks,
    )
    runs, hooks = RunEndpoints(ctx), HookEndpoints(ctx)
    schedules, values = ScheduleEndpoints(ctx), ValueEndpoints(ctx)

    def api(path: str, endpoint: Endpoint, methods: list[str]) -> Route:
        return Route(path, _answering(guard.protect(endpoint, api=True, write=methods == ["POST"])), methods=methods)

    def public(path: str, endpoint: Endpoint, methods: list[str]) -> Route:
        return Route(path, _answering(guard.protect(endpoint, api=False, write=methods == ["POST"])), methods=methods)

    async def login(request: Request) -> Response:
        """Exchange the API token (sent once, in a JSON body) for the session cookie the page rides on."""
        body = parse_json(await read_body(request, 4096, body_timeout))
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str):
            raise HTTPError(422, 'expected {"token": "<the API token>"}')
        if guard.token is None:
            return JSONResponse({"token_required": False})
        if not guard.token_matches(given.strip()):
            raise HTTPError(401, "wrong API token")
        response = JSONResponse({"token_required": True})
        guard.set_session(response, request)
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"token_required": guard.token is not None})
        guard.set_session(response, request, end=True)
        return response

    routes: list[BaseRoute] = [
        public("/", _page, ["GET"]),
        public("/static/{name}", _static, ["GET"]),
        public("/login", login, ["POST"]),
        public("/logout", logout, ["POST"]),
        api("/workflows", runs.workflows, ["GET"]),
        api("/runs", runs.list_runs, ["GET"]),
        api("/runs", runs.start, ["POST"]),
        api("/runs/{run_id}", runs.get_run, ["GET"]),
        api("/runs/{run_id}/events", runs.events, ["GET"]),
        api("/runs/{run_id}/steps/{step_id}", runs.step, ["GET"]),
        api("/runs/{run_id}/cancel", runs.cancel, ["POST"]),
        api("/runs/{run_id}/fork", runs.fork, ["POST"]),
        api("/runs/{run_id}/stream", runs.stream, ["GET"]),
        api("/runs/{run_id}/streams/{namespace:path}", runs.stream, ["GET"]),
        api("/live/runs", runs.live_runs, ["GET"]),
        api("/live/runs/{run_id}", runs.live_run, ["GET"]),
        api("/queues", runs.queues, ["GET"]),  # (h-compose)
        api("/runs/{run_id}/values", values.list, ["GET"]),  # (h-compose)
        api("/runs/{run_id}/values/{key}", values.get, ["GET"]),
        api("/live/runs/{run_id}/values/{key}", values.follow, ["GET"]),
        api("/schedules", schedules.list, ["GET"]),  # (h-compose)
        api("/schedules/{name}", schedules.get, ["GET"]),
        api("/schedules/{name}", schedules.delete, ["DELETE"]),
        api("/schedules/{name}/{action}", schedules.act, ["POST"]),
        api("/hooks/{token:path}", hooks.resume_hook, ["POST"]),  # tokens may hold "/"
        # Public by design (third parties call it): no token, no Host or Origin rules.
        Route(WEBHOOK_PATH + "{token:path}", _answering(hooks.webhook), methods=_ANY_METHOD),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage:
            yield
        elif runtime is not None:
            async with runtime:
                yield
        else:
            async with store:
                yield

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_exception})
    app.state.durable_runtime = runtime
    app.state.durable_store = store
    return app


def _answering(endpoint: Endpoint) -> Endpoint:
    """Map errors to JSON answers; an unexpected error is logged here and never shown to the client."""

    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HTTPError as exc:
            if exc.status == 408:
                log.info("%s %s: %s; answered 408", request.method, request.url.path, exc.message)
            return exc.response()
        except ClientDisconnect:
            # An aborted upload is the client's business: one line, no traceback.
            log.info("%s %s: the client went away before sending its whole body", request.method, request.url.path)
            return Response(status_code=400, headers={"Connection": "close"})
        except StoreError:
            log.exception("%s %s: the store failed", request.method, request.url.path)
            return JSONResponse({"error": "the store is unavailable"}, status_code=503)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": "internal server error"}, status_code=500)

    answer.__name__ = getattr(endpoint, "__name__", "endpoint")
    return answer


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


async def _page(request: Request) -> Response:
    """The runs page. It holds no data -- everything comes from the (authenticated) API -- so it is public."""
    base = html.escape(request.scope.get("root_path", "").rstrip("/") + "/", quote=True)
    return HTMLResponse(_asset("index.html").replace("{{base}}", base), headers=_PAGE_HEADERS)


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        return JSONResponse({"error": "not found"}, status_code=404)
    return Response(_asset(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
