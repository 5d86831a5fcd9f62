"""The workflow code of examples/worker_and_client.py: only the worker process imports it."""

from __future__ import annotations

import durable


@durable.step
async def price(item: str, quantity: int) -> int:
    return {"apple": 30, "pear": 45}.get(item, 100) * quantity


@durable.workflow
async def order(item: str, quantity: int = 1, *, note: str = "") -> dict[str, object]:
    return {"item": item, "total": await price(item, quantity), "note": note}
