"""The runs API: list, inspect, start and cancel runs; their events; their streams, live."""

from __future__ import annotations

import time
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from .._client.fork import fork_run
from .._client.present import (
    event_json,
    published_json,
    queue_json,
    run_detail,
    run_summary,
    step_detail,
    waiting_reasons,
)
from .._client.projection import HookInfo, RunInfo, StepInfo
from .._client.run import Run
from .._client.timeline import Timeline
from .._core.errors import ForkError, NonDeterminismError, RunConflict, RunNotFound, WorkflowNotFound
from .._core.ids import DEFAULT_NAMESPACE
from ..stores._base import TERMINAL, RunRecord
from ._context import Context
from ._http import MAX_INDEX, HTTPError, JSONResponse, int_param, parse_json, prefers_ndjson, read_body
from ._listing import list_page, parse_filters
from ._streams import changes, follow_pages, ndjson_response, snapshots, sse_response

_START_KEYS = {"workflow", "args", "kwargs", "run_id", "idempotency_key"}
_LIVE_SETTLE = 0.1  # seconds: at most ~10 updates a second per page


class RunEndpoints:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- reading -------------------------------------------------------------------------------

    async def _summaries(self, records: list[RunRecord]) -> list[dict[str, Any]]:
        """Run summaries; a queued run still waiting says why (its queue's state)."""
        summaries = [run_summary(RunInfo.from_record(r)) for r in records]
        waiting = sorted({s["queue"]["name"] for s in summaries if s["queue"] and s["queue"]["waiting"]})
        if waiting:
            waiting_reasons(summaries, await self.ctx.store.queue_states(waiting, time.time()))
        return summaries

    async def _page(self, request: Request) -> dict[str, Any]:
        """One page of the list, with the query's filters and cursor."""
        filters = parse_filters(request, self.ctx.client)
        return await list_page(self.ctx.store, filters, request.query_params.get("cursor") or None, self._summaries)

    async def list_runs(self, request: Request) -> Response:
        return JSONResponse(await self._page(request))

    async def queues(self, request: Request) -> Response:
        """Every queue the store knows: active and waiting entries, rate window, what blocks it."""
        return JSONResponse({"queues": [queue_json(q) for q in await self.ctx.store.queue_states(None, time.time())]})

    async def _detail(self, run_id: str, *, tracebacks: bool, timeline: Timeline | None = None) -> dict[str, Any]:
        """The run in full; ``timeline`` (kept by a live feed) takes in only the events it has not seen."""
        store = self.ctx.store
        # The log first, the rows after (each read is its own snapshot): the rows are then never
        # older than the log, so a step the log shows finished is never still waited for.
        timeline = timeline or Timeline()
        events = await store.load_events(run_id, timeline.last_seq)
        record = await self.ctx.run_record(run_id)
        timeline.feed(events)
        steps = await store.list_steps(run_id)
        hooks = await store.list_hooks(run_id, active_only=False)
        streams = await store.list_streams(run_id)
        children = await store.list_children(run_id)
        values = await store.list_values(run_id)
        return run_detail(
            RunInfo.from_record(record), record.output, [StepInfo.from_record(s) for s in steps],
            [HookInfo.from_record(h) for h in hooks], streams, [RunInfo.from_record(c) for c in children], values,
            input=record.input, timeline=timeline, tracebacks=tracebacks,
        )

    async def get_run(self, request: Request) -> Response:
        return JSONResponse(await self._detail(request.path_params["run_id"], tracebacks=self.ctx.tracebacks(request)))

    async def step(self, request: Request) -> Response:
        """One step in full: arguments, result or error (with its traceback where the reader may see
        it), and every attempt with its timings."""
        run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
        await self.ctx.run_record(run_id)
        found = [s for s in await self.ctx.store.list_steps(run_id) if s.step_id == step_id]
        if not found:
            raise HTTPError(404, f"run {run_id!r} has no step {step_id!r}")
        timeline = Timeline()
        timeline.feed(await self.ctx.store.load_events(run_id))
        detail = step_detail(
            StepInfo.from_record(found[0]), found[0].output, timeline.lane(step_id), tracebacks=self.ctx.tracebacks(request)
        )
        return JSONResponse(detail)

    async def events(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await self.ctx.run_record(run_id)
        after = int_param(request, "after", 0, minimum=0)
        limit = int_param(request, "limit", 0, minimum=0)  # 0: all of them
        events = await self.ctx.store.load_events(run_id, after)
        more = bool(limit) and len(events) > limit
        if more:
            events = events[:limit]
        return JSONResponse({"events": [event_json(e) for e in events], "more": more})

    async def workflows(self, request: Request) -> Response:
        """What POST /runs can start: the runtime's own workflows, and those workers published."""
        runtime = self.ctx.runtime
        published = await self.ctx.client.published_workflows()
        names = set(runtime.workflow_names()) if runtime is not None else set()
        names.update(p.name for p in published if p.startable)
        return JSONResponse({
            "can_start": bool(names) or runtime is not None,
            "workflows": sorted(names),
            "definitions": [published_json(p) for p in published],
        })

    # -- changing ------------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        runtime = self.ctx.runtime
        body = parse_json(await read_body(request, self.ctx.max_body, self.ctx.body_timeout))
        if not isinstance(body, dict):
            raise HTTPError(422, 'expected an object: {"workflow": name, "args": [...], "kwargs": {...}}')
        unknown = sorted(set(body) - _START_KEYS)
        if unknown:
            raise HTTPError(422, f"unknown field(s): {', '.join(unknown)}")
        name, args, kwargs = body.get("workflow"), body.get("args", []), body.get("kwargs", {})
        if not isinstance(name, str) or not name:
            raise HTTPError(422, "'workflow' must be the name of a registered workflow")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise HTTPError(422, "'args' must be a list and 'kwargs' an object")
        for key in ("run_id", "idempotency_key"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise HTTPError(422, f"{key!r} must be a string")
        options = {"run_id": body.get("run_id"), "idempotency_key": body.get("idempotency_key")}
        workflow = runtime.get_workflow(name) if runtime is not None else None
        try:
            if workflow is not None:
                assert runtime is not None
                run = await runtime.start_run(workflow, args, kwargs, **options)
            else:  # not defined here: a worker may have published it
                run = await self.ctx.client.start_published(name, args, kwargs, **options)
        except WorkflowNotFound as exc:
            if runtime is None and not exc.known:
                raise HTTPError(
                    503, "this server has a store but no runtime, and no worker has published workflows in it yet: "
                    "run `durable worker --app MODULE` on this store, or serve create_app(Runtime(...))",
                ) from None
            raise HTTPError(404, f"no workflow named {name!r}", workflows=exc.known) from None
        except RunConflict as exc:
            raise HTTPError(409, str(exc)) from None
        except TypeError as exc:  # the arguments do not fit the workflow (SerializationError is one too)
            raise HTTPError(422, f"bad arguments for {name}: {exc}") from None
        except ValueError as exc:
            raise HTTPError(422, str(exc)) from None
        return JSONResponse({"run_id": run.run_id, "workflow": name}, status_code=201)

    async def fork(self, request: Request) -> Response:
        """``{"from_step": 4 | "step_4" | null, "input": [...] | {"args": [...], "kwargs": {...}} | null}``:
        a new run reusing the run's history before that step (null: where a rerun of a failed or
        cancelled run starts)."""
        run_id = request.path_params["run_id"]
        await self.ctx.run_record(run_id)
        raw = await read_body(request, self.ctx.max_body, self.ctx.body_timeout)
        body = parse_json(raw) if raw.strip() else {}
        if not isinstance(body, dict) or set(body) - {"from_step", "input"}:
            raise HTTPError(422, 'expected {"from_step": 4 or "step_4" (or null: rerun), "input": [...] (optional)}')
        step = body.get("from_step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int | str)):
            raise HTTPError(422, "'from_step' must be a step's position (4) or id ('step_4')")
        try:
            new = await fork_run(
                self.ctx.store, run_id, step, body.get("input"), find=self.ctx.client.get_workflow, rerun=step is None
            )
        except (ForkError, NonDeterminismError) as exc:
            raise HTTPError(409, str(exc)) from None
        except WorkflowNotFound as exc:
            raise HTTPError(422, f"new input needs the workflow's code in this server: {exc}") from None
        except TypeError as exc:
            raise HTTPError(422, str(exc)) from None
        return JSONResponse(run_summary(await Run(new, self.ctx.client).info()), status_code=201)

    async def cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_body(request, self.ctx.max_body, self.ctx.body_timeout)
        if body.strip() and not isinstance(parse_json(body), dict):  # none, or {} (a JSON object, for CSRF rules)
            raise HTTPError(422, "the body of a cancel is empty or a JSON object ({})")
        try:
            status = await self.ctx.client.cancel(run_id)
        except RunNotFound:
            raise HTTPError(404, f"no run with id {run_id!r}") from None
        return JSONResponse({"run_id": run_id, "status": status})

    # -- following -----------------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        namespace = request.path_params.get("namespace", DEFAULT_NAMESPACE)
        if not namespace:
            raise HTTPError(400, "the stream namespace is empty")
        await self.ctx.run_record(run_id)
        # Negative: counted from the end ("the last n chunks").
        start = int_param(request, "start_index", 0, minimum=-MAX_INDEX, maximum=MAX_INDEX)
        last_id = request.headers.get("last-event-id", "").strip()
        if last_id:
            if not (last_id.isascii() and last_id.isdigit()) or int(last_id) >= MAX_INDEX:
                raise HTTPError(400, f"Last-Event-ID must be a chunk index (0 or more), got {last_id!r}")
            start = int(last_id) + 1
        pages = follow_pages(self.ctx.reads, run_id, namespace, start, poll_interval=self.ctx.poll_interval)
        if prefers_ndjson(request.headers.get("accept", "")):
            return ndjson_response(pages)
        return sse_response(pages, ping=self.ctx.ping)

    async def live_runs(self, request: Request) -> Response:
        """A page of runs (the list's filters and cursor; the first page without one), as GET /runs
        answers it, re-sent whenever it changes."""
        await self._page(request)  # a bad filter or cursor is a 400, before the stream begins
        store = self.ctx.store

        async def read() -> tuple[str, Any, bool]:
            return "runs", await self._page(request), False

        updates = changes(store, ("runs",), poll_interval=self.ctx.poll_interval, settle=_LIVE_SETTLE)
        return EventSourceResponse(snapshots(updates, read), ping=self.ctx.ping, sep="\n")

    async def live_run(self, request: Request) -> Response:
        """One run's detail, re-sent whenever its log grows; ``event: end`` once it has ended."""
        run_id = request.path_params["run_id"]
        await self.ctx.run_record(run_id)
        tracebacks = self.ctx.tracebacks(request)
        timeline = Timeline()  # this feed's own: each update reads only the events after the last one

        async def read() -> tuple[str, Any, bool]:
            detail = await self._detail(run_id, tracebacks=tracebacks, timeline=timeline)
            return "run", detail, detail["status"] in TERMINAL

        updates = changes(self.ctx.store, ("run", run_id), poll_interval=self.ctx.poll_interval, settle=_LIVE_SETTLE)
        return EventSourceResponse(snapshots(updates, read), ping=self.ctx.ping, sep="\n")

