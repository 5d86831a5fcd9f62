"""Payload encryption at rest (``durable.Encryption``) on every store: ciphertext in the database's
own rows, round trips of every kind of payload, key rotation, wrong and missing keys, readers
without the key (Python views, the web API, the CLI, the notebook), and a SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

import durable
from durable._cli import app
from durable._client.present import event_json, run_detail
from durable._core import codec as _codec
from durable.notebook._feed import snapshot
from durable.stores._base import Store
from durable.stores._encrypted import EncryptedStore
from durable.stores._sqlstore import SQLStore
from durable.web import create_app
from tests.helpers import ROOT, sqlite_store_url

pytestmark = pytest.mark.anyio

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
SECRET = "the-secret-value-7f3a"


def enc_a() -> durable.Encryption:
    return durable.Encryption(KEY_A, key_id="a")


async def raw(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of the database itself, under the encryption wrapper."""
    inner = store.inner if isinstance(store, EncryptedStore) else store
    assert isinstance(inner, SQLStore)
    return await inner._run(lambda db: db.execute(sql, params), write=False)


@durable.step(name="enc.shout")
async def shout(text: str) -> str:
    await durable.get_writable().write({"chunk": text})
    return text.upper()


@durable.step(name="enc.explode", max_retries=0)
async def explode(text: str) -> None:
    raise KeyError(f"boom {text}")


@durable.workflow(name="enc.child")
async def enc_child(text: str) -> str:
    return f"child saw {text}"


@durable.workflow(name="enc.everything")
async def everything(text: str, token: str) -> dict[str, Any]:
    loud = await shout(text)
    durable.set_event("progress", {"loud": loud})
    payload = await durable.create_hook(token=token)
    child = await enc_child(payload["note"])
    return {"loud": loud, "payload": payload, "child": child}


@durable.workflow(name="enc.failing")
async def failing(text: str) -> None:
    await explode(text)


@durable.workflow(name="enc.echo")
async def echo(text: str) -> str:
    return text


async def finished_run(rt: durable.Runtime, token: str = "enc-hook") -> durable.Run:
    run = await rt.start(everything, SECRET, token)
    await rt.resume_hook(token, {"note": SECRET}, wait="10s")
    assert await run.result(timeout=20) == {
        "loud": SECRET.upper(), "payload": {"note": SECRET}, "child": f"child saw {SECRET}"
    }
    return run


async def test_payloads_are_ciphertext_in_the_database_and_round_trip(store_url: str) -> None:
    """Arguments, results, step data, hook payloads, child data, values and chunks are DE1: ciphertext in the
    rows (no plaintext secret anywhere), while the runtime reads every one of them back as it was written."""
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        run = await finished_run(rt)
        assert await run.values() == {"progress": {"loud": SECRET.upper()}}
        assert [c async for c in run.stream()] == [{"chunk": SECRET}]
        assert (await run.steps())[0].arguments == ([SECRET], {})
        payloads: list[bytes] = []
        for sql in ("SELECT input FROM runs", "SELECT output FROM runs WHERE output IS NOT NULL",
                    "SELECT data FROM events WHERE data IS NOT NULL AND kind NOT IN ('wait_created', 'hook_created')",
                    "SELECT data FROM chunks", "SELECT data FROM run_values"):
            found = [bytes(r[0]) for r in await raw(rt.store, sql)]
            assert found, sql
            payloads += found
        # A step that completed in its run's own chain has no row (its events hold it); any that has one is checked.
        payloads += [bytes(v) for r in await raw(rt.store, "SELECT input, output FROM steps") for v in r if v is not None]
        assert all(p[:4] == b"DE1:" and _codec.encrypted_key_id(p) == "a" for p in payloads)
        everything_stored = b"".join(bytes(r[0]) for r in await raw(rt.store, "SELECT data FROM events WHERE data IS NOT NULL"))
        assert SECRET.encode() not in everything_stored and SECRET.upper().encode() not in everything_stored


async def test_errors_are_encrypted_and_come_back_as_the_original_exception(store_url: str) -> None:
    """A failed step's error and the run's error are ciphertext; result() raises the original type and message."""
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        run = await rt.start(failing, SECRET)
        with pytest.raises(durable.RunFailed) as failed:
            await run.result(timeout=20)
        assert failed.value.error_type == "KeyError" and SECRET in failed.value.message
        (error,) = await raw(rt.store, "SELECT error FROM runs WHERE run_id = ?", run.run_id)
        assert bytes(error[0])[:4] == b"DE1:" and SECRET.encode() not in bytes(error[0])
        info = await run.info()
        assert info.error is not None and info.error.type == "KeyError"


