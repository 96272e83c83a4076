"""``GroupCommit``: requests arriving while a batch is in flight go together in the next one,
bounded by the limit; each thread gets its own answer or its batch's error."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from tests.harness import wait_until
from vow.worker.batching import GroupCommit

pytestmark = pytest.mark.timeout(30)


class Gate:
    """A ``send`` that records its batches and holds the first one until released."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.in_flight.set()
            assert self.release.wait(10)
        if self.fail_on in items:
            raise ValueError(f"batch with {self.fail_on}")
        return [item * 10 for item in items]


def _submit_all(commit: GroupCommit[int, int], items: list[int]) -> tuple[dict[int, object], list[threading.Thread]]:
    answers: dict[int, object] = {}

    def one(item: int) -> None:
        try:
            answers[item] = commit.submit(item)
        except ValueError as e:
            answers[item] = e

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return answers, threads


def _queued(commit: GroupCommit[int, int], n: int) -> bool:
    with commit._mutex:  # the test peeks at the queue: no other way to know the threads arrived
        return len(commit._queue) == n


def test_alone_a_request_is_sent_at_once() -> None:
    sent: list[list[int]] = []
    commit = GroupCommit(lambda items: sent.append(list(items)) or [i + 1 for i in items])
    assert commit.submit(1) == 2 and commit.submit(5) == 6
    assert sent == [[1], [5]] and commit.batches == 2


def test_requests_that_arrive_during_a_batch_go_together_in_the_next() -> None:
    gate = Gate()
    commit: GroupCommit[int, int] = GroupCommit(gate)
    first, threads = _submit_all(commit, [0])
    assert gate.in_flight.wait(10)
    answers, more = _submit_all(commit, list(range(1, 9)))
    wait_until(lambda: _queued(commit, 8), what="eight requests queued behind the batch in flight")
    gate.release.set()
    for thread in threads + more:
        thread.join(10)
    assert gate.batches == [[0], sorted(gate.batches[1])] and sorted(gate.batches[1]) == list(range(1, 9))
    assert first == {0: 0} and answers == {i: i * 10 for i in range(1, 9)}
    assert commit.batches == 2 and commit.requests == 9


def test_batches_are_bounded_and_every_thread_gets_its_answer() -> None:
    gate = Gate()
    commit: GroupCommit[int, int] = GroupCommit(gate, limit=3)
    _, threads = _submit_all(commit, [0])
    assert gate.in_flight.wait(10)
    answers, more = _submit_all(commit, list(range(1, 8)))
    wait_until(lambda: _queued(commit, 7), what="seven requests queued")
    gate.release.set()
    for thread in threads + more:
        thread.join(10)
    assert answers == {i: i * 10 for i in range(1, 8)}
    assert all(len(batch) <= 3 for batch in gate.batches)
    assert sorted(i for batch in gate.batches for i in batch) == list(range(8))


def test_a_failed_batch_raises_in_each_of_its_threads_only() -> None:
    gate = Gate(fail_on=3)
    commit: GroupCommit[int, int] = GroupCommit(gate, limit=100)
    _, threads = _submit_all(commit, [0])
    assert gate.in_flight.wait(10)
    answers, more = _submit_all(commit, [1, 2, 3])
    wait_until(lambda: _queued(commit, 3), what="three requests queued")
    gate.release.set()
    for thread in threads + more:
        thread.join(10)
    assert all(isinstance(answers[i], ValueError) for i in (1, 2, 3))
    assert commit.submit(4) == 40  # the next batch is unaffected


def test_a_wrong_number_of_answers_is_an_error() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="got 0 answers"):
        commit.submit(1)
