"""The promise store on a 3-master Redis Cluster: every script single-slot, every key where it belongs.

A cluster refuses a script touching a key of another slot (CROSSSLOT, or "non local key" when the
slot lives on another master): each test below runs every kind of promise request on promises
spread over all 16 partitions, hence over all three masters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from vow.coordinator import AlreadyCompleted, Callback, RedisStore, State, keys
from vow.coordinator.notes import parse_notification

from .conftest import Clock, make_store
from .store_helpers import Model, comparable, plain, run, search_all, wait_until

pytestmark = pytest.mark.cluster

#: enough ids to land in every one of the 16 partitions
IDS = [f"cluster-{n}" for n in range(64)]


@pytest.fixture
def cluster_store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[RedisStore]:
    store = make_store("cluster", request, clock)
    yield store
    store.close()


def _all_keys(store: RedisStore) -> list[bytes]:
    client: Any = store.client
    return list(client.scan_iter(match="*", target_nodes=RedisCluster.ALL_NODES))


def test_ids_cover_every_partition() -> None:
    assert {keys.partition_of(i) for i in IDS} == set(range(keys.PARTITIONS))


def test_cluster_client_is_detected(cluster_store: RedisStore) -> None:
    assert isinstance(cluster_store.client, RedisCluster)
    masters = cluster_store.client.get_primaries()
    assert len(masters) == 3


def test_create_complete_callbacks_sweep_search(cluster_store: RedisStore, clock: Clock) -> None:
    store, model = cluster_store, Model()
    for n, promise_id in enumerate(IDS):
        args: dict[str, Any] = dict(
            timeout=clock.now + 1000 + 1000 * (n % 2), ikey=f"c{n}", data=b"in",
            tags={"n": str(n % 4)} | ({"resonate:timeout": "true"} if n % 8 == 7 else {}),
        )
        assert comparable(run(partial(store.create, promise_id, **args))) == comparable(
            model.create(clock.now, promise_id, **args))
        store.register_callback(promise_id, Callback(f"root-{n}", "workers", f"resume {promise_id}".encode()))
        store.subscribe(promise_id, f"listener-{n}")
    # Invoke routing writes the task stream and the groups set in the promise's partition.
    store.create("invoked", clock.now + 1000, tags={"resonate:invoke": "poll://workers"},
                 data=b'{"func": "f", "args": []}')
    assert store.create(IDS[0], clock.now + 1000, ikey="c0").pending  # deduplicated
    for n, promise_id in enumerate(IDS[:12]):
        state = [State.RESOLVED, State.REJECTED, State.REJECTED_CANCELED][n % 3]
        assert comparable(run(partial(store.complete, promise_id, state, ikey="v", data=b"out"))) == comparable(
            model.complete(clock.now, promise_id, state, ikey="v", data=b"out"))
    with pytest.raises(AlreadyCompleted):
        store.resolve(IDS[1], strict=True, ikey="other")
    clock.advance(1000)
    assert comparable(run(lambda: store.get(IDS[12]))) == comparable(model.get(clock.now, IDS[12]))  # lazily
    assert store.sweep() == model.sweep(clock.now) + 1  # + "invoked"
    clock.advance(1000)
    assert store.sweep() == model.sweep(clock.now)
    for promise_id in IDS:
        assert comparable(run(partial(store.get, promise_id))) == comparable(model.get(clock.now, promise_id))

    # every callback fired once, in its promise's partition, and was removed
    fired = 0
    for partition in range(keys.PARTITIONS):
        entries = store.client.xrange(keys.task_stream(partition, "workers"))
        fired += sum(1 for _, f in entries if f[b"m"].startswith(b"resume "))
    assert fired == len(IDS)
    for n, promise_id in enumerate(IDS):
        assert store.client.exists(keys.callbacks(promise_id), keys.subscriptions(promise_id)) == 0
        inbox = keys.inbox(keys.partition_of(promise_id), f"listener-{n}")
        [note] = store.client.lrange(inbox, 0, -1)
        notified = parse_notification(promise_id, note)
        assert notified is not None and comparable(("ok", notified)) == comparable(model.get(clock.now, promise_id))
    assert store.client.smembers(keys.groups(keys.partition_of("invoked"))) == {b"workers"}

    found, _ = search_all(store, id_pattern="cluster-*", limit=10)
    assert [plain(p) for p in found] == [plain(p) for p in model.search(clock.now, None)]
    for family in ("pending", "resolved", "rejected"):
        found, _ = search_all(store, id_pattern="cluster-*", state=family, tags={"n": "3"}, limit=7)
        assert [plain(p) for p in found] == [plain(p) for p in model.search(clock.now, family, {"n": "3"})]

    # Every key sits in the slot of its partition's tag.
    tag_slots = {key_slot(keys.tag(p).encode()) for p in range(keys.PARTITIONS)}
    for key in _all_keys(store):
        assert key_slot(key) in tag_slots, key


def test_wait_on_the_cluster(cluster_url: str) -> None:
    store = RedisStore(cluster_url)  # the server's clock
    out: list[Any] = []
    store.create("waited", store.now() + 60_000)
    thread = threading.Thread(target=lambda: out.append(store.wait("waited", timeout=30)))
    thread.start()
    wait_until(lambda: store.client.hlen(keys.subscriptions("waited")) == 1, what="the waiter subscribed")
    store.resolve("waited", data=b"ok")
    thread.join(30)
    assert not thread.is_alive() and out and out[0].state is State.RESOLVED
    store.close()


def test_scripts_are_reloaded_on_every_master(cluster_store: RedisStore, clock: Clock) -> None:
    for promise_id in IDS[:16]:
        cluster_store.create(promise_id, clock.now + 1000)
    for node in cluster_store.client.get_primaries():  # as after restarts of every master
        cluster_store.client.execute_command("SCRIPT FLUSH", target_nodes=node)
        assert cluster_store.client.execute_command(
            "SCRIPT EXISTS", cluster_store.scripts.sha("complete"), target_nodes=node) in ([0], [False])
    for promise_id in IDS[:16]:
        assert cluster_store.resolve(promise_id).state is State.RESOLVED
    assert cluster_store.sweep() == 0
