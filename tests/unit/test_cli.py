"""The ``durable`` command through its entry point (``python -m durable``), on a SQLite store shared
with the test process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

import durable
from durable._cli import app
from durable.stores import store_from_url
from durable.stores._sql import SCHEMA_VERSION

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

attempts: dict[str, int] = {}


@durable.step
async def cli_flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise durable.RetryableError("first try fails", retry_after=0.01)
    return "ok"


@durable.step
async def cli_chunks(n: int, delay: float) -> int:
    writer = durable.get_writable()
    for i in range(n):
        await writer.write({"i": i})
        await writer.flush()
        await anyio.sleep(delay)
    return n


@durable.workflow
async def cli_pipeline(key: str, n: int, delay: float) -> dict[str, Any]:
    return {"flaky": await cli_flaky(key), "chunks": await cli_chunks(n, delay)}


@durable.step
async def cli_explode() -> None:
    raise durable.FatalError("kaboom")


@durable.workflow
async def cli_failing() -> None:
    await cli_chunks(2, 0.0)
    await cli_explode()


@durable.workflow
async def cli_held(token: str) -> Any:
    return await durable.create_hook(token=token)


async def cli(*args: str, store: str | None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m durable ARGS`` without blocking the event loop (the test's runtime keeps working)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DURABLE_STORE", "DURABLE_API_TOKEN")}
    env["COLUMNS"] = "200"
    if store is not None:
        env["DURABLE_STORE"] = store
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-m", "durable", *args], env=env, cwd=cwd, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def cli_here(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    """The same command in this process (typer's CliRunner, in a thread with its own event loop):
    for read and steer commands whose entry point other tests already cover, at a fraction of a
    process start."""
    result = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, [*args, "--store", store]))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


@pytest.fixture
async def rt(sqlite_url: str) -> AsyncIterator[durable.Runtime]:
    async with durable.Runtime(sqlite_url, heartbeat_interval=0.2, poll_interval=0.1) as runtime:
        yield runtime


async def test_runs_inspect_and_events_describe_a_finished_run(rt: durable.Runtime, sqlite_url: str) -> None:
    """`runs` lists the run, `inspect` shows steps with attempts and the result, `events` the log."""
    run = await rt.start(cli_pipeline, "inspect-1", 3, 0.0)
    assert await run.result(timeout=20) == {"flaky": "ok", "chunks": 3}

    listed = await cli("runs", store=sqlite_url)
    assert listed.returncode == 0
    assert run.run_id in listed.stdout
    assert "completed" in listed.stdout
    assert (await cli("runs", "--status", "failed", store=sqlite_url)).stdout.strip() == "no runs"

    shown = await cli("inspect", run.run_id, store=sqlite_url)
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert any("cli_flaky" in line and "2/4" in line and "completed" in line for line in lines)
    assert any("cli_chunks" in line and "1/4" in line for line in lines)
    assert "stream 'default': 3 chunk(s), closed" in shown.stdout
    assert 'result: {"chunks":3,"flaky":"ok"}' in shown.stdout

    logged = await cli("events", run.run_id, store=sqlite_url)
    kinds = [line.split()[2] for line in logged.stdout.splitlines()[1:] if line.strip()]
    assert kinds[:3] == ["run_created", "run_started", "step_created"]
    assert "step_retrying" in kinds
    assert kinds[-1] == "run_completed"


async def test_inspect_shows_the_error_and_traceback_of_a_failed_run(rt: durable.Runtime, sqlite_url: str) -> None:
    """A failed run's inspect output names the error and prints its recorded traceback."""
    run = await rt.start(cli_failing)
    await run.wait(timeout=20)
    shown = await cli("inspect", run.run_id, store=sqlite_url)
    assert shown.returncode == 0
    assert "FatalError: kaboom" in shown.stdout
    assert "Traceback" in shown.stdout


async def test_tail_follows_a_live_stream_until_it_closes(rt: durable.Runtime, sqlite_url: str) -> None:
    """`tail` prints each chunk as a JSON line while the run writes them (from another process), then exits 0."""
    run = await rt.start(cli_pipeline, "tail-1", 12, 0.05)
    tailed = await cli("tail", run.run_id, store=sqlite_url)
    assert tailed.returncode == 0, tailed.stderr
    assert [json.loads(line) for line in tailed.stdout.splitlines()] == [{"i": i} for i in range(12)]
    assert (await cli("tail", run.run_id, "--start-index", "-2", store=sqlite_url)).stdout.splitlines() == ['{"i":10}', '{"i":11}']


async def test_tail_of_a_failed_run_prints_its_chunks_then_fails(rt: durable.Runtime, sqlite_url: str) -> None:
    """A stream that ended with its run's failure is printed, then reported with exit code 1."""
    run = await rt.start(cli_failing)
    await run.wait(timeout=20)
    tailed = await cli("tail", run.run_id, store=sqlite_url)
    assert (tailed.returncode, tailed.stdout.splitlines()) == (1, ['{"i":0}', '{"i":1}'])
    assert "kaboom" in tailed.stderr


async def test_resume_and_cancel_steer_waiting_runs(rt: durable.Runtime, sqlite_url: str) -> None:
    """`resume` delivers a JSON payload to a hook; `cancel` cancels a run and is idempotent."""
    resumed = await rt.start(cli_held, "cli-token-1")
    cancelled = await rt.start(cli_held, "cli-token-2")
    with anyio.fail_after(20):
        while len(await resumed.hooks()) + len(await cancelled.hooks()) < 2:
            await anyio.sleep(0.02)

    done = await cli("resume", "cli-token-1", '{"approved": true, "by": ["ada"]}', store=sqlite_url)
    assert (done.returncode, done.stdout.strip()) == (0, f"resumed hook hook_1 of run {resumed.run_id}")
    assert await resumed.result(timeout=20) == {"approved": True, "by": ["ada"]}

    first = await cli("cancel", cancelled.run_id, store=sqlite_url)
    assert (first.returncode, first.stdout.strip()) == (0, f"run {cancelled.run_id} cancelled")
    assert await cancelled.status() == "cancelled"
    again = await cli("cancel", cancelled.run_id, store=sqlite_url)
    assert again.stdout.strip() == f"run {cancelled.run_id} is already cancelled: nothing to cancel"


async def test_user_errors_are_one_line_with_an_exit_code(tmp_path: Path, sqlite_url: str) -> None:
    """Unknown ids, bad URLs, bad JSON, bad --app and foreign files: one line on stderr, no traceback, a fitting code."""
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"this is not a database" * 100)
    async with store_from_url(sqlite_url):
        pass  # the store exists: errors below are about what is (not) in it
    missing = tmp_path / "no-such-dir" / "typo.db"
    (tmp_path / "broken_app.py").write_text("def broken(:\n    pass\n")
    cases = [
        (("inspect", "run_nope"), 1, "error: no run with id 'run_nope'"),
        (("events", "run_nope"), 1, "error: no run with id 'run_nope'"),
        (("tail", "run_nope"), 1, "error: no run with id 'run_nope'"),
        (("cancel", "run_nope"), 1, "error: no run with id 'run_nope'"),
        (("resume", "[b]nobody", "{}"), 1, "error: no live hook with token '[b]nobody'"),  # not rich markup
        (("resume", "nobody", "{bad"), 2, "error: the payload is not valid JSON"),
        (("resume", "nobody", "NaN"), 2, "error: the payload is not valid JSON"),
        (("runs", "--status", "finished"), 2, "error: --status must be"),
        (("runs", "--limit", "0"), 2, "error: --limit must be between 1 and 10000"),
        (("runs", "--limit", "-1"), 2, "error: --limit must be between 1 and 10000"),
        (("runs", "--store", f"sqlite:///{missing}"), 3, f"error: no store at {missing}"),  # a typo is not an empty store
        (("inspect", "run_x", "--store", f"sqlite:///{missing}"), 3, f"error: no store at {missing}"),
        (("runs", "--store", "sqlite://host/x.db"), 2, "error: invalid store URL"),
        (("runs", "--store", "mysql://x"), 2, "error: invalid store URL 'mysql://x'"),
        (("runs", "--store", f"sqlite:///{foreign}"), 3, "error: "),
        (("serve", "--app", "no_such_module_here"), 2, "error: cannot import 'no_such_module_here'"),
        (("serve", "--app", "json:no_such_attr"), 2, "error: module 'json' has no attribute 'no_such_attr'"),
        (("worker", "--app", "no_such_module_here"), 2, "error: cannot import 'no_such_module_here'"),
        (("worker", "--app", "broken_app"), 2, "error: cannot import 'broken_app': syntax error at"),
        (("serve", "--app", "json"), 2, "error: module 'json' defines no durable workflows"),
    ]
    for args, code, message in cases:
        done = await cli(*args, store=sqlite_url, cwd=tmp_path)
        assert (done.returncode, done.stderr.startswith(message)) == (code, True), (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert not missing.parent.exists()


async def test_migrate_creates_the_schema_then_has_nothing_to_do(tmp_path: Path) -> None:
    """`migrate` on a new file creates the schema and says so; a second run reports it is current."""
    url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"
    first = await cli("migrate", store=url)
    assert (first.returncode, first.stdout.strip()) == (0, f"{url}: created schema version {SCHEMA_VERSION}")
    second = await cli("migrate", "--store", url, store=None)
    assert second.stdout.strip() == f"{url}: already at schema version {SCHEMA_VERSION}, nothing to do"


WORKER_FLOWS = textwrap.dedent(
    """
    import durable

    tries = {}

    @durable.step(retry_delay=0.05)
    async def cli_worker_double(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        if tries[x] == 1:
            raise ConnectionError(f"flaky link for {x}")
        return 2 * x

    @durable.step
    async def cli_worker_refuse(x: int) -> int:
        raise durable.FatalError(f"refusing {x}")

    @durable.workflow
    async def cli_worker_flow(x: int) -> int:
        return await cli_worker_double(x) + 1

    @durable.workflow
    async def cli_worker_failing(x: int) -> int:
        return await cli_worker_refuse(x)
    """
)


async def test_worker_runs_the_workflows_it_imports_and_logs_claims_retries_and_failures(tmp_path: Path, sqlite_url: str) -> None:
    """`worker --app module -v` executes runs created elsewhere, logs each claim, retry and failure on one line,
    and stops on SIGTERM."""
    (tmp_path / "cliworkerflows.py").write_text(WORKER_FLOWS)
    spec = importlib.util.spec_from_file_location("cliworkerflows", tmp_path / "cliworkerflows.py")
    assert spec is not None
    assert spec.loader is not None
    flows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flows)

    env = {**os.environ, "DURABLE_STORE": sqlite_url}
    async with await anyio.open_process(
        [sys.executable, "-m", "durable", "worker", "--app", "cliworkerflows", "-v"], cwd=tmp_path, env=env
    ) as worker:
        async with store_from_url(sqlite_url) as store:
            client = durable.Runtime(store)  # never opened: it only creates the runs
            run = await client.start(flows.cli_worker_flow, 20)
            failing = await client.start(flows.cli_worker_failing, 7)
            assert await durable.Run(run.run_id, store=store).result(timeout=30) == 41
            await durable.Run(failing.run_id, store=store).wait(timeout=30)
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            code = await worker.wait()
        assert worker.stderr is not None
        stderr = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                stderr += await worker.stderr.receive()
    assert code == 0
    lines = stderr.decode().splitlines()
    assert any("workflows: cliworkerflows:cli_worker_failing, cliworkerflows:cli_worker_flow" in line for line in lines)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"
    assert [line for line in lines if re.fullmatch(
        rf"{stamp} INFO durable: step cliworkerflows:cli_worker_double of run {run.run_id}: attempt 1/4 failed with "
        r"ConnectionError: flaky link for 20; retry at \d{4}-\S+\+00:00 \(in [\d.e-]+s\)", line)], lines
    assert any(f"DEBUG durable: claimed run {run.run_id} (cliworkerflows:cli_worker_flow" in line for line in lines), lines
    assert any(f"of run {failing.run_id} failed at attempt 1/4: FatalError: refusing 7 (not retried)" in line for line in lines)
    assert any(f"INFO durable: run {failing.run_id} (cliworkerflows:cli_worker_failing) failed: " in line for line in lines)


