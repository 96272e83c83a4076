"""Throughput of each logic group over the last minutes, sampled inside the console's process.

A sample is every group's *entries read* (the count of tasks ever delivered to the group, from
``XINFO GROUPS``; see ``coordinator/streams.py``) at one moment; the rate between two samples is
their difference over the time between them. The sampler keeps ``WINDOW_S`` of samples in memory
(nothing is written to Redis) and takes one every ``INTERVAL_S`` from a background thread, or
whenever a page reads the figures anyway and the last sample is old enough.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from vow.coordinator import VowError
from vow.coordinator import streams as task_streams
from vow.coordinator.streams import GroupStats

if TYPE_CHECKING:
    from vow.coordinator import RedisStore

__all__ = ["INTERVAL_S", "WINDOW_S", "Throughput"]

#: seconds between two samples
INTERVAL_S = 5.0
#: seconds of samples kept (the charts show this window)
WINDOW_S = 600.0

log = logging.getLogger("vow.console")


class Throughput:
    """Samples of entries read per group, and the rates between them (thread-safe)."""

    def __init__(
        self, interval_s: float = INTERVAL_S, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, stats: Sequence[GroupStats], force: bool = False) -> None:
        """Record a sample of ``stats`` unless the last one is younger than the interval."""
        now = self._clock()
        with self._lock:
            if not force and self._samples and now - self._samples[-1][0] < self.interval_s * 0.9:
                return
            self._samples.append((now, {s.group: s.entries_read for s in stats}))
            while self._samples and now - self._samples[0][0] > self.window_s + self.interval_s:
                self._samples.popleft()

    def series(self, group: str) -> list[tuple[float, float]]:
        """``(seconds ago, tasks per second)`` of ``group`` between consecutive samples, oldest first."""
        now = self._clock()
        with self._lock:
            samples = list(self._samples)
        out: list[tuple[float, float]] = []
        for (t0, before), (t1, after) in zip(samples, samples[1:], strict=False):
            if group in before and group in after and t1 > t0:
                out.append((now - t1, max(after[group] - before[group], 0) / (t1 - t0)))
        return out

    # -- the background sampler ----------------------------------------------------------------

    def start(self, store: RedisStore) -> None:
        """Sample every group from a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, args=(store,), name="vow-console-sampler", daemon=True)
        self._thread.start()

    def _run(self, store: RedisStore) -> None:
        while not self._stop.is_set():
            try:
                self.observe(task_streams.group_stats(store))
            except VowError as e:  # Redis away: a gap in the chart, the next sample tries again
                log.debug("throughput sample failed: %s", e)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 10)
