"""What every endpoint acts on: the store, the runtime when there is one, and the limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.requests import Request

from .._client.client import Client
from .._worker.runtime import Runtime
from ..stores._base import RunRecord, Store
from ._http import HTTPError
from ._streams import SharedReads


class Slots:
    """A cap on concurrent work that answers "full" at once instead of queueing (a queue of slow
    uploads would hold their connections all the same)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextmanager
    def take(self, full: HTTPError) -> Iterator[None]:
        if self.used >= self.limit:
            raise full
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1


@dataclass(frozen=True, slots=True)
class Context:
    """``client`` reads, cancels and resumes (the runtime itself when the app has one);
    ``runtime`` is None when the app serves a bare store: it can then not start runs. A bare
    client only writes to the store: the worker that owns a run picks up what was written.
    ``tracebacks`` says whether a request may read recorded tracebacks (the guard decides).
    """

    store: Store
    client: Client
    runtime: Runtime | None
    max_body: int
    body_timeout: float
    webhook_timeout: float
    webhook_bodies: Slots
    ping: float
    poll_interval: float
    reads: SharedReads
    tracebacks: Callable[[Request], bool] = lambda request: False

    async def run_record(self, run_id: str) -> RunRecord:
        record = await self.store.get_run(run_id)
        if record is None:
            raise HTTPError(404, f"no run with id {run_id!r}")
        return record
