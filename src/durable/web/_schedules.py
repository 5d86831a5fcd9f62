"""The schedules API: list schedules, pause, resume, trigger and delete one (h-compose)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .._client.present import schedule_json
from .._core.errors import ScheduleNotFound
from ._context import Context
from ._http import HTTPError, JSONResponse


class ScheduleEndpoints:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def list(self, request: Request) -> Response:
        return JSONResponse({"schedules": [schedule_json(s) for s in await self.ctx.client.list_schedules()]})

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            return JSONResponse(schedule_json(await self.ctx.client.get_schedule(name)))
        except ScheduleNotFound as exc:
            raise HTTPError(404, str(exc)) from None

    async def act(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        client = self.ctx.client
        try:
            if action == "trigger":
                run = await client.trigger_schedule(name)
                return JSONResponse({"schedule": name, "run_id": run.run_id}, status_code=201)
            if action == "pause":
                await client.pause_schedule(name)
            elif action == "resume":
                await client.resume_schedule(name)
            else:
                raise HTTPError(404, f"unknown schedule action {action!r}: use pause, resume or trigger")
        except ScheduleNotFound as exc:
            raise HTTPError(404, str(exc)) from None
        return JSONResponse(schedule_json(await client.get_schedule(name)))

    async def delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            await self.ctx.client.delete_schedule(name)
        except ScheduleNotFound as exc:
            raise HTTPError(404, str(exc)) from None
        return JSONResponse({"schedule": name, "deleted": True})
