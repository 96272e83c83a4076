"""The maintenance thread of a worker: heartbeats, reclaim, sweeps, orphans, consumer cleanup.

Each job runs on its own period (``WorkerSettings``); a failing job logs and runs again next
period, so a Redis outage or a bug in one job never ends the others:

- heartbeat (``heartbeat_ms``): extends the lease of every execution this worker holds and resets
  the idle time of every task entry it holds (so nobody reclaims them);
- reclaim (``reclaim_ms``): takes over entries idle past ``lease_ms`` (``XAUTOCLAIM``), as many
  as there are free slots;
- sweep (``sweep_ms``): the store's timeout sweep, the schedule pass and the expiry pass;
- orphan sweep (``reclaim_ms``): re-queues executions whose lease lapsed ``orphan_ms`` ago with
  nobody claiming them again (their task entry was lost);
- consumer cleanup: removes consumers idle ``consumer_idle_ms`` that hold no entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vow.coordinator import keys
from vow.coordinator.errors import VowError

if TYPE_CHECKING:
    from .loop import Worker

__all__ = ["Maintenance"]

log = logging.getLogger("vow.worker")


class Maintenance:
    """The periodic jobs of one worker, run by its maintenance thread until ``done`` is set."""

    def __init__(self, worker: Worker, done: threading.Event) -> None:
        self.worker = worker
        self.done = done
        self._autoclaim_cursors = ["0-0"] * keys.PARTITIONS

    def loop(self) -> None:
        s = self.worker.settings
        jobs: dict[str, tuple[float, Callable[[], None]]] = {
            "heartbeat": (s.heartbeat_ms / 1000, self.heartbeat),
            "reclaim": (s.reclaim_ms / 1000, self.reclaim),
            "sweep": (s.sweep_ms / 1000, self.sweep),
            "orphan sweep": (s.reclaim_ms / 1000, self.sweep_orphans),
            "consumer cleanup": (max(s.reclaim_ms, min(s.consumer_idle_ms // 2, 60_000)) / 1000, self.prune_consumers),
        }
        due = dict.fromkeys(jobs, 0.0)
        while not self.done.is_set():
            now = time.monotonic()
            for name, (period, job) in jobs.items():
                if now >= due[name]:
                    due[name] = now + period
                    self._run_job(name, job)
            self.done.wait(max(0.01, min(due.values()) - time.monotonic()))

    @staticmethod
    def _run_job(name: str, job: Callable[[], None]) -> None:
        try:
            job()
        except VowError as e:
            log.warning("%s failed: %s", name, e)
        except Exception:  # a bug in Vow itself must not end heartbeats, reclaim and sweeps
            log.exception("%s failed inside the worker", name)

    def heartbeat(self) -> None:
        w = self.worker
        by_partition: dict[int, list[str]] = {}
        for h in w.held_now():
            by_partition.setdefault(h.delivery.partition, []).append(h.delivery.entry_id)
            promise_id, counter = h.promise_id, h.counter
            if promise_id is not None and counter is not None:
                lost = not w.tasks.heartbeat(promise_id, counter, lease_ms=w.settings.lease_ms)
                if lost and h.counter == counter:  # (not committed meanwhile: that ends it too)
                    log.warning("lease of %s lost; its result will be discarded", promise_id)
        for partition, ids in by_partition.items():
            w.tasks.touch(w.group, w.consumer, partition, ids)

    def reclaim(self) -> None:
        w = self.worker
        if w.stopping.is_set():
            return
        free = w.free_slots()
        if free <= 0:
            return
        for delivery in w.tasks.reclaim(
            w.group, w.consumer, min_idle_ms=w.settings.lease_ms, count=min(free, 32),
            cursors=self._autoclaim_cursors,
        ):
            w.submit_reclaimed(delivery)

    def sweep(self) -> None:
        w = self.worker
        if not w.stopping.is_set():
            w.store.sweep(lock_ms=max(1, w.settings.sweep_ms - 50))
            w.store.schedules.run_due()
            w.store.expire()

    def prune_consumers(self) -> None:
        w = self.worker
        if not w.stopping.is_set():
            removed = w.tasks.remove_consumers(w.group, min_idle_ms=w.settings.consumer_idle_ms)
            if removed:
                log.info("removed %d idle consumer(s) holding no entries from group %r", removed, w.group)

    def sweep_orphans(self) -> None:
        w = self.worker
        if not w.stopping.is_set():
            found = w.tasks.sweep_orphans(w.settings.orphan_ms)
            if found:
                log.warning("re-queued %d execution(s) whose lease lapsed with no task entry left", found)
