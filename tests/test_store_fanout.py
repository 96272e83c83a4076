"""Completing a promise fans out: callbacks become task messages, subscribers are notified.

Also races: many threads completing (or creating) one promise, and callbacks registered while
the promise completes — each callback fires exactly once or is refused, never lost.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from vow.coordinator import AlreadyCompleted, AlreadyExists, Callback, NotFound, RedisStore, State, keys
from vow.coordinator import notes as notes_module
from vow.coordinator import store as store_module
from vow.coordinator.notes import parse_notification
from vow.coordinator.tasks import TaskKind, TaskMessage, decode_task

from .conftest import Clock, make_store
from .store_helpers import wait_until

GROUPS = ("billing", "email")
#: seconds a test thread may take before the test fails (a deadline, not a synchronisation)
JOIN_S = 20.0


def _message(root: str, group: str, by: str) -> bytes:
    return TaskMessage(TaskKind.RESUME, root, group, by=by).encode()


def _register(store: RedisStore, promise_id: str, count: int) -> set[tuple[str, bytes]]:
    expected = set()
    for n in range(count):
        group = GROUPS[n % len(GROUPS)]
        root = f"root-{n}"
        promise = store.register_callback(promise_id, Callback(root, group, _message(root, group, promise_id)))
        assert promise.pending
        expected.add((group, _message(root, group, promise_id)))
    return expected


def _tasks(store: RedisStore, promise_id: str) -> Counter[tuple[str, bytes]]:
    """Every task message queued in the promise's partition, per group."""
    partition = keys.partition_of(promise_id)
    found: Counter[tuple[str, bytes]] = Counter()
    for group in GROUPS:
        for _, fields in store.client.xrange(keys.task_stream(partition, group)):
            found[(group, fields[b"m"])] += 1
    return found


def _run_threads(target: Any, count: int) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def worker(n: int) -> None:
        barrier.wait(JOIN_S)
        try:
            results[n] = target(n)
        except Exception as e:  # the test inspects what each thread got
            results[n] = e

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
        assert not t.is_alive(), "a racing thread did not finish"
    return results


@pytest.mark.parametrize("how", ["resolve", "sweep", "lazy-get", "lazy-complete", "lazy-create"])
def test_hundred_callbacks_become_hundred_tasks(store: RedisStore, clock: Clock, how: str) -> None:
    store.create("p", clock.now + 1000)
    store.create("bystander", clock.now + 1000)
    expected = _register(store, "p", 100)
    _register(store, "bystander", 3)
    assert store.client.hlen(keys.callbacks("p")) == 100
    assert _tasks(store, "p") == Counter()  # nothing fires before completion

    if how == "resolve":
        assert store.resolve("p", data=b"done").state is State.RESOLVED
    else:
        clock.advance(1000)
        if how == "sweep":
            assert store.sweep() == 2  # the bystander times out too
        elif how == "lazy-get":
            assert store.get("p").state is State.REJECTED_TIMEDOUT
        elif how == "lazy-complete":
            assert store.resolve("p").state is State.REJECTED_TIMEDOUT
        else:
            with pytest.raises(AlreadyExists):
                store.create("p", clock.now + 1000)

    def by(promise_id: str) -> Counter[tuple[str, bytes]]:
        return Counter({k: v for k, v in _tasks(store, promise_id).items() if decode_task(k[1]).by == promise_id})

    tasks = by("p")
    assert tasks == Counter(dict.fromkeys(expected, 1))
    assert sum(by("bystander").values()) == (3 if how == "sweep" else 0)
    assert store.client.exists(keys.callbacks("p")) == 0
    for message in expected:
        assert decode_task(message[1]).kind is TaskKind.RESUME

    # Completing again, reading again or sweeping again never re-queues anything.
    store.get("p")
    store.sweep()
    with pytest.raises(AlreadyCompleted):
        store.reject("p", strict=True)
    assert by("p") == tasks
    # A callback registered on a completed promise is refused: the caller sees the completed record.
    late = store.register_callback("p", Callback("late", "email", _message("late", "email", "p")))
    assert late.completed and store.client.exists(keys.callbacks("p")) == 0
    assert by("p") == tasks


