"""End-to-end worker behaviour with real worker processes against a real server."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator

import pytest
import redis

from tests import apps
from tests.harness import WorkerProcess, wait_until
from vow.coordinator import RedisStore, keys
from vow.server import ServerProcess
from vow.worker import Scheduler

COUNT = apps.COUNT_PREFIX


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def server_url(request: pytest.FixtureRequest) -> str:
    """The standalone server, and once more the 3-master cluster."""
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url"))


@pytest.fixture
def any_client(server_url: str) -> Iterator[redis.Redis]:
    c: redis.Redis = RedisStore(server_url).client
    yield c
    c.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def count(client: redis.Redis, name: str) -> int:
    return int(client.get(COUNT + name) or 0)


def starter(url: str, app: str) -> Scheduler:
    """A Scheduler that starts executions of ``app`` but serves nothing (like a web process)."""
    scheduler = Scheduler(RedisStore(url), logic_group=apps.APPS[app][0], serve=False)
    for func in apps.APPS[app][1]:
        scheduler.register(func)
    return scheduler


def is_pending(store: RedisStore, promise_id: str) -> bool:
    try:
        return store.get(promise_id).pending
    except Exception:
        return False


def pel_empty(client: redis.Redis, group: str) -> bool:
    total = 0
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, group)
        if client.exists(stream):
            try:
                total += int(client.xpending(stream, group)["pending"])
            except redis.ResponseError:
                pass
    return total == 0


def test_seed_story_across_processes(server_url: str, any_client: redis.Redis, workers: list[WorkerProcess]) -> None:
    redis_url, client = server_url, any_client
    workers.append(WorkerProcess("email", redis_url))
    flow = WorkerProcess("workflow", redis_url)
    workers.append(flow)
    store = RedisStore(redis_url)
    handle = starter(redis_url, "workflow").run("workflow-alice", apps.workflow, "alice@example.com")
    wait_until(lambda: is_pending(store, "email-confirmed-alice@example.com"), what="the human wait")
    assert store.get("workflow-alice").pending
    assert count(client, "send_email:alice@example.com") == 1
    wait_until(lambda: pel_empty(client, "workflow-service"), what="the suspended task to be acked")
    store.resolve(
        promise_id="email-confirmed-alice@example.com", ikey=None, strict=False, headers=None, data=json.dumps(True)
    )
    assert handle.result(timeout=20) == "confirmed=True"
    assert count(client, "step3") == 1
    assert count(client, "workflow-finished:alice@example.com") == 1
    wait_until(lambda: "Email address alice@example.com confirmed: True" in flow.output, what="the printout")
    assert pel_empty(client, "workflow-service") and pel_empty(client, "email-service")


def test_kill_9_mid_task_another_worker_finishes_exactly_once(
    server_url: str, any_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    redis_url, client = server_url, any_client
    first = WorkerProcess("crash", redis_url)
    workers.append(first)
    handle = starter(redis_url, "crash").run("crash-1", apps.crash_workflow, "c1", 2.0)
    wait_until(lambda: count(client, "slow-start:c1") == 1, what="the step to start on the first worker")
    first.kill()  # SIGKILL in the middle of the 2 s step
    assert count(client, "slow-end:c1") == 0
    workers.append(WorkerProcess("crash", redis_url))
    assert handle.result(timeout=30) == "c1-done"
    assert count(client, "slow-start:c1") == 2  # run again by the second worker
    assert count(client, "slow-end:c1") == 1    # the killed run never finished
    assert count(client, "after-slow:c1") == 1  # the workflow completed exactly once
    wait_until(lambda: pel_empty(client, "crash"), what="the pending list to empty")
    assert RedisStore(redis_url).get("crash-1").completed


def test_paused_worker_cannot_commit_a_task_taken_over(
    redis_url: str, client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    paused = WorkerProcess("crash", redis_url)
    workers.append(paused)
    store = RedisStore(redis_url)
    handle = starter(redis_url, "crash").run("fenced-1", apps.crash_workflow, "f1", 2.0)
    wait_until(lambda: count(client, "slow-start:f1") == 1, what="the step to start")
    paused.signal(signal.SIGSTOP)
    try:
        assert count(client, "slow-end:f1") == 0  # paused in the middle of the step
        workers.append(WorkerProcess("crash", redis_url))
        assert handle.result(timeout=30) == "f1-done"  # taken over after the lease
        value_before = store.get("fenced-1").value
    finally:
        paused.signal(signal.SIGCONT)
    wait_until(lambda: "lost lease (fenced)" in paused.output, timeout=30, what="the paused worker to be fenced")
    assert store.get("fenced-1").value == value_before  # its late commit changed nothing
    assert count(client, "slow-start:f1") == 2
    wait_until(lambda: pel_empty(client, "crash"), what="the pending list to empty")


def test_suspended_workflow_survives_every_worker_restarting(
    redis_url: str, client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    store = RedisStore(redis_url)
    first = WorkerProcess("waiter", redis_url)
    handle = starter(redis_url, "waiter").run("restart-1", apps.waiter, "r1")
    wait_until(lambda: is_pending(store, "human-r1"), what="the wait")
    assert first.stop() == 0  # graceful: exit code 0
    second = WorkerProcess("waiter", redis_url)
    workers.append(second)
    second.kill()  # and a crash of the next one too, while nothing runs
    workers.append(WorkerProcess("waiter", redis_url))
    store.resolve("human-r1", data=json.dumps("approved"))
    assert handle.result(timeout=20) == "approved"
    assert count(client, "waiter-finished") == 1


def test_thousand_suspended_workflows_cost_no_worker_resources(
    redis_url: str, client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    n = 1000
    store = RedisStore(redis_url)
    pool = [WorkerProcess("waiter", redis_url, "--concurrency", "8") for _ in range(2)]
    workers.extend(pool)
    start = starter(redis_url, "waiter")
    warm = [start.run(f"warm-{i}", apps.waiter, f"warm-{i}") for i in range(20)]
    wait_until(lambda: all(is_pending(store, f"human-warm-{i}") for i in range(20)), what="warm-up waits")
    for i in range(20):
        store.resolve(f"human-warm-{i}", data="0")
    assert all(h.result(timeout=20) == 0 for h in warm)
    baseline = [(w.threads(), w.rss_kib()) for w in pool]
    used_before = int(client.info("memory")["used_memory"])

    handles = [start.run(f"many-{i}", apps.waiter, f"m{i}") for i in range(n)]
    human = [keys.index(p, "pending") for p in range(keys.PARTITIONS)]

    def waiting() -> bool:
        return sum(int(client.zcount(k, "-inf", "+inf")) for k in human) >= 2 * n and all(
            pel_empty(client, "waiters") for _ in [0]
        )

    wait_until(waiting, timeout=60, what="1000 workflows to suspend")
    used_after = int(client.info("memory")["used_memory"])
    cpu_before = [w.cpu_seconds() for w in pool]
    threading.Event().wait(2.0)  # a measurement window, not synchronisation
    cpu_idle = [w.cpu_seconds() - c for w, c in zip(pool, cpu_before, strict=True)]
    for (threads, rss), w in zip(baseline, pool, strict=True):
        assert w.threads() <= threads + 2, "a suspended workflow must not hold a thread"
        assert w.rss_kib() - rss < 15_000, "a suspended workflow must not hold worker memory"
    assert all(c < 0.3 for c in cpu_idle), f"idle workers used CPU: {cpu_idle}"
    per_workflow = (used_after - used_before) / n
    print(f"redis bytes per suspended workflow: {per_workflow:.0f}")
    assert per_workflow < 4096

    pipe = client.pipeline(transaction=False)
    for i in range(n):
        store.resolve(f"human-m{i}", data=json.dumps(i))
    pipe.execute()
    assert [h.result(timeout=60) for h in handles] == list(range(n))
    assert count(client, "waiter-finished") == n + 20


def test_worker_reconnects_after_redis_restarts(tmp_path: object, workers: list[WorkerProcess]) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path)) / "redis"
    server = ServerProcess(directory=directory, persistence=True)
    server.start()
    try:
        store = RedisStore(server.url)
        workers.append(WorkerProcess("waiter", server.url))
        handle = starter(server.url, "waiter").run("survivor", apps.waiter, "s1")
        wait_until(lambda: is_pending(store, "human-s1"), what="the wait")
        server.kill()  # kill -9 the server; AOF everysec has the acknowledged writes
        server = ServerProcess(directory=directory, persistence=True, port=server.port)
        server.start()
        store.resolve("human-s1", data=json.dumps("back"))
        assert handle.result(timeout=30) == "back"
    finally:
        server.stop()


def test_sigterm_lets_the_running_task_finish(
    redis_url: str, client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    worker = WorkerProcess("crash", redis_url, "--grace", "10")
    handle = starter(redis_url, "crash").run("graceful-1", apps.crash_workflow, "g1", 1.0)
    wait_until(lambda: count(client, "slow-start:g1") == 1, what="the step to start")
    assert worker.stop() == 0  # SIGTERM, then wait for the exit
    assert handle.result(timeout=5) == "g1-done"
    assert count(client, "slow-start:g1") == 1 and count(client, "slow-end:g1") == 1
    assert pel_empty(client, "crash")


def test_sigterm_past_the_grace_period_releases_the_task_to_another_worker(
    redis_url: str, client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    leaving = WorkerProcess("crash", redis_url, "--grace", "0.2", "--lease-ms", "30000", "--heartbeat-ms", "5000")
    handle = starter(redis_url, "crash").run("released-1", apps.crash_workflow, "r1", 2.0)
    wait_until(lambda: count(client, "slow-start:r1") == 1, what="the step to start")
    assert leaving.stop() == 0, leaving.output
    assert count(client, "slow-end:r1") == 0, leaving.output  # stopped past the grace, mid-step
    # Released, not left to expire: another worker takes it at once although the lease is 30 s.
    workers.append(WorkerProcess("crash", redis_url, "--lease-ms", "30000", "--heartbeat-ms", "5000"))
    assert handle.result(timeout=15) == "r1-done"
    assert count(client, "slow-start:r1") == 2
