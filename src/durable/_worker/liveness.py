"""Worker liveness: this worker's row and heartbeat, and telling dead workers from live ones.

Leases belong to worker rows that heartbeats keep alive (``alive_until``). A worker on this
machine whose process is gone (its pid is dead, or reused by another process) is marked dead
at once, so its leases are free without waiting for them to run out; workers elsewhere are
dead when their ``alive_until`` passes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from ..stores._base import Store

log = logging.getLogger("durable")


class Liveness:
    """Registers ``worker_id`` in the store, renews it, and frees the leases of dead local workers."""

    def __init__(self, store: Store, worker_id: str, lease_ttl: float, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self._now = now
        self.worker_id = worker_id
        self.lease_ttl = lease_ttl
        self.host = socket.gethostname()

    async def register(self) -> None:
        now = self._now()
        pid = os.getpid()
        await self.store.register_worker(self.worker_id, self.host, pid, process_start(pid), self.lease_ttl, now)
        await self.beat(now)

    async def beat(self, now: float | None = None) -> None:
        """Renew this worker; mark local workers whose process is gone as dead."""
        others = await self.store.heartbeat(self.worker_id, self.lease_ttl, self._now() if now is None else now)
        dead = [w for w, pid, start in others if not process_alive(pid, start)]
        if dead:
            log.info("workers %s are gone; their leases are free", ", ".join(dead))
            await self.store.mark_workers_dead(dead)

    async def unregister(self) -> None:
        await self.store.unregister_worker(self.worker_id)


def process_start(pid: int) -> str:
    """The process's start time from /proc, to tell a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or process_start(pid) == start
