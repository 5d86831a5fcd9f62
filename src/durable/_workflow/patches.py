"""``durable.patched`` and ``durable.deprecate_patch``: change workflow code while runs are in flight.

A patch marker is a command like a step or a timer: the first time a run reaches
``patched("fee-v2")`` it records the marker at that position and takes the patched branch;
a replay of that run finds the marker there and takes it again. A run recorded before the
patch existed holds something else at that position: ``patched`` returns False without
taking the position, and the old branch replays against the old records.
"""

from __future__ import annotations

from .._core.ids import check_label
from .context import workflow_host


def patched(patch_id: str) -> bool:
    """True if this run takes the code guarded by ``patch_id``: a run reaching this point for the
    first time (and every replay of it); False in a run recorded before the patch existed.

    ::

        if durable.patched("fee-v2"):
            fee = await compute_fee_v2(order)
        else:
            fee = await compute_fee(order)   # the code the old runs recorded

    Use each patch id once per workflow (a second call in the same run is NonDeterminismError).
    """
    return workflow_host("patched").patch(check_label(patch_id, "patch id"), deprecated=False)


def deprecate_patch(patch_id: str) -> None:
    """The step after every run recorded before ``patch_id`` has finished: keep only the patched
    code. Runs that recorded the marker replay; new runs still record it (so workers running the
    ``patched()`` version during a rolling deploy take the patched branch for them too).
    Remove the call once no unfinished run holds the marker (``durable check-replay`` tells you)."""
    workflow_host("deprecate_patch").patch(check_label(patch_id, "patch id"), deprecated=True)
