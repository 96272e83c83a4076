"""One request, one round trip: counted by the client (requests written to the socket) and by the
server (``INFO commandstats``: one EVALSHA, no EVAL, no SCRIPT LOAD, no other command)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.connection import AbstractConnection

from vow.coordinator import Callback, RedisStore, State, Value
from vow.coordinator import notes as notes_module
from vow.coordinator.executions import Settlement
from vow.coordinator.lua import Answer, Claim, ClaimStatus
from vow.worker.scheduler import Handle, Scheduler

from .conftest import Clock

#: commands that only a client can send (a script cannot run a script): the store's requests
SCRIPT_CALLS = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro", "cmdstat_script"}


@dataclass
class Count:
    round_trips: int
    server_calls: dict[str, int]


class Counter:
    """Counts requests written by this process's redis-py connections, and the server's calls."""

    def __init__(self, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raw = raw
        self.sent = 0
        self._raw_connection = raw.connection_pool.get_connection()
        raw.connection_pool.release(self._raw_connection)
        original = AbstractConnection.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            if conn is not self._raw_connection:
                self.sent += 1
            original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)

    def stats(self) -> dict[str, int]:
        return {name: int(v["calls"]) for name, v in self.raw.info("commandstats").items()}

    def measure(self, action: Callable[[], object]) -> Count:
        before_stats = self.stats()
        before = self.sent
        action()
        sent = self.sent - before
        after_stats = self.stats()
        calls = {k: after_stats[k] - before_stats.get(k, 0) for k in after_stats
                 if k != "cmdstat_info" and after_stats[k] != before_stats.get(k, 0)}
        return Count(sent, calls)


@pytest.fixture
def counter(raw_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    yield Counter(raw_client, monkeypatch)


@pytest.mark.parametrize("injected_clock", [True, False], ids=["injected-clock", "server-clock"])
def test_create_and_resolve_are_one_round_trip(redis_url: str, counter: Counter, injected_clock: bool) -> None:
    store = RedisStore(redis_url, clock=Clock() if injected_clock else None)
    now = store.now()
    # Warm up: connect (and probe for a cluster), and load every script into the server's cache.
    store.create("warm", now + 60_000)
    store.resolve("warm")
    store.get("warm")
    store.register_callback("warm", Callback("root", "g", b"m"))

    one_evalsha = {"cmdstat_evalsha": 1}

    def script_calls(count: Count) -> tuple[int, dict[str, int]]:
        return count.round_trips, {k: v for k, v in count.server_calls.items() if k in SCRIPT_CALLS}

    create = counter.measure(lambda: store.create("p", now + 60_000, ikey="k", data=b"d", tags={"t": "1"}))
    assert script_calls(create) == (1, one_evalsha), create
    for n in range(100):
        store.register_callback("p", Callback(f"root-{n}", "g", b"m"))
    register = counter.measure(lambda: store.register_callback("p", Callback("root-x", "g", b"m")))
    assert script_calls(register) == (1, one_evalsha), register
    resolve = counter.measure(lambda: store.resolve("p", ikey="v", data=b"done"))  # fires 101 callbacks
    assert script_calls(resolve) == (1, one_evalsha), resolve
    get = counter.measure(lambda: store.get("p"))
    assert script_calls(get) == (1, one_evalsha), get
    again = counter.measure(lambda: store.create("p", now + 60_000, ikey="k"))  # deduplicated
    assert script_calls(again) == (1, one_evalsha), again
    store.close()


def test_search_page_round_trips(redis_url: str, counter: Counter) -> None:
    clock = Clock()
    store = RedisStore(redis_url, clock=clock)
    for n in range(20):
        store.create(f"p{n}", clock.now + 60_000)
    store.search()  # warm
    page = counter.measure(lambda: store.search(limit=10))
    # one pipeline over the 16 partition indexes, one pipeline reading the candidate records
    assert page.round_trips == 2
    assert page.server_calls == {"cmdstat_zrevrangebyscore": 16, "cmdstat_hgetall": 10}
    store.close()


def test_a_script_missing_from_the_cache_is_reloaded(redis_url: str, raw_client: redis.Redis) -> None:
    clock = Clock()
    store = RedisStore(redis_url, clock=clock)
    store.create("p", clock.now + 60_000)
    raw_client.script_flush()  # as after a restart or failover
    assert store.resolve("p").completed
    store.close()


def test_rpc_then_result_is_two_round_trips_for_the_producer(redis_url: str, counter: Counter) -> None:
    """The create subscribes and the notification carries the record: rpc is one script call,
    ``result()`` one ``BLPOP``, and a second ``result()`` none."""
    store = RedisStore(redis_url)
    app = Scheduler(store, "rt-producer", serve=False)
    store.estimated_now()  # measured once per minute: not part of a call
    warm = app.rpc("warm", "f")
    store.resolve("warm", data=b"1")
    assert warm.result(timeout=5) == 1

    handle: list[Handle] = []
    sent = counter.measure(lambda: handle.append(app.rpc("call", "f", 1)))
    assert sent.round_trips == 1 and sent.server_calls.get("cmdstat_evalsha") == 1, sent
    store.resolve("call", data=b'{"ok": true}')
    waited = counter.measure(lambda: handle[0].result(timeout=5))
    assert waited.round_trips == 1 and set(waited.server_calls) == {"cmdstat_blpop"}, waited
    again = counter.measure(lambda: handle[0].result(timeout=5))
    assert again.round_trips == 0 and handle[0].result() == {"ok": True}
    store.close()


def test_a_batch_of_claims_and_a_group_commit_are_one_script_call_each(redis_url: str, counter: Counter) -> None:
    store = RedisStore(redis_url)
    app = Scheduler(store, "rt-batch", serve=False)
    store.tasks.ensure_group("rt-batch")
    for script in ("claim", "settle"):  # loaded into the server's cache, as after any first use
        store.client.script_load(store.scripts._scripts[script].script)
    for n in range(10):
        app.rpc(f"batch-{n}", "f")
    deliveries = store.tasks.read("rt-batch", "c", count=10, block_ms=1)
    assert len(deliveries) == 10
    tasks = [(d.message.id, d.message.func) for d in deliveries if d.message is not None]
    claims: list[list[Claim]] = []
    claimed = counter.measure(
        lambda: claims.append(store.tasks.claim_many(tasks, group="rt-batch", consumer="c", lease_ms=60_000)))
    assert claimed.round_trips == 1 and claimed.server_calls["cmdstat_evalsha"] == 1, claimed
    assert [c.status for c in claims[0]] == [ClaimStatus.OK] * 10
    done = [Settlement(pid, c.counter, State.RESOLVED, Value(data=b"1"), d)
            for (pid, _), c, d in zip(tasks, claims[0], deliveries, strict=True)]
    settled = counter.measure(lambda: store.tasks.settle_many(done, group="rt-batch", consumer="c"))
    assert settled.round_trips == 1 and settled.server_calls["cmdstat_evalsha"] == 1, settled
    assert all(store.get(pid).state is State.RESOLVED for pid, _ in tasks)
    assert store.tasks.pending_count("rt-batch") == 0 and store.tasks.stream_length("rt-batch") == 0
    # a resend of the whole batch changes nothing and answers the same
    assert store.tasks.settle_many(done, group="rt-batch", consumer="c") == [Answer.FENCED] * 10  # lease ended
    store.close()


def test_each_thread_calls_scripts_on_a_connection_it_holds_and_gives_back(redis_url: str) -> None:
    """No pool checkout per call; a thread's connection returns to the pool when the thread ends,
    so threads that come and go do not pile up connections."""
    store = RedisStore(redis_url)
    pool = store.client.connection_pool
    store.create("warm", store.now() + 60_000)

    def work(n: int) -> None:
        for i in range(3):
            store.create(f"t-{n}-{i}", store.now() + 60_000)

    for n in range(40):
        thread = threading.Thread(target=work, args=(n,))
        thread.start()
        thread.join(10)
    gc.collect()
    assert len(pool._in_use_connections) <= 2, pool._in_use_connections  # this thread's (and none left behind)
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 4
    store.close()


def test_a_result_read_after_its_notification_expired_still_returns(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notes_module, "WAIT_RECHECK_S", 0.05)
    store = RedisStore(redis_url)
    handle = Scheduler(store, "rt-late", serve=False).rpc("late", "f")
    store.resolve("late", data=b'"on time"')
    for inbox in store.client.keys("*inbox*"):
        store.client.delete(inbox)  # as its TTL would
    assert handle.result(timeout=5) == "on time"
    store.close()
