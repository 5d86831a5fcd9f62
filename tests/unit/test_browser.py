"""The live runs page in a real headless Chromium (Debian's), driven by Playwright, against a real server.

One server (``durable serve`` of FLOWS, SQLite) and one browser serve most tests of this module;
each test opens a fresh browser context, starts the runs it looks at, and keeps a screenshot of
what it checked in its pytest tmp dir. Skipped only where no Chromium binary exists and
DURABLE_REQUIRE_BROWSER is unset; CI sets it, so there a missing browser fails the test instead.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import secrets
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
TIMEOUT_MS = 20_000
FLOWS = textwrap.dedent(
    """
    from dataclasses import dataclass

    import anyio
    import durable


    @durable.step
    async def page_produce(n: int, delay: float) -> int:
        writer = durable.get_writable()
        logs = durable.get_writable("logs")
        for i in range(n):
            await writer.write({"i": i, "html": f"<img src=x onerror=alert({i})>"})
            await logs.write(f"line {i}")
            await writer.flush()
            await logs.flush()
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


    @dataclass
    class Approval:
        approved: bool
        comment: str = ""


    approval = durable.define_hook(schema=Approval, name="page-approval")


    @durable.step(max_retries=2, retry_delay=0.3)
    async def page_fetch(order: str) -> dict:
        if durable.get_step_metadata().attempt == 1:
            raise ConnectionError("upstream <script>alert('fetch')</script> timed out")
        return {"order": order}


    @durable.workflow
    async def page_checkout(order: str) -> dict:
        fetched = await page_fetch(order)
        await durable.sleep("0.3s")
        decision = await approval.create(token=f"approve-{order}")
        return {"fetched": fetched, "approved": decision.approved, "note": "<script>alert('result')</script>"}


    @durable.workflow
    async def page_sleeper(seconds: float) -> str:
        await durable.sleep(seconds)
        return "woke"


    @durable.workflow
    async def page_quick(label: str, n: int = 1) -> dict:
        return {"label": label, "n": n}


    @durable.workflow
    async def page_many(i: int) -> int:
        return i


    @durable.workflow(version="v7")
    async def page_versioned(n: int) -> int:
        return n


    @durable.workflow
    async def page_child(n: int) -> int:
        await durable.sleep("0.2s")
        return n * 2


    @durable.workflow
    async def page_parent() -> int:
        durable.set_event("progress", {"children": 0})
        doubled = await page_child(21)
        durable.set_event("progress", {"children": 1})
        await durable.create_hook(token="page-parent-done")
        return doubled


    @durable.step(max_retries=0, name="<img src=x onerror=alert('step')>")
    async def page_explode(text: str) -> None:
        raise ValueError(text)


    @durable.workflow(name="<script>alert('workflow')</script>")
    async def page_hostile(text: str) -> None:
        await page_explode(text)
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


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module's tests (each starts and looks at its own runs)."""
    chromium()  # skip (or fail) before starting a server for nothing
    with running_server(tmp_path_factory.mktemp("runs-page"), FLOWS, "flows") as (base, _):
        yield base


