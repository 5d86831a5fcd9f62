"""The README's Python runs as shown: each block either runs in a fresh interpreter, or is marked an
excerpt and names the complete program (under examples/ or notebooks/) that the suite runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)
EXCERPT = re.compile(r"^# excerpt\b.*$", re.MULTILINE)
SOURCES = re.compile(r"\b((?:examples|notebooks)/[\w./-]+\.(?:py|ipynb))")
EXAMPLE_TESTS = (ROOT / "tests" / "unit" / "test_examples.py").read_text()


def _label(block: str) -> str:
    first = block.strip().splitlines()[0]
    return first[:60]


RUNNABLE = [b for b in BLOCKS if not EXCERPT.match(b)]
EXCERPTS = [b for b in BLOCKS if EXCERPT.match(b)]


def test_the_readme_has_runnable_blocks_and_excerpts() -> None:
    """The checks below see the README's blocks (a changed fence style would make them vacuous)."""
    assert RUNNABLE and EXCERPTS and len(RUNNABLE) + len(EXCERPTS) == len(BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[_label(b) for b in RUNNABLE])
def test_a_runnable_block_runs_as_written(block: str, tmp_path: Path) -> None:
    """Copied into a file and run in an empty directory, the block exits cleanly."""
    script = tmp_path / "readme_block.py"
    script.write_text(block)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("block", EXCERPTS, ids=[_label(b) for b in EXCERPTS])
def test_an_excerpt_names_complete_programs_the_suite_runs(block: str) -> None:
    """Each named file exists and a test runs it (examples by name in test_examples.py; test_notebook.py
    runs every notebook in notebooks/)."""
    header = EXCERPT.match(block)
    assert header is not None
    sources = SOURCES.findall(header.group(0))
    assert sources, f"an excerpt must name its complete program: {header.group(0)}"
    for source in sources:
        assert (ROOT / source).exists(), source
        if source.startswith("examples/"):
            assert Path(source).name in EXAMPLE_TESTS, f"{source} is not run by tests/unit/test_examples.py"
