"""Shared fixtures: one ``store_url`` parametrised over every backend, and a running ``runtime``.

PostgreSQL joins the parametrisation when ``DURABLE_TEST_POSTGRES`` names a server (CI sets
it); if it is set but the server cannot be reached, the tests fail instead of skipping.
Plain helpers shared by several modules are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import durable
from durable.stores._base import Store
from tests.helpers import SurvivingMemoryStore, deployable, fresh_store_url, sqlite_store_url

BACKENDS = ["memory", "sqlite"] + (["postgres"] if os.environ.get("DURABLE_TEST_POSTGRES") else [])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind: str = request.param
    return fresh_store_url(kind, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return sqlite_store_url(tmp_path / "durable.db")


@pytest.fixture
async def runtime(store_url: str) -> AsyncIterator[durable.Runtime]:
    async with durable.Runtime(store_url, heartbeat_interval=0.2, poll_interval=0.2) as rt:
        yield rt


@pytest.fixture
async def deploy_store(store_url: str) -> AsyncIterator[str | Store]:
    """``store_url`` for runtimes started one after another over the same runs (a deploy of new code)."""
    store = deployable(store_url)
    yield store
    if isinstance(store, SurvivingMemoryStore):
        await store.release()
