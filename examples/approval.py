"""Human in the loop: a workflow waits for an approval (a typed hook) with a durable timeout.

Run: ``python examples/approval.py`` (an in-memory store; pass a store URL to keep the runs).
The workflow waits; another task -- in real life a person, an HTTP call (``POST /hooks/{token}``)
or ``durable resume TOKEN JSON`` -- resumes it.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import durable


@dataclass
class Approval:
    approved: bool
    comment: str = ""


approval: durable.HookDefinition[Approval] = durable.define_hook(schema=Approval, name="examples.approval")


@durable.step
async def publish(doc_id: str) -> str:
    return f"{doc_id} published"


@durable.workflow(name="examples.review")
async def review(doc_id: str, days: float) -> str:
    durable.logger.info("waiting for approval of %s", doc_id)  # logged once, however often the run replays
    hook = approval.create(token=f"approval:{doc_id}")
    try:
        decision = await asyncio.wait_for(hook, timeout=days * 24 * 3600)  # a durable timer
    except TimeoutError:
        return f"{doc_id}: nobody answered in {days:g} days"
    if not decision.approved:
        return f"{doc_id}: rejected ({decision.comment})"
    return await publish(doc_id)


async def main(store: str) -> None:
    async with durable.Runtime(store, workflows=[review]) as rt:
        run = await rt.start(review, "doc-1", 3)
        # The run creates its hook in a moment: wait for it rather than race it (HookNotFound).
        await run.wait_for_hook("approval:doc-1", timeout="10s")
        try:
            await approval.resume("approval:doc-1", {"approved": "yes"})
        except durable.HookValidationError as exc:
            print("refused:", exc.problems)  # nothing was recorded
        await approval.resume("approval:doc-1", {"approved": True, "comment": "looks good"})
        print(await run.result(timeout=30))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))
