"""Every benchmark script runs to the end and prints its figures (shrunk by ``BENCH_QUICK=1``).

Benchmarks never assert on time; this only keeps ``make bench`` and the README's commands working
as the code under them changes. Each runs in its own process, as a user would run it.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# Arguments that shrink the scripts with a fixed workload of their own (the rest read BENCH_QUICK).
QUICK_ARGS = {
    "sse.py": ["--repeat", "1", "--clients", "1,10"],
    "wal.py": ["--steps", "2000"],
}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
# A measured figure: a number with its unit (a time, a ratio, a size or a rate).
_FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*\.?\d*)\s*(?:µs|ms|x|KiB|MB|/s)(?!\w)")


def test_every_benchmark_is_covered() -> None:
    assert {"steps.py", "instructions.py", "concurrent_runs.py", "replay.py", "sse.py"} <= set(SCRIPTS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_and_prints_finite_figures(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *QUICK_ARGS.get(script, [])],
        capture_output=True, text=True, timeout=540, cwd=BENCHMARKS.parent,
        env={**os.environ, "BENCH_QUICK": "1"},
    )
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert re.search(r"python 3\.\d+\.\d+, \d+ cpus", out) or "clients" in out, out
    assert not re.search(r"\b(nan|inf)\b", out, re.IGNORECASE), f"{script} printed a non-finite figure:\n{out}"
    if "valgrind is not installed" in out:
        return  # instructions.py on a machine without valgrind: nothing to measure, said so
    body = "\n".join(line for line in out.splitlines() if not line.startswith("python "))  # not the version line
    figures = [float(m.group(1).replace(",", "")) for m in _FIGURE.finditer(body)]
    assert any(f > 0 and math.isfinite(f) for f in figures), f"{script} printed no figure:\n{out}"