async def test_readers_without_the_key_show_encrypted_values_instead_of_failing(store_url: str) -> None:
    """A client without encryption= lists and inspects the run (status, steps, events) with "<encrypted>" where the
    payloads are; decoding one raises EncryptedValueError naming the key id."""
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        run = await finished_run(rt)
        failed = await rt.start(failing, "x")
        await failed.wait(timeout=20)
        bare = durable.Client(rt.store.inner if isinstance(rt.store, EncryptedStore) else rt.store)
        view = bare.run(run.run_id)
        assert (await view.info()).status == "completed"
        detail = run_detail(await view.info(), (await bare.store.get_run(run.run_id) or _missing()).output,
                            await view.steps(), await view.hooks(), await view.streams(), values=await bare.store.list_values(run.run_id))
        assert (detail["result"], detail["values"]) == ("<encrypted>", {"progress": "<encrypted>"})
        events = [event_json(e) for e in await view.events()]
        assert {e["data"] for e in events if e["kind"] in ("run_created", "step_completed", "hook_received")} == {"<encrypted>"}
        assert [e.value for e in await view.events() if e.kind == "run_completed"] == ["<encrypted>"]
        failed_info = await bare.run(failed.run_id).info()
        assert failed_info.status == "failed" and failed_info.error is not None and failed_info.error.type == "<encrypted>"
        with pytest.raises(durable.EncryptedValueError, match="key 'a'") as caught:
            await view.result()
        assert caught.value.key_id == "a" and isinstance(caught.value, durable.SerializationError)
        with pytest.raises(durable.EncryptedValueError):
            await bare.run(failed.run_id).result()
        with pytest.raises(durable.EncryptedValueError):
            [c async for c in view.stream()]
        state = await snapshot(view)  # the notebook's view of it
        assert repr(state.result) == "<encrypted>" and "<encrypted>" in dict(state.values)["progress"]


def _missing() -> Any:
    raise AssertionError("the run is gone")


async def test_the_web_api_without_the_key_answers_with_encrypted_markers(store_url: str) -> None:
    """GET /runs/{id} and its events from an app over the bare store: "<encrypted>" for payloads, never a 500."""
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        run = await finished_run(rt, "enc-web")
        bare = rt.store.inner if isinstance(rt.store, EncryptedStore) else rt.store
        transport = httpx.ASGITransport(app=create_app(bare, manage=False, api_token=""))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            detail = (await client.get(f"/runs/{run.run_id}")).json()
            events = (await client.get(f"/runs/{run.run_id}/events")).json()
        assert (detail["status"], detail["result"], detail["values"]) == ("completed", "<encrypted>", {"progress": "<encrypted>"})
        items = events["events"] if isinstance(events, dict) else events
        assert SECRET not in json.dumps(items) and "<encrypted>" in json.dumps(items)
        # The same app over a store that holds the key shows the values.
        transport = httpx.ASGITransport(app=create_app(rt.store, manage=False, api_token=""))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get(f"/runs/{run.run_id}")).json()["result"]["loud"] == SECRET.upper()


async def test_key_rotation_writes_with_the_new_key_and_reads_old_values_by_their_id(store_url: str) -> None:
    """With key b current and a in old_keys, old runs read back and new payloads carry key id b; without a,
    old values stay encrypted (with an error naming a) while new ones read."""
    if store_url == "memory://":
        pytest.skip("rotation happens across runtimes sharing a store")
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        old = await rt.start(echo, "old secret")
        await old.result(timeout=10)
    rotated = durable.Encryption(KEY_B, key_id="b", old_keys={"a": KEY_A})
    async with durable.Runtime(store_url, encryption=rotated) as rt:
        assert await rt.run(old.run_id).result() == "old secret"
        new = await rt.start(echo, "new secret")
        assert await new.result(timeout=10) == "new secret"
        (row,) = await raw(rt.store, "SELECT input FROM runs WHERE run_id = ?", new.run_id)
        assert _codec.encrypted_key_id(bytes(row[0])) == "b"
    async with durable.Client(store_url, encryption=durable.Encryption(KEY_B, key_id="b")) as client:
        assert await client.run(new.run_id).result() == "new secret"
        with pytest.raises(durable.EncryptedValueError, match="'a'"):
            await client.run(old.run_id).result()
        assert (await client.run(old.run_id).info()).status == "completed"


