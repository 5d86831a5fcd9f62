"""PostgreSQL for the tests: a fresh schema per test, a superuser connection, and server control.

Each test gets its own schema in the ``DURABLE_TEST_POSTGRES`` database (``?schema=t_...``
on the URL; the store creates the tables): creating a schema takes milliseconds where a
new database takes a few hundred. Schemas are dropped when the test process exits;
leftovers of killed test processes older than an hour are dropped by the next run.

If the server cannot be reached this raises, so a test that asked for PostgreSQL fails
(it never skips): CI sets ``DURABLE_TEST_POSTGRES`` precisely so these tests run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

_MARK = "durable-test"
_created: list[tuple[str, str]] = []  # (base url, schema)
_swept: set[str] = set()


def admin(base_url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the test database (fails loudly if the server is not there)."""
    try:
        return psycopg.connect(base_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"DURABLE_TEST_POSTGRES is set but PostgreSQL cannot be reached: {' '.join(str(exc).split())}"
        ) from None


def with_options(url: str, **options: str) -> str:
    """``url`` with query options added or replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(options)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def connect(store_url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the schema a store URL names (``?schema=``), to inspect its tables."""
    parts = urlsplit(store_url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.pop("schema", None)
    for option in ("pool_size", "reconnect_timeout"):
        query.pop(option, None)
    if schema:
        query["options"] = f"-c search_path={schema}"
    return admin(urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))))


def fresh_database(base_url: str, name: str) -> str:
    """A store URL for a new, empty schema ``name`` in the database of ``base_url``."""
    with admin(base_url) as conn:
        if base_url not in _swept:
            _sweep(conn)
            _swept.add(base_url)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(sql.Identifier(name), sql.Literal(f"{_MARK} {time.time():.0f}")))
    if not _created:
        atexit.register(_drop_created)
    _created.append((base_url, name))
    return with_options(base_url, schema=name)


def drop_schema(base_url: str, name: str) -> None:
    with admin(base_url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _drop_created() -> None:
    for base_url, name in _created:
        with contextlib.suppress(Exception):  # the server may be gone at exit; the next run sweeps
            drop_schema(base_url, name)


def _sweep(conn: psycopg.Connection[Any]) -> None:
    """Drop test schemas left by killed test processes (marked, and older than an hour)."""
    rows = conn.execute(
        "SELECT n.nspname, obj_description(n.oid, 'pg_namespace') FROM pg_namespace n "
        "WHERE obj_description(n.oid, 'pg_namespace') LIKE %s",
        (f"{_MARK} %",),
    ).fetchall()
    for schema, comment in rows:
        try:
            created = float(comment.split()[1])
        except (IndexError, ValueError):
            continue
        if created < time.time() - 3600:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def terminate_connections(base_url: str, application_name: str = "durable") -> int:
    """``pg_terminate_backend`` every connection of ``application_name`` to this database; return how many."""
    with admin(base_url) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def server_control(base_url: str) -> tuple[list[str], str] | None:
    """The command that restarts the local server of ``base_url`` (Debian's pg_ctlcluster), or None.

    Restarting needs root on the machine running the server: true in CI (``.ci/run``).
    """
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    with admin(base_url) as conn:
        row = conn.execute("SELECT current_setting('data_directory'), current_setting('port')").fetchone()
    assert row is not None
    data_dir, port = row
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[2] == port and fields[5] == data_dir:
            return ["pg_ctlcluster", fields[0], fields[1]], data_dir
    return None


def restart_server(control: tuple[list[str], str], down_for: float = 0.0) -> None:
    """Stop the server (fast: connections are cut), stay down ``down_for`` seconds, start it again."""
    command, _ = control
    subprocess.run([*command, "stop", "-m", "fast"], check=True, capture_output=True)
    time.sleep(down_for)
    subprocess.run([*command, "start"], check=True, capture_output=True)
