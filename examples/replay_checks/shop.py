"""The application the replay checks test: ``checkout`` as it is deployed now.

The runs in ``histories/`` were recorded by the code before the gift-wrap step was added
(``record.py``); the ``patched()`` guard lets them replay, which ``test_histories.py`` and
``durable check-replay --app shop`` check before this code is deployed.
"""

from __future__ import annotations

import durable


@durable.step
async def reserve(order: str) -> str:
    return f"reserved {order}"


@durable.step
async def gift_wrap(order: str) -> str:
    return f"wrapped {order}"


@durable.step
async def ship(order: str) -> str:
    return f"shipped {order}"


@durable.workflow(name="shop.checkout", version="2")
async def checkout(order: str) -> list[str]:
    done = [await reserve(order)]
    await durable.create_hook(token=f"paid:{order}")
    if durable.patched("gift-wrap"):
        done.append(await gift_wrap(order))
    done.append(await ship(order))
    await durable.create_hook(token=f"delivered:{order}")
    return done
