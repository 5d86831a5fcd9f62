"""Deliberately injected bugs, each of which a property must catch: ``python -m tests.property.mutants``.

A property that cannot fail proves nothing. Each :class:`Mutant` below is one small bug, written
as a text patch to one function of durable. With ``DURABLE_MUTANT=<name>`` in the environment,
tests/property/conftest.py (and the SIGKILL child, crash_child.py) recompiles that function with
the patch *in memory* -- the source files are never touched, which matters in a tree other
people are editing -- and the runner checks that the property tests named for it fail.

    python -m tests.property.mutants            # every mutant, one pytest run each
    python -m tests.property.mutants set-order  # just these

A mutant whose patch no longer applies (the code moved) is reported as stale, not as caught.
"""

from __future__ import annotations
import __future__

import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
P = "tests/property/"
# The simulator's test first: it fails in seconds where the runtime's may wait for a hung run.
DETERMINISM = P + "test_replay_determinism.py::test_simulated_schedules_replay_and_agree"
DETERMINISM_RUNTIME = P + "test_replay_determinism.py::test_runtime_replays_and_permuted_schedules_agree"
CRASH = P + "test_crash_anywhere.py::test_a_crash_anywhere_loses_and_duplicates_nothing"
SIGKILL = P + "test_crash_anywhere.py::test_sigkill_of_a_real_process_loses_and_duplicates_nothing"
NONDET = P + "test_nondeterminism.py::test_mutated_code_replaying_a_log_raises_non_determinism"
CODEC = P + "test_codec_roundtrip.py"
STORE = P + "test_store_model.py::TestSQLiteStoreAgreesWithTheModel"
PATCHING = P + "test_patching.py::test_runs_recorded_before_a_patch_replay_and_continue_under_the_patched_code"


@dataclass(frozen=True)
class Mutant:
    name: str
    target: str  # "module:Qualified.name" of one function or method
    old: str  # source text replaced (must occur exactly once in that function)
    new: str
    property: str  # which property must catch it (1-5)
    tests: tuple[str, ...]  # pytest ids that must fail
    bug: str


