"""Faults injected exactly at the worker's error boundary, and the orphan sweep's rescue.

- A connection error in the middle of reclaim (after ``XAUTOCLAIM``, in the ``XPENDING`` that
  reads delivery counts) must surface as a Vow error and leave the maintenance thread running:
  before the boundary change it escaped as a raw redis-py exception and ended heartbeats,
  reclaim and sweeps for good.
- An execution whose lease lapsed and whose task entry is gone (the reply of a claim was lost,
  the entry acknowledged) is re-queued by the orphan sweep and runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.harness import wait_until
from vow import Context, RedisStore, Scheduler, State, WorkerSettings
from vow.coordinator import keys
from vow.coordinator.tasks import TaskKind, TaskMessage

FAST = WorkerSettings(concurrency=2, lease_ms=300, heartbeat_ms=100, reclaim_ms=50, sweep_ms=50, orphan_ms=600,
                      shutdown_grace_s=1.0)


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url)
    yield s
    s.close()


def double(ctx: Context, n: int) -> int:
    return 2 * n


def test_a_connection_error_inside_reclaim_leaves_maintenance_running(
    store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = Scheduler(store, "g", settings=FAST, serve=False)
    app.register(double)
    store.tasks.ensure_group("g")
    # A task read by a consumer that died at once: it sits in the PEL until reclaimed.
    store.create("job", store.now() + 60_000, data='{"func": "double", "args": [21]}')
    stream = keys.task_stream(keys.partition_of("job"), "g")
    store.client.xadd(stream, {"m": TaskMessage(TaskKind.INVOKE, "job", "g", "double").encode()})
    store.client.xreadgroup("g", "dead-consumer", {stream: ">"})
    faults = {"left": 1, "hit": 0}
    original = store.client.xpending_range

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if faults["left"]:
            faults["left"] -= 1
            faults["hit"] += 1
            raise redis.ConnectionError("injected: connection reset during reclaim")
        return original(*args, **kwargs)

    store.client.xpending_range = flaky
    with caplog.at_level(logging.WARNING, logger="vow.worker"):
        worker = app.start()
        try:
            wait_until(lambda: faults["hit"], timeout=10, what="the fault to be hit")
            # The same reclaim runs again on the next round and the task is taken over and run.
            assert app.get("job").result(timeout=10) == 42
            maintenance = next(t for t in worker._threads if t.name == "vow-maintenance")
            assert maintenance.is_alive()
        finally:
            app.stop(grace_s=1)
    assert any("reclaim failed" in r.getMessage() and "injected" in r.getMessage() for r in caplog.records)


def test_an_execution_whose_entry_is_gone_is_rescued_by_the_orphan_sweep(store: RedisStore) -> None:
    app = Scheduler(store, "g", settings=FAST, serve=False)
    app.register(double)
    store.tasks.ensure_group("g")
    store.create("lost", store.now() + 60_000, data='{"func": "double", "args": [5]}')
    # What a lost claim reply used to leave: a lease taken by a worker that never ran the task,
    # and no entry left in any stream (it was acknowledged).
    claim = store.tasks.claim("lost", group="g", consumer="gone-worker", func="double", lease_ms=100)
    assert claim.counter == 1
    assert store.tasks.stream_length("g") == 0
    app.start()
    try:
        assert app.get("lost").result(timeout=15) == 10
    finally:
        app.stop(grace_s=1)
    assert store.get("lost").state is State.RESOLVED
    assert store.client.exists(keys.execution("lost")) == 0
    assert store.client.zcard(keys.leases(keys.partition_of("lost"))) == 0


def test_the_orphan_sweep_leaves_live_and_suspended_executions_alone(store: RedisStore) -> None:
    store.create("live", store.now() + 60_000)
    store.create("held", store.now() + 60_000)
    live = store.tasks.claim("live", group="g", consumer="w", func="f", lease_ms=60_000)
    held = store.tasks.claim("held", group="g", consumer="w", func="f", lease_ms=60_000)
    assert store.tasks.release("held", held.counter)
    assert store.tasks.sweep_orphans(grace_ms=0) == 0
    assert store.tasks.heartbeat("live", live.counter, lease_ms=60_000)  # still its holder's
    assert store.tasks.stream_length("g") == 0
