"""A run's live values (``durable.set_event``): read one, all of them, or follow one over SSE (h-compose).

``/runs/{id}/values/...``, not ``/runs/{id}/events/...``: ``/events`` is the event log.
"""

from __future__ import annotations

from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from .._client.present import value_json
from ..stores._base import TERMINAL
from ._context import Context
from ._http import HTTPError, JSONResponse
from ._streams import changes, snapshots

_SETTLE = 0.05


class ValueEndpoints:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def list(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await self.ctx.run_record(run_id)
        return JSONResponse({"values": [value_json(*v) for v in await self.ctx.store.list_values(run_id)]})

    async def get(self, request: Request) -> Response:
        run_id, key = request.path_params["run_id"], request.path_params["key"]
        await self.ctx.run_record(run_id)
        found = await self.ctx.store.list_values(run_id, key)
        if not found:
            raise HTTPError(404, f"run {run_id} has not set event {key!r} (yet)")
        return JSONResponse(value_json(*found[0]))

    async def follow(self, request: Request) -> Response:
        """``event: value`` with each new value of the key (the current one first, once it is set); ``event: end``
        when the run has ended."""
        run_id, key = request.path_params["run_id"], request.path_params["key"]
        await self.ctx.run_record(run_id)
        store = self.ctx.store

        async def read() -> tuple[str, Any, bool]:
            found = await store.list_values(run_id, key)
            record = await store.get_run(run_id)
            ended = record is None or record.status in TERMINAL
            return "value", value_json(*found[0]) if found else None, ended

        updates = changes(store, ("run", run_id), poll_interval=self.ctx.poll_interval, settle=_SETTLE)
        return EventSourceResponse(snapshots(updates, read), ping=self.ctx.ping, sep="\n")