MUTANTS = [
    # -- 1. replay determinism ------------------------------------------------------------------
    Mutant(
        "results-in-completion-order", "durable._engine.instance:WorkflowInstance._deliver",
        "sub = self._subscribers.pop(corr, None)",
        "sub = self._subscribers.pop(next((k for k in self._subscribers if k.split('_')[0] == corr.split('_')[0]), corr), None)",
        "1", (DETERMINISM,),
        "a result goes to the oldest waiter of its kind, not to the call with its correlation id "
        "(ids follow completion order instead of call order)",
    ),
    Mutant(
        "unseeded-random", "durable._engine.instance:WorkflowInstance._seeded_random",
        'random.Random(f"{self._seed}:random")', "random.Random()",
        "1", (DETERMINISM,), "durable.random() is not seeded by the run, so a replay takes other branches",
    ),
    Mutant(
        "wall-clock", "durable._engine.loop:DeterministicLoop.time", "return self._now", "return __import__('time').time()",
        "1", (DETERMINISM,), "workflow time is the wall clock, so timer deadlines differ on every replay",
    ),
    Mutant(
        "hook-payload-twice", "durable._workflow.hooks:Hook.deliver",
        "future.set_result(value)\n            return",
        "future.set_result(value)\n                self._payloads.append(value)\n            return",
        "1", (DETERMINISM,), "a payload handed to an awaiter is also kept for the next one (delivered twice)",
    ),
    Mutant(
        "drop-chunk-in-flusher", "durable._worker.writers:StreamWriter._flusher",
        "self.run_id, self.namespace, batch, self._step_id",
        "self.run_id, self.namespace, batch[:-1] if len(batch) > 1 else batch, self._step_id",
        "1", (DETERMINISM_RUNTIME,), "the flusher drops the last chunk of every batch of two or more",
    ),
    # -- 2. crash anywhere -------------------------------------------------------------------------
    Mutant(
        "store-payload-twice", "durable.stores._sql:resume_hook",
        "out.add(EventKind.HOOK_RECEIVED, hook.hook_id, now, name=token, data=payload)",
        "out.add(EventKind.HOOK_RECEIVED, hook.hook_id, now, name=token, data=payload)\n"
        "    out.add(EventKind.HOOK_RECEIVED, hook.hook_id, now, name=token, data=payload)",
        "2", (CRASH,), "the store appends every accepted hook payload twice",
    ),
    Mutant(
        "orphans-never-reclaimed", "durable.stores._sql:claim_steps", "if len(candidates) < limit:", "if False:",
        "2", (CRASH,), "a step whose worker died is never claimed again, so its run never ends",
    ),
    Mutant(
        "dead-leases-kept", "durable.stores._sql:claim_runs",
        "AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE})) ",
        "AND (owner IS NULL OR (owner <> ? AND owner NOT IN {_ALIVE} AND 0)) ",
        "2", (CRASH,), "a run leased by a dead worker is never claimed again",
    ),
    Mutant(
        "closed-stream-not-reopened", "durable.stores._sql:_append_chunks",
        "if closed and not reopen:", "if closed:",
        "2", (CRASH,), "a retry of the step whose crashed attempt closed its stream cannot write to it (fails the step)",
    ),
    Mutant(
        "sigkill-orphans-never-reclaimed", "durable.stores._sql:claim_steps", "if len(candidates) < limit:", "if False:",
        "2", (SIGKILL,), "as orphans-never-reclaimed, caught by a real SIGKILL of a child process",
    ),
    # -- 3. non-determinism detection -----------------------------------------------------------------
    Mutant(
        "skip-argument-check", "durable._engine.instance:WorkflowInstance.call_step",
        'step.serializer == "json" and record.data != data', "False",
        "3", (NONDET,), "replay compares a step's name but not its argument bytes",
    ),
    Mutant(
        "skip-unissued-check", "durable._engine.instance:WorkflowInstance._outcome",
        "self._check_unissued()", "pass",
        "3", (NONDET,), "a recorded command the code never reaches is not flagged",
    ),
    # -- 4. serialization ------------------------------------------------------------------------------
    Mutant(
        "set-order", "durable._core.codec:_sorted_members", "return sorted(items, key=dumps_json)", "return items",
        "4", (CODEC,), "set members are encoded in iteration order, not sorted",
    ),
    Mutant(
        "dict-order", "durable._core.codec:dumps_json",
        '"".join(_ENCODE_CHUNKS(obj, 0)) if _ENCODE_CHUNKS is not None else _JSON_ENCODER.encode(obj)',
        "json.dumps(obj, separators=(',', ':'), ensure_ascii=False, allow_nan=False)",
        "4", (CODEC,), "dict keys are encoded in insertion order (no sort_keys)",
    ),
    Mutant(
        "tuple-as-list", "durable._core.codec:_enc", 'return {"$tuple": _enc_items(v, depth)}', "return _enc_items(v, depth)",
        "4", (CODEC,), "tuples are encoded as lists, so they decode as lists",
    ),
    Mutant(
        "plain-dollar-keys", "durable._core.codec:_is_plain",
        'if type(key) is not str or key.startswith("$"):', "if type(key) is not str:",
        "4", (CODEC,), "the plain-data shortcut lets a '$' key through unescaped, so it can decode as a tag",
    ),
    Mutant(
        "wrong-path", "durable._core.codec:_enc_items", 'exc.segments.append(f"[{i}]")', 'exc.segments.append(f"[{i + 1}]")',
        "4", (CODEC,), "the error path of an unencodable list item names the wrong index",
    ),
    # -- 5. store model ----------------------------------------------------------------------------------
    Mutant(
        "chunk-index-off-by-one", "durable.stores._sql:_append_chunks",
        "(run_id, namespace, start + i, data, step_id, attempt, now)",
        "(run_id, namespace, start + i + 1, data, step_id, attempt, now)",
        "5", (STORE,), "appended chunks get indices from 1, not from the stream's next index",
    ),
    Mutant(
        "finish-leaves-run-asleep", "durable.stores._sql:finish_step",
        'f"UPDATE runs SET last_seq = ?, wake_at = ?, updated_at = ?{cleared} WHERE run_id = ?", (out.seq, now, now, run_id)',
        'f"UPDATE runs SET last_seq = ?, updated_at = ?{cleared} WHERE run_id = ?", (out.seq, now, run_id)',
        "5", (STORE,), "a finished step does not wake its run",
    ),
    Mutant(
        "hook-token-never-freed", "durable.stores._sql:_finalize",
        "db.execute(\"UPDATE hooks SET status = 'disposed' WHERE run_id = ? AND status = 'active'\", (run_id,))", "pass",
        "5", (STORE,), "a run that ends keeps its hook tokens live",
    ),
    Mutant(
        "resume-ignores-expected-hook", "durable.stores._sql:resume_hook",
        "if expect is not None and (hook.run_id, hook.hook_id) != expect:", "if False:",
        "5", (STORE,), "a payload validated for one hook is delivered to whichever hook holds the token now",
    ),
    # -- 6. patching -------------------------------------------------------------------------------------
    Mutant(
        "patch-takes-old-position", "durable._engine.instance:WorkflowInstance.patch",
        "return False  # recorded before the patch", "self._position = position\n        return False  #",
        "6", (PATCHING,), "patched() returning False still takes a position, so the old branch replays shifted",
    ),
    Mutant(
        "patch-hole-is-frontier", "durable._engine.instance:WorkflowInstance.patch",
        "if record is not None or self._records or self._ended:", "if record is not None:",
        "6", (PATCHING,), "a position left empty, or past the end of a finished run, is taken for the frontier",
    ),
]
BY_NAME = {m.name: m for m in MUTANTS}


