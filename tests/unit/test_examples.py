"""The runnable examples the README points to, run as a user would (a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def run_example(name: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_approval_example_refuses_a_bad_payload_then_publishes(store: str, tmp_path: Path) -> None:
    url = store if store == "memory://" else f"sqlite:///{tmp_path / 'approval.db'}"
    assert run_example("approval.py", url) == ["refused: ['approved: expected bool, got str']", "doc-1 published"]


def test_progress_example_streams_live_then_reads_again() -> None:
    lines = run_example("progress.py")
    assert lines[:5] == [f"live: {{'done': {i + 1}, 'of': 5, 'total': {sum(k * k for k in range(i + 1))}}}" for i in range(5)]
    assert lines[5] == "last two again: [{'done': 4, 'of': 5, 'total': 14}, {'done': 5, 'of': 5, 'total': 30}]"
    assert lines[6] == "logs: " + str([f"working on item {i}" for i in range(5)])


@pytest.mark.slow
def test_worker_and_client_example_starts_a_published_workflow_by_name() -> None:
    """A client without the workflow code lists what the worker published, starts it with JSON, and sees a bad call refused."""
    assert run_example("worker_and_client.py") == [
        "published: ['orders:order']",
        "result: {'item': 'pear', 'note': 'ripe', 'total': 90}",
        "refused: workflow 'orders:order': missing a required argument: 'item'",
    ]


def test_patching_example_finishes_old_and_new_runs_across_four_deploys() -> None:
    """Runs in flight across deploys finish on the code their history allows: A reached the change after
    the deploy (new code), B before it (old branches, its recorded receipt), C-E are new runs."""
    assert run_example("patching.py") == [
        "A: ['reserved A', 'fraud check passed', 'charged 40 USD']",
        "B: ['reserved B', 'charged 50 EUR', 'receipt sent']",
        "C: ['reserved C', 'fraud check passed', 'charged 60 USD']",
        "D: ['reserved D', 'fraud check passed', 'charged 70 USD']",
        "E: ['reserved E', 'fraud check passed', 'charged 80 USD']",
    ]


REPLAY_CHECKS = ROOT / "examples" / "replay_checks"


def test_the_history_folder_test_passes_on_the_code_of_now() -> None:
    """examples/replay_checks/test_histories.py: every committed history replays with shop.py."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_histories.py"],
        capture_output=True, text=True, timeout=120, cwd=REPLAY_CHECKS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_check_replay_passes_the_patched_code_and_fails_the_unguarded_edit(tmp_path: Path) -> None:
    """`durable check-replay --app shop` over runs recorded by the old code: exit 0 for shop.py (its
    patch guards the inserted step), exit 1 naming each diverged run for the same edit without the guard."""
    store = f"sqlite:///{tmp_path / 'shop.db'}"
    recorded = subprocess.run([sys.executable, "record.py", store], capture_output=True, text=True, timeout=120, cwd=REPLAY_CHECKS)
    assert recorded.returncode == 0, recorded.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "durable", "check-replay", "--app", "shop", "--store", store],
        capture_output=True, text=True, timeout=120, cwd=REPLAY_CHECKS,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("checked 3 run(s) of 1 workflow(s)") and "0 diverged" in ok.stdout
    unguarded = (REPLAY_CHECKS / "shop.py").read_text().replace(
        'if durable.patched("gift-wrap"):\n        done.append', 'done.append'
    )
    assert unguarded != (REPLAY_CHECKS / "shop.py").read_text()
    (tmp_path / "shop.py").write_text(unguarded)
    bad = subprocess.run(
        [sys.executable, "-m", "durable", "check-replay", "--app", "shop", "--store", store],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    lines = bad.stdout.splitlines()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert sum(line.startswith("diverged  run_") for line in lines) == 2  # the finished run and the one past the edit
    assert "recorded step 'shop:ship'" in bad.stdout and "the code now does step 'shop:gift_wrap'" in bad.stdout
    assert lines[-1].endswith("2 diverged")


def test_the_testing_example_catches_the_buggy_workflow_and_passes_the_fixed_one() -> None:
    """examples/testing/test_reminders.py: check_determinism catches the wall-clock bug, passes the fix, and
    the TestRuntime test (three virtual days, a faked e-mail step retried once) passes."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_reminders.py"],
        capture_output=True, text=True, timeout=300, cwd=ROOT / "examples" / "testing",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
