"""Shared fixtures: one ``store_url`` parametrised over every backend, and a running ``runtime``.

PostgreSQL joins the parametrisation when ``DURABLE_TEST_POSTGRES`` names a server (CI sets
it); if it is set but the server cannot be reached, the tests fail instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import durable

BACKENDS = ["memory", "sqlite"] + (["postgres"] if os.environ.get("DURABLE_TEST_POSTGRES") else [])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_store_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'durable.db'}?synchronous=normal"
    base = os.environ["DURABLE_TEST_POSTGRES"]
    from tests.pg import fresh_database

    return fresh_database(base, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_store_url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'durable.db'}?synchronous=normal"


@pytest.fixture
async def runtime(store_url: str) -> AsyncIterator[durable.Runtime]:
    async with durable.Runtime(store_url, heartbeat_interval=0.2, poll_interval=0.2) as rt:
        yield rt
