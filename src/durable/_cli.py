"""The ``durable`` command (also ``python -m durable``). Needs the ``web`` extra (typer, rich, uvicorn).

Every command takes ``--store URL`` (default: ``$DURABLE_STORE``, else the library default).
Errors a person can act on are one line on stderr and an exit code, never a traceback:

    0 ok · 1 not found / refused / failed · 2 bad usage (store URL, JSON, --app) · 3 store unusable · 130 interrupted
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ._client.present import (
    dumps,
    event_json,
    plain_value,
    published_json,
    queue_json,
    run_detail,
    run_summary,
    waiting_json,
    waiting_reasons,
)
from ._client.projection import HookInfo, RunInfo, StepInfo, Waiting, hook_metadata, waiting_for
from ._client.streams import read_stream
from ._core import codec as _codec
from ._core.errors import (
    DurableError,
    HookValidationError,
    InvalidStoreURL,
    RunNotFound,
    SerializationError,
    StoreError,
    WorkflowNotFound,
)
from ._core.ids import DEFAULT_NAMESPACE
from ._core.queues import QueueState
from .stores import default_url, store_from_url
from .stores._base import TERMINAL, Store
from .stores._encrypted import Encryption, encrypted

T = TypeVar("T")
# Markup is off by default: run ids, tokens, names and messages print as they are (a "[red]"
# in a token stays text). Styled lines opt in with markup=True and escape() every value.
# Piped output is not folded at 80 columns: tables stay one row per line for grep and less.
_PIPE_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240
out = Console(highlight=False, soft_wrap=False, markup=False, width=_PIPE_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

# -- terminal safety -------------------------------------------------------------------------------
# Stored text comes from outside (hook payloads over HTTP, error messages, tokens): printed raw,
# an ESC sequence in it would rewrite the operator's terminal (move the cursor, hide lines, set
# the title, ...). Every human-readable value goes through safe() on its way out: C0 and C1
# controls, DEL and the bidirectional overrides print as visible escapes. JSON output escapes
# the same characters as \uXXXX, which is still the same JSON value.
_BIDI = r"\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"  # direction marks and overrides, line separators
_CONTROLS = rf"\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}"
_UNSAFE_LINE = re.compile(rf"[\t\n{_CONTROLS}]")  # one line: a newline or tab is escaped too
_UNSAFE_TEXT = re.compile(rf"[{_CONTROLS}]")  # a block (a traceback): lines and tabs stay


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe(value: object, *, lines: bool = False) -> str:
    """``value`` as text a terminal shows but never obeys (``lines``: keep newlines and tabs)."""
    return (_UNSAFE_TEXT if lines else _UNSAFE_LINE).sub(_escaped, str(value))


_UNSAFE_JSON = re.compile(rf"[\x7f-\x9f{_BIDI}]")


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON for ``--json`` and ``tail``: the same value, with every character a terminal could act
    on written as an escape (json already escapes C0 controls; this adds DEL, C1 and bidi)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent, separators=None if indent else (",", ":"))
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class _SafeFormatter(logging.Formatter):
    """Log lines (a worker's, a server's) carry run ids, names and error messages: escaped too."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record), lines=True)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level(level: str) -> str:
    if level.lower() not in _LOG_LEVELS:
        _fail(CLIError(f"--log-level must be one of {', '.join(_LOG_LEVELS)}, not {level!r}", 2))
    return level.lower()


def _configure_logging(level: str) -> None:
    """Send the ``durable`` loggers to stderr at ``level``, one line per record, times with their zone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    logger = logging.getLogger("durable")
    logger.handlers[:] = [handler]
    logger.setLevel(_log_level(level).upper())
    logger.propagate = False


app = typer.Typer(
    name="durable",
    help="Durable workflows for asyncio: serve them, run workers, inspect and steer runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", "-s", metavar="URL", help="Store URL (default: $DURABLE_STORE, else sqlite:///.durable/durable.db).", show_default=False),
]
JSONOption = Annotated[bool, typer.Option("--json", help="Print JSON (the web API's shapes) instead of text.")]
RunIdArgument = Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.", show_default=False)]
LogLevelOption = Annotated[str, typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning or error.")]


class CLIError(Exception):
    """A problem to report in one line and exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


def _fail(error: CLIError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(safe(error.message))}", markup=True)
    raise typer.Exit(error.code)


def _exit_code(exc: DurableError) -> int:
    if isinstance(exc, InvalidStoreURL):
        return 2
    if isinstance(exc, StoreError):
        return 3
    return 1


@contextmanager
def _reported() -> Iterator[None]:
    """Turn durable's own errors (and Ctrl-C) into a message and an exit code."""
    try:
        yield
    except CLIError as exc:
        _fail(exc)
    except HookValidationError as exc:
        _fail(CLIError("invalid payload: " + "; ".join(exc.problems), 1))
    except DurableError as exc:
        _fail(CLIError(str(exc), _exit_code(exc)))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _with_store(
    url: str | None, fn: Callable[[Store], Awaitable[T]], *, create: bool = False, read_only: bool = False
) -> T:
    """Open the store at ``url``, run ``fn`` with it, close it.

    Unless ``create``, a SQLite file must already exist: opening creates one, and a mistyped
    path would then look like an empty store instead of an error. ``read_only``: a SQLite store
    is opened read-only (the commands that only read never write to it, and work on a backup or
    a read-only mount).
    """

    from .stores._sqlite import SQLiteStore

    async def main(store: Store) -> T:
        async with store:
            return await fn(store)

    with _reported():
        store = store_from_url(url)
        if not create and isinstance(store, SQLiteStore) and not store.memory and not os.path.exists(store.path):
            raise CLIError(
                f"no store at {store.path}: the SQLite file does not exist (check --store / DURABLE_STORE; "
                "`durable migrate` creates one)", 3
            )
        if read_only and isinstance(store, SQLiteStore) and not store.memory:
            store.read_only = True
        return anyio.run(main, encrypted(store, _encryption()))
    raise AssertionError("unreachable: _reported() exits on every error")


