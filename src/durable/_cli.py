"""The ``durable`` command (also ``python -m durable``). Needs the ``web`` extra (typer, rich, uvicorn).

Every command takes ``--store URL`` (default: ``$DURABLE_STORE``, else the library default).
Errors a person can act on are one line on stderr and an exit code, never a traceback:

    0 ok · 1 not found / refused / failed · 2 bad usage (store URL, JSON, --app) · 3 store unusable · 130 interrupted
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ._client.present import dumps, event_json, plain_value, run_summary, waiting_reasons
from ._client.projection import HookInfo, RunInfo, StepInfo, hook_metadata
from ._client.streams import read_stream
from ._core import codec as _codec
from ._core.errors import (
    DurableError,
    HookValidationError,
    InvalidStoreURL,
    RunNotFound,
    SerializationError,
    StoreError,
)
from ._core.ids import DEFAULT_NAMESPACE
from ._core.queues import QueueState
from .stores import default_url, store_from_url
from .stores._base import TERMINAL, Store

T = TypeVar("T")
# Markup is off by default: run ids, tokens, names and messages print as they are (a "[red]"
# in a token stays text). Styled lines opt in with markup=True and escape() every value.
# Piped output is not folded at 80 columns: tables stay one row per line for grep and less.
_PIPE_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240
out = Console(highlight=False, soft_wrap=False, markup=False, width=_PIPE_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

app = typer.Typer(
    name="durable",
    help="Durable workflows for asyncio: serve them, run workers, inspect and steer runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", "-s", help="Store URL (default: $DURABLE_STORE, else sqlite:///.durable/durable.db).", show_default=False),
]


class CLIError(Exception):
    """A problem to report in one line and exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


def _fail(error: CLIError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(error.message)}", markup=True)
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


