"""What a run's end costs in SQL statements when it leaves nothing open (no hook, wait, stream,
child or pending step): its final commit, and a cancel, counted on every store."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import durable
from durable.stores import _sql

pytestmark = pytest.mark.anyio


class _Counting:
    """A :class:`durable.stores._sql.DB` that counts the statements sent through it."""

    def __init__(self, db: _sql.DB) -> None:
        self.db = db
        self.for_update = db.for_update
        self.for_share = db.for_share
        self.skip_locked = db.skip_locked
        self.counts_rows = db.counts_rows
        self.statements: list[str] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[_sql.Row]:
        self.statements.append(sql)
        return self.db.execute(sql, params)

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.statements.append(sql)
        return self.db.execute_count(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.statements.append(sql)  # one statement: both stores send a few rows as one multi-row INSERT
        self.db.executemany(sql, rows)

    def note(self, *topic: str) -> None:
        self.db.note(*topic)


def _counted(fn: Callable[..., Any], calls: list[list[str]], only: Callable[..., bool]) -> Callable[..., Any]:
    """``fn`` (a transaction of _sql) whose statements are recorded, one list per call ``only`` accepts."""

    @functools.wraps(fn)
    def wrapper(db: _sql.DB, *args: Any) -> Any:
        if not only(*args):
            return fn(db, *args)
        counting = _Counting(db)
        calls.append(counting.statements)
        return fn(counting, *args)

    return wrapper


@durable.step(name="runend.one")
async def one() -> int:
    return 1


@durable.workflow(name="runend.single")
async def single() -> int:
    return await one()


@durable.workflow(name="runend.never_started")
async def never_started() -> int:
    return 0


async def test_a_run_that_leaves_nothing_open_ends_in_at_most_five_statements(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final commit of a one-step run: lock (with its parent), the step's result, one look for
    anything left open, the events, the run's row -- nothing more."""
    calls: list[list[str]] = []
    monkeypatch.setattr(_sql, "commit", _counted(_sql.commit, calls, lambda inv: inv.status != "suspended"))
    async with durable.Runtime(store_url, workflows=[single]) as rt:
        assert await (await rt.start(single)).result(timeout=20) == 1
    assert calls, "the run's final commit went through _sql.commit"
    assert all(len(statements) <= 5 for statements in calls), calls


async def test_cancelling_a_run_that_holds_nothing_takes_at_most_five_statements(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cancel_run of a run no worker started: lock (with its parent), one look for anything left
    open, the event, the run's row, and the record it returns."""
    calls: list[list[str]] = []
    monkeypatch.setattr(_sql, "cancel_run", _counted(_sql.cancel_run, calls, lambda *args: True))
    async with durable.Client(store_url) as client:
        run = await client.start(never_started)
        await run.cancel()
        assert (await run.info()).status == "cancelled"
    assert len(calls) == 1 and len(calls[0]) <= 5, calls