async def test_a_wrong_key_under_a_known_id_is_refused_when_the_store_opens(store_url: str) -> None:
    """A client whose key for id a is not the one a wrote with fails at open with EncryptionKeyError naming a."""
    if store_url == "memory://":
        pytest.skip("needs a second process's view of the same store")
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        await (await rt.start(echo, "x")).result(timeout=10)
    with pytest.raises(durable.EncryptionKeyError, match="'a'") as refused:
        async with durable.Client(store_url, encryption=durable.Encryption(KEY_B, key_id="a")):
            pass
    assert refused.value.key_id == "a"


async def test_a_value_whose_key_id_is_unknown_is_a_clear_error_where_it_must_be_decrypted(store_url: str) -> None:
    """Decrypting with no key of the value's id names the id and the ids held; the codec's error names it too."""
    sealed = enc_a().encrypt(_codec.encode("x"), "run-1")
    other = durable.Encryption(KEY_B, key_id="b")
    with pytest.raises(durable.EncryptionKeyError, match=r"key 'a'.*holds no key with that id.*'b'"):
        other.decrypt(sealed)
    with pytest.raises(durable.EncryptionKeyError, match="does not decrypt"):
        durable.Encryption(KEY_B, key_id="a").decrypt(sealed)
    with pytest.raises(durable.EncryptedValueError, match="result is encrypted with key 'a'"):
        _codec.decode(sealed, root="result")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(durable.EncryptionKeyError, match="altered"):
        enc_a().decrypt(tampered)


