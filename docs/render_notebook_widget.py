"""Regenerate docs/notebook-widget.png: a real run's widget, executed in a real kernel, drawn by
the real ipywidgets front end, photographed by headless Chromium.

1. Execute a small notebook with nbclient (``store_widget_state=True``): a run with a retried
   step, progress, text/JSON/rich chunks, then waiting on a hook.
2. Write an HTML page of that notebook whose widget outputs are rendered by
   ``@jupyter-widgets/html-manager`` (the standalone ipywidgets renderer, from npm) from the
   widget state the kernel produced -- nothing is mocked up by hand.
3. Screenshot the page with Chromium (``DURABLE_CHROMIUM`` or /usr/bin/chromium).

Needs npm (to fetch the html-manager once) and Chromium. Run from the repository root:
``.venv/bin/python docs/render_notebook_widget.py [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat
from nbformat.v4 import new_code_cell, new_notebook

HTML_MANAGER = "@jupyter-widgets/html-manager@1.0.15"
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "notebook-widget.png"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

CELLS = [
    '''import asyncio
import durable, durable.notebook
durable.configure(store="sqlite:///.durable/screenshot.db")

class Bars:
    """A rich chunk: an object with its own HTML repr, stored through durable's codec."""
    def __init__(self, values): self.values = values
    def __durable_serialize__(self): return {"values": self.values}
    @classmethod
    def __durable_deserialize__(cls, data): return cls(data["values"])
    def _repr_html_(self):
        top = max(self.values) or 1
        return '<div style="display:flex;align-items:flex-end;height:36px">' + "".join(
            f'<div style="width:12px;margin-right:2px;background:#60a5fa;height:{34 * v // top + 1}px"></div>'
            for v in self.values) + "</div>"
durable.register_class(Bars)''',
    '''@durable.step(retry_delay=0.1)
async def fetch(page: int) -> list[int]:
    if page == 2 and durable.get_step_metadata().attempt == 1:
        raise ConnectionError("connection reset by peer")
    await asyncio.sleep(0.15)
    return [page * k % 7 + 1 for k in range(3)]

@durable.workflow
async def report(pages: int):
    values = []
    for page in range(1, pages + 1):
        values += await fetch(page)
        yield {"done": page, "of": pages + 1, "label": "fetching pages"}
        yield f"page {page}: {len(values)} values so far\\n"
    yield {"summary": {"count": len(values), "max": max(values)}}
    yield Bars(values)
    decision = await durable.create_hook(token="approve:report-42")
    yield {"done": pages + 1, "of": pages + 1, "label": "approved" if decision.get("ok") else "rejected"}''',
    '''run = await durable.start(report, 4)
view = durable.notebook.watch(run)
view''',
    '''while not view.state.hooks:
    await asyncio.sleep(0.05)
await asyncio.sleep(0.3)  # let the last redraw reach the front end while this cell runs''',
]


def execute(workdir: Path) -> nbformat.NotebookNode:
    (workdir / ".durable").mkdir(exist_ok=True)
    nb: nbformat.NotebookNode = new_notebook(cells=[new_code_cell(c) for c in CELLS])  # type: ignore[no-untyped-call]
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, store_widget_state=True, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def html_manager(cache: Path) -> Path:
    """The html-manager's dist/ folder, fetched from npm into ``cache`` on first use."""
    dist = cache / "package" / "dist"
    if not (dist / "embed.js").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", HTML_MANAGER], cwd=cache, check=True, capture_output=True)
        tarball = next(cache.glob("jupyter-widgets-html-manager-*.tgz"))
        subprocess.run(["tar", "xzf", tarball.name], cwd=cache, check=True)
    return dist


def page(nb: nbformat.NotebookNode) -> str:
    """The notebook as HTML: code cells as text, stream outputs as text, widgets by the html-manager."""
    parts: list[str] = []
    for cell in nb.cells[2:]:  # the set-up cells are not what the picture is about
        parts.append(f'<pre class="input">{html.escape(cell.source)}</pre>')
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(f'<pre class="stream">{html.escape(out.text)}</pre>')
            elif WIDGET_VIEW in out.get("data", {}):
                view = json.dumps(out["data"][WIDGET_VIEW])
                parts.append(f'<div class="output"><script type="{WIDGET_VIEW}">{view}</script></div>')
            elif out.output_type == "error":
                raise RuntimeError(f"cell failed: {out.ename}: {out.evalue}")
    state = json.dumps(nb.metadata["widgets"][WIDGET_STATE])
    style = """
      body { font-family: system-ui, sans-serif; margin: 16px; background: #fff; width: 820px; }
      pre.input { background: #f7f7f7; border: 1px solid #e0e0e0; border-radius: 3px; padding: 6px 8px;
                  font-size: 12px; margin: 10px 0 4px; }
      pre.stream { font-size: 12px; margin: 2px 0; }
      .output { margin: 4px 0 10px; }
    """
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>durable notebook widget</title><style>{style}</style>
<script src="dist/embed.js"></script>
<script type="{WIDGET_STATE}">{state}</script>
</head><body>{"".join(parts)}</body></html>"""


def screenshot(html_file: Path, png: Path) -> None:
    chromium = os.environ.get("DURABLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            "--force-device-scale-factor=1", "--window-size=860,900", "--virtual-time-budget=8000",
            f"--screenshot={png}", html_file.as_uri(),
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the executed notebook and HTML page here")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="durable-widget-"))
    work.mkdir(parents=True, exist_ok=True)
    nb = execute(work)
    nbformat.write(nb, work / "screenshot.ipynb")  # type: ignore[no-untyped-call]
    shutil.copytree(html_manager(Path(tempfile.gettempdir()) / "durable-html-manager"), work / "dist", dirs_exist_ok=True)
    html_file = work / "screenshot.html"
    html_file.write_text(page(nb), encoding="utf-8")
    screenshot(html_file, args.out)
    print(f"wrote {args.out} (page: {html_file})", file=sys.stderr)


if __name__ == "__main__":
    main()