def _with_store(url: str | None, fn: Callable[[Store], Awaitable[T]], *, create: bool = False) -> T:
    """Open the store at ``url``, run ``fn`` with it, close it.

    Unless ``create``, a SQLite file must already exist: opening creates one, and a mistyped
    path would then look like an empty store instead of an error.
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
        return anyio.run(main, store)
    raise AssertionError("unreachable: _reported() exits on every error")


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
    return "" if when is None else when.astimezone().strftime("%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


_STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "dim", "running": "yellow", "pending": "yellow"}


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _table(*names: str) -> Table:
    """Every column keeps its values on one line but the last (error, data), which folds."""
    table = Table(box=None, pad_edge=False)
    for name in names[:-1]:
        table.add_column(name, no_wrap=True)
    table.add_column(names[-1], overflow="fold")
    return table


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


# -- serving -------------------------------------------------------------------------------------


def _load_app(spec: str | None, store_url: str | None, api_token: str | None, base_url: str) -> Any:
    """The ASGI app to serve for ``--app``: ``module`` (its workflows, a runtime on --store whose
    webhook URLs start with ``base_url``), ``module:obj`` where obj is an ASGI app, a Runtime or
    a Store, or nothing (the store alone)."""
    from ._worker.runtime import Runtime
    from .web import create_app

    if not spec:
        return create_app(store_from_url(store_url), api_token=api_token)
    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if not attr:
        return create_app(Runtime(store_url, base_url=os.environ.get("DURABLE_BASE_URL") or base_url), api_token=api_token)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise CLIError(f"module {module_name!r} has no attribute {attr!r}", 2) from None
    if store_url:
        err.print(f"note: --store is ignored: {spec} brings its own runtime or store")
    if isinstance(obj, Runtime | Store):
        return create_app(obj, api_token=api_token)
    if not callable(obj):
        raise CLIError(f"{spec} is not an ASGI app, a durable.Runtime or a Store", 2)
    return obj


@app.command()
def serve(
    app_spec: Annotated[str | None, typer.Option("--app", "-a", help="module (its workflows) or module:obj (an ASGI app, Runtime or Store).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    store: StoreOption = None,
    api_token: Annotated[str | None, typer.Option("--api-token", envvar="DURABLE_API_TOKEN", help="Bearer token for the API.", show_default=False)] = None,
) -> None:
    """Serve the web app (API, SSE streams, hooks, webhooks, the live runs page) with uvicorn."""
    import uvicorn

    with _reported():
        asgi = _load_app(app_spec, store, api_token, f"http://{host}:{port}")
    where = f"http://{host}:{port}/" + (f"#token={api_token}" if api_token else "")
    err.print(f"durable: runs page at {where}  (Ctrl-C stops)")
    config = uvicorn.Config(asgi, host=host, port=port, lifespan="on", log_level="info", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    with _reported():
        server.run()
    if not server.started:
        raise typer.Exit(1)


@app.command()
def worker(
    app_spec: Annotated[str, typer.Option("--app", "-a", help="Module(s) defining workflows and steps, comma-separated.")],
    store: StoreOption = None,
) -> None:
    """Run the workflows the given modules define until SIGINT or SIGTERM."""
    from ._worker.runtime import Runtime

    async def main() -> None:
        async with Runtime(store) as runtime:
            names = ", ".join(runtime.workflow_names()) or "(none)"
            err.print(f"durable worker {runtime.worker_id} on {safe_url(runtime.store.url)}; workflows: {names}")
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    err.print(f"durable worker: {signal.Signals(signum).name}, stopping")
                    return

    with _reported():
        for name in (n.strip() for n in app_spec.split(",")):
            if name:
                _import(name.partition(":")[0])
        anyio.run(main)


# -- reading -------------------------------------------------------------------------------------


@app.command()
def runs(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first (1-10000).")] = 50,
    queue: Annotated[str | None, typer.Option(help="Only runs of this queue, with what each waits for.")] = None,
    store: StoreOption = None,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in ("pending", "running", "completed", "failed", "cancelled"):
        _fail(CLIError(f"--status must be pending, running, completed, failed or cancelled, not {status!r}", 2))
    if not 1 <= limit <= 10_000:
        _fail(CLIError(f"--limit must be between 1 and 10000, not {limit}", 2))

    async def read(s: Store) -> Any:
        states = await s.queue_states([queue], time.time()) if queue else []
        return await s.list_runs(status=status, workflow=workflow, limit=limit, queue=queue), states

    records, states = _with_store(store, read)
    if queue is not None:
        _print_queues(states, queue)
    if not records:
        out.print("no runs")
        return
    if queue is not None:
        summaries = [run_summary(RunInfo.from_record(r)) for r in records]
        waiting_reasons(summaries, states)
        table = _table("run", "workflow", "status", "priority", "key", "admitted", "waits for")
        for r in summaries:
            q = r["queue"]
            table.add_row(
                r["run_id"], r["workflow"], _status(r["status"]), str(q["priority"] or ""), q["key"] or "",
                "no" if q["waiting"] else "yes", q.get("why", ""),
            )
        out.print(table)
        return
    table = _table("run", "workflow", "status", "created", "duration", "error")
    for info in map(RunInfo.from_record, records):
        table.add_row(
            info.run_id, info.workflow_name, _status(info.status), _when(info.created_at), _seconds(info.duration),
            f"{info.error.type}: {info.error.message}" if info.error else "",
        )
    out.print(table)


@app.command("inspect")
def inspect_run(run_id: Annotated[str, typer.Argument(help="The run's id.")], store: StoreOption = None) -> None:
    """Show a run: status, timings, steps with attempts, hooks, streams, result or error."""

    async def read(s: Store) -> Any:
        record = await s.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return (
            record, await s.list_steps(run_id), await s.list_hooks(run_id, active_only=False), await s.list_streams(run_id),
            await _descendants(s, run_id),
        )

    record, steps, hooks, streams, children = _with_store(store, read)
    info = RunInfo.from_record(record)
    out.print(Text.assemble((f"run {info.run_id}", "bold"), f"  {info.workflow_name}  ", _status(info.status)))
    out.print(f"created {_when(info.created_at)}  started {_when(info.started_at) or '-'}  "
              f"ended {_when(info.completed_at) or '-'}  duration {_seconds(info.duration) or '-'}")
    if info.parent_run_id:
        out.print(f"child of run {info.parent_run_id}")
    if info.cancel_reason:
        out.print(f"cancelled: {info.cancel_reason}")
    if children:
        out.print(_child_tree(info, children))
    if steps:
        table = _table("step", "name", "status", "attempts", "started", "duration", "error")
        for s in map(StepInfo.from_record, steps):
            table.add_row(
                s.step_id, s.name, _status(s.status), f"{s.attempts}/{s.max_attempts}", _when(s.started_at),
                _seconds(s.duration), f"{s.error.type}: {s.error.message}" if s.error else "",
            )
        out.print(table)
    for h in map(HookInfo.from_record, hooks):
        out.print(f"hook {h.hook_id} token {h.token} {h.status}")
    for namespace, count, closed in streams:
        out.print(f"stream {namespace!r}: {count} chunk(s), {'closed' if closed else 'open'}")
    if info.status == "completed" and record.output is not None:
        out.print("result: " + _short(plain_value(record.output), 2000))
    if info.error:
        out.print(Text(f"error: {info.error.type}: {info.error.message}", style="red"))
        if info.error.traceback:
            out.print(info.error.traceback.rstrip())


def _print_queues(states: list[QueueState], name: str | None = None) -> None:
    if name is not None and not states:
        out.print(f"queue {name!r} is not in this store (no runtime or start has defined it)")
        return
    for q in states:
        limit = "no limit" if q.concurrency is None else f"{q.active}/{q.concurrency} active"
        rate = "" if q.rate_count is None else f", rate {q.admitted_in_window}/{q.rate_count} per {q.rate_period:g}s"
        out.print(f"queue {q.name}: {limit}{rate}, {q.waiting} waiting" + (f" -- {q.blocked_by}" if q.blocked_by else ""))


@app.command()
def queues(store: StoreOption = None) -> None:
    """List the queues the store knows: entries active and waiting, rate windows, what blocks them."""

    async def read(s: Store) -> Any:
        return await s.queue_states(None, time.time())

    states = _with_store(store, read)
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

    infos = _with_store(store, read)
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
        table.add_row(i.name, i.workflow_name, when, i.overlap, _when(i.next_at), "paused" if i.paused else "active",
                      str(i.skipped), i.last_run_id or "")
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
    tree = Tree(Text.assemble(("children of ", ""), (root.run_id, "bold")))

    def add(node: Tree, run_id: str) -> None:
        for child in children.get(run_id, []):
            label = Text.assemble(child.run_id, f"  {child.workflow_name}  ", _status(child.status))
            if child.cancel_reason:
                label.append(f"  ({child.cancel_reason})")
            add(node.add(label), child.run_id)

    add(tree, root.run_id)
    return tree


@app.command()
def events(run_id: Annotated[str, typer.Argument(help="The run's id.")], store: StoreOption = None) -> None:
    """Print a run's event log, oldest first."""

    async def read(s: Store) -> Any:
        if await s.get_run(run_id) is None:
            raise RunNotFound(run_id)
        return await s.load_events(run_id)

    table = _table("seq", "time", "kind", "id", "name", "attempt", "data")
    for e in _with_store(store, read):
        shown = event_json(e)
        table.add_row(
            str(e.seq), _when(e.timestamp), e.kind, e.correlation_id or "", e.name or "",
            "" if e.attempt is None else str(e.attempt), "" if shown["data"] is None else _short(shown["data"]),
        )
    out.print(table)


