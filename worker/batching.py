"""``GroupCommit``: many threads' requests sent as one batch, with no linger and no extra thread.

The first thread to arrive while no batch is in flight becomes the leader: it sends every
request queued so far (its own included, at most ``limit``) in one call and hands each waiting
thread its answer. Requests that arrive while a batch is in flight queue up and go together in
the next one, led by one of their own threads. Alone, a request is sent at once (latency stays
at the floor); under load, batches grow with the load (one round trip per batch).

A failed call raises its exception in every thread of that batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Sends requests of type ``T`` in batches through ``send`` (one answer ``R`` per request,
    in order)."""

    def __init__(self, send: Callable[[Sequence[T]], Sequence[R]], limit: int = 64) -> None:
        self._send = send
        self._limit = max(1, limit)
        self._queue: list[_Slot[T, R]] = []
        self._busy = False
        self._cond = threading.Condition()
        #: batches sent and requests in them (for tests and the benchmark)
        self.batches = 0
        self.requests = 0

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._busy and not slot.done:
                    self._cond.wait()
                if slot.done:
                    return self._answer(slot)
                self._busy = True  # this thread leads the next batch (its own slot may not fit in it)
                batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
            self._run(batch)

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self._send([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(results)} answers")
            for s, result in zip(batch, results, strict=True):
                s.result = result
        except BaseException as e:  # every thread of the batch sees it
            for s in batch:
                s.error = e
        finally:
            with self._cond:
                for s in batch:
                    s.done = True
                self.batches += 1
                self.requests += len(batch)
                self._busy = False
                self._cond.notify_all()

    @staticmethod
    def _answer(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]