@dataclass
class Tab:
    """A page in a fresh browser context, noting anything that would mean the page misbehaved:
    a script error, a console error (CSP violations included), or a dialog (an alert() run by
    something from a run would open one)."""

    page: Any
    base: str
    shots: Path
    problems: list[str] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)

    def expect_refusals(self, *statuses: int) -> None:
        """The test provokes answers with these statuses: the browser's console lines about them are not problems."""
        self.allowed.update(statuses)

    def console(self, message: Any) -> None:
        text: str = message.text
        refused = re.match(r"Failed to load resource: the server responded with a status of (\d+)", text)
        if message.type == "error" and not (refused and int(refused.group(1)) in self.allowed):
            url = (message.location or {}).get("url")
            self.problems.append(f"{text} ({url})" if url else text)  # which request: a refusal's text names none

    def open(self, fragment: str = "") -> None:
        self.page.goto(self.base + "/" + fragment)

    def shot(self, name: str) -> Path:
        """Keep a screenshot of what the test saw (the test's artifact, under its tmp dir)."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check(self) -> None:
        assert self.page.locator("img").count() == 0  # nothing from a run became markup
        assert self.problems == []


def new_tab(browser: Any, base: str, shots: Path, **context: Any) -> Tab:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    tab = Tab(page, base, shots)
    page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    page.on("console", tab.console)  # CSP violations too

    def refuse(dialog: Any) -> None:
        tab.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", refuse)
    return tab


@pytest.fixture
def tab(browser: Any, server: str, tmp_path: Path) -> Iterator[Tab]:
    opened = new_tab(browser, server, tmp_path)
    try:
        yield opened
    finally:
        opened.page.context.close()


def start(base: str, workflow: str, *args: Any) -> str:
    response = httpx.post(f"{base}/runs", json={"workflow": workflow, "args": list(args)}, timeout=10)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def detail(base: str, run_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base}/runs/{run_id}", timeout=10).json()
    return answer


def wait_for(base: str, run_id: str, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        found = detail(base, run_id)
        if check(found):
            return found
        assert time.monotonic() < deadline, f"run {run_id} never reached: {what}"
        time.sleep(0.05)


# -- a run, live ---------------------------------------------------------------------------------


def test_the_runs_page_starts_a_run_and_shows_it_live(tab: Tab) -> None:
    """Open /, start a run, see the chunks of both its streams arrive while it runs, resume its hook, see it complete."""
    from playwright.sync_api import expect

    page = tab.page
    tab.open()
    page.wait_for_selector("#start-form:not([hidden])")
    page.select_option("#start-workflow", "flows:page_demo")
    expect(page.locator("#start-hint")).to_have_text("parameters: n, delay")
    page.fill("#start-args", "[8, 0.15]")
    page.click("#start-button")

    chunks = page.locator('.stream[data-namespace="default"] li')
    lines = page.locator('.stream[data-namespace="logs"] li')
    chunks.first.wait_for()
    lines.first.wait_for()  # the second stream is followed live too
    page.wait_for_selector('#run-status[data-status="running"]')  # it cannot end before we resume its hook
    assert not page.locator('.stream[data-namespace="default"][data-ended]').count()

    card = page.locator('.hook-card[data-token="<b>page-approve</b>"]')
    card.wait_for()
    expect(chunks).to_have_count(8)
    expect(lines).to_have_count(8)
    assert chunks.nth(3).text_content() == '{"html":"<img src=x onerror=alert(3)>","i":3}'  # shown as text
    assert lines.nth(7).text_content() == "line 7"
    assert card.locator("code.token").text_content() == "<b>page-approve</b>"
    step = page.locator('#timeline .lane[data-step-id="step_1"]')
    assert (step.locator(".label code").text_content(), step.get_attribute("data-status")) == ("flows:page_produce", "completed")

    card.locator("textarea").fill('{"ok": true}')
    card.locator("button[type=submit]").click()
    page.wait_for_selector('#run-status[data-status="completed"]')
    page.wait_for_selector('.stream[data-namespace="default"][data-ended="true"]')
    expect(page.locator("#run-result")).to_contain_text('"count": 8')
    expect(card.locator(".payload")).to_contain_text('"ok": true')  # the payload the hook received

    page.click("#back-to-list")
    page.wait_for_selector("#runs tr.run")
    tab.shot("list")
    tab.check()


def test_the_timeline_shows_attempts_sleeps_and_hook_waits_and_opens_a_step(tab: Tab) -> None:
    """A run's waterfall has a lane per step (each attempt, the back-off between), sleep and hook wait; a step
    opens beside it with its arguments, result and every attempt, the failed one with its traceback; Back closes it."""
    from playwright.sync_api import expect

    page = tab.page
    run_id = start(tab.base, "flows:page_checkout", "o-17")
    tab.open(f"#run/{run_id}")
    hook_lane = page.locator('#timeline .lane[data-kind="hook"]')
    hook_lane.wait_for()
    lanes = page.locator("#timeline .lane:not(.axis)")
    assert [lanes.nth(i).get_attribute("data-kind") for i in range(lanes.count())] == ["step", "timer", "hook"]
    step = page.locator('#timeline .lane[data-step-id="step_1"]')
    attempts = step.locator(".seg.attempt")
    expect(attempts).to_have_count(2)
    assert [attempts.nth(i).get_attribute("class") for i in range(2)] == ["seg attempt retrying", "seg attempt completed"]
    assert step.locator(".seg.backoff").count() == 1
    assert "ConnectionError: upstream <script>alert('fetch')</script> timed out" in (attempts.first.get_attribute("title") or "")
    expect(page.locator('#timeline .lane[data-kind="timer"]')).to_have_attribute("data-status", "fired")
    expect(page.locator('#timeline .lane[data-kind="timer"] .until')).to_contain_text("until")
    expect(hook_lane).to_have_attribute("data-status", "waiting")
    assert hook_lane.locator(".seg.hook.waiting").count() == 1
    expect(page.locator("#run-waiting")).to_contain_text("Waiting for a payload for hook approve-o-17")
    axis = page.locator("#timeline .axis-tick")
    assert axis.count() >= 2 and axis.first.text_content() == "0"
    tab.shot("timeline")

    step.click()
    assert page.url.endswith(f"#run/{run_id}/step/step_1")
    panel = page.locator("#step-panel")
    expect(panel.locator("#step-attempts tbody tr")).to_have_count(2)
    expect(page.locator("#step-title")).to_contain_text("flows:page_fetch")
    assert json.loads(panel.locator("#step-arguments").text_content() or "") == {"args": ["o-17"], "kwargs": {}}
    assert json.loads(panel.locator("#step-result").text_content() or "") == {"order": "o-17"}
    first = panel.locator('#step-attempts tr[data-attempt="1"]')
    assert first.get_attribute("data-outcome") == "retrying"
    expect(first).to_contain_text("ConnectionError: upstream <script>alert('fetch')</script> timed out")
    first.locator("details.traceback summary").click()
    traceback = first.locator("details.traceback pre").text_content() or ""
    assert "Traceback (most recent call last)" in traceback and "flows.py" in traceback  # a loopback server shows them
    assert panel.locator('#step-attempts tr[data-attempt="2"]').get_attribute("data-outcome") == "completed"
    assert page.locator("#timeline .lane.selected").get_attribute("data-step-id") == "step_1"
    tab.shot("step")

    page.go_back()
    expect(panel).to_be_hidden()
    assert page.url.endswith(f"#run/{run_id}")
    tab.check()


def test_a_typed_hook_shows_its_schema_and_the_problems_then_the_payload_it_received(tab: Tab) -> None:
    """A typed hook's form offers an example and the expected JSON Schema; a payload that does not fit shows the
    server's problems and resumes nothing; one that fits resumes the run, and the card shows what it received."""
    from playwright.sync_api import expect

    page = tab.page
    run_id = start(tab.base, "flows:page_checkout", "o-18")
    tab.expect_refusals(422)
    tab.open(f"#run/{run_id}")
    card = page.locator('.hook-card[data-token="approve-o-18"]')
    textarea = card.locator("textarea")
    textarea.wait_for()
    assert json.loads(textarea.input_value()) == {"approved": False}  # the example, from the schema
    card.locator("details.expected summary").click()
    schema = json.loads(card.locator("pre.schema").text_content() or "")
    assert (schema["required"], schema["properties"]["approved"]) == (["approved"], {"type": "boolean"})

    textarea.fill("{not json")
    card.locator("button[type=submit]").click()
    expect(card.locator(".problems li")).to_contain_text(["not JSON"])
    textarea.fill('{"approved": "yes", "extra": 1}')
    card.locator("button[type=submit]").click()
    problems = card.locator(".problems li")
    expect(problems).to_have_text([
        "the payload does not match the hook's schema", "extra: unknown field", "approved: expected bool, got str",
    ])
    assert detail(tab.base, run_id)["hooks"][0]["status"] == "active"  # nothing was delivered

    page.locator("#events-section summary").click()  # the event log, followed while open
    page.wait_for_selector('#events tr[data-kind="hook_created"]')
    textarea.fill('{"approved": true, "comment": "<script>alert(2)</script>"}')
    card.locator("button[type=submit]").click()
    page.wait_for_selector('#run-status[data-status="completed"]')
    expect(card.locator(".payload pre")).to_contain_text('"comment": "<script>alert(2)</script>"')
    expect(card.locator(".problems li")).to_have_count(0)
    received = page.locator('#events tr[data-kind="hook_received"]')
    expect(received).to_contain_text('{"approved":true,"comment":"<script>alert(2)</script>"}')  # decoded
    expect(page.locator('#events tr[data-kind="step_created"]')).to_contain_text('{"args":["o-18"],"kwargs":{}}')
    expect(page.locator("#run-result")).to_contain_text("<script>alert('result')</script>")
    tab.shot("hook")
    tab.check()


