"""The live runs page in a real headless Chromium (Debian's), driven by Playwright, against a real server.

Skipped only where no Chromium binary exists and DURABLE_REQUIRE_BROWSER is unset; CI sets it,
so there a missing browser fails the test instead.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import textwrap
import threading
import time
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
    "--host-resolver-rules=MAP rebound.test 127.0.0.1",  # a name an attacker re-pointed at this machine (DNS rebinding)
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


    @durable.workflow
    async def page_waiter(token: str) -> object:
        return await durable.create_hook(token=token)
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


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static web server on another port: another origin (but the same site, as far as cookies go)."""
    site = tmp_path / "other-site"
    site.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


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


TOKEN = "page-" + secrets.token_urlsafe(18)


@pytest.mark.parametrize("page", [TOKEN], ids=["token"], indirect=True)
def test_a_protected_server_logs_the_page_in_and_no_log_line_holds_the_token(page: tuple[Any, str], tmp_path: Path) -> None:
    """With DURABLE_API_TOKEN set, the page logs in from a /#token= link or its form, its live feeds ride the
    session cookie, and neither uvicorn's access log nor any server line ever contains the token."""
    tab, base = page
    tab.set_default_timeout(20_000)
    assert httpx.get(base + "/runs").status_code == 401
    tab.goto(base + "/#token=" + TOKEN)
    tab.wait_for_selector("#start-form:not([hidden])")  # GET /workflows was authorised
    assert "token" not in tab.url  # the token left the address bar
    tab.select_option("#start-workflow", "flows:page_demo")
    tab.fill("#start-args", "[2, 0]")
    tab.click("#start-button")
    tab.locator('.stream[data-namespace="default"] li').nth(1).wait_for()  # the stream feed was authorised too
    tab.click("text=← all runs")
    tab.locator("#runs tr.run").first.wait_for()  # and the live runs feed
    cookies = tab.context.cookies()
    assert [(c["httpOnly"], c["sameSite"], c["path"]) for c in cookies] == [(True, "Strict", "/")]
    assert TOKEN not in json.dumps(cookies)
    assert tab.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it either

    fresh = tab.context.browser.new_page()  # a new context: no cookie
    fresh.set_default_timeout(20_000)
    fresh.goto(base + "/")
    fresh.wait_for_selector("#login-form:not([hidden])")
    fresh.fill("#login-token", "wrong")
    fresh.click("#login-button")
    fresh.wait_for_selector("#login-message:has-text('wrong token')")
    fresh.fill("#login-token", TOKEN)
    fresh.click("#login-button")
    fresh.wait_for_selector("#start-form:not([hidden])")
    fresh.wait_for_selector("#login-form[hidden]", state="attached")
    fresh.locator("#runs tr.run").first.wait_for()

    lines = (tmp_path / "server.log").read_text().splitlines()
    assert any('"POST /login HTTP/1.1" 200' in line for line in lines)  # the access log is on
    assert any("GET /live/runs" in line for line in lines)
    assert not [line for line in lines if TOKEN in line]


ATTACK = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="forged" method="POST" enctype="text/plain" target="sink" action="TARGET/runs">
  <input name='{"workflow": "flows:page_waiter", "args": ["forged-by-form"], "pad": "' value='"}'>
</form>
<script>
const target = "TARGET";
const quietly = (promise) => promise.then((r) => "answered", (e) => "blocked");
async function attack() {
  const results = [];
  // No preflight for these: text/plain and empty bodies are "simple" requests.
  results.push(await quietly(fetch(target + "/runs", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({workflow: "flows:page_waiter", args: ["forged-by-fetch"]})})));
  results.push(await quietly(fetch(target + "/runs/RUN_ID/cancel", {method: "POST", mode: "no-cors"})));
  results.push(await quietly(fetch(target + "/hooks/victim-hook", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: JSON.stringify({approved: true})})));
  // application/json needs a CORS preflight, which the server never grants.
  results.push(await quietly(fetch(target + "/hooks/victim-hook", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({approved: true})})));
  await new Promise((resolve) => {
    document.querySelector("iframe").addEventListener("load", resolve, {once: true});
    document.getElementById("forged").submit();
  });
  document.title = "done " + results.join(",");
}
attack();
</script></body></html>"""


def test_pages_of_other_origins_cannot_change_anything(page: tuple[Any, str], other_origin: tuple[Path, str]) -> None:
    """With no API token, a page on another origin (another port: the same site) forges fetches and a form post, and a
    rebound DNS name serves nothing: no run is started, cancelled or resumed; the server's own page still acts."""
    tab, base = page
    tab.set_default_timeout(20_000)
    site, origin = other_origin
    started = httpx.post(base + "/runs", json={"workflow": "flows:page_waiter", "args": ["victim-hook"]})
    assert started.status_code == 201
    run_id = started.json()["run_id"]
    with httpx.Client(base_url=base) as client:
        deadline = time.monotonic() + 20
        while not client.get(f"/runs/{run_id}").json()["hooks"]:
            assert time.monotonic() < deadline, "the run never reached its hook"
            time.sleep(0.02)
        (site / "attack.html").write_text(ATTACK.replace("TARGET", base).replace("RUN_ID", run_id))
        tab.goto(origin + "/attack.html")
        tab.wait_for_function("document.title.startsWith('done')")
        assert tab.title() == "done answered,answered,answered,blocked"  # opaque answers: the requests did go out

        runs = client.get("/runs").json()["runs"]
        assert [r["run_id"] for r in runs] == [run_id]  # nothing forged started
        detail = client.get(f"/runs/{run_id}").json()
        assert (detail["status"], [h["status"] for h in detail["hooks"]]) == ("running", ["active"])  # nor cancelled, nor resumed

        rebound = tab.goto(base.replace("127.0.0.1", "rebound.test") + "/")
        assert rebound is not None and rebound.status == 400  # the Host names another site: refused, page included
        assert tab.evaluate("fetch('/runs').then((r) => r.status)") == 400

        tab.goto(base + f"/#run/{run_id}")  # the server's own page, same origin: its writes go through
        tab.click("#cancel-button")
        tab.wait_for_selector('#run-status[data-status="cancelled"]')
