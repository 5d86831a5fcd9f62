"""The live runs page in a real headless Chromium (Debian's), driven by Playwright, against a real server.

Skipped only where no Chromium binary exists and DURABLE_REQUIRE_BROWSER is unset; CI sets it,
so there a missing browser fails the test instead.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import running_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
FLOWS = textwrap.dedent(
    """
    import anyio
    import durable


    @durable.step
    async def page_produce(n: int, delay: float) -> int:
        writer = durable.get_writable()
        for i in range(n):
            await writer.write({"i": i, "html": f"<img src=x onerror=alert({i})>"})
            await writer.flush()
            await anyio.sleep(delay)
        return n


    @durable.workflow
    async def page_demo(n: int, delay: float) -> dict:
        count = await page_produce(n, delay)
        await durable.create_hook(token="<b>page-approve</b>")
        return {"count": count}
    """
)


def chromium() -> str:
    path = os.environ.get("DURABLE_CHROMIUM") or "/usr/bin/chromium"
    if not os.path.exists(path):
        message = f"no Chromium at {path} (apt-get install chromium, or set DURABLE_CHROMIUM)"
        if os.environ.get("DURABLE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(params=[None], ids=["open"])
def page(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    env = {"DURABLE_API_TOKEN": request.param} if request.param else {}
    with running_server(tmp_path, FLOWS, "flows", env=env) as (base, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(), base
        finally:
            browser.close()


def test_the_runs_page_starts_a_run_and_shows_it_live(page: tuple[Any, str]) -> None:
    """Open /, start a run, see its chunks arrive while it runs, resume its hook, see it complete."""
    from playwright.sync_api import expect

    tab, base = page
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)  # CSP violations too

    def refuse(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")  # an alert() would mean a chunk ran as script
        dialog.dismiss()

    tab.on("dialog", refuse)
    tab.set_default_timeout(20_000)

    tab.goto(base + "/")
    tab.wait_for_selector("#start-form:not([hidden])")
    tab.select_option("#start-workflow", "flows:page_demo")
    tab.fill("#start-args", "[8, 0.15]")
    tab.click("#start-button")

    chunks = tab.locator('.stream[data-namespace="default"] li')
    chunks.first.wait_for()
    tab.wait_for_selector('#run-status[data-status="running"]')  # it cannot end before we resume its hook

    hook_row = tab.locator('#hooks tr[data-token="<b>page-approve</b>"]')
    hook_row.wait_for()
    expect(chunks).to_have_count(8)
    assert chunks.nth(3).text_content() == '{"html":"<img src=x onerror=alert(3)>","i":3}'  # shown as text
    assert hook_row.locator("code").first.text_content() == "<b>page-approve</b>"
    assert tab.locator("#steps tbody tr").first.text_content().startswith("flows:page_produce")
    assert "1 / 4" in tab.locator("#steps tbody tr").first.text_content()

    hook_row.locator("input").fill('{"ok": true}')
    hook_row.locator("button").click()
    tab.wait_for_selector('#run-status[data-status="completed"]')
    tab.wait_for_selector('.stream[data-namespace="default"][data-ended="true"]')
    assert '"count": 8' in (tab.text_content("#run-result") or "")

    tab.click("text=← all runs")
    expect(tab.locator('#runs tr[data-status="completed"]')).to_have_count(1)
    assert tab.locator("img").count() == 0  # no chunk became markup
    assert problems == []


@pytest.mark.parametrize("page", ["page-secret"], ids=["token"], indirect=True)
def test_a_token_link_opens_a_protected_server(page: tuple[Any, str]) -> None:
    """With DURABLE_API_TOKEN set, /#token=... lets the page use the API and its live feeds."""
    tab, base = page
    tab.set_default_timeout(20_000)
    assert httpx.get(base + "/runs").status_code == 401
    tab.goto(base + "/#token=page-secret")
    tab.wait_for_selector("#start-form:not([hidden])")  # GET /workflows was authorised
    assert "token" not in tab.url  # the token left the address bar
    tab.select_option("#start-workflow", "flows:page_demo")
    tab.fill("#start-args", "[2, 0]")
    tab.click("#start-button")
    tab.locator('.stream[data-namespace="default"] li').nth(1).wait_for()  # the stream feed was authorised too
    tab.click("text=← all runs")
    tab.locator("#runs tr.run").first.wait_for()  # and the live runs feed
