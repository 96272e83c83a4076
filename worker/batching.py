"""``GroupCommit``: many threads' requests sent as one batch, with no linger and no extra thread.

A thread that arrives while no batch is in flight sends its request at once, alone (latency
stays at the floor). Requests that arrive while a batch is in flight queue up; when it returns,
the first of them leads the next batch: every queued request (at most ``limit``) in one call.
Under load, batches grow with the load: one round trip per batch.

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
    __slots__ = ("done", "error", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None
        self.wake = threading.Lock()  # held until this slot is done, or made the next leader
        self.wake.acquire()


class GroupCommit(Generic[T, R]):
    """Sends requests of type ``T`` in batches through ``send`` (one answer ``R`` per request,
    in order).

    Each waiting thread blocks on a lock of its own, released when its answer is in or when it
    is made the next batch's leader, so finishing a batch wakes only its own threads and one
    leader (a shared condition would wake every waiter each time)."""

    def __init__(self, send: Callable[[Sequence[T]], Sequence[R]], limit: int = 64) -> None:
        self._send = send
        self._limit = max(1, limit)
        self._mutex = threading.Lock()
        self._queue: list[_Slot[T, R]] = []  # waiting; empty whenever no batch is in flight
        self._busy = False
        #: batches sent and requests in them (for tests and the benchmark)
        self.batches = 0
        self.requests = 0

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._mutex:
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._queue.append(slot)
        if lead:
            batch = [slot]
        else:
            slot.wake.acquire()  # done, or made the leader of the next batch
            if slot.done:
                return self._answer(slot)
            with self._mutex:  # the leader: it is first in the queue
                batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
        self._run(batch)
        return self._answer(slot)

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
            with self._mutex:
                for s in batch:
                    s.done = True
                self.batches += 1
                self.requests += len(batch)
                leader = self._queue[0] if self._queue else None
                self._busy = leader is not None
            for s in batch[1:]:  # batch[0] is the slot of the thread running this
                s.wake.release()
            if leader is not None:
                leader.wake.release()

    @staticmethod
    def _answer(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]