async def test_a_runtime_without_the_key_leaves_encrypted_runs_alone(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A runtime without encryption= warns at open, and retries (never fails) a run it cannot decrypt; one with
    the key then runs it to completion."""
    if store_url == "memory://":
        pytest.skip("needs a store that outlives a runtime")
    async with durable.Client(store_url, encryption=enc_a()) as client:  # a client records the run, executes nothing
        run = await client.start(echo, "for later")
    with caplog.at_level(logging.WARNING, logger="durable"):
        async with durable.Runtime(store_url, workflows=[echo], heartbeat_interval=0.2, poll_interval=0.1) as rt:
            await anyio.sleep(0.6)
            assert await rt.run(run.run_id).status() == "pending"
    assert any("encrypted with key(s) a" in r.getMessage() for r in caplog.records)
    async with durable.Runtime(store_url, workflows=[echo], encryption=enc_a()) as rt:
        assert await rt.run(run.run_id).result(timeout=20) == "for later"


@durable.workflow(name="enc.one_step")
async def one_step(text: str) -> str:
    return await shout(text)


async def test_a_step_worker_without_the_key_retries_the_step_instead_of_failing_it(store_url: str) -> None:
    """A step-only worker without the key records a retry naming the key id (the step is not run, the run not
    failed); a worker with the key then runs it."""
    if store_url == "memory://":
        pytest.skip("needs two runtimes on one store")
    async with durable.Runtime(store_url, workflows=[one_step], execute_steps=False, encryption=enc_a(),
                               poll_interval=0.1) as rt:
        async with durable.Runtime(store_url, workflows=[], heartbeat_interval=0.2, poll_interval=0.1):
            run = await rt.start(one_step, "quiet")
            deadline = time.monotonic() + 20
            while not (steps := await run.steps()) or steps[0].error is None:
                assert time.monotonic() < deadline, "the step worker never tried the step"
                await anyio.sleep(0.05)
        (step,) = await run.steps()
        assert step.status == "pending" and step.error is not None and "EncryptedValueError" in step.error.type
        assert "'a'" in step.error.message and await run.status() == "running"
        async with durable.Runtime(store_url, workflows=[], encryption=enc_a(), poll_interval=0.1):
            assert await run.result(timeout=20) == "QUIET"


@durable.workflow(name="enc.two_steps")
async def two_steps(text: str) -> list[str]:
    return [await shout(text), await shout(text + "!")]


async def test_a_fork_of_an_encrypted_run_reads_its_copied_history_and_encrypts_new_arguments(store_url: str) -> None:
    """A fork copies the source's encrypted history as it is (each value still names its run's key) and its new
    arguments are ciphertext of its own; it replays and finishes with the key."""
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        source = await rt.start(two_steps, "one")
        assert await source.result(timeout=20) == ["ONE", "ONE!"]
        forked = await source.fork(from_step=2)
        assert await forked.result(timeout=20) == ["ONE", "ONE!"]  # step 1 reused from the copied history
        copied = [bytes(r[0]) for r in await raw(rt.store, "SELECT output FROM steps WHERE run_id = ? AND output IS NOT NULL",
                                                forked.run_id)]
        results = [bytes(r[0]) for r in await raw(rt.store, "SELECT data FROM events WHERE run_id = ? AND kind = 'step_completed'",
                                                 forked.run_id)]
        # Step 1's row was copied; step 2 ran again, with a row or (in the fork's own chain) with only its events.
        assert len(copied) in (1, 2) and len(results) == 2 and all(d[:4] == b"DE1:" for d in copied + results)
        again = await source.fork(from_step=1, input=["two"])
        assert await again.result(timeout=20) == ["TWO", "TWO!"]
        (row,) = await raw(rt.store, "SELECT input FROM runs WHERE run_id = ?", again.run_id)
        assert bytes(row[0])[:4] == b"DE1:" and b"two" not in bytes(row[0])


async def test_an_idempotency_key_compares_arguments_through_the_encryption(store_url: str) -> None:
    """The same key with the same arguments is the same run; with other arguments it is a RunConflict, as without encryption."""
    async with durable.Runtime(store_url, encryption=enc_a()) as rt:
        first = await rt.start(echo, "one", idempotency_key="enc-key")
        assert await rt.start(echo, "one", idempotency_key="enc-key") == first
        with pytest.raises(durable.RunConflict, match="other arguments"):
            await rt.start(echo, "two", idempotency_key="enc-key")


SCHEDULED = durable.schedule("enc.every-hour", echo, every="1h", args=(SECRET,))


async def test_schedule_arguments_are_encrypted_and_reach_their_runs(store_url: str) -> None:
    """A schedule's arguments are ciphertext in the schedules table, and a run it starts gets them."""
    async with durable.Runtime(store_url, encryption=enc_a(), schedules=[SCHEDULED]) as rt:
        (row,) = await raw(rt.store, "SELECT input FROM schedules WHERE name = ?", "enc.every-hour")
        assert bytes(row[0])[:4] == b"DE1:"
        run = await rt.trigger_schedule("enc.every-hour")
        assert await run.result(timeout=20) == SECRET


def test_bad_keys_are_refused_without_showing_them() -> None:
    """A key of the wrong size is a ValueError that says what to pass (and never shows the key); repr hides keys."""
    with pytest.raises(ValueError, match="32 bytes") as caught:
        durable.Encryption(b"short-secret-key", key_id="k")
    assert "short-secret-key" not in str(caught.value)
    with pytest.raises(ValueError, match="another key"):
        durable.Encryption(KEY_A, key_id="a", old_keys={"a": KEY_B})
    text_key = durable.Encryption.generate_key()
    assert durable.Encryption(text_key).key_id == durable.Encryption(text_key).key_id  # derived from the key
    assert text_key not in repr(durable.Encryption(text_key, old_keys={"old": KEY_A}))
    assert durable.Encryption(KEY_A.hex(), key_id="a").decrypt(enc_a().encrypt(b"DJ1:1", "r")) == b"DJ1:1"


