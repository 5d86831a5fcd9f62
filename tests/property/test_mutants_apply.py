"""Every deliberately injected bug of mutants.py still applies to the code it names (none is stale).

The mutation run itself (``python -m tests.property.mutants``) takes minutes; this check takes
milliseconds, so a move or rewrite that leaves a mutant behind fails ``make test`` at once.
"""

from __future__ import annotations

import pytest

from .mutants import MUTANTS, Mutant, check


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_mutant_still_applies_to_its_function(mutant: Mutant) -> None:
    """The patch text occurs exactly once in the function the mutant targets."""
    check(mutant)
