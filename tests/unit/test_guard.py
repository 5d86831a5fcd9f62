"""Wall clocks and global randomness in workflow code are caught while it runs: a warning once per
workflow and call, naming the replacement, or with ``Runtime(strict=True)`` an error that fails the run.
Steps and code outside workflows call them freely."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

import durable

pytestmark = pytest.mark.anyio

CALLS: dict[str, tuple[Callable[[], Any], str]] = {
    "time.time()": (lambda: time.time(), "durable.now()"),
    "datetime.now()": (lambda: datetime.now(), "durable.now()"),
    "datetime.utcnow()": (lambda: dt.datetime.utcnow(), "durable.now()"),
    "date.today()": (lambda: dt.date.today(), "durable.now()"),
    "random.random()": (lambda: random.random(), "durable.random()"),
    "random.randint()": (lambda: random.randint(1, 6), "durable.random()"),
    "uuid.uuid4()": (lambda: uuid.uuid4(), "durable.uuid4()"),
}


@durable.step
async def reads_the_clock_in_a_step() -> float:
    return time.time() + random.random() + datetime.now().timestamp() + uuid.uuid4().int % 2


@durable.workflow
async def clock_reader(call: str) -> str:
    logging.getLogger("tests.guard").warning("logging reads the clock too, and that is not the workflow's doing")
    CALLS[call][0]()
    CALLS[call][0]()  # twice: still one warning
    await reads_the_clock_in_a_step()
    return "done"


@durable.workflow
async def clean_workflow() -> str:
    stamp = durable.now().isoformat() + str(durable.random()) + str(durable.uuid4())
    await reads_the_clock_in_a_step()
    return stamp[:4]


async def test_wall_clock_and_global_random_in_workflow_code_warn_once_naming_the_replacement() -> None:
    """Each of time.time(), datetime.now()/utcnow(), date.today(), random.*() and uuid.uuid4() called in
    a workflow warns once per workflow and call, naming the call and its durable replacement; the same
    calls in a step, in logging, or outside any workflow do not warn."""
    async with durable.Runtime("memory://", workflows=[clock_reader, clean_workflow]) as rt:
        for call, (_, instead) in CALLS.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(2):  # two runs of one workflow: one warning
                    assert await (await rt.start(clock_reader, call)).result(timeout=10) == "done"
            found = [w for w in caught if issubclass(w.category, durable.NonDeterministicCallWarning)]
            assert len(found) == 1, (call, [str(w.message) for w in caught])
            message = str(found[0].message)
            assert call in message and instead in message and "clock_reader" in message, message
            assert found[0].filename == __file__  # points at the workflow's own line
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await (await rt.start(clean_workflow)).result(timeout=10)
            time.time(), datetime.now(), random.random(), uuid.uuid4()  # outside a workflow
        assert not [w for w in caught if issubclass(w.category, durable.NonDeterministicCallWarning)]


@durable.workflow
async def strict_clock_reader(call: str) -> str:
    CALLS[call][0]()
    return "not reached"


async def test_strict_runtimes_fail_the_run_naming_the_call(store_url: str) -> None:
    """Under Runtime(strict=True) such a call raises NonDeterministicCallError in the workflow: the run
    fails with it, naming the call and its replacement."""
    async with durable.Runtime(store_url, workflows=[strict_clock_reader], strict=True) as rt:
        for call in ("time.time()", "datetime.now()", "random.random()", "uuid.uuid4()"):
            run = await rt.start(strict_clock_reader, call)
            with pytest.raises(durable.RunFailed) as info:
                await run.result(timeout=10)
            assert info.value.error_type == "durable.NonDeterministicCallError"
            assert call in info.value.message and "durable." in info.value.message, info.value.message
    with pytest.raises(TypeError, match="strict must be True or False"):
        durable.Runtime("memory://", strict="yes")  # type: ignore[arg-type]
