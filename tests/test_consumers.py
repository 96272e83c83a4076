"""Consumer hygiene: consumers never expire in Redis by themselves (redis/redis #11567). A worker
leaves its group on a graceful stop; the names of killed workers are removed once they hold no
entry and have been idle ``consumer_idle_ms``; a consumer holding entries is never removed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import WorkerProcess, wait_until
from vow.coordinator import RedisStore, keys

GROUP = "crash"  # tests/apps.py "crash": slow_step(name, seconds)
GENERATIONS = 20


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url)
    yield s
    s.close()


def consumers(store: RedisStore) -> dict[str, int]:
    """Every consumer of the group on any partition's stream -> entries it holds."""
    held: dict[str, int] = {}
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, GROUP)
        if not store.client.exists(stream):
            continue
        for c in store.client.xinfo_consumers(stream, GROUP):
            name = c["name"].decode()
            held[name] = held.get(name, 0) + int(c["pending"])
    return held


def call(store: RedisStore, promise_id: str, seconds: float) -> None:
    store.invoke(promise_id, "slow_step", [promise_id, seconds], group=GROUP, timeout=store.now() + 120_000)


def worker(redis_url: str, *extra: str) -> WorkerProcess:
    return WorkerProcess("crash", redis_url, "--quiet", "--lease-ms", "1000", "--consumer-idle-ms", "1000", *extra)


@pytest.mark.timeout(90)
def test_graceful_stops_leave_no_consumer(redis_url: str, store: RedisStore) -> None:
    workers = [worker(redis_url) for _ in range(2)]
    ids = [f"graceful-{i}" for i in range(8)]
    for promise_id in ids:
        call(store, promise_id, 0.01)
    wait_until(lambda: all(p is not None and p.completed for p in store.read_records(ids).values()),
               timeout=30, what="the calls to finish")
    assert {w.consumer for w in workers} <= set(consumers(store))
    for w in workers:
        assert w.stop() == 0
    assert consumers(store) == {}


@pytest.mark.timeout(150)
def test_killed_workers_leave_only_consumers_that_hold_entries(redis_url: str, store: RedisStore) -> None:
    killed: list[str] = []
    ids: list[str] = []
    for generation in range(GENERATIONS):
        w = worker(redis_url)
        promise_id = f"gen-{generation}"
        ids.append(promise_id)
        call(store, promise_id, 30.0)  # still running when the worker is killed: its entry stays held
        wait_until(lambda w=w: consumers(store).get(w.consumer, 0) > 0, timeout=20,
                   what=f"generation {generation} to hold its task")
        w.kill()
        killed.append(w.consumer)
        # the invariant at every moment: a removed consumer held nothing
        for name, held in consumers(store).items():
            assert name in killed or held == 0, (name, held)

    # Each generation took over the tasks of the one before it (after the lease) and removed the
    # names that held nothing any more: whatever is left is a killed worker's.
    assert set(consumers(store)) <= set(killed)
    assert consumers(store)[killed[-1]] > 0  # the last one still holds its task: kept

    live = worker(redis_url, "--concurrency", "32")
    try:
        # The live worker takes the tasks over after the lease, and removes the killed names once
        # they hold nothing and have been idle a second.
        wait_until(lambda: set(consumers(store)) <= {live.consumer}, timeout=60,
                   what="only the live consumer to be left")
    finally:
        live.kill()
