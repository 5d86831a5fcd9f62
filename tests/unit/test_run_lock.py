"""The lock each run's invocations take in one process (RunLock): one at a time, first come first
served, never yielding when free, and never lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest

from durable._worker.sticky import RunLock

pytestmark = pytest.mark.anyio


async def test_taking_a_free_lock_does_not_yield() -> None:
    lock = RunLock()
    ran: list[str] = []
    other = asyncio.get_running_loop().call_soon(ran.append, "other")
    async with lock:
        assert lock.locked()
        assert ran == []  # nothing else ran: the free path never gave the loop a turn
    assert not lock.locked()
    other.cancel()


async def test_holders_take_turns_in_the_order_they_came() -> None:
    lock = RunLock()
    order: list[tuple[int, str]] = []

    async def hold(i: int) -> None:
        async with lock:
            order.append((i, "in"))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            order.append((i, "out"))

    await asyncio.gather(*(hold(i) for i in range(4)))
    assert order == [(i, edge) for i in range(4) for edge in ("in", "out")]
    assert not lock.locked()


async def test_a_waiter_cancelled_while_waiting_leaves_the_lock_to_the_rest() -> None:
    lock = RunLock()
    entered: list[int] = []

    async def hold(i: int) -> None:
        async with lock:
            entered.append(i)
            await asyncio.sleep(0)

    await lock.__aenter__()
    first, second, third = (asyncio.create_task(hold(i)) for i in range(3))
    await asyncio.sleep(0)  # all three wait
    second.cancel()
    await asyncio.sleep(0)
    await lock.__aexit__(None, None, None)
    await asyncio.gather(first, third)
    assert second.cancelled()
    assert entered == [0, 2]
    assert not lock.locked()


async def test_a_waiter_cancelled_just_as_it_was_handed_the_lock_passes_it_on() -> None:
    lock = RunLock()
    entered: list[int] = []

    async def hold(i: int) -> None:
        async with lock:
            entered.append(i)

    await lock.__aenter__()
    first, second = asyncio.create_task(hold(0)), asyncio.create_task(hold(1))
    await asyncio.sleep(0)  # both wait
    await lock.__aexit__(None, None, None)  # hands the lock to the first ...
    first.cancel()  # ... which is cancelled before it runs again
    done, _ = await asyncio.wait([first, second], timeout=5)
    assert second in done, "the lock was lost with the cancelled task: the next waiter waits forever"
    assert first.cancelled()
    assert entered == [1]  # the second got it: a lock handed to a cancelled task is not lost
    assert not lock.locked()
