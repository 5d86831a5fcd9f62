"""Resuming from outside: deliver a payload to a hook, or an HTTP request to a webhook (and answer it).

Every check -- the token, the hook's kind, its schema -- happens before anything is appended,
and the append names the hook it checked, so a refused resume leaves the run's log as it was.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import anyio

from .._core import codec as _codec
from .._core.durations import Duration
from .._core.errors import (
    HookNotFound,
    HookSchemaUnknown,
    StreamFailed,
    WebhookNotAnswered,
    WebhookResponseTimeout,
)
from .._core.ids import is_text
from .._workflow.hooks import hook_definitions
from .._workflow.http import Request, Response
from ..stores._base import HookRecord, Store
from .projection import ResumeResult, hook_metadata
from .streams import read_stream
from .waiting import wait_until


async def resume_hook(
    store: Store, token: str, payload: Any, *, validate: bool = True, wait: Duration | None = None,
    now: Callable[[], float] = time.time,
    max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE,
) -> ResumeResult:
    """Append ``payload`` for the live hook holding ``token`` (validated first if the hook is typed).

    ``wait``: how long to wait for a live hook with that token to appear (a run just started may
    not have created it yet); HookNotFound at once without it, TimeoutError after it.
    """
    hook = await _live_hook(store, token, wait)
    schema_name = hook_metadata(hook).get("schema")
    if schema_name and validate:
        definition = hook_definitions.resolve(schema_name)
        if definition is None:
            # Appending it unchecked would hand the workflow a payload its schema never saw.
            raise HookSchemaUnknown(token, schema_name)
        payload = definition.validate(payload)
    data = _codec.check_size(_codec.encode(payload, root="hook payload"), max_value_size, "hook payload")
    # Only to the hook validated above: a token re-bound meanwhile is not this hook.
    record = await store.resume_hook(token, data, now(), expect=(hook.run_id, hook.hook_id))
    return ResumeResult(record.run_id, record.hook_id, token)


async def _live_hook(store: Store, token: str, wait: Duration | None) -> HookRecord:
    hook = await store.get_hook(token) if is_text(token) else None
    if hook is not None:
        return hook
    if wait is None or not is_text(token):
        raise HookNotFound(token)
    # Every commit that creates a hook notes the "hooks" topic.
    return await wait_until(
        store, ("hooks",), lambda: store.get_hook(token), wait, lambda: f"no live hook with token {token!r} appeared"
    )


async def resume_webhook(
    store: Store, token: str, request: Request, *, timeout: float = 30.0, now: Callable[[], float] = time.time,
    max_value_size: int = _codec.DEFAULT_MAX_VALUE_SIZE,
) -> Response:
    """Deliver ``request`` to the webhook holding ``token`` and return the response to send.

    Plain hooks are refused here (HookNotFound): only webhooks are reachable over HTTP. In
    ``"manual"`` mode this waits up to ``timeout`` seconds for a step to call
    ``request.respond_with(...)``.
    """
    hook = await store.get_hook(token) if is_text(token) else None
    metadata = hook_metadata(hook)
    if hook is None or "webhook" not in metadata:
        raise HookNotFound(token)
    mode = metadata["webhook"]
    request.run_id = hook.run_id
    if mode == "manual":
        request.response_namespace = f"$webhook-response:{hook.hook_id}:{secrets.token_hex(8)}"
    # Only to this webhook: if the token was re-bound meanwhile (to a plain hook, say), refuse.
    data = _codec.check_size(_codec.encode(request, root="webhook request"), max_value_size, "webhook request")
    await store.resume_hook(token, data, now(), expect=(hook.run_id, hook.hook_id))
    if mode == "static":
        response = metadata.get("response")
        return response if isinstance(response, Response) else Response(status=202)
    if mode != "manual":
        return Response(status=202)
    assert request.response_namespace is not None
    with anyio.move_on_after(timeout):
        try:
            async for value in read_stream(store, hook.run_id, request.response_namespace):
                if isinstance(value, Response):
                    return value
        except StreamFailed:
            pass
        run = await store.get_run(hook.run_id)
        status = run.status if run is not None else "gone"
        raise WebhookNotAnswered(token, f"its run {hook.run_id} ended ({status}) without responding")
    raise WebhookResponseTimeout(token, timeout)
