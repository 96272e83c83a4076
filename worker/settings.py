"""``WorkerSettings``: the recovery timings and limits of a worker (``worker/loop.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerSettings"]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Recovery timings and limits of a worker (milliseconds unless said otherwise)."""

    concurrency: int = 16
    #: a claimed task not heartbeated for this long is taken over by another worker
    lease_ms: int = 15_000
    #: how often leases and held entries are extended (keep well under lease_ms)
    heartbeat_ms: int = 5_000
    #: how often stale entries of dead workers are looked for
    reclaim_ms: int = 5_000
    #: how often due promise timeouts are applied (timers, human-wait deadlines)
    sweep_ms: int = 1_000
    #: deliveries after which a task is dead-lettered
    max_deliveries: int = 5
    #: entries read per XREADGROUP at most
    read_batch: int = 64
    #: seconds in-flight tasks get to finish on shutdown before they are released
    shutdown_grace_s: float = 10.0
    #: an execution whose lease lapsed this long ago and that nobody claimed again is re-queued
    orphan_ms: int = 30_000
    #: consumers (of any worker) idle this long and holding no entry are removed from the group
    #: (a dead worker's name; a live one that reads again is added back by Redis)
    consumer_idle_ms: int = 3_600_000
    #: claim a lease before every plain function too; by default a plain function's first
    #: delivery runs without one (one round trip less) and its commit is refused while another
    #: worker holds a live lease on it (it took the task over); the delivery guarantee is the same
    lease_plain_calls: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_deliveries < 1:
            raise ValueError("concurrency and max_deliveries must be at least 1")
        if not 0 < self.heartbeat_ms < self.lease_ms:
            raise ValueError("heartbeat_ms must be positive and below lease_ms")
        if self.orphan_ms < self.lease_ms:
            raise ValueError("orphan_ms must be at least lease_ms")
        if self.consumer_idle_ms < 1000:
            raise ValueError("consumer_idle_ms must be at least 1000")

    def replace(self, **changes: Any) -> WorkerSettings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)
