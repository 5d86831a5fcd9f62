"""The runs list: its filters, read from the query string, and its pages, each with a cursor to the next.

The store filters by status, workflow, queue and version and pages newest first (by creation, then
id). The other filters -- a creation time range, a run id prefix -- are applied here to the
runs the store returns, reading on in batches until a page is full or a bounded number of runs
has been looked at; ``next_cursor`` then names the last run looked at, so the next page carries
on from there. A page can so hold fewer runs than ``limit`` and still have a next page: "looked
at 2,000 runs, these matched". Runs created before ``created_after`` end the search at once
(the order is by creation time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from .._client.client import Client
from .._core.errors import RunNotFound
from ..stores._base import RunRecord, Store
from ._http import HTTPError, int_param

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
SCAN_BATCH = 500  # runs read from the store at once while filtering here
SCAN_BUDGET = 2000  # runs looked at for one page, at most
_MAX_PREFIX = 200


@dataclass(frozen=True, slots=True)
class RunFilters:
    status: str | None = None
    workflow: str | None = None
    limit: int = 50
    version: str | None = None
    created_after: float | None = None  # epoch seconds, inclusive
    created_before: float | None = None  # epoch seconds, exclusive
    id_prefix: str | None = None
    queue: str | None = None

    @property
    def store_filters(self) -> dict[str, Any]:
        """What the store itself filters by."""
        return {"status": self.status, "workflow": self.workflow, "queue": self.queue, "version": self.version}

    @property
    def filters_here(self) -> bool:
        return any(v is not None for v in (self.created_after, self.created_before, self.id_prefix))

    def matches(self, r: RunRecord) -> bool:
        if self.id_prefix is not None and not r.run_id.startswith(self.id_prefix):
            return False
        if self.created_after is not None and r.created_at < self.created_after:
            return False
        return self.created_before is None or r.created_at < self.created_before


def parse_filters(request: Request, client: Client) -> RunFilters:
    """The list's filters from the query string, or 400 naming the one that is wrong."""
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise HTTPError(400, f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    prefix = query.get("id_prefix") or None
    if prefix is not None and len(prefix) > _MAX_PREFIX:
        raise HTTPError(400, f"id_prefix is longer than {_MAX_PREFIX} characters")
    after, before = _time(request, "created_after"), _time(request, "created_before")
    return RunFilters(
        status=status,
        workflow=client.stored_name(query.get("workflow") or None),
        limit=int_param(request, "limit", 50, minimum=1, maximum=1000),
        version=query.get("version") or None,
        created_after=after,
        created_before=before,
        id_prefix=prefix,
        queue=query.get("queue") or None,
    )


def _time(request: Request, name: str) -> float | None:
    """A time as ISO 8601 (a time without a zone is UTC) or epoch seconds."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be an ISO 8601 time (2025-01-31T14:00:00Z) or epoch seconds, got {raw!r}") from None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


Summarize = Callable[[list[RunRecord]], Awaitable[list[dict[str, Any]]]]


async def list_page(store: Store, filters: RunFilters, cursor: str | None, summarize: Summarize) -> dict[str, Any]:
    """``{"runs": [...], "next_cursor": id | None}`` (and ``"searched"``: how many runs were looked
    at, when filters applied here); 400 for a cursor that names no run."""
    try:
        if not filters.filters_here:
            records = await store.list_runs(**filters.store_filters, limit=filters.limit, before=cursor)
            next_cursor = records[-1].run_id if len(records) == filters.limit else None
            return {"runs": await summarize(records), "next_cursor": next_cursor}
        found, next_cursor, searched = await _search(store, filters, cursor)
    except RunNotFound:
        raise HTTPError(400, f"unknown cursor {cursor!r}: pass the next_cursor of a previous page") from None
    return {"runs": await summarize(found), "next_cursor": next_cursor, "searched": searched}


async def _search(store: Store, filters: RunFilters, cursor: str | None) -> tuple[list[RunRecord], str | None, int]:
    found: list[RunRecord] = []
    searched = 0
    before = cursor
    while searched < SCAN_BUDGET:
        want = min(SCAN_BATCH, SCAN_BUDGET - searched)
        batch = await store.list_runs(**filters.store_filters, limit=want, before=before)
        for r in batch:
            searched += 1
            before = r.run_id
            if filters.created_after is not None and r.created_at < filters.created_after:
                return found, None, searched  # newest first: every run from here on is older
            if filters.matches(r):
                found.append(r)
                if len(found) == filters.limit:
                    return found, r.run_id, searched
        if len(batch) < want:
            return found, None, searched  # the store has no more
    return found, before, searched