class StaleMutant(RuntimeError):
    """The patch no longer applies: the code it targets changed."""


def _locate(target: str) -> tuple[Any, Any, str, str]:
    """(module, owner, attribute name, dedented source) of the function ``target`` names."""
    module_name, _, qualname = target.partition(":")
    module = importlib.import_module(module_name)
    owner: Any = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return module, owner, name, textwrap.dedent(inspect.getsource(owner.__dict__[name]))


def check(mutant: Mutant) -> None:
    """Raise StaleMutant unless the patch applies exactly once to the current source."""
    source = _locate(mutant.target)[3]
    if source.count(mutant.old) != 1:
        raise StaleMutant(f"{mutant.target}: the text to replace occurs {source.count(mutant.old)} times, not once")


def patch(target: str, old: str, new: str) -> None:
    """Recompile one function of a loaded module with ``old`` replaced by ``new`` (in memory only)."""
    module, owner, name, source = _locate(target)
    if source.count(old) != 1:
        raise StaleMutant(f"{target}: the text to replace occurs {source.count(old)} times, not once")
    code = compile(
        source.replace(old, new), f"<mutant of {target}>", "exec",
        flags=__future__.annotations.compiler_flag, dont_inherit=True,
    )
    namespace: dict[str, Any] = {}
    exec(code, module.__dict__, namespace)  # the module's globals: the function sees what it saw before
    setattr(owner, name, namespace[name])


def apply_from_env() -> str | None:
    """Apply the mutant ``DURABLE_MUTANT`` names, if any; return its name."""
    name = os.environ.get("DURABLE_MUTANT")
    if not name:
        return None
    mutant = BY_NAME[name]
    patch(mutant.target, mutant.old, mutant.new)
    return name


def _first_failure(output: str) -> str:
    """The first assertion line of a pytest report, else the first error inside an exception group."""
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("E   ", "E       ")) and len(stripped) > 4:
            return stripped[1:].strip()[:160]
    for line in output.splitlines():
        match = re.match(r"^[\s|+]*((?:\w+\.)*\w+(?:Error|Exception|Failed)\b.*)", line)
        if match:
            return match.group(1)[:160]
    return "(no error line found)"


def run(names: list[str]) -> int:
    """Run each mutant's tests with it applied; report which were caught. Exit status 1 if any survived."""
    survivors = 0
    for mutant in [BY_NAME[n] for n in names] if names else MUTANTS:
        try:
            check(mutant)
        except StaleMutant as exc:
            print(f"STALE     {mutant.name}: {exc}")
            survivors += 1
            continue
        started = time.monotonic()
        env = {**os.environ, "DURABLE_MUTANT": mutant.name, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        took = time.monotonic() - started
        caught = proc.returncode == 1
        survivors += not caught
        print(f"{'CAUGHT  ' if caught else 'SURVIVED'}  {mutant.name} (property {mutant.property}, {took:.0f}s): "
              f"{mutant.bug}\n          -> {_first_failure(proc.stdout) if caught else proc.stdout.strip().splitlines()[-1:]}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