def test_a_sleeping_run_shows_its_deadline_and_cancel_asks_first(tab: Tab) -> None:
    """A sleeping run says until when and counts down; it streams nothing, so no stream box is shown; Cancel asks
    for a confirmation: "keep it" leaves it running, "yes" cancels it."""
    from playwright.sync_api import expect

    page = tab.page
    run_id = start(tab.base, "flows:page_sleeper", 3600)
    tab.open(f"#run/{run_id}")
    waiting = page.locator('#run-waiting li[data-kind="timer"]')
    expect(waiting).to_contain_text("Sleeping until")
    expect(waiting.locator(".countdown")).to_contain_text(re.compile(r"wakes in (59 m|1 h)"))
    until = detail(tab.base, run_id)["waiting_for"][0]["until"]
    assert waiting.locator("time").get_attribute("datetime") == until
    countdown = waiting.locator(".countdown").text_content()
    last_tick = page.locator("#timeline .axis-tick").last.text_content()
    expect(waiting.locator(".countdown")).not_to_have_text(countdown or "")  # the clock moves with no event from the run
    expect(page.locator("#timeline .axis-tick").last).not_to_have_text(last_tick or "")  # and so does the axis's end
    expect(page.locator('#timeline .lane[data-kind="timer"] .until')).to_contain_text("in ")
    expect(page.locator(".stream")).to_have_count(1)
    expect(page.locator('.stream[data-namespace="default"]')).to_be_hidden()  # the empty default stream
    expect(page.locator("#streams-empty")).to_be_visible()

    page.click("#cancel-button")
    expect(page.locator("#cancel-confirm")).to_be_visible()
    tab.shot("cancel-confirm")
    page.click("#cancel-no")
    expect(page.locator("#cancel-confirm")).to_be_hidden()
    time.sleep(0.3)
    assert detail(tab.base, run_id)["status"] == "running"
    page.click("#cancel-button")
    page.click("#cancel-yes")
    page.wait_for_selector('#run-status[data-status="cancelled"]')
    expect(page.locator("#cancel-button")).to_be_hidden()
    expect(page.locator("#run-waiting")).to_be_empty()
    expect(page.locator('#timeline .lane[data-kind="timer"]')).to_have_attribute("data-status", "cancelled")
    tab.check()


