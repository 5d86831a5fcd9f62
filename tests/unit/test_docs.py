"""The API reference (``make docs``) builds from the docstrings and lists every public name and Runtime option."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import durable
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_the_api_reference_builds_strictly_and_covers_the_public_api(tmp_path: Path) -> None:
    """mkdocs --strict builds; every name in durable.__all__ and every Runtime option appears in it."""
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("mkdocs is not installed (it is in the dev extra)")
    site = tmp_path / "site"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = re.sub(r"<[^>]+>", " ", " ".join(p.read_text() for p in site.rglob("*.html")))
    assert [name for name in durable.__all__ if not re.search(rf"\b{re.escape(name)}\b", text)] == []
    runtime_page = re.sub(r"<[^>]+>", " ", (site / "runtime" / "index.html").read_text())
    options = [p for p in inspect.signature(durable.Runtime.__init__).parameters if p != "self"]
    assert [o for o in options if o not in runtime_page] == []
