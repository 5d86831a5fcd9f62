"""Replay every history in ``histories/`` with the code of now: run by CI before a deploy.

``python -m pytest test_histories.py`` (from this directory). A history that the new code no
longer replays fails with NonDeterminismError naming the command, what the history holds there
and what the code did instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import shop

import durable.testing

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_the_code_of_now_replays_a_recorded_history(path: Path) -> None:
    history = durable.testing.load_history(path)
    durable.testing.replay_history(shop.checkout, history)