def _encryption() -> Encryption | None:
    """The keys in DURABLE_ENCRYPTION_KEY (and _KEY_ID, _OLD_KEYS), if set: encrypted payloads are
    then read (and written) as values; without them they show as "<encrypted>"."""
    try:
        return Encryption.from_env()
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc), 2) from None
    except ImportError as exc:
        raise CLIError(str(exc), 2) from None


def safe_url(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _import(module_name: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--app flows` means ./flows.py, as with uvicorn
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CLIError(f"cannot import {module_name!r}: no module named {exc.name!r} (run from its directory?)", 2) from None
        raise
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else "its source"
        raise CLIError(f"cannot import {module_name!r}: syntax error at {where}: {exc.msg}", 2) from None


def _parse_json(text: str, what: str) -> Any:
    try:
        value = json.loads(text, parse_constant=lambda name: _raise(ValueError(f"{name} is not JSON")))
        _codec.check_plain_json(value, what)
    except (ValueError, SerializationError) as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}", 2) from None
    return value


def _raise(exc: Exception) -> NoReturn:
    raise exc


def _when(when: datetime | None) -> str:
    """ISO 8601 in local time, with its zone: ``2025-05-01T14:03:07+02:00``."""
    if when is None:
        return ""
    try:
        return when.astimezone().isoformat(timespec="seconds")
    except (OverflowError, ValueError):  # the far edge of the calendar: stay in UTC
        return when.isoformat(timespec="seconds")


def _from_now(when: datetime) -> str:
    """``in 2h 05m`` or ``3s ago``, the distance a person reads before the date."""
    delta = (when - datetime.now(UTC)).total_seconds()
    size = round(abs(delta))
    if size < 1:
        return "now"
    if size < 60:
        text = f"{size}s"
    elif size < 3600:
        text = f"{size // 60}m {size % 60:02d}s"
    elif size < 86400:
        text = f"{size // 3600}h {size % 3600 // 60:02d}m"
    else:
        text = f"{size // 86400}d {size % 86400 // 3600}h"
    return f"in {text}" if delta > 0 else f"{text} ago"


def _deadline(when: datetime | None) -> str:
    return "" if when is None else f"{_when(when)} ({_from_now(when)})"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


_STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "dim", "running": "yellow", "pending": "yellow"}


def _status(status: str) -> Text:
    return Text(safe(status), style=_STATUS_STYLE.get(status, ""))


def _table(*names: str) -> Table:
    """Every column keeps its values on one line but the last (error, data), which folds."""
    table = Table(box=None, pad_edge=False)
    for name in names[:-1]:
        table.add_column(name, no_wrap=True)
    table.add_column(names[-1], overflow="fold")
    return table


def _short(value: Any, width: int = 60) -> str:
    """A preview of a JSON value on one line (escaped: it came from outside)."""
    text = json_text(value, indent=None)
    return text if len(text) <= width else text[: width - 1] + "…"


def _error(info: Any) -> str:
    return f"{safe(info.type)}: {safe(info.message)}" if info else ""


def _print_json(value: Any) -> None:
    print(json_text(value), flush=True)


# -- serving -------------------------------------------------------------------------------------


def _is_asgi_app(obj: Any) -> bool:
    """Whether ``obj`` looks like an ASGI application: an async callable (a function, or an
    object whose ``__call__`` is one), rather than any callable at all."""
    import inspect

    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)


def _load_app(
    spec: str | None, store_url: str | None, api_token: str | None, base_url: str, allowed_hosts: list[str] | None
) -> Any:
    """The ASGI app to serve for ``--app``: ``module`` (its workflows, a runtime on --store whose
    webhook URLs start with ``base_url``), ``module:obj`` where obj is an ASGI app, a Runtime or
    a Store, or nothing (the store alone)."""
    from ._worker.runtime import Runtime
    from ._workflow.workflow import workflows as registered_workflows
    from .web import create_app

    options: dict[str, Any] = {"api_token": api_token, "allowed_hosts": allowed_hosts}
    if not spec:
        return create_app(encrypted(store_from_url(store_url), _encryption()), **options)
    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if not attr:
        if not registered_workflows:  # the runtime executes every workflow defined: there is none
            raise CLIError(f"module {module_name!r} defines no durable workflows (for an ASGI app, name it: --app {module_name}:app)", 2)
        return create_app(Runtime(store_url, base_url=base_url, encryption=_encryption()), **options)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise CLIError(f"module {module_name!r} has no attribute {attr!r}", 2) from None
    if store_url:
        err.print(f"note: --store is ignored: {spec} brings its own runtime or store")
    if isinstance(obj, Runtime | Store):
        return create_app(obj, **options)
    if not _is_asgi_app(obj):
        raise CLIError(f"{spec} is not an ASGI app, a durable.Runtime or a Store (it is {type(obj).__name__})", 2)
    if api_token or allowed_hosts:
        err.print(f"note: --api-token and --allowed-host apply to apps durable builds, not to {spec}: pass them to its create_app")
    return obj


@app.command()
def serve(
    app_spec: Annotated[str | None, typer.Option("--app", "-a", metavar="MODULE[:OBJ]", show_default=False, help="module (its workflows) or module:obj (an ASGI app, Runtime or Store).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0-65535).")] = 8000,
    store: StoreOption = None,
    api_token: Annotated[str | None, typer.Option("--api-token", envvar="DURABLE_API_TOKEN", help="API token: Bearer header for clients, a login for the page.", show_default=False)] = None,
    allowed_host: Annotated[list[str] | None, typer.Option("--allowed-host", metavar="NAME", help="A Host name the server answers to (repeatable; '*' for any). Default: loopback names when --host is loopback.", show_default=False)] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", envvar="DURABLE_BASE_URL", metavar="URL", help="Public URL of this server, for webhook URLs (default: http://HOST:PORT).", show_default=False)] = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Serve the web app (API, SSE streams, hooks, webhooks, the live runs page) with uvicorn."""
    try:
        import uvicorn

        import durable.web  # noqa: F401 - starlette and sse-starlette, checked before anything starts
    except ImportError as exc:
        _fail(CLIError(f"serving needs the 'web' extra ({exc.name} is not installed): pip install 'durable-workflows[web]'", 2))

    _log_level(log_level)
    if not 0 <= port <= 65535:
        _fail(CLIError(f"--port must be between 0 and 65535, not {port}", 2))
    with _reported():
        asgi = _load_app(app_spec, store, api_token, base_url or f"http://{host}:{port}", allowed_host or None)
    # The token is never printed: terminals scroll into logs and screen shares.
    login = "  (API token required: the page asks for it)" if api_token else ""
    err.print(f"durable: runs page at http://{host}:{port}/{login}  (Ctrl-C stops)")
    _configure_logging(log_level)
    config = uvicorn.Config(asgi, host=host, port=port, lifespan="on", log_level=log_level.lower(), timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    with _reported():
        server.run()
    if not server.started:
        raise typer.Exit(1)


def _parse_versions(specs: list[str]) -> dict[str, set[str | None]]:
    """``--versions checkout=1,2`` (repeatable; ``-`` stands for runs started by code without a version)."""
    versions: dict[str, set[str | None]] = {}
    for spec in specs:
        name, sep, labels = spec.partition("=")
        if not sep or not name.strip() or not labels.strip():
            raise CLIError(f"--versions takes WORKFLOW=V1,V2 (e.g. checkout=1,2), not {spec!r}", 2)
        versions.setdefault(name.strip(), set()).update(
            None if label.strip() == "-" else label.strip() for label in labels.split(",") if label.strip()
        )
    return versions


@app.command()
def worker(
    app_spec: Annotated[str, typer.Option("--app", "-a", metavar="MODULE[,MODULE]", help="Module(s) defining workflows and steps, comma-separated.")],
    store: StoreOption = None,
    log_level: LogLevelOption = "info",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at debug level: every claim too.")] = False,
    versions: Annotated[
        list[str] | None,
        typer.Option("--versions", help="Only runs of these versions of a workflow: WORKFLOW=V1,V2 (repeatable; - for no version)."),
    ] = None,
    retention: Annotated[str | None, typer.Option("--retention", metavar="DURATION", help="Delete finished runs older than this (30d), in the background.", show_default=False)] = None,
) -> None:
    """Run the workflows the given modules define until SIGINT or SIGTERM.

    Logs step retries and failures and run failures (info); with -v also every claim. Encrypted
    payloads need the keys in DURABLE_ENCRYPTION_KEY (and _KEY_ID, _OLD_KEYS).
    """
    from ._core.durations import parse_duration
    from ._worker.runtime import Runtime

    _configure_logging("debug" if verbose else log_level)

    with _reported():
        encryption = _encryption()
        if retention is not None:
            try:
                parse_duration(retention, what="--retention")
            except (TypeError, ValueError) as exc:
                raise CLIError(str(exc), 2) from None

    async def main() -> None:
        async with Runtime(store, versions=served, encryption=encryption, retention=retention) as runtime:
            names = ", ".join(runtime.workflow_names()) or "(none)"
            err.print(safe(f"durable worker {runtime.worker_id} on {safe_url(runtime.store.url)}; workflows: {names}"))
            for name, labels in sorted(served.items()):
                shown = ", ".join(sorted("-" if v is None else v for v in labels))
                err.print(safe(f"durable worker: {name} only in version(s) {shown}"))
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    err.print(f"durable worker: {signal.Signals(signum).name}, stopping")
                    return

    with _reported():
        served = _parse_versions(versions or [])
        for name in (n.strip() for n in app_spec.split(",")):
            if name:
                _import(name.partition(":")[0])
        try:
            anyio.run(main)
        except ValueError as exc:  # versions= naming a workflow the modules do not define
            raise CLIError(str(exc), 2) from None


# -- starting ------------------------------------------------------------------------------------


@app.command()
def start(
    workflow: Annotated[str, typer.Argument(metavar="WORKFLOW", help="The workflow's name (module:qualname, or its bare name if unambiguous).", show_default=False)],
    args: Annotated[str, typer.Option("--args", metavar="JSON", help="Positional arguments, a JSON list.")] = "[]",
    kwargs: Annotated[str, typer.Option("--kwargs", metavar="JSON", help="Keyword arguments, a JSON object.")] = "{}",
    app_spec: Annotated[str | None, typer.Option("--app", "-a", metavar="MODULE[,MODULE]", help="Module(s) defining it (default: the signature a worker published in the store).", show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", metavar="RUN_ID", help="The new run's id (default: a random one).", show_default=False)] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", metavar="KEY", help="Start at most one run for this key.", show_default=False)] = None,
    json_output: JSONOption = False,
    store: StoreOption = None,
) -> None:
    """Start a run of WORKFLOW and print its id; a worker executing that workflow runs it.

    The arguments are checked against the workflow's signature first (a call that does not
    fit is exit code 2 and nothing is recorded).
    """
    from ._client.client import Client

    with _reported():
        positional = _parse_json(args, "--args")
        keywords = _parse_json(kwargs, "--kwargs")
        if not isinstance(positional, list):
            raise CLIError(f"--args must be a JSON list, like '[1, \"a\"]', not {args!r}", 2)
        if not isinstance(keywords, dict):
            raise CLIError(f"--kwargs must be a JSON object, like '{{\"n\": 1}}', not {kwargs!r}", 2)
        for name in (app_spec or "").split(","):
            if name.strip():
                _import(name.strip().partition(":")[0])

    async def act(s: Store) -> Any:
        client = Client(s)
        try:
            if app_spec:
                wf = client.get_workflow(workflow)
                if wf is None:
                    raise WorkflowNotFound(workflow, client.workflow_names(), where=f"defined in {app_spec}")
                return await client.start_run(wf, positional, keywords, run_id=run_id, idempotency_key=idempotency_key)
            return await client.start_published(workflow, positional, keywords, run_id=run_id, idempotency_key=idempotency_key)
        except WorkflowNotFound:
            raise
        except (TypeError, ValueError) as exc:  # the call does not fit (SerializationError is a TypeError)
            raise CLIError(str(exc), 2) from None

    run = _with_store(store, act)
    if json_output:
        _print_json({"run_id": run.run_id, "workflow": workflow})
    else:
        out.print(safe(run.run_id))


@app.command()
def workflows(json_output: JSONOption = False, store: StoreOption = None) -> None:
    """List the workflows workers published in the store (what `durable start` can start without --app)."""
    from ._client.client import Client

    async def read(s: Store) -> Any:
        return await Client(s).published_workflows()

    published = _with_store(store, read, read_only=True)
    if json_output:
        _print_json({"workflows": [published_json(p) for p in published]})
        return
    if not published:
        out.print("no published workflows (a worker publishes its workflows when it starts: durable worker --app MODULE)")
        return
    table = _table("workflow", "serializer", "published", "signature")
    for p in published:
        table.add_row(safe(p.name), safe(p.record.serializer), _when(datetime.fromtimestamp(p.record.published_at, UTC)),
                      safe(_signature(p.parameters)))
    out.print(table)


def _signature(parameters: list[dict[str, Any]]) -> str:
    """``(order_id, amount=100, *, note=<default>)`` from published parameters."""
    parts: list[str] = []
    star = False
    for p in parameters:
        kind, name = p.get("kind"), str(p.get("name"))
        if kind == "keyword_only" and not star:
            parts.append("*")
            star = True
        prefix = {"var_positional": "*", "var_keyword": "**"}.get(str(kind), "")
        star = star or kind == "var_positional"
        default = f"={json.dumps(p['default'])}" if "default" in p else ("=<default>" if "default_repr" in p else "")
        parts.append(f"{prefix}{name}{default}")
    return "(" + ", ".join(parts) + ")"


# -- reading -------------------------------------------------------------------------------------


@app.command()
def runs(
    status: Annotated[str | None, typer.Option(metavar="STATUS", help="Only runs with this status.", show_default=False)] = None,
    workflow: Annotated[str | None, typer.Option(metavar="WORKFLOW", help="Only runs of this workflow.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="How many runs, newest first (1-10000).")] = 50,
    queue: Annotated[str | None, typer.Option(metavar="QUEUE", help="Only runs of this queue, with what each waits for.",
                                              show_default=False)] = None,
    json_output: JSONOption = False,
    store: StoreOption = None,
    version: Annotated[str | None, typer.Option(help="Only runs started by code of this version label.")] = None,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in ("pending", "running", "completed", "failed", "cancelled"):
        _fail(CLIError(f"--status must be pending, running, completed, failed or cancelled, not {status!r}", 2))
    if not 1 <= limit <= 10_000:
        _fail(CLIError(f"--limit must be between 1 and 10000, not {limit}", 2))

    async def read(s: Store) -> Any:
        states = await s.queue_states([queue], time.time()) if queue else []
        return await s.list_runs(status=status, workflow=workflow, limit=limit, queue=queue, version=version), states

    records, states = _with_store(store, read, read_only=True)
    infos = [RunInfo.from_record(r) for r in records]
    if json_output:
        summaries = [run_summary(info) for info in infos]
        waiting_reasons(summaries, states)
        _print_json({"runs": summaries, "queues": [queue_json(q) for q in states]} if queue else {"runs": summaries})
        return
    if queue is not None:
        _print_queues(states, queue)
    if not infos:
        out.print("no runs")
        return
    if queue is not None:
        summaries = [run_summary(info) for info in infos]
        waiting_reasons(summaries, states)
        table = _table("run", "workflow", "status", "priority", "key", "admitted", "waits for")
        for r in summaries:
            q = r["queue"]
            table.add_row(
                safe(r["run_id"]), safe(r["workflow"]), _status(r["status"]), str(q["priority"] or ""), safe(q["key"] or ""),
                "no" if q["waiting"] else "yes", safe(q.get("why", "")),
            )
        out.print(table)
        return
    table = _table("run", "workflow", "version", "status", "created", "duration", "error")
    for info in infos:
        error = _error(info.error)
        if info.forked_from:
            error = f"(forked from {safe(info.forked_from)} at {safe(info.forked_step or '')}) {error}".rstrip()
        table.add_row(
            safe(info.run_id), safe(info.workflow_name), safe(info.version or ""), _status(info.status),
            _when(info.created_at), _seconds(info.duration), error,
        )
    out.print(table)


@app.command("inspect")
def inspect_run(run_id: RunIdArgument, json_output: JSONOption = False, store: StoreOption = None) -> None:
    """Show a run: status, timings, what it waits for, steps with attempts, hooks, streams, result or error."""

    async def read(s: Store) -> Any:
        record = await s.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        events = []
        if record.status not in TERMINAL:  # the log before the rows: see projection.waiting_for
            events = await s.load_events(run_id)
            record = await s.get_run(run_id) or record
        steps, hooks = await s.list_steps(run_id), await s.list_hooks(run_id, active_only=False)
        return record, steps, hooks, await s.list_streams(run_id), events, await _descendants(s, run_id)

    record, step_records, hook_records, streams, events, children = _with_store(store, read, read_only=True)
    info = RunInfo.from_record(record)
    steps = [StepInfo.from_record(s) for s in step_records]
    hooks = [HookInfo.from_record(h) for h in hook_records]
    waiting = waiting_for(info, steps, hooks, events)
    if json_output:
        detail = run_detail(info, record.output, steps, hooks, streams, children.get(run_id, []))
        detail["waiting_for"] = [waiting_json(w) for w in waiting]
        _print_json(detail)
        return
    version = f"  version {safe(info.version)}" if info.version else ""
    out.print(Text.assemble((safe(f"run {info.run_id}"), "bold"), f"  {safe(info.workflow_name)}{version}  ", _status(info.status)))
    out.print(f"created {_when(info.created_at)}  started {_when(info.started_at) or '-'}  "
              f"ended {_when(info.completed_at) or '-'}  duration {_seconds(info.duration) or '-'}")
    if info.parent_run_id:
        out.print(safe(f"child of run {info.parent_run_id}"))
    if info.cancel_reason:
        out.print(safe(f"cancelled: {info.cancel_reason}"))
    if children:
        out.print(_child_tree(info, children))
    if info.forked_from:
        out.print(safe(f"forked from run {info.forked_from} at {info.forked_step}"))
    if waiting:
        out.print("waiting for:")
        for w in waiting:
            out.print("  " + _waiting_line(w))
    if steps:
        table = _table("step", "name", "status", "attempts", "started", "duration", "error")
        for s in steps:
            table.add_row(
                safe(s.step_id), safe(s.name), _status(s.status), f"{s.attempts}/{s.max_attempts}", _when(s.started_at),
                _seconds(s.duration), _error(s.error),
            )
        out.print(table)
    for h in hooks:
        out.print(safe(f"{'webhook' if h.is_webhook else 'hook'} {h.hook_id} token {h.token!r} {h.status}"))
    for namespace, count, closed in streams:
        out.print(safe(f"stream {namespace!r}: {count} chunk(s), {'closed' if closed else 'open'}"))
    if info.status == "completed" and record.output is not None:
        out.print("result: " + _short(plain_value(record.output), 2000))
    if info.error:
        out.print(Text("error: " + _error(info.error), style="red"))
        if info.error.traceback:
            out.print(safe(info.error.traceback.rstrip(), lines=True))


def _waiting_line(w: Waiting) -> str:
    if w.kind == "timer":
        return f"timer {safe(w.id)} until {_deadline(w.until) or '(unknown)'}"
    if w.kind in ("hook", "webhook"):
        return f"{w.kind} {safe(w.id)} token {safe(repr(w.token))}"
    step = w.step
    assert step is not None
    what = f"step {safe(step.step_id)} {safe(step.name)}"
    if w.kind == "retry":
        failed = f" after attempt {step.attempts}/{step.max_attempts} failed ({_error(step.error)})" if step.error else ""
        return f"{what} being retried at {_deadline(w.until)}{failed}"
    if step.status == "running":
        return f"{what} running (attempt {step.attempts}/{step.max_attempts})"
    return f"{what} waiting for a worker"


def _print_queues(states: list[QueueState], name: str | None = None) -> None:
    if name is not None and not states:
        out.print(safe(f"queue {name!r} is not in this store (no runtime or start has defined it)"))
        return
    for q in states:
        limit = "no limit" if q.concurrency is None else f"{q.active}/{q.concurrency} active"
        rate = "" if q.rate_count is None else f", rate {q.admitted_in_window}/{q.rate_count} per {q.rate_period:g}s"
        out.print(safe(f"queue {q.name}: {limit}{rate}, {q.waiting} waiting" + (f" -- {q.blocked_by}" if q.blocked_by else "")))


@app.command()
def queues(store: StoreOption = None) -> None:
    """List the queues the store knows: entries active and waiting, rate windows, what blocks them."""

    async def read(s: Store) -> Any:
        return await s.queue_states(None, time.time())

    states = _with_store(store, read, read_only=True)
    if not states:
        out.print("no queues")
    _print_queues(states)


schedules_app = typer.Typer(help="List and steer schedules (registered by runtimes: Runtime(schedules=[...])).",
                            no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
NameArgument = Annotated[str, typer.Argument(help="The schedule's name.")]


@schedules_app.command("list")
def schedules_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    store: StoreOption = None,
) -> None:
    """Every schedule in the store: its workflow, ticks, next tick, paused, skipped ticks, last run."""
    from ._client.client import Client
    from ._client.present import schedule_json

    async def read(s: Store) -> Any:
        return await Client(s).list_schedules()

    infos = _with_store(store, read, read_only=True)
    if as_json:
        for info in infos:
            out.print(dumps(schedule_json(info)))
        return
    if not infos:
        out.print("no schedules")
        return
    table = _table("schedule", "workflow", "when", "overlap", "next tick", "state", "skipped", "last run")
    for i in infos:
        when = f"cron {i.cron} ({i.timezone})" if i.cron else f"every {i.every:g}s"
        table.add_row(safe(i.name), safe(i.workflow_name), safe(when), i.overlap, _when(i.next_at),
                      "paused" if i.paused else "active", str(i.skipped), safe(i.last_run_id or ""))
    out.print(table)


def _steer(store: str | None, name: str, action: str) -> None:
    from ._client.client import Client

    async def act(s: Store) -> str:
        client = Client(s)
        if action == "trigger":
            run = await client.trigger_schedule(name)
            return f"schedule {name}: started run {run.run_id}"
        await getattr(client, f"{action}_schedule")(name)
        return f"schedule {name}: {action}d" if action.endswith("e") else f"schedule {name}: {action}ed"

    out.print(_with_store(store, act))


@schedules_app.command("pause")
def schedules_pause(name: NameArgument, store: StoreOption = None) -> None:
    """Stop the schedule's ticks from starting runs (until resumed)."""
    _steer(store, name, "pause")


@schedules_app.command("resume")
def schedules_resume(name: NameArgument, store: StoreOption = None) -> None:
    """Let a paused schedule's ticks start runs again."""
    _steer(store, name, "resume")


@schedules_app.command("trigger")
def schedules_trigger(name: NameArgument, store: StoreOption = None) -> None:
    """Start a run of the schedule now (outside its ticks)."""
    _steer(store, name, "trigger")


@schedules_app.command("delete")
def schedules_delete(name: NameArgument, store: StoreOption = None) -> None:
    """Forget the schedule (its runs stay; a runtime still given it registers it again when it opens)."""
    _steer(store, name, "delete")


_TREE_LIMIT = 200  # runs shown under one run in `durable inspect`


async def _descendants(s: Store, run_id: str) -> dict[str, list[RunInfo]]:
    """Each run's children, breadth first from ``run_id``, at most ``_TREE_LIMIT`` runs."""
    tree: dict[str, list[RunInfo]] = {}
    queue, seen = [run_id], 0
    while queue and seen < _TREE_LIMIT:
        parent = queue.pop(0)
        kids = [RunInfo.from_record(r) for r in await s.list_children(parent)][: _TREE_LIMIT - seen]
        if kids:
            tree[parent] = kids
            seen += len(kids)
            queue.extend(k.run_id for k in kids)
    return tree


def _child_tree(root: RunInfo, children: dict[str, list[RunInfo]]) -> Tree:
    tree = Tree(Text.assemble(("children of ", ""), (safe(root.run_id), "bold")))

    def add(node: Tree, run_id: str) -> None:
        for child in children.get(run_id, []):
            label = Text.assemble(safe(child.run_id), f"  {safe(child.workflow_name)}  ", _status(child.status))
            if child.cancel_reason:
                label.append(safe(f"  ({child.cancel_reason})"))
            add(node.add(label), child.run_id)

    add(tree, root.run_id)
    return tree


@app.command()
def events(run_id: RunIdArgument, json_output: JSONOption = False, store: StoreOption = None) -> None:
    """Print a run's event log, oldest first."""

    async def read(s: Store) -> Any:
        if await s.get_run(run_id) is None:
            raise RunNotFound(run_id)
        return await s.load_events(run_id)

    logged = _with_store(store, read, read_only=True)
    if json_output:
        _print_json({"events": [event_json(e) for e in logged]})
        return
    table = _table("seq", "time", "kind", "id", "name", "attempt", "data")
    for e in logged:
        shown = event_json(e)
        table.add_row(
            str(e.seq), _when(e.timestamp), safe(e.kind), safe(e.correlation_id or ""), safe(e.name or ""),
            "" if e.attempt is None else str(e.attempt), "" if shown["data"] is None else _short(shown["data"]),
        )
    out.print(table)


@app.command()
def tail(
    run_id: RunIdArgument,
    namespace: Annotated[str, typer.Option(metavar="NAME", help="Stream namespace.")] = DEFAULT_NAMESPACE,
    start_index: Annotated[int, typer.Option(metavar="N", help="First chunk (negative: from the end).")] = 0,
    store: StoreOption = None,
) -> None:
    """Follow a run's stream: one JSON line per chunk until the stream closes."""

    async def follow(s: Store) -> None:
        if await s.get_run(run_id) is None:
            raise RunNotFound(run_id)
        async for chunk in read_stream(s, run_id, namespace, start_index=start_index):
            print(json_text(_codec.to_plain_json(chunk), indent=None), flush=True)

    _with_store(store, follow, read_only=True)


# -- steering ------------------------------------------------------------------------------------


@app.command()
def cancel(run_id: RunIdArgument, store: StoreOption = None) -> None:
    """Cancel a run: its steps are cancelled (by their worker), streams closed, hooks disposed."""
    import time

    async def act(s: Store) -> str:
        before = await s.get_run(run_id)
        if before is None:
            raise RunNotFound(run_id)
        if before.status in TERMINAL:
            return f"run {run_id} is already {before.status}: nothing to cancel"
        after = await s.cancel_run(run_id, time.time())
        return f"run {run_id} {after.status if after is not None else 'cancelled'}"

    out.print(safe(_with_store(store, act)))


@app.command()
def resume(
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="The hook's token.", show_default=False)],
    payload: Annotated[str, typer.Argument(metavar="PAYLOAD", help="The payload, as JSON.", show_default=False)],
    app_spec: Annotated[str | None, typer.Option("--app", "-a", metavar="MODULE[,MODULE]", help="Module(s) defining typed hooks, to validate the payload.", show_default=False)] = None,
    store: StoreOption = None,
) -> None:
    """Resume the live hook holding TOKEN with PAYLOAD (JSON)."""
    from ._worker.runtime import Runtime

    with _reported():
        value = _parse_json(payload, "the payload")
        for name in (app_spec or "").split(","):
            if name.strip():
                _import(name.strip().partition(":")[0])

    async def act(s: Store) -> str:
        if "webhook" in hook_metadata(await s.get_hook(token)):
            raise CLIError(f"token {token!r} belongs to a webhook: send an HTTP request to its URL instead")
        result = await Runtime(s).resume_hook(token, value)  # never opened: it only appends to the store
        return f"resumed hook {result.hook_id} of run {result.run_id}"

    out.print(safe(_with_store(store, act)))


def _import_app(app_spec: str | None) -> None:
    for name in (app_spec or "").split(","):
        if name.strip():
            _import(name.strip().partition(":")[0])


@app.command()
def fork(
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    from_step: Annotated[
        str | None,
        typer.Option("--from-step", help="Run again from this step: its position (4) or id (step_4). Default: where a rerun starts."),
    ] = None,
    input_json: Annotated[
        str | None, typer.Option("--input", help='New arguments, as JSON: a list, or {"args": [...], "kwargs": {...}}.')
    ] = None,
    app_spec: Annotated[
        str | None, typer.Option("--app", "-a", help="Module(s) defining the workflow: its history is checked against that code first.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Start a new run that reuses RUN_ID's recorded steps before a step and runs the rest with the code deployed now.

    Without --from-step it starts where a rerun does: the first failed step of a failed or cancelled run.
    """
    from ._client.fork import fork_run
    from ._workflow.workflow import workflows as registered_workflows

    with _reported():
        value = None if input_json is None else _parse_json(input_json, "--input")
        _import_app(app_spec)
    step: int | str | None = None
    if from_step is not None:
        step = int(from_step) if from_step.isdigit() else from_step

    async def act(s: Store) -> str:
        try:
            new = await fork_run(s, run_id, step, value, find=registered_workflows.resolve, rerun=step is None)
        except TypeError as exc:  # --input that does not fit the workflow
            raise CLIError(str(exc), 2) from None
        record = await s.get_run(new)
        return f"forked run {new} from run {run_id} at {record.forked_step if record else '?'}"

    out.print(_with_store(store, act))


# -- replay checks -------------------------------------------------------------------------------


@app.command()
def export(run_id: Annotated[str, typer.Argument(help="The run's id.")], store: StoreOption = None) -> None:
    """Write a run's whole history (events, input, seed, version) as JSON to stdout: `durable export RUN > history.json`."""
    from ._client.history import read_history

    async def read(s: Store) -> str:
        return (await read_history(s, run_id)).to_json()

    sys.stdout.write(_with_store(store, read, read_only=True))


def _code_of(spec: str) -> tuple[Callable[[str], Any], list[str]]:
    """The workflows ``--app module[:attr]`` defines: a lookup by stored name, and every name their
    runs may be stored under. ``attr`` may be a Runtime, a workflow, or a list of workflows."""
    from ._core.registry import Registry
    from ._worker.runtime import Runtime
    from ._workflow.workflow import Workflow
    from ._workflow.workflow import workflows as registered_workflows

    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if not attr:
        return registered_workflows.resolve, registered_workflows.claimable()
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise CLIError(f"module {module_name!r} has no attribute {attr!r}", 2) from None
    if isinstance(obj, Runtime):
        found = [obj.get_workflow(n) for n in obj.workflow_names()]
        chosen = [w for w in found if w is not None]
    elif isinstance(obj, Workflow):
        chosen = [obj]
    elif isinstance(obj, list | tuple | set | frozenset) and all(isinstance(w, Workflow) for w in obj):
        chosen = list(obj)
    else:
        raise CLIError(f"{spec} is not a durable.Runtime, a workflow or a list of workflows", 2)
    table: Registry[Any] = Registry("workflow")
    for wf in chosen:
        table[wf.name] = wf
    return table.resolve, table.claimable()


@app.command("check-replay")
def check_replay_command(
    app_spec: Annotated[str, typer.Option("--app", "-a", help="module (its workflows) or module:attr (a Runtime, a workflow, a list).")],
    store: StoreOption = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="How many of the most recent finished runs of each workflow (0-100000).")] = 20,
    status: Annotated[
        str | None, typer.Option(help="Only runs with these statuses, comma-separated (default: all).")
    ] = None,
) -> None:
    """Replay every unfinished run, and the LIMIT latest finished runs of each workflow, with the code the app
    defines now: one line per run that diverged, a summary; exit status 0 only if none did."""
    from .testing._replay import Divergence, check_store

    statuses = ("pending", "running", "completed", "failed", "cancelled")
    chosen = tuple(s.strip() for s in status.split(",") if s.strip()) if status else statuses
    bad = [s for s in chosen if s not in statuses]
    if bad or not chosen:
        _fail(CLIError(f"--status takes statuses among {', '.join(statuses)}, comma-separated, not {status!r}", 2))
    if not 0 <= limit <= 100_000:
        _fail(CLIError(f"--limit must be between 0 and 100000, not {limit}", 2))
    with _reported():
        find, names = _code_of(app_spec)
        if workflow is not None:
            target = find(workflow)
            if target is None:
                raise CLIError(f"--app {app_spec} defines no workflow {workflow!r} (it defines: {', '.join(names) or 'none'})", 2)
            names = [n for n in names if find(n) is target]

    def report(found: Divergence) -> None:
        e = found.error
        print(  # one line per run, never folded: for grep and CI logs
            f"diverged  {found.run_id}  {found.workflow}  ({found.status})  at command #{e.position}: "
            f"recorded {e.recorded}; the code now does {e.actual}", flush=True,
        )

    async def check(s: Store) -> Any:
        return await check_store(s, find, names, limit=limit, statuses=chosen, unknown=workflow is None, on_divergence=report)

    result = _with_store(store, check)
    for name, count in sorted(result.no_code.items()):
        print(f"no code   {name}: {count} unfinished run(s) of a workflow the app does not define would wait forever")
    print(
        f"checked {result.checked} run(s) of {len(result.workflows)} workflow(s) in {result.seconds:.2f} s: "
        f"{len(result.diverged)} diverged" + (f", {sum(result.no_code.values())} without code" if result.no_code else "")
    )
    if not result.ok:
        raise typer.Exit(1)


@app.command("bench-replay")
def bench_replay(
    run_id: Annotated[str, typer.Argument(help="The run to replay.")],
    app_spec: Annotated[str, typer.Option("--app", "-a", help="module (its workflows) or module:attr (a Runtime, a workflow, a list).")],
    repeat: Annotated[int, typer.Option(help="Cold replays to time (1-1000).")] = 5,
    store: StoreOption = None,
) -> None:
    """Replay a recorded run cold several times with the app's code: µs per event (median, min, max), the
    sticky delivery cost, and the floor measured in the same run (reading and decoding its rows)."""
    from .testing._cost import measure_store

    if not 1 <= repeat <= 1000:
        _fail(CLIError(f"--repeat must be between 1 and 1000, not {repeat}", 2))
    with _reported():
        find, _ = _code_of(app_spec)

    async def measure(s: Store) -> Any:
        return await measure_store(s, run_id, repeat, find=find)

    print(_with_store(store, measure))


@app.command()
def gc(
    older_than: Annotated[str, typer.Option("--older-than", metavar="DURATION", help="Delete runs that finished longer ago than this (30d, 12h, 90m).", show_default=False)],
    status: Annotated[str | None, typer.Option("--status", metavar="STATUS[,STATUS]", help="Which finished runs: completed, failed, cancelled (default: all three).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", help="Runs per batch; each batch is one transaction.")] = 100,
    vacuum: Annotated[bool, typer.Option("--vacuum", help="SQLite: rebuild the file afterwards, so that one created before incremental vacuum shrinks too.")] = False,
    json_output: JSONOption = False,
    store: StoreOption = None,
) -> None:
    """Delete finished runs (with their events, steps, hooks, waits, streams and values) that ended longer ago than --older-than."""
    from ._client.retention import check_statuses, collect_garbage
    from ._core.durations import parse_duration

    with _reported():
        try:
            parse_duration(older_than, what="--older-than")
            check_statuses(status)
            if batch_size < 1:
                raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
        except (TypeError, ValueError) as exc:
            raise CLIError(str(exc), 2) from None

    async def act(s: Store) -> Any:
        return await collect_garbage(s, older_than, status=status, batch_size=batch_size, vacuum=vacuum)

    report = _with_store(store, act)
    if json_output:
        _print_json({**report.counts, "batches": report.batches, "reclaimed_bytes": report.reclaimed_bytes})
    else:
        out.print(safe(str(report)))


@app.command()
def migrate(store: StoreOption = None) -> None:
    """Create the store's schema, or upgrade it to this version's; print what was done."""
    url = store or default_url()

    async def act(s: Store) -> None:
        return None

    before = _schema_version(url)
    _with_store(url, act, create=True)
    after = _schema_version(url)
    where = safe(safe_url(url))
    if before is None and after is None:
        out.print(f"{where}: schema is up to date (created or upgraded as needed)")
    elif before is None:
        out.print(f"{where}: created schema version {after}")
    elif before == after:
        out.print(f"{where}: already at schema version {after}, nothing to do")
    else:
        out.print(f"{where}: migrated schema version {before} -> {after}")


def _schema_version(url: str) -> int | None:
    """The schema version of a SQLite store file (None if there is no such file or it is not SQLite)."""
    import sqlite3

    with _reported():
        s = store_from_url(url)
    path = getattr(s, "path", None)
    if not path or getattr(s, "memory", False) or not os.path.exists(path):
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.Error:
        return None


@app.command()
def demo(store: StoreOption = None) -> None:
    """The guided demo (what `make demo` runs): a workflow surviving a crash, streamed live."""
    try:
        from ._demo import run_demo
    except ImportError as exc:
        _fail(CLIError(f"the demo is not available in this version ({exc})"))
    with _reported():
        code = run_demo(store)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``durable`` console script."""
    # Stored text may hold a lone surrogate (the codec keeps them): print its escape, not a traceback.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    app()

