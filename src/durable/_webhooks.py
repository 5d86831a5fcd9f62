"""``resume_webhook``: hand an HTTP request to the workflow waiting on a webhook, and answer it."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

import anyio

from ._core import codec as _codec
from ._core.errors import HookNotFound, StreamFailed, WebhookNotAnswered, WebhookResponseTimeout
from ._core.ids import is_text
from ._hooks import Request, Response, hook_metadata
from ._streams import read_stream

if TYPE_CHECKING:
    from ._runtime import Runtime


async def resume_webhook(runtime: Runtime, token: str, request: Request, *, timeout: float = 30.0) -> Response:
    """Deliver ``request`` to the webhook holding ``token`` and return the response to send.

    Plain hooks are refused here (HookNotFound): only webhooks are reachable over HTTP. In
    ``"manual"`` mode this waits up to ``timeout`` seconds for a step to call
    ``request.respond_with(...)``.
    """
    store = runtime.store
    hook = await store.get_hook(token) if is_text(token) else None
    metadata = hook_metadata(hook)
    if hook is None or "webhook" not in metadata:
        raise HookNotFound(token)
    mode = metadata["webhook"]
    request.run_id = hook.run_id
    if mode == "manual":
        request.response_namespace = f"$webhook-response:{hook.hook_id}:{secrets.token_hex(8)}"
    # Only to this webhook: if the token was re-bound meanwhile (to a plain hook, say), refuse.
    await store.resume_hook(
        token, _codec.encode(request, root="webhook request"), time.time(), expect=(hook.run_id, hook.hook_id)
    )
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
