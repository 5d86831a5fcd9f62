"""Changing a workflow while runs are in flight: ``durable.patched``, ``deprecate_patch``, retiring a patch.

Run: ``python examples/patching.py`` (a SQLite file in a temporary directory; pass a store URL to
choose one). Four deploys of ``checkout`` over one store, each a new runtime, as a restarted
worker would be. Deploy 2 changes a step's arguments, inserts a step and removes one, each
behind its own patch, while two runs of deploy 1 are in flight: one that has not reached the
changed code yet (it takes the new code) and one that has (it replays and finishes on the old
code). Deploy 3 deprecates the patches once every run of deploy 1 is done; deploy 4 removes them.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import durable


@durable.step
async def reserve(order: str) -> str:
    return f"reserved {order}"


@durable.step
async def charge(order: str, amount: int, currency: str = "EUR") -> str:
    return f"charged {amount} {currency}"


@durable.step
async def fraud_check(order: str) -> str:
    return "fraud check passed"


@durable.step
async def send_receipt(order: str) -> str:
    return "receipt sent"


# -- deploy 1 -----------------------------------------------------------------------------------


async def checkout_v1(order: str, amount: int) -> list[str]:
    done = [await reserve(order)]
    await durable.create_hook(token=f"confirm:{order}")  # the customer confirms
    done.append(await charge(order, amount))
    done.append(await send_receipt(order))
    await durable.create_hook(token=f"delivered:{order}")  # the carrier reports delivery
    return done


# -- deploy 2: three changes, each behind its own patch -------------------------------------------


async def checkout_v2(order: str, amount: int) -> list[str]:
    done = [await reserve(order)]
    await durable.create_hook(token=f"confirm:{order}")
    if durable.patched("fraud-check"):  # a step inserted
        done.append(await fraud_check(order))
    if durable.patched("charge-usd"):  # a step's arguments changed
        done.append(await charge(order, amount, currency="USD"))
    else:
        done.append(await charge(order, amount))
    if not durable.patched("no-receipt"):  # a step removed: runs that recorded it still have it
        done.append(await send_receipt(order))
    await durable.create_hook(token=f"delivered:{order}")
    return done


# -- deploy 3: every run of deploy 1 has finished, so the old branches go -------------------------


async def checkout_v3(order: str, amount: int) -> list[str]:
    done = [await reserve(order)]
    await durable.create_hook(token=f"confirm:{order}")
    durable.deprecate_patch("fraud-check")
    done.append(await fraud_check(order))
    durable.deprecate_patch("charge-usd")
    done.append(await charge(order, amount, currency="USD"))
    durable.deprecate_patch("no-receipt")
    await durable.create_hook(token=f"delivered:{order}")
    return done


# -- deploy 4: no unfinished run holds a marker any more (durable check-replay says so) ----------------


async def checkout_v4(order: str, amount: int) -> list[str]:
    done = [await reserve(order)]
    await durable.create_hook(token=f"confirm:{order}")
    done.append(await fraud_check(order))
    done.append(await charge(order, amount, currency="USD"))
    await durable.create_hook(token=f"delivered:{order}")
    return done


def deploy(code: Callable[..., Awaitable[list[str]]]) -> durable.Workflow[Any, Any]:
    """The workflow as one deploy defines it: the same name every time, as an edited file would."""
    return durable.workflow(name="examples.checkout")(code)


async def wait_at(rt: durable.Runtime, run_id: str, token: str) -> None:
    await rt.run(run_id).wait_for_hook(token, timeout="10s")


async def finish(rt: durable.Runtime, run_id: str, order: str, *tokens: str) -> None:
    for token in tokens:
        await wait_at(rt, run_id, f"{token}:{order}")
        await rt.resume_hook(f"{token}:{order}", "ok")
    print(f"{order}:", await rt.run(run_id).result(timeout=10))


async def main(store: str) -> None:
    async with durable.Runtime(store, workflows=[deploy(checkout_v1)]) as rt:
        a = (await rt.start("examples.checkout", "A", 40)).run_id  # not confirmed yet
        b = (await rt.start("examples.checkout", "B", 50)).run_id
        await wait_at(rt, b, "confirm:B")
        await rt.resume_hook("confirm:B", "ok")  # B is charged and gets its receipt under v1
        await wait_at(rt, b, "delivered:B")
        await wait_at(rt, a, "confirm:A")

    async with durable.Runtime(store, workflows=[deploy(checkout_v2)]) as rt:
        await finish(rt, a, "A", "confirm", "delivered")  # reaches the changed code after the deploy
        await finish(rt, b, "B", "delivered")  # had passed it: replays the old branches
        c = (await rt.start("examples.checkout", "C", 60)).run_id
        await finish(rt, c, "C", "confirm", "delivered")
        d = (await rt.start("examples.checkout", "D", 70)).run_id  # still in flight at deploy 3
        await wait_at(rt, d, "confirm:D")

    async with durable.Runtime(store, workflows=[deploy(checkout_v3)]) as rt:
        await finish(rt, d, "D", "confirm", "delivered")

    async with durable.Runtime(store, workflows=[deploy(checkout_v4)]) as rt:
        e = (await rt.start("examples.checkout", "E", 80)).run_id
        await finish(rt, e, "E", "confirm", "delivered")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(f"sqlite:///{Path(tmp) / 'patching.db'}?synchronous=normal"))