def test_same_root_registers_once(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    for _ in range(3):
        store.register_callback("p", Callback("root", "email", _message("root", "email", "p")))
    store.resolve("p")
    assert sum(_tasks(store, "p").values()) == 1


def test_register_on_unknown_promise(store: RedisStore) -> None:
    with pytest.raises(NotFound):
        store.register_callback("nope", Callback("root", "email", b"m"))
    with pytest.raises(NotFound):
        store.subscribe("nope", "listener")
    assert store.client.exists(keys.callbacks("nope"), keys.subscriptions("nope")) == 0


def test_subscribers_are_notified(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    listeners = [f"l{n}" for n in range(5)]
    for listener in listeners:
        assert store.subscribe("p", listener).pending
    store.cancel("p")
    partition = keys.partition_of("p")
    for listener in listeners:
        [note] = store.client.lrange(keys.inbox(partition, listener), 0, -1)
        assert parse_notification("p", note) == store.get("p")  # the notification carries the record
        assert store.client.pttl(keys.inbox(partition, listener)) > 0  # inboxes expire
    assert store.client.exists(keys.subscriptions("p")) == 0


def test_a_large_record_is_notified_by_id(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    store.subscribe("p", "l")
    store.resolve("p", data=b"x" * 70_000)  # over the 64 KiB a notification copies
    [note] = store.client.lrange(keys.inbox(keys.partition_of("p"), "l"), 0, -1)
    assert note == b"p" and parse_notification("p", note) is None


@pytest.mark.parametrize("note", [
    b"p", b"\0", b"\0" + b"2:id", b"\x005:id", b"\0x:ab", b"\0" + b"99999999999999:a", b"\0" + b"-1:a", 42, None,
    b"\0" + b"2:id1:p5:state7:PENDING",  # pending: not a completion
    b"\0" + b"2:id1:q5:state8:RESOLVED2:cd1:1",  # another promise's record
    b"\0" + b"2:id1:p5:state3:BAD",  # corrupt
])
def test_a_notification_that_is_not_well_formed_is_not_trusted(note: object) -> None:
    assert parse_notification("p", note) is None


def test_a_notification_is_parsed() -> None:
    note = b"\0" + b"2:id1:p5:state8:RESOLVED2:cd1:52:to1:92:co1:12:vd3:a:b"
    promise = parse_notification("p", note)
    assert promise is not None and promise.state is State.RESOLVED and promise.value.data == b"a:b"


def test_eight_threads_race_to_resolve(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    _register(store, "p", 10)
    results = _run_threads(lambda n: store.resolve("p", ikey=f"k{n}", data=f"v{n}"), 8)
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(e, AlreadyCompleted) and e.state == "RESOLVED" for e in losers), losers
    final = store.get("p")
    n = final.idempotency_key_for_complete
    assert winners[0] == final and final.value.data == f"v{n[1:]}".encode()  # type: ignore[index]
    assert sum(_tasks(store, "p").values()) == 10


def test_eight_threads_race_to_create(store: RedisStore, clock: Clock) -> None:
    timeout = clock.now + 1000
    results = _run_threads(lambda n: store.create("p", timeout, ikey=f"k{n}", data=f"v{n}"), 8)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and all(isinstance(r, AlreadyExists) for r in results if r not in winners)
    # Same idempotency key: every racer gets the one stored promise.
    results = _run_threads(lambda n: store.create("q", timeout, ikey="same", data=f"v{n}"), 8)
    assert all(r == results[0] for r in results) and results[0].pending


def test_callbacks_registered_during_completion_fire_once_or_are_refused(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    accepted: list[int] = []

    def act(n: int) -> object:
        if n == 0:
            return store.resolve("p")
        count = 0
        for k in range(40):
            root = f"root-{n}-{k}"
            if store.register_callback("p", Callback(root, "email", _message(root, "email", "p"))).pending:
                count += 1
        accepted.append(count)
        return count

    results = _run_threads(act, 5)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sum(_tasks(store, "p").values()) == sum(accepted)
    assert store.client.exists(keys.callbacks("p")) == 0


# -- wait (subscriptions) ------------------------------------------------------------------------


def _waiter(store: RedisStore, promise_id: str, timeout: float) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(store.wait(promise_id, timeout=timeout))
        except Exception as e:  # the test inspects it
            out.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


@pytest.mark.parametrize(("backend", "injected_clock"), [("redis", True), ("fakeredis", True), ("redis", False)])
def test_wait_returns_when_another_thread_resolves(
    backend: str, injected_clock: bool, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_store(backend, request, Clock() if injected_clock else None)
    request.addfinalizer(s.close)
    monkeypatch.setattr(notes_module, "WAIT_RECHECK_S", 60.0)  # only a notification can wake it in time
    s.create("p", s.now() + 600_000)
    thread, out = _waiter(s, "p", timeout=30)
    wait_until(lambda: s.client.hlen(keys.subscriptions("p")) == 1, what="the waiter subscribed")
    s.resolve("p", data=b"yes")
    thread.join(JOIN_S)
    assert not thread.is_alive()
    assert out and not isinstance(out[0], Exception), out
    assert out[0].state is State.RESOLVED and out[0].value.data == b"yes"
    wait_until(lambda: not s.client.keys("*inbox*"), what="the inbox was removed")


def test_wait_wakes_on_a_timeout_applied_by_the_sweep(real_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notes_module, "WAIT_RECHECK_S", 60.0)
    timeout = real_store.now() + 200
    real_store.create("p", timeout)
    thread, out = _waiter(real_store, "p", timeout=30)
    wait_until(lambda: real_store.client.hlen(keys.subscriptions("p")) == 1, what="the waiter subscribed")
    wait_until(lambda: real_store.now() >= timeout, what="the timeout passed")
    assert real_store.sweep() == 1
    thread.join(JOIN_S)
    assert not thread.is_alive() and out and out[0].state is State.REJECTED_TIMEDOUT, out


def test_wait_times_out_and_unsubscribes(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    with pytest.raises(TimeoutError):
        store.wait("p", timeout=0.2)
    assert store.client.exists(keys.subscriptions("p")) == 0


def test_wait_on_completed_and_unknown(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    store.reject("p", data=b"no")
    assert store.wait("p", timeout=0.01).state is State.REJECTED
    clock.advance(5000)
    store.create("t", clock.now + 10)
    clock.advance(10)
    assert store.wait("t", timeout=0.01).state is State.REJECTED_TIMEDOUT  # lazily timed out
    with pytest.raises(NotFound):
        store.wait("missing", timeout=0.01)
    assert not store.client.keys("*inbox*") and not store.client.keys("*:sub:*")


# -- the sweep -------------------------------------------------------------------------------------


def test_sweep_drains_in_batches_and_honours_its_limit(
    store: RedisStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SWEEP_BATCH", 3)
    due = [f"due-{n}" for n in range(40)]
    for promise_id in due:
        store.create(promise_id, clock.now + 10)
        store.register_callback(promise_id, Callback("root", "email", _message("root", "email", promise_id)))
    store.create("later", clock.now + 11)
    clock.advance(10)
    assert store.sweep(limit=5) == 5
    assert store.sweep() == 35
    assert store.sweep() == 0
    assert all(store.get(i).state is State.REJECTED_TIMEDOUT for i in due)
    assert store.get("later").pending
    fired = sum(store.client.xlen(keys.task_stream(p, "email")) for p in range(keys.PARTITIONS))
    assert fired == 40


def test_sweep_lock_skips_a_freshly_swept_partition(store: RedisStore, clock: Clock) -> None:
    store.create("a", clock.now + 10)
    clock.advance(10)
    assert store.sweep(lock_ms=60_000) == 1
    store.create("b", clock.now + 10)
    clock.advance(10)
    assert store.sweep(lock_ms=60_000) == 0  # every partition was swept a moment ago
    assert store.sweep() == 1  # no lock asked for: sweeps anyway