def test_run_again_starts_a_new_run_with_the_same_input(tab: Tab) -> None:
    """A finished run's "Run again" starts a new run of its workflow with the arguments it was given, and shows it."""
    from playwright.sync_api import expect

    page = tab.page
    run_id = start(tab.base, "flows:page_quick", "<b>again</b>", 7)
    wait_for(tab.base, run_id, lambda d: d["status"] == "completed", "completed")
    tab.open(f"#run/{run_id}")
    expect(page.locator("#run-meta")).to_contain_text('("<b>again</b>", 7)')
    page.click("#again-button")
    expect(page.locator("#run-id")).not_to_have_text(run_id)
    page.wait_for_selector('#run-status[data-status="completed"]')
    again = page.locator("#run-id").text_content() or ""
    assert page.url.endswith(f"#run/{again}")
    assert (detail(tab.base, again)["input"], detail(tab.base, again)["result"]) == (
        {"args": ["<b>again</b>", 7], "kwargs": {}, "exact": True}, {"label": "<b>again</b>", "n": 7},
    )
    tab.shot("run-again")
    tab.check()


def test_child_runs_are_lanes_of_the_timeline_and_link_both_ways(tab: Tab) -> None:
    """A parent's waterfall has a lane per child run (with its status), its live values are listed, and the child's
    page links back to its parent."""
    from playwright.sync_api import expect

    page = tab.page
    run_id = start(tab.base, "flows:page_parent")
    tab.open(f"#run/{run_id}")
    child = page.locator('#timeline .lane[data-kind="child"]')
    expect(child).to_have_attribute("data-status", "completed")
    expect(page.locator('#values tr[data-key="progress"]')).to_contain_text('{"children":1}')
    kinds = page.locator("#timeline .lane:not(.axis)")
    expect(kinds).to_have_count(2)
    assert [kinds.nth(i).get_attribute("data-kind") for i in range(2)] == ["child", "hook"]
    tab.shot("child-lanes")
    child_id = child.get_attribute("data-lane-id") or ""
    child.locator("a").click()
    expect(page.locator("#run-id")).to_have_text(child_id)
    expect(page.locator("#run-result")).to_contain_text("42")
    page.locator("#run-meta a").click()  # "Parent run"
    expect(page.locator("#run-id")).to_have_text(run_id)
    tab.check()


