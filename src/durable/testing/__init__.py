"""Testing workflows: replay checks over recorded histories, and checks of your own workflows.

- ``await check_replay(run)``, ``replay_events(workflow, events)``: replay a run's log with the code
  of now; NonDeterminismError if the code no longer matches it.
- ``load_history(path)`` / ``replay_history(workflow, history)``: the same for a history exported
  with ``durable export RUN_ID > history.json`` (see :mod:`durable._client.history` for the format).
"""

from __future__ import annotations

from .._client.history import History as History
from .._client.history import load_history as load_history
from ._replay import ReplayResult as ReplayResult
from ._replay import check_replay as check_replay
from ._replay import read_history as read_history
from ._replay import replay_events as replay_events
from ._replay import replay_history as replay_history

__all__ = ["History", "ReplayResult", "check_replay", "load_history", "read_history", "replay_events", "replay_history"]
