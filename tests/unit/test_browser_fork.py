"""The runs page's Rerun and "Fork from here" buttons, in a real Chromium against a real server."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import running_server
from tests.unit.test_browser import CHROMIUM_ARGS, chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FLOWS = textwrap.dedent(
    """
    import pathlib
    import durable

    @durable.step(max_retries=0)
    async def page_charge(order: str) -> str:
        if pathlib.Path("broken").exists():
            raise durable.FatalError("the payment service is down")
        return f"charged {order}"

    @durable.step
    async def page_reserve(order: str) -> str:
        return f"reserved {order}"

    @durable.workflow
    async def page_checkout(order: str) -> list:
        return [await page_reserve(order), await page_charge(order)]
    """
)


def _status(base: str, run_id: str) -> str:
    status: str = httpx.get(f"{base}/runs/{run_id}", timeout=5).json()["status"]
    return status


def test_rerun_and_fork_buttons_start_runs_that_reuse_the_history(tmp_path: Path) -> None:
    """A failed run's Rerun button starts a fork at its failed step (shown with its source); a step's
    "Fork from here" forks a run at that step; both finish with the fixed code."""
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    (tmp_path / "broken").write_text("yes")
    with running_server(tmp_path, FLOWS, "flows") as (base, _), sync_playwright() as playwright:
        started = httpx.post(f"{base}/runs", json={"workflow": "flows:page_checkout", "args": ["o-1"]}, timeout=5)
        source = started.json()["run_id"]
        deadline = time.monotonic() + 20
        while _status(base, source) != "failed":
            assert time.monotonic() < deadline, "the run did not fail"
            time.sleep(0.05)
        (tmp_path / "broken").unlink()  # the fix is deployed
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(20_000)
            problems: list[str] = []
            tab.on("pageerror", lambda error: problems.append(str(error)))

            def refuse(dialog: Any) -> None:
                problems.append(dialog.message)  # alert() shows an API error
                dialog.dismiss()

            tab.on("dialog", refuse)
            tab.goto(f"{base}/#run/{source}")
            expect(tab.locator("#run-status")).to_have_text("failed")
            tab.click("#rerun-button")
            expect(tab.locator("#run-id")).not_to_have_text(source)
            expect(tab.locator("#run-status")).to_have_text("completed")
            expect(tab.locator("#run-meta")).to_contain_text(f"Forked from{source} at step_2")
            rerun = tab.locator("#run-id").text_content() or ""
            expect(tab.locator("#run-result")).to_contain_text("charged o-1")

            tab.locator('#timeline .lane[data-step-id="step_1"]').click()  # the step opens beside the run
            tab.locator("#step-panel button.fork").click()
            expect(tab.locator("#run-id")).not_to_have_text(rerun)
            expect(tab.locator("#run-status")).to_have_text("completed")
            expect(tab.locator("#run-meta")).to_contain_text(f"Forked from{rerun} at step_1")
            assert problems == []
        finally:
            browser.close()
        runs: list[dict[str, Any]] = httpx.get(f"{base}/runs", timeout=5).json()["runs"]
        assert sorted(r["status"] for r in runs) == ["completed", "completed", "failed"]