def test_everything_from_runs_is_shown_as_text(tab: Tab) -> None:
    """Markup in a workflow name, a step name, an argument and an error message is shown as text, in the list, the
    run, the timeline and the step: nothing runs, nothing is parsed as HTML."""
    from playwright.sync_api import expect

    page = tab.page
    hostile = "<script>alert('workflow')</script>"
    run_id = start(tab.base, hostile, "<img src=x onerror=alert('error')>")
    wait_for(tab.base, run_id, lambda d: d["status"] == "failed", "failed")
    tab.open("#runs?id_prefix=" + run_id)
    row = page.locator(f'#runs tr[data-run-id="{run_id}"]')
    expect(row.locator(".workflow .name")).to_have_text(hostile)
    expect(row.locator(".workflow .error")).to_have_text("ValueError: <img src=x onerror=alert('error')>")
    row.click()
    expect(page.locator("#run-meta")).to_contain_text(hostile)
    expect(page.locator("#run-error")).to_contain_text("<img src=x onerror=alert('error')>")
    step = page.locator('#timeline .lane[data-step-id="step_1"]')
    expect(step.locator(".label code")).to_have_text("<img src=x onerror=alert('step')>")
    step.click()
    expect(page.locator("#step-error")).to_contain_text("ValueError: <img src=x onerror=alert('error')>")
    assert page.locator("script").count() == 1  # the page's own module
    tab.shot("hostile")
    tab.check()


# -- the list ------------------------------------------------------------------------------------


def test_filters_live_in_the_address_and_the_list_pages_on_by_cursor(tab: Tab) -> None:
    """Status, workflow, created-time and run-id filters go into the address (Back undoes them, a copied
    address shows the same runs); older runs page in by cursor past the first 50."""
    from playwright.sync_api import expect

    page = tab.page
    with httpx.Client(base_url=tab.base, timeout=10) as client:
        ids = [client.post("/runs", json={"workflow": "flows:page_many", "args": [i]}).json()["run_id"] for i in range(57)]
    runs = page.locator("#runs tbody tr.run")
    tab.open("#runs?workflow=flows:page_many")
    expect(runs).to_have_count(50)
    assert page.input_value("#workflow-filter") == "flows:page_many"
    assert runs.first.get_attribute("data-run-id") == ids[-1]  # newest first
    page.click("#older-page")
    expect(runs).to_have_count(7)
    assert "cursor=" in page.url
    assert [runs.nth(i).get_attribute("data-run-id") for i in range(7)] == ids[6::-1]
    expect(page.locator("#older-page")).to_be_hidden()
    page.go_back()
    expect(runs).to_have_count(50)

    page.select_option("#status-filter", "failed")
    expect(page.locator("#runs-empty")).to_be_visible()
    assert "status=failed" in page.url and "workflow=flows%3Apage_many" in page.url
    page.go_back()
    expect(runs).to_have_count(50)
    assert page.input_value("#status-filter") == ""

    page.fill("#id-filter", ids[10])
    page.press("#id-filter", "Enter")
    expect(runs).to_have_count(1)
    assert runs.first.get_attribute("data-run-id") == ids[10]
    shared = page.url

    page.select_option("#range-filter", "custom")
    page.fill("#after-filter", "2001-01-01T00:00:00")
    page.fill("#before-filter", "2001-01-02T00:00:00")
    page.press("#before-filter", "Enter")
    expect(page.locator("#runs-empty")).to_be_visible()
    assert "created_after=2001-01-01" in page.url or "created_after=2000-12-31" in page.url  # UTC of local midnight
    page.select_option("#range-filter", "15m")
    expect(runs).to_have_count(1)

    other = new_tab(page.context.browser, tab.base, tab.shots)
    other.page.goto(shared)  # the address alone shows the same runs
    expect(other.page.locator("#runs tbody tr.run")).to_have_count(1)
    assert other.page.input_value("#id-filter") == ids[10]
    other.page.context.close()
    expect(page.locator("#version-filter-label")).to_be_hidden()  # no run here has a version
    tab.shot("filtered")
    tab.check()


def test_runs_with_a_version_show_it_and_filter_by_it(tab: Tab) -> None:
    """Once runs carry a version the list shows a version column and a version filter, kept in the address."""
    from playwright.sync_api import expect

    page = tab.page
    ids = [start(tab.base, "flows:page_versioned", i) for i in range(2)]
    tab.open("#runs?workflow=flows:page_versioned")
    runs = page.locator("#runs tbody tr.run")
    expect(runs).to_have_count(2)
    expect(page.locator("#runs th.version")).to_be_visible()
    expect(runs.first.locator("td.version")).to_have_text("v7")
    page.fill("#version-filter", "v8")
    page.press("#version-filter", "Enter")
    expect(page.locator("#runs-empty")).to_be_visible()
    assert "version=v8" in page.url
    page.fill("#version-filter", "v7")
    page.press("#version-filter", "Enter")
    expect(runs).to_have_count(2)
    runs.first.click()
    expect(page.locator("#run-meta")).to_contain_text("Versionv7")
    assert page.locator("#run-id").text_content() == ids[-1]
    tab.check()