def test_demo_runs_the_demo_with_the_store_and_passes_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo` imports durable._demo lazily, calls run_demo(store_url) and exits with its code."""
    calls: list[str | None] = []
    fake = types.ModuleType("durable._demo")

    def run_demo(store_url: str | None) -> int:
        calls.append(store_url)
        return 3

    vars(fake)["run_demo"] = run_demo
    monkeypatch.setitem(sys.modules, "durable._demo", fake)
    result = CliRunner().invoke(app, ["demo", "--store", "memory://"])
    assert (result.exit_code, calls) == (3, ["memory://"])


def test_help_lists_every_command() -> None:
    """`durable --help` lists the commands the issue asks for."""
    done = subprocess.run([sys.executable, "-m", "durable", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0
    for command in ["serve", "worker", "runs", "inspect", "events", "tail", "cancel", "resume", "migrate", "demo"]:
        assert f" {command} " in done.stdout


@durable.workflow
async def cli_odd_text(text: str) -> str:
    return text


async def test_stored_lone_surrogates_print_escaped(rt: durable.Runtime, sqlite_url: str) -> None:
    """Python code may store a lone surrogate; the CLI prints its escape instead of a traceback."""
    run = await rt.start(cli_odd_text, "a\ud800b")
    assert await run.result(timeout=20) == "a\ud800b"
    for command in ("inspect", "events"):
        done = await cli(command, run.run_id, store=sqlite_url)
        assert done.returncode == 0, done.stderr
        assert "a\\ud800b" in done.stdout


def test_usage_errors_of_serve_start_and_worker_are_one_line() -> None:
    """A non-app --app, an out-of-range port, arguments that are not JSON and an unknown log level: one line, exit 2."""
    cases = [
        (["serve", "--app", "json:dumps"], "error: json:dumps is not an ASGI app, a durable.Runtime or a Store"),
        (["serve", "--app", "json:JSONDecoder"], "error: json:JSONDecoder is not an ASGI app"),
        (["serve", "--port", "70000"], "error: --port must be between 0 and 65535, not 70000"),
        (["serve", "--port", "-1"], "error: --port must be between 0 and 65535, not -1"),
        (["start", "anything", "--args", "{"], "error: --args is not valid JSON"),
        (["start", "anything", "--args", '{"a": 1}'], "error: --args must be a JSON list"),
        (["start", "anything", "--kwargs", "[1]"], "error: --kwargs must be a JSON object"),
        (["worker", "--app", "json", "--log-level", "loud"], "error: --log-level must be one of debug, info, warning, error"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, args)
        assert (result.exit_code, result.stderr.startswith(message)) == (2, True), (args, result.stderr, result.stdout)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_usage_names_arguments_in_capitals() -> None:
    """Help names arguments and option values in capitals (RUN_ID, TOKEN, PAYLOAD, WORKFLOW, URL), not as parameter names."""
    for command, names in [("inspect", ["RUN_ID", "URL"]), ("resume", ["TOKEN", "PAYLOAD"]), ("start", ["WORKFLOW", "JSON"]),
                           ("tail", ["RUN_ID"]), ("cancel", ["RUN_ID"]), ("events", ["RUN_ID"])]:
        usage = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
        for name in names:
            assert name in usage, (command, name, usage)
        assert "run_id" not in usage and "{token}" not in usage, usage


@durable.workflow
async def cli_json(key: str) -> Any:
    return await cli_flaky(key)


async def test_json_output_is_the_web_apis_projection(rt: durable.Runtime, sqlite_url: str) -> None:
    """`runs`, `inspect` and `events --json` print what GET /runs, /runs/{id} and /runs/{id}/events answer."""
    from durable._client.present import event_json, run_detail, run_summary
    from durable._client.projection import HookInfo, RunInfo, StepInfo

    run = await rt.start(cli_json, "json-1")
    assert await run.result(timeout=20) == "ok"
    store = rt.store
    record = await store.get_run(run.run_id)
    assert record is not None
    listed = json.loads((await cli_here("runs", "--json", store=sqlite_url)).stdout)
    assert listed == {"runs": [run_summary(RunInfo.from_record(record))]}
    shown = json.loads((await cli_here("inspect", run.run_id, "--json", store=sqlite_url)).stdout)
    steps = [StepInfo.from_record(s) for s in await store.list_steps(run.run_id)]
    hooks = [HookInfo.from_record(h) for h in await store.list_hooks(run.run_id, active_only=False)]
    expected = run_detail(RunInfo.from_record(record), record.output, steps, hooks, await store.list_streams(run.run_id))
    assert shown == {**expected, "waiting_for": []}
    logged = json.loads((await cli_here("events", run.run_id, "--json", store=sqlite_url)).stdout)
    assert logged == {"events": [event_json(e) for e in await store.load_events(run.run_id)]}
    assert [e["kind"] for e in logged["events"]].count("step_retrying") == 1
    human = (await cli_here("runs", store=sqlite_url)).stdout
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", human), human  # ISO 8601 with its zone


@durable.step
async def cli_fails_once(key: str) -> str:
    raise durable.RetryableError(f"no {key} yet", retry_after="1h")


@durable.workflow
async def cli_waiting(token: str) -> Any:
    return await asyncio.gather(durable.sleep("2h"), cli_fails_once("stock"), durable.create_hook(token=token))


async def test_inspect_says_what_a_waiting_run_waits_for(rt: durable.Runtime, sqlite_url: str) -> None:
    """A waiting run's timer (until when), hook (its token) and step being retried (when, after which error) are listed."""
    run = await rt.start(cli_waiting, "cli-wait-1")
    with anyio.fail_after(20):
        while not (await run.hooks()) or not any(s.retry_at for s in await run.steps()):
            await anyio.sleep(0.02)
    shown = (await cli_here("inspect", run.run_id, store=sqlite_url)).stdout
    lines = shown.splitlines()
    start = lines.index("waiting for:")
    waits = [line.strip() for line in lines[start + 1 : start + 4]]
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    assert re.fullmatch(rf"step step_\d \S+:cli_fails_once being retried at {stamp} \(in (59m \d\ds|1h 00m)\) after attempt 1/4 failed "
                        r"\(\S*RetryableError: no stock yet\)", waits[0]), waits
    assert re.fullmatch(rf"timer wait_\d until {stamp} \(in (1h 59m|2h 00m)\)", waits[1]), waits
    assert re.fullmatch(r"hook hook_\d token 'cli-wait-1'", waits[2]), waits
    as_json = json.loads((await cli_here("inspect", run.run_id, "--json", store=sqlite_url)).stdout)["waiting_for"]
    assert [w["kind"] for w in as_json] == ["retry", "timer", "hook"]
    assert as_json[2]["token"] == "cli-wait-1"
    events = (await cli_here("events", run.run_id, store=sqlite_url)).stdout
    assert re.search(r'wait_created +wait_\d +\{"resume_at":"\d{4}-', events), events  # a deadline a person can read
    await run.cancel()


ESC = "\x1b]0;owned\x07\x1b[2J"  # set the terminal's title, clear the screen


@durable.step
async def cli_hostile(payload: Any) -> None:
    raise durable.FatalError(f"bad payload {payload['text']}")


@durable.workflow
async def cli_escapes(token: str) -> Any:
    payload = await durable.create_hook(token=token)
    await cli_hostile(payload)


async def test_control_characters_from_outside_print_escaped(rt: durable.Runtime, sqlite_url: str) -> None:
    """An ESC sequence in a hook token, a payload sent in and the error it caused prints as visible escapes
    in every human-readable command; --json keeps the exact text, as JSON escapes."""
    token = "tok" + ESC
    run = await rt.start(cli_escapes, token)
    with anyio.fail_after(20):
        while not await run.hooks():
            await anyio.sleep(0.02)
    resumed = await cli_here("resume", token, json.dumps({"text": "x" + ESC}), store=sqlite_url)
    assert resumed.returncode == 0, resumed.stderr
    await run.wait(timeout=20)
    outputs = [await cli_here(*args, store=sqlite_url) for args in
               [("runs",), ("inspect", run.run_id), ("events", run.run_id), ("resume", token, "{}")]]
    for done in outputs:
        printed = done.stdout + done.stderr
        assert "\x1b" not in printed and "\x07" not in printed, printed
    assert "bad payload x\\x1b]0;owned\\x07\\x1b[2J" in outputs[0].stdout  # the error in `runs`
    assert "Traceback" in outputs[1].stdout and "\\x1b[2J" in outputs[1].stdout  # the traceback in `inspect`
    assert "\\u001b]0;owned" in outputs[2].stdout  # the payload preview in `events` (JSON-escaped)
    shown = json.loads((await cli_here("inspect", run.run_id, "--json", store=sqlite_url)).stdout)
    assert shown["error"]["message"] == "bad payload x" + ESC
    assert shown["hooks"][0]["token"] == token


def test_without_the_web_extra_the_command_says_what_to_install() -> None:
    """With typer (or rich) missing, `durable` and `python -m durable` print one line naming the extra and exit 2."""
    script = Path(sys.executable).parent / "durable"
    hide = "import sys; sys.modules[{name!r}] = None; sys.argv = ['durable', 'runs']; "
    runs = ["from durable.__main__ import main; main()"]
    if script.exists():  # the console script pip installed: it must not import the CLI before main() runs
        runs.append(f"exec(compile(open({str(script)!r}).read(), 'durable', 'exec'), {{'__name__': '__main__'}})")
    for name, run in [("typer", r) for r in runs] + [("rich", runs[0])]:
        done = subprocess.run([sys.executable, "-c", hide.format(name=name) + run], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"durable: the command line needs the 'web' extra ({name} is not installed): pip install 'durable-workflows[web]'"
        )


def test_the_demo_hints_are_commands_a_pip_user_can_type_on_the_demos_store() -> None:
    """The demo's closing hints call `durable` (not .venv/bin/...), keep a non-default --store, and serve that store."""
    from durable._demo import hints

    default = hints("demo-1", "sqlite:///.durable/durable.db")
    assert all(line.startswith("durable ") and "--store" not in line for line in default)
    other = hints("demo-1", "sqlite:///tmp/my demo.db")
    assert all(line.startswith("durable ") and "--store 'sqlite:///tmp/my demo.db'" in line for line in other)
    serve = next(line for line in other if line.startswith("durable serve"))
    assert "--app durable._demo --store" in serve  # the module form: its runtime runs on --store (module:app would ignore it)
@durable.workflow
async def cli_leaf(n: int) -> int:
    return n


@durable.workflow
async def cli_branch(n: int) -> list[int]:
    return [await cli_leaf(n), await cli_leaf(n + 1)]


@durable.workflow
async def cli_tree() -> list[Any]:
    return [await cli_branch(1), await cli_leaf(9)]


async def test_inspect_draws_the_tree_of_child_runs(rt: durable.Runtime, sqlite_url: str) -> None:
    """`inspect` of a parent draws its descendants as a tree; a child's inspect names its parent."""
    run = await rt.start(cli_tree)
    assert await run.result(timeout=20) == [[1, 2], 9]
    shown = await cli("inspect", run.run_id, store=sqlite_url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("children of"))
    tree = lines[start + 1: start + 5]
    assert [line.strip(" │├└─").split()[0] for line in tree] == [
        f"{run.run_id}-c1", f"{run.run_id}-c1-c1", f"{run.run_id}-c1-c2", f"{run.run_id}-c2",
    ]
    assert tree[1].index(f"{run.run_id}-c1-c1") > tree[0].index(f"{run.run_id}-c1")  # nested one level deeper
    child = await cli("inspect", f"{run.run_id}-c1", store=sqlite_url)
    assert f"child of run {run.run_id}" in child.stdout


CLI_QUEUE = durable.Queue("cli.one-at-a-time", concurrency=1)


async def test_runs_with_a_queue_list_its_runs_and_what_the_waiting_ones_wait_for(rt: durable.Runtime, sqlite_url: str) -> None:
    """`durable runs --queue q` prints the queue's occupancy and, per run, whether it was admitted and why it waits."""
    first = await rt.start(cli_held, "cq-1", queue=CLI_QUEUE)
    with anyio.fail_after(10):
        while await rt.store.get_hook("cq-1") is None:
            await anyio.sleep(0.01)
    second = await rt.start(cli_held, "cq-2", queue=CLI_QUEUE, key="customer-42")
    shown = await cli("runs", "--queue", "cli.one-at-a-time", store=sqlite_url)
    assert shown.returncode == 0, shown.stderr
    assert "queue cli.one-at-a-time: 1/1 active, 1 waiting -- queue 'cli.one-at-a-time' is full (1/1 running)" in shown.stdout
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith(second.run_id)]
    assert "customer-42" in row and " no " in row and "is full (1/1 running)" in row
    listed = await cli("queues", store=sqlite_url)
    assert "queue cli.one-at-a-time: 1/1 active, 1 waiting" in listed.stdout
    await rt.cancel(first.run_id)
    await rt.cancel(second.run_id)


@durable.workflow
async def cli_nightly(kind: str) -> str:
    return kind


async def test_schedules_commands_list_pause_resume_trigger_and_delete(rt: durable.Runtime, sqlite_url: str) -> None:
    """`durable schedules list|pause|resume|trigger|delete` act on the store's schedules; an unknown name fails."""
    from durable._worker.scheduler import Scheduler

    await Scheduler(rt.store, [durable.schedule("cli-nightly", cli_nightly, cron="0 3 * * *", args=("sales",))],
                    poll_interval=0.1).register()
    listed = await cli("schedules", "list", store=sqlite_url)
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("cli-nightly")]
    assert "cron 0 3 * * * (UTC)" in row and "active" in row
    assert (await cli("schedules", "pause", "cli-nightly", store=sqlite_url)).stdout.strip() == "schedule cli-nightly: paused"
    assert '"paused":true' in (await cli("schedules", "list", "--json", store=sqlite_url)).stdout
    assert (await cli("schedules", "resume", "cli-nightly", store=sqlite_url)).returncode == 0
    triggered = await cli("schedules", "trigger", "cli-nightly", store=sqlite_url)
    run_id = triggered.stdout.split()[-1]
    assert await rt.run(run_id).result(timeout=20) == "sales"
    assert (await cli("schedules", "delete", "cli-nightly", store=sqlite_url)).returncode == 0
    missing = await cli("schedules", "pause", "cli-nightly", store=sqlite_url)
    assert missing.returncode == 1 and "no schedule named 'cli-nightly'" in missing.stderr


@durable.workflow
async def cli_started(order: str, amount: int = 1) -> str:
    return f"{order} x{amount}"


async def test_start_starts_a_published_workflow_once_per_key(rt: durable.Runtime, sqlite_url: str) -> None:
    """`start WORKFLOW --args --kwargs` records a run a worker executes and prints its id; the same key
    prints the same run, other arguments under it are refused naming the key, a call that does not fit
    the signature is exit 2 with nothing recorded."""
    name = cli_started.name
    done = await cli("start", name, "--args", '["A-1"]', "--kwargs", '{"amount": 3}', "--idempotency-key", "k-1", "--json", store=sqlite_url)
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout)
    assert started["workflow"] == name
    assert await durable.Run(started["run_id"], store=rt.store).result(timeout=30) == "A-1 x3"
    again = await cli_here("start", name, "--args", '["A-1"]', "--kwargs", '{"amount": 3}', "--idempotency-key", "k-1", store=sqlite_url)
    assert (again.returncode, again.stdout.strip()) == (0, started["run_id"])
    other = await cli_here("start", name, "--args", '["A-1"]', "--kwargs", '{"amount": 4}', "--idempotency-key", "k-1", store=sqlite_url)
    assert other.returncode != 0 and "k-1" in other.stderr and len(other.stderr.strip().splitlines()) == 1, other.stderr
    misfit = await cli_here("start", name, "--args", '["A-2", 1, 2]', store=sqlite_url)
    assert misfit.returncode == 2 and "argument" in misfit.stderr, misfit.stderr
    assert [r.run_id for r in await rt.list_runs(workflow=name)] == [started["run_id"]]
