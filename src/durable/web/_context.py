"""What every endpoint acts on: the store, the runtime when there is one, and the limits."""

from __future__ import annotations

from dataclasses import dataclass

from .._runtime import Runtime
from ..stores._base import RunRecord, Store
from ._http import HTTPError
from ._streams import SharedReads


@dataclass(frozen=True, slots=True)
class Context:
    """``runtime`` is None when the app serves a bare store (read, cancel and resume only).

    ``resumer`` delivers hook payloads and webhook requests: the runtime, or else a runtime
    object that is never opened -- its resume methods only write to the store, and the
    worker that owns the run picks the payload up from there.
    """

    store: Store
    runtime: Runtime | None
    resumer: Runtime
    max_body: int
    webhook_timeout: float
    ping: float
    poll_interval: float
    reads: SharedReads

    async def run_record(self, run_id: str) -> RunRecord:
        record = await self.store.get_run(run_id)
        if record is None:
            raise HTTPError(404, f"no run with id {run_id!r}")
        return record