def test_the_list_and_a_run_fit_a_420px_window(browser: Any, server: str, tmp_path: Path) -> None:
    """In a 420 px wide window nothing scrolls sideways: the runs table drops columns, a run's lanes stack."""
    narrow = new_tab(browser, server, tmp_path, viewport={"width": 420, "height": 800})
    page = narrow.page
    run_id = start(server, "flows:page_checkout", "narrow-order-with-a-long-name")
    wait_for(server, run_id, lambda d: d["hooks"], "its hook")
    narrow.open()
    page.wait_for_selector("#runs tr.run")
    width = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    assert page.evaluate(width) <= 420
    assert page.evaluate("document.getElementById('runs').getBoundingClientRect().right") <= 420
    assert page.locator("#runs th.created").is_hidden() and page.locator("#runs th.status-col").is_visible()
    narrow.shot("list-420")
    narrow.open(f"#run/{run_id}")
    page.wait_for_selector('#timeline .lane[data-kind="hook"]')
    assert page.evaluate(width) <= 420
    narrow.shot("run-420")
    page.locator('#timeline .lane[data-step-id="step_1"]').click()
    page.wait_for_selector("#step-attempts")
    assert page.evaluate("document.getElementById('step-panel').getBoundingClientRect().width") <= 420
    narrow.check()
    page.context.close()


# -- servers that cannot do everything -----------------------------------------------------------


def test_a_store_only_server_hides_the_start_form_and_an_unknown_run_says_so(browser: Any, tmp_path: Path) -> None:
    """Served from a store no worker published to, the page hides the start form; an unknown run id says
    "no run with id ..." with a link back to the list instead of waiting forever."""
    from playwright.sync_api import expect

    with running_server(tmp_path, "", None) as (base, _):
        store_only = new_tab(browser, base, tmp_path)
        page = store_only.page
        store_only.expect_refusals(404)
        store_only.open()
        expect(page.locator("#runs-empty")).to_be_visible()
        expect(page.locator("#start-form")).to_be_hidden()
        store_only.open("#run/run_nope")
        expect(page.locator("#missing-view h2")).to_have_text("No run with id run_nope")
        expect(page.locator("#run-view")).to_be_hidden()
        store_only.shot("unknown-run")
        page.click("#missing-view a")
        expect(page.locator("#list-view")).to_be_visible()
        store_only.check()
        page.context.close()


TOKEN = "page-" + secrets.token_urlsafe(18)


