"""Child runs as workflow code sees them: a handle on a run the workflow started.

``await child_wf(...)`` in a workflow starts a child run and waits for its result;
``await durable.start_child(child_wf, ...)`` returns a :class:`ChildHandle` at once. The start
is a recorded command (``child_started``) at its position, and the child's end comes back as
a delivery (``child_completed``, ``child_failed``, ``child_cancelled``), appended to the
parent's log by the child's last transaction -- so a parent replayed after a crash finds its
child where it left it, and never starts it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, Generic, Literal, TypeVar

from .context import WorkflowHost

T = TypeVar("T")
ParentClose = Literal["cancel", "abandon"]
PARENT_CLOSE_POLICIES: tuple[str, ...] = ("cancel", "abandon")


def check_parent_close(policy: object) -> ParentClose:
    if policy not in PARENT_CLOSE_POLICIES:
        raise ValueError(
            f"on_parent_close must be 'cancel' (the child is cancelled when its parent ends unfinished work) "
            f"or 'abandon' (it runs on alone), got {policy!r}"
        )
    return policy  # type: ignore[return-value]


class ChildHandle(Generic[T]):
    """A child run started by this workflow: ``await handle`` for its result, ``handle.cancel()`` to cancel it.

    Awaiting raises what the child raised (re-created when its type can be, else
    :class:`~durable.ChildFailed`), or :class:`~durable.RunCancelled` if it was cancelled.
    A handle may be awaited more than once; cancelling one awaiter (a timeout) leaves the
    child running and the handle usable.
    """

    def __init__(
        self, host: WorkflowHost, correlation_id: str, run_id: str, workflow_name: str, future: asyncio.Future[Any]
    ) -> None:
        self._host = host
        self.correlation_id = correlation_id
        self.run_id = run_id
        self.workflow_name = workflow_name
        self._future = future

    def __repr__(self) -> str:
        return f"<durable.ChildHandle {self.run_id} of {self.workflow_name!r}>"

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """Whether the child's end has reached this workflow."""
        return self._future.done()

    def cancel(self) -> None:
        """Cancel the child run (recorded with the workflow's next commit); awaiting it then raises RunCancelled."""
        self._host.cancel_child(self.correlation_id)

    async def _wait_or_cancel(self) -> T:
        """``await child_wf(...)``: if the awaiting task is cancelled, the child is cancelled too."""
        try:
            result: T = await self._future
        except asyncio.CancelledError:
            self.cancel()
            raise
        return result