@app.command()
def tail(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    namespace: Annotated[str, typer.Option(help="Stream namespace.")] = DEFAULT_NAMESPACE,
    start_index: Annotated[int, typer.Option(help="First chunk (negative: from the end).")] = 0,
    store: StoreOption = None,
) -> None:
    """Follow a run's stream: one JSON line per chunk until the stream closes."""

    async def follow(s: Store) -> None:
        if await s.get_run(run_id) is None:
            raise RunNotFound(run_id)
        async for chunk in read_stream(s, run_id, namespace, start_index=start_index):
            print(dumps(_codec.to_plain_json(chunk)), flush=True)

    _with_store(store, follow)


# -- steering ------------------------------------------------------------------------------------


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="The run's id.")], store: StoreOption = None) -> None:
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

    out.print(_with_store(store, act))


@app.command()
def resume(
    token: Annotated[str, typer.Argument(help="The hook's token.")],
    payload: Annotated[str, typer.Argument(help="The payload, as JSON.")],
    app_spec: Annotated[str | None, typer.Option("--app", "-a", help="Module(s) defining typed hooks, to validate the payload.")] = None,
    store: StoreOption = None,
) -> None:
    """Resume the live hook holding TOKEN with a JSON payload."""
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

    out.print(_with_store(store, act))


@app.command()
def migrate(store: StoreOption = None) -> None:
    """Create the store's schema, or upgrade it to this version's; print what was done."""
    url = store or default_url()

    async def act(s: Store) -> None:
        return None

    before = _schema_version(url)
    _with_store(url, act, create=True)
    after = _schema_version(url)
    where = safe_url(url)
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