def test_a_protected_server_logs_the_page_in_and_no_log_line_holds_the_token(browser: Any, tmp_path: Path) -> None:
    """With DURABLE_API_TOKEN set, the page logs in from a /#token= link or its form, its live feeds ride the
    session cookie, and neither uvicorn's access log nor any server line ever contains the token."""
    with running_server(tmp_path, FLOWS, "flows", env={"DURABLE_API_TOKEN": TOKEN}) as (base, _):
        first = new_tab(browser, base, tmp_path)
        page = first.page
        assert httpx.get(base + "/runs").status_code == 401
        first.open("#token=" + TOKEN)
        page.wait_for_selector("#start-form:not([hidden])")  # GET /workflows was authorised
        assert "token" not in page.url  # the token left the address bar
        page.select_option("#start-workflow", "flows:page_demo")
        page.fill("#start-args", "[2, 0]")
        page.click("#start-button")
        page.locator('.stream[data-namespace="default"] li').nth(1).wait_for()  # the stream feed was authorised too
        page.click("#back-to-list")
        page.locator("#runs tr.run").first.wait_for()  # and the live runs feed
        cookies = page.context.cookies()
        assert [(c["httpOnly"], c["sameSite"], c["path"]) for c in cookies] == [(True, "Strict", "/")]
        assert TOKEN not in json.dumps(cookies)
        assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it either

        fresh = new_tab(browser, base, tmp_path)  # a new context: no cookie
        fresh.open()
        fresh.page.wait_for_selector("#login-form:not([hidden])")
        fresh.page.fill("#login-token", "wrong")
        fresh.page.click("#login-button")
        fresh.page.wait_for_selector("#login-message:has-text('wrong token')")
        fresh.page.fill("#login-token", TOKEN)
        fresh.page.click("#login-button")
        fresh.page.wait_for_selector("#start-form:not([hidden])")
        fresh.page.wait_for_selector("#login-form[hidden]", state="attached")
        fresh.page.locator("#runs tr.run").first.click()
        fresh.page.locator('#timeline .lane[data-step-id="step_1"]').click()  # the step view rides the cookie too
        fresh.page.wait_for_selector("#step-attempts")
        first.check()
        page.context.close()
        fresh.page.context.close()

    lines = (tmp_path / "server.log").read_text().splitlines()
    assert any('"POST /login HTTP/1.1" 200' in line for line in lines)  # the access log is on
    assert any("GET /live/runs" in line for line in lines)
    assert not [line for line in lines if TOKEN in line]


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static web server on another port: another origin (but the same site, as far as cookies go)."""
    site = tmp_path / "other-site"
    site.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(site))
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, f"http://127.0.0.1:{other.server_address[1]}"
    finally:
        other.shutdown()
        other.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# (The icon link: without it Chromium asks the static server for /favicon.ico, whose 404 can reach
# the console late, after the test has moved on to the server's own page.)
ATTACK = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
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
  results.push(await quietly(fetch(target + "/hooks/HOOK_TOKEN", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: JSON.stringify({approved: true})})));
  // application/json needs a CORS preflight, which the server never grants.
  results.push(await quietly(fetch(target + "/hooks/HOOK_TOKEN", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({approved: true})})));
  await new Promise((resolve) => {
    document.querySelector("iframe").addEventListener("load", resolve, {once: true});
    document.getElementById("forged").submit();
  });
  document.title = "done " + results.join(",");
}
attack();
</script></body></html>"""


def _all_runs(client: httpx.Client) -> list[str]:
    found: list[str] = []
    cursor = ""
    while True:
        page = client.get("/runs", params={"limit": 1000, "cursor": cursor}).json()
        found += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            return found


def test_pages_of_other_origins_cannot_change_anything(tab: Tab, other_origin: tuple[Path, str]) -> None:
    """With no API token, a page on another origin (another port: the same site) forges fetches and a form post, and a
    rebound DNS name serves nothing: no run is started, cancelled or resumed; the server's own page still acts."""
    page, base = tab.page, tab.base
    site, origin = other_origin
    token = "victim-" + secrets.token_hex(4)
    run_id = start(base, "flows:page_waiter", token)
    with httpx.Client(base_url=base, timeout=10) as client:
        wait_for(base, run_id, lambda d: d["hooks"], "its hook")
        before = _all_runs(client)
        (site / "attack.html").write_text(ATTACK.replace("TARGET", base).replace("RUN_ID", run_id).replace("HOOK_TOKEN", token))
        page.goto(origin + "/attack.html")
        page.wait_for_function("document.title.startsWith('done')")
        assert page.title() == "done answered,answered,answered,blocked"  # opaque answers: the requests did go out
        tab.problems.clear()  # the refused preflight is logged as a console error of the attacking page

        assert _all_runs(client) == before  # nothing forged started
        found = detail(base, run_id)
        assert (found["status"], [h["status"] for h in found["hooks"]]) == ("running", ["active"])  # nor cancelled, nor resumed

        rebound = page.goto(base.replace("127.0.0.1", "rebound.test") + "/")
        assert rebound is not None and rebound.status == 400  # the Host names another site: refused, page included
        assert page.evaluate("fetch('/runs').then((r) => r.status)") == 400
        tab.problems.clear()

        tab.open(f"#run/{run_id}")  # the server's own page, same origin: its writes go through
        page.click("#cancel-button")
        page.click("#cancel-yes")
        page.wait_for_selector('#run-status[data-status="cancelled"]')
    tab.check()


# -- the notebook view, in JupyterLab's dark theme ---------------------------------------------

