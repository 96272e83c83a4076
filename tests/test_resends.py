"""Every state-changing script answers its own resend as its first run was answered.

redis-py resends a command whose reply was lost; the wrapper layer (``coordinator/lua.py``)
gives every call one request id, so a resend carries the same id as its first run. Here the id
is pinned for two calls in a row — exactly what a resend looks like to the server — and each
pair must give the same answer and apply its change once. On the real server and on fakeredis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.conftest import Clock
from vow.coordinator import Answer, ClaimStatus, RedisStore, State, Value, keys
from vow.coordinator import lua as lua_module
from vow.coordinator.tasks import TaskKind, TaskMessage

T = TypeVar("T")
LEASE_MS = 10_000


@pytest.fixture
def resend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], T]], tuple[T, T]]]:
    """``resend(call)``: run ``call`` twice under one request id (a first run and its resend)."""
    counter = iter(range(1_000_000))

    def twice(call: Callable[[], T]) -> tuple[T, T]:
        rid = f"resend-{next(counter)}"
        monkeypatch.setattr(lua_module, "request_id", lambda: rid)
        try:
            return call(), call()
        finally:
            monkeypatch.undo()

    yield twice


def claimed(store: RedisStore, promise_id: str, consumer: str = "w1") -> Any:
    return store.tasks.claim(promise_id, group="g", consumer=consumer, func="f", lease_ms=LEASE_MS)


def test_a_resent_claim_answers_ok_with_the_same_counter(store: RedisStore, clock: Clock, resend: Any) -> None:
    store.create("p", clock.now + 60_000)
    first, again = resend(lambda: claimed(store, "p"))
    assert first.status is again.status is ClaimStatus.OK  # not BUSY: the lease is its own
    assert first.counter == again.counter == 1
    assert claimed(store, "p", "w2").status is ClaimStatus.BUSY  # a real second claimer is refused


def test_a_resent_suspend_keeps_its_wake(store: RedisStore, clock: Clock, resend: Any) -> None:
    store.create("p", clock.now + 60_000)
    counter = claimed(store, "p").counter
    assert claimed(store, "p", "w2").status is ClaimStatus.BUSY  # a resume arrived: wake flag set
    delivery = _delivery(store, "p")
    first, again = resend(lambda: store.tasks.suspend("p", counter, group="g", consumer="w1", delivery=delivery))
    assert first is again is Answer.WAKE  # a resend answered OK would drop the resume
    assert store.tasks.heartbeat("p", counter, lease_ms=LEASE_MS)  # the lease is still held


def test_resent_suspend_release_and_settle_answer_as_first(store: RedisStore, clock: Clock, resend: Any) -> None:
    for promise_id in ("s", "r", "t"):
        store.create(promise_id, clock.now + 60_000)
    s, r, t = (claimed(store, p).counter for p in ("s", "r", "t"))
    assert resend(lambda: store.tasks.suspend("s", s, group="g", consumer="w1", delivery=_delivery(store, "s"))) == (
        Answer.OK, Answer.OK)
    assert resend(lambda: store.tasks.release("r", r)) == (True, True)
    done = resend(lambda: store.tasks.settle(
        "t", t, State.RESOLVED, Value({}, b"1"), group="g", consumer="w1", delivery=_delivery(store, "t")))
    assert done == (True, True)
    assert store.get("t").state is State.RESOLVED


def test_resent_heartbeat_and_touch_agree(store: RedisStore, clock: Clock, resend: Any) -> None:
    store.create("p", clock.now + 60_000)
    counter = claimed(store, "p").counter
    assert resend(lambda: store.tasks.heartbeat("p", counter, lease_ms=LEASE_MS)) == (True, True)
    delivery = _read_one(store, "p")
    assert resend(lambda: store.tasks.touch("g", "w1", delivery.partition, [delivery.entry_id])) == (1, 1)


def test_resent_ack_counts_the_entry_acknowledged(store: RedisStore, clock: Clock, resend: Any) -> None:
    store.create("p", clock.now + 60_000)
    delivery = _read_one(store, "p")
    assert resend(lambda: store.tasks.ack("g", "w1", delivery)) == (True, True)
    assert store.tasks.pending_count("g") == 0


def test_resent_requeue_and_dead_letter_move_once(store: RedisStore, clock: Clock, resend: Any) -> None:
    store.create("a", clock.now + 60_000)
    store.create("b", clock.now + 60_000)
    a, b = _read_one(store, "a"), _read_one(store, "b")
    message = TaskMessage(TaskKind.INVOKE, "a", "g", "f").encode()
    assert resend(lambda: store.tasks.requeue("g", "w1", a, message)) == (True, True)
    assert resend(lambda: store.tasks.dead_letter("g", "w1", b, "poison")) == (True, True)
    assert store.tasks.stream_length("g") == 1  # requeued once, not twice
    dead = sum(int(store.client.xlen(keys.dead_letters(p, "g"))) for p in range(keys.PARTITIONS))
    assert dead == 1


def test_a_resent_revive_returns_the_same_entry(store: RedisStore, resend: Any) -> None:
    dead = keys.dead_letters(3, "g")
    raw = TaskMessage(TaskKind.INVOKE, "x", "g", "f", deliveries=9).encode()
    fresh = TaskMessage(TaskKind.INVOKE, "x", "g", "f").encode()
    entry = store.client.xadd(dead, {"m": raw, "reason": "test"}).decode()
    first, again = resend(lambda: store.scripts.revive(3, group="g", entry_id=entry, expected=raw, message=fresh))
    assert first is not None and first == again
    assert store.client.xlen(keys.task_stream(3, "g")) == 1


def test_resent_sweeps_time_out_once(store: RedisStore, clock: Clock, resend: Any) -> None:
    store.create("p", clock.now + 1_000)
    clock.advance(2_000)
    assert resend(lambda: store.sweep()) == (1, 0)


def _read_one(store: RedisStore, promise_id: str) -> Any:
    """Queue a task for ``promise_id`` in group g and read it as consumer w1."""
    store.tasks.ensure_group("g")
    partition = keys.partition_of(promise_id)
    message = TaskMessage(TaskKind.INVOKE, promise_id, "g", "f").encode()
    store.client.xadd(keys.task_stream(partition, "g"), {"m": message})
    [delivery] = [d for d in store.tasks.read("g", "w1", count=16, block_ms=1, partitions=[partition])
                  if d.message is not None and d.message.id == promise_id]
    return delivery


def _delivery(store: RedisStore, promise_id: str) -> Any:
    return _read_one(store, promise_id)


def test_a_resent_create_answers_as_written_though_the_promise_moved_on(
    store: RedisStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by tests/test_linearizability_faults.py: a create whose reply was lost, resent after
    # another client had resolved the promise, answered with the resolved record — an answer no
    # linearization of the create allows.
    monkeypatch.setattr(lua_module, "request_id", lambda: "the-create")
    first = store.create("p", clock.now + 60_000, ikey="k", data="param")
    monkeypatch.undo()
    store.resolve("p", data="value")
    monkeypatch.setattr(lua_module, "request_id", lambda: "the-create")
    again = store.create("p", clock.now + 60_000, ikey="k", data="param")
    assert again == first and again.pending
    assert store.get("p").state is State.RESOLVED
