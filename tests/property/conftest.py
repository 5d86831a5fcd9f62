"""Hypothesis profiles for the property suite, registered here and nowhere else.

- ``ci`` (the default; ``make test`` sets it): bounded so that the whole property suite stays
  under about five minutes on a shared 2-core machine; random (not derandomized) so that every
  CI run explores new examples; failures are kept in ``.hypothesis/`` and replayed first.
- ``thorough`` (``make property-thorough``): twenty times the examples of ``ci``.

Tests size themselves with :func:`examples` (a per-test base count scaled by the profile), because
a property that starts a real runtime per example cannot afford as many examples as one that
only encodes values. The per-test timeout scales the same way.

``DURABLE_MUTANT=<name>`` applies one deliberately injected bug from mutants.py (in memory), to
show that the properties catch it; ``python -m tests.property.mutants`` runs them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from .mutants import apply_from_env

# A deliberately injected bug (see mutants.py), applied in memory before any test module loads.
MUTANT = apply_from_env()
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = {"ci": 1, "thorough": 20}.get(PROFILE, 1)
_DATABASE = DirectoryBasedExampleDatabase(str(Path(__file__).resolve().parents[2] / ".hypothesis" / "examples"))

_common: dict[str, Any] = {
    "deadline": None,  # examples that start a runtime take tens of milliseconds, unevenly on a shared machine
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None if MUTANT else _DATABASE,  # a mutant's failures must not be replayed against real code
    "derandomize": False,
    "print_blob": True,
}
if MUTANT:
    # Showing that a property fails needs no minimal example, and shrinking examples that hang
    # under a mutant would take minutes.
    _common["phases"] = [Phase.explicit, Phase.reuse, Phase.generate]
settings.register_profile("ci", max_examples=100, **_common)
settings.register_profile("thorough", max_examples=100 * 20, **_common)
settings.load_profile(PROFILE if PROFILE in ("ci", "thorough") else "ci")


def examples(base: int) -> int:
    """How many examples a test with ``base`` examples under ``ci`` runs under the active profile."""
    return base * SCALE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(240 * SCALE))