# JupyterLab's dark theme (@jupyterlab/theme-dark-extension, variables.css): the values the
# notebook view's var(--jp-...) colours take there, and the output area's background.
JUPYTERLAB_DARK = """
:root { --jp-layout-color0: #111111; --jp-layout-color1: #212121; --jp-layout-color2: #424242;
  --jp-ui-font-color0: rgba(255,255,255,1); --jp-ui-font-color1: rgba(255,255,255,0.87);
  --jp-ui-font-color2: rgba(255,255,255,0.54); --jp-ui-font-color3: rgba(255,255,255,0.38);
  --jp-content-font-color0: rgba(255,255,255,1); --jp-content-font-color1: rgba(255,255,255,1);
  --jp-content-font-color2: rgba(255,255,255,0.7); --jp-border-color0: #616161;
  --jp-border-color1: #616161; --jp-border-color2: #424242; --jp-border-color3: #212121;
  --jp-rendermime-error-background: rgba(244, 67, 54, 0.28); }
body { background: var(--jp-layout-color0); color: var(--jp-content-font-color1); }
"""
JUPYTERLAB_LIGHT = """
:root { --jp-layout-color0: white; --jp-ui-font-color1: rgba(0,0,0,0.87); --jp-ui-font-color2: rgba(0,0,0,0.54);
  --jp-content-font-color1: rgba(0,0,0,0.87); --jp-border-color1: #bdbdbd; --jp-border-color3: #eee;
  --jp-rendermime-error-background: #fdd; }
body { background: var(--jp-layout-color0); color: var(--jp-content-font-color1); }
"""

# The contrast of every piece of text with what is behind it (WCAG's formula; colours with alpha
# blended over the nearest background, walking up to the page).
CONTRASTS_JS = """() => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const c = parse(getComputedStyle(node).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] === 1) break;
    }
    return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
  };
  const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const found = [];
  for (const el of document.querySelectorAll(".durable-run *")) {
    const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim()).map((n) => n.textContent.trim()).join(" ");
    if (!own) continue;
    const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    found.push({ text: own.slice(0, 40), ratio: (a + 0.05) / (b + 0.05) });
  }
  return found;
}"""


def test_the_notebook_view_is_readable_in_jupyterlabs_dark_theme(browser: Any, tmp_path: Path) -> None:
    """Every piece of text the view draws -- header, error, steps in each status with their notes,
    hooks, chunks -- keeps a contrast of at least 4.5:1 (WCAG AA) against what is behind it, in
    JupyterLab's dark theme as in its light one and where no theme is set (a saved notebook)."""
    from datetime import UTC, datetime, timedelta

    from durable._client.projection import HookInfo, RunInfo, StepInfo
    from durable._client.streams import StreamChunk
    from durable._core.errorinfo import ErrorInfo
    from durable.notebook import RunState
    from durable.notebook._html import state_html

    now = datetime.now(UTC)
    error = ErrorInfo("ConnectionError", "the link dropped", "Traceback ...")
    steps = [
        StepInfo("step_1", "fetch", "completed", 2, 4, now, now, now, None, error),
        StepInfo("step_2", "charge", "pending", 1, 4, now, now, None, now + timedelta(seconds=5), error),
        StepInfo("step_3", "ship", "failed", 4, 4, now, now, now, None, error),
        StepInfo("step_4", "notify", "cancelled", 1, 4, now, now, now, None, ErrorInfo("RunCancelled", "run r1 was cancelled", "")),
        StepInfo("step_5", "report", "running", 1, 4, now, now, None, None, None),
    ]
    running = (
        RunState("r1").with_info(RunInfo("r1", "shop:checkout", "running", now, now, None, None, None)).with_steps(steps)
        .with_hooks([HookInfo("hook_1", "approve:r1", "active", now, {"who": "ada"})])
        .with_chunks([StreamChunk(0, "half way", None, None, 0.0)], closed=False, error=None)
    )
    failed = RunState("r2").with_info(RunInfo("r2", "shop:checkout", "failed", now, now, now, error, None)).with_steps(steps)
    page = browser.new_context().new_page()
    try:
        for theme, css in (("dark", JUPYTERLAB_DARK), ("light", JUPYTERLAB_LIGHT), ("no theme", "")):
            page.set_content(f"<!doctype html><style>{css}</style>{state_html(running, now)}{state_html(failed, now)}")
            page.screenshot(path=str(tmp_path / f"notebook-{theme.replace(' ', '-')}.png"), full_page=True)
            found = page.evaluate(CONTRASTS_JS)
            texts = " ".join(f["text"] for f in found)
            assert all(word in texts for word in ("charge", "cancelled", "the link dropped", "traceback", "approve:r1", "half way")), texts
            poor = [(f["text"], round(f["ratio"], 2)) for f in found if f["ratio"] < 4.5]
            assert poor == [], (theme, poor)
            assert "1 retrying, 1 failed, 1 cancelled, 1 running" in page.inner_text("body")  # as the rows say
    finally:
        page.context.close()