def test_without_the_extra_encryption_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the cryptography library, Encryption(...) raises ImportError naming the extra to install."""
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r"durable-workflows\[encryption\]"):
        durable.Encryption(KEY_A)


@pytest.mark.slow
def test_the_cli_without_the_key_shows_encrypted_values(tmp_path: Path) -> None:
    """``durable inspect`` and ``durable events --json`` on an encrypted run print "<encrypted>", not the secret."""
    url = sqlite_store_url(tmp_path / "cli.db")

    async def one_run() -> str:
        async with durable.Runtime(url, workflows=[echo], encryption=enc_a()) as rt:
            run = await rt.start(echo, SECRET)
            await run.result(timeout=10)
            return run.run_id

    run_id = anyio.run(one_run)
    runner = CliRunner()
    shown = runner.invoke(app, ["inspect", run_id, "--store", url])
    assert shown.exit_code == 0 and "<encrypted>" in shown.output and SECRET not in shown.output, shown.output
    events = runner.invoke(app, ["events", run_id, "--json", "--store", url])
    assert events.exit_code == 0 and "<encrypted>" in events.output and SECRET not in events.output, events.output
    keyed = runner.invoke(app, ["inspect", run_id, "--store", url],
                          env={"DURABLE_ENCRYPTION_KEY": KEY_A.hex(), "DURABLE_ENCRYPTION_KEY_ID": "a"})
    assert keyed.exit_code == 0 and SECRET in keyed.output, keyed.output  # the key from the environment
    wrong = runner.invoke(app, ["inspect", run_id, "--store", url], env={"DURABLE_ENCRYPTION_KEY": "not a key"})
    assert wrong.exit_code == 2 and "DURABLE_ENCRYPTION_KEY" in wrong.output and "not a key" not in wrong.output


def test_keys_come_from_the_environment_for_the_command_line() -> None:
    """``Encryption.from_env`` reads the key, its id and old keys (id:key pairs); no key variable, no encryption."""
    assert durable.Encryption.from_env({}) is None
    env = {"DURABLE_ENCRYPTION_KEY": KEY_B.hex(), "DURABLE_ENCRYPTION_KEY_ID": "b",
           "DURABLE_ENCRYPTION_OLD_KEYS": f"a:{KEY_A.hex()}"}
    found = durable.Encryption.from_env(env)
    assert found is not None and (found.key_id, found.key_ids) == ("b", ["a", "b"])
    assert found.decrypt(enc_a().encrypt(b"DJ1:1", "r")) == b"DJ1:1"
    with pytest.raises(ValueError, match="key_id:key pairs"):
        durable.Encryption.from_env({**env, "DURABLE_ENCRYPTION_OLD_KEYS": KEY_A.hex()})


@pytest.mark.slow
async def test_a_sigkilled_encrypted_run_recovers_in_a_new_process(tmp_path: Path) -> None:
    """SIGKILL a runtime with encryption mid-step: a new runtime holding the key finishes the run, everything
    stored stays ciphertext, and only the interrupted step runs again. (Step c runs beside b: the kill waits
    for its completion to be recorded, else c too may be interrupted after its effect and rightly run again.)"""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    log_file = tmp_path / "effects.log"
    env = {**os.environ, "CRASH_LOG": str(log_file), "CRASH_DIR": str(tmp_path), "CRASH_AT": "step:b",
           "PYTHONPATH": str(ROOT), "CRASH_ENCRYPTION_KEY": KEY_A.hex()}
    os.environ.update(CRASH_LOG=str(log_file), CRASH_DIR=str(tmp_path), CRASH_AT="")
    from tests.unit import crash_app  # the crash.* workflows, in this process too

    with open(tmp_path / "child.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, str(Path(crash_app.__file__)), url, "run-enc", "crash.pipeline"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30

    def completed_steps() -> int:  # c runs beside b: kill only once its completion is recorded
        with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'crash.db'}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("SELECT count(*) FROM events WHERE run_id = 'run-enc' "
                                    "AND kind = 'step_completed'").fetchone()[0])

    while not (tmp_path / "step:b").exists() or completed_steps() < 2:
        assert proc.poll() is None, (tmp_path / "child.err").read_text()
        assert time.monotonic() < deadline, "the child never reached step b with a and c recorded"
        await asyncio.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    async with durable.Runtime(url, heartbeat_interval=0.2, encryption=durable.Encryption(KEY_A, key_id="crash")) as rt:
        run = await rt.get_run("run-enc")
        assert await run.result(timeout=30) == ["A", "B", "C", "D"]
        stored = [bytes(r[0]) for r in await raw(rt.store, "SELECT data FROM events WHERE run_id = 'run-enc' "
                                                         "AND data IS NOT NULL AND kind <> 'wait_created'")]
        assert stored and all(_codec.encrypted_key_id(d) == "crash" for d in stored)
    labels = [json.loads(line)[0] for line in log_file.read_text().splitlines()]
    assert sorted(labels) == ["a", "b", "b", "c", "d"]
