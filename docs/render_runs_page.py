"""Regenerate docs/runs-page-timeline.png: the runs page of a real run, photographed by headless Chromium.

A real ``durable serve`` (SQLite, in a temporary directory) runs ORDERS below: a step retried
once, two steps in parallel, a sleep and a typed approval hook. The picture is taken while the
run waits for the approval, so its timeline, its hook form and its live stream are all on it.
Nothing is drawn by hand. Needs Chromium (``DURABLE_CHROMIUM`` or /usr/bin/chromium) and
Playwright's python package (the dev extra). Run from the repository root:
``.venv/bin/python docs/render_runs_page.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "runs-page-timeline.png"
ORDERS = textwrap.dedent(
    """
    import asyncio
    from dataclasses import dataclass

    import anyio
    import durable


    @dataclass
    class Approval:
        approved: bool
        note: str = ""


    approval = durable.define_hook(schema=Approval, name="refund-approval")


    @durable.step(retry_delay=0.6)
    async def reserve_stock(order: str) -> int:
        await anyio.sleep(0.35)
        if durable.get_step_metadata().attempt == 1:
            raise TimeoutError("warehouse API did not answer within 0.3 s")
        return 3


    @durable.step
    async def charge_card(order: str, cents: int) -> str:
        await anyio.sleep(0.9)
        return f"ch_{order}"


    @durable.step
    async def email_customer(order: str) -> None:
        log = durable.get_writable()
        for line in ("rendering receipt", "sending to mail relay", "accepted: 250 OK"):
            await log.write(line)
            await log.flush()
            await anyio.sleep(0.25)


    @durable.step
    async def schedule_pickup(order: str) -> str:
        await anyio.sleep(0.4)
        return "tomorrow 09:00"


    @durable.workflow
    async def refund_order(order: str, cents: int) -> dict:
        items = await reserve_stock(order)
        charge, _ = await asyncio.gather(charge_card(order, cents), email_customer(order))
        await durable.sleep("1.2s")
        pickup = await schedule_pickup(order)
        decision = await approval.create(token=f"approve-{order}")
        return {"items": items, "charge": charge, "pickup": pickup, "approved": decision.approved}
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("DURABLE_CHROMIUM") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "orders.py").write_text(ORDERS)
        port = free_port()
        env = {**os.environ, "DURABLE_STORE": f"sqlite:///{work / 'orders.db'}"}
        env.pop("DURABLE_API_TOKEN", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "durable", "serve", "--app", "orders", "--port", str(port)],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            run_id = httpx.post(base + "/runs", json={"workflow": "orders:refund_order", "args": ["A-1042", 4990]}).json()["run_id"]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
                page.set_default_timeout(30_000)
                page.goto(f"{base}/#run/{run_id}")
                page.wait_for_selector('.hook-card[data-status="active"] textarea')
                page.wait_for_timeout(1200)  # let the hook's wait grow a little on the axis
                bottom = page.evaluate("document.getElementById('streams').getBoundingClientRect().bottom + window.scrollY")
                page.screenshot(path=str(OUT), full_page=True, clip={"x": 0, "y": 0, "width": 1200, "height": min(int(bottom) + 16, 1400)})
                browser.close()
        finally:
            server.terminate()
            server.wait(15)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
