"""What several test modules share: the repository's root, fresh store URLs, a run's input
encoded by hand, waiting for a run to reach a hook or a status, and a real server to test against.

Fixtures live in ``tests/conftest.py``; this module holds plain functions, imported as
``from tests.helpers import ...``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

import durable
from durable._core import codec as _codec
from durable.stores._base import Store
from durable.stores._sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]


# -- stores -------------------------------------------------------------------------------------------


def sqlite_store_url(path: Path, *, synchronous: str = "normal") -> str:
    """A SQLite store URL for the file ``path`` (``synchronous=normal`` unless told otherwise)."""
    return f"sqlite:///{path}?synchronous={synchronous}"


def fresh_store_url(kind: str, directory: Path) -> str:
    """A store URL of backend ``kind`` (memory, sqlite or postgres) that no other test uses."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return sqlite_store_url(directory / "durable.db")
    from tests.pg import fresh_database  # psycopg is imported only where PostgreSQL is wanted

    return fresh_database(os.environ["DURABLE_TEST_POSTGRES"], f"t_{uuid.uuid4().hex[:12]}")


def undo_rowless_step() -> list[str]:
    """The statements that take a store of the current schema back to schema 7 (before a completed inline
    step kept no row): each such step gets the row schema 7 would have written, then the column goes. (Its
    log keeps the step_created events that started their steps, schema 9's: this version reads both forms.)"""
    return [
        "INSERT INTO steps (run_id, step_id, name, status, attempt, max_attempts, input, output, created_at, started_at, "
        "attempt_started_at, completed_at) SELECT c.run_id, c.corr_id, c.name, 'completed', COALESCE(d.attempt, 1), "
        "c.max_attempts, c.data, d.data, c.created_at, c.created_at, c.created_at, d.created_at FROM events c "
        "JOIN events d ON d.run_id = c.run_id AND d.corr_id = c.corr_id AND d.kind = 'step_completed' "
        "WHERE c.kind = 'step_created' AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = c.run_id AND "
        "s.step_id = c.corr_id)",
        "ALTER TABLE events DROP COLUMN max_attempts",
    ]


def undo_inline_step() -> list[str]:
    """The statements that take a store of the current schema back to schema 6 (before runs kept their
    inline step): the index first, as SQLite cannot drop an indexed column. Tests that take a store back
    further run these first."""
    from durable.stores import _sql

    return [
        *undo_rowless_step(), "DROP INDEX runs_inline_owner",
        *(f"ALTER TABLE runs DROP COLUMN {c}" for c in _sql.INLINE_COLUMNS),
    ]


def encode_args(*args: Any, **kwargs: Any) -> bytes:
    """A run's (or a step's) input as Runtime.start encodes it, for runs and events made by hand."""
    return _codec.encode({"args": list(args), "kwargs": kwargs})


# -- waiting ------------------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it is true; TimeoutError after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def wait_for_hook(runtime: durable.Runtime, token: str) -> None:
    """Poll until a live hook holds ``token`` (the run reached create_hook and committed)."""
    with anyio.fail_after(10):
        while await runtime.store.get_hook(token) is None:
            await anyio.sleep(0.01)


async def wait_for_status(run: durable.Run, status: str, timeout: float = 10.0) -> None:
    """Poll until ``run`` has ``status``; TimeoutError after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while await run.status() != status:
            await anyio.sleep(0.01)


# -- a real server --------------------------------------------------------------------------------------


async def start_over_http(client: httpx.AsyncClient, workflow: str, *args: Any, **kwargs: Any) -> str:
    """POST /runs for ``workflow`` with these arguments; the new run's id (the answer must be 201)."""
    response = await client.post("/runs", json={"workflow": workflow, "args": list(args), "kwargs": kwargs})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running_server(
    directory: Path, source: str, app_spec: str | None, module: str = "flows", env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Write ``source`` as ``module``.py in ``directory`` and ``durable serve --app app_spec`` from there
    (no --app if None); yield (base URL, process)."""
    (directory / f"{module}.py").write_text(source)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("DURABLE_API_TOKEN", "DURABLE_BASE_URL")}
    environment["DURABLE_STORE"] = sqlite_store_url(directory / "server.db")
    environment.update(env or {})
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "durable", "serve", *(["--app", app_spec] if app_spec else []), "--port", str(port)],
        cwd=directory, env=environment, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{(directory / 'server.log').read_text()}")
            try:
                if httpx.get(base + "/", timeout=1).status_code == 200:  # the page is public even with a token
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up:\n{(directory / 'server.log').read_text()}")
            time.sleep(0.05)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


# -- deploying new code over the same store ---------------------------------------------------------


class SurvivingMemoryStore(SQLiteStore):
    """A ``memory://`` store that outlives the runtimes given it (each closes its store on exit), so a
    test can stop one runtime and start another with changed code over the same runs: a deploy."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self._opened = False

    async def open(self) -> None:
        if not self._opened:
            await super().open()
            self._opened = True

    async def aclose(self) -> None:
        """Kept open: the next runtime reads what the last one wrote (:meth:`release` closes it)."""

    async def release(self) -> None:
        if self._opened:
            self._opened = False
            await super().aclose()


def deployable(store_url: str) -> str | Store:
    """What to give each runtime of a deploy test: the URL itself, or for ``memory://`` one store kept open."""
    return SurvivingMemoryStore() if store_url == "memory://" else store_url


# -- a small file system ---------------------------------------------------------------------------------


@contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"2m"``) mounted at ``directory`` for the block: a disk that really fills
    up, or (remounted read-only) a read-only location. Skips the test, saying why, where mounting is
    impossible (not root, no mount namespace); CI runs as root, where it works."""
    import pytest

    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def remount(directory: Path, mode: str) -> None:
    """Remount the tmpfs at ``directory`` ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True, capture_output=True)


def fill_disk(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system is full; return it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last scraps, so the next write of any size fails
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler
