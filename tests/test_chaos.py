"""Chaos: worker processes are killed with SIGKILL at random while workflows run.

The bounded run is part of ``make test``; ``make chaos`` (VOW_CHAOS_LONG=1) runs the long one.
Whatever the kills, every workflow finishes with the right value, its promise completed once,
with nothing left pending and nothing dead-lettered.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator

import pytest
import redis

from tests import apps
from tests.harness import WorkerProcess, wait_until
from vow.coordinator import RedisStore, keys
from vow.worker import Scheduler

LONG = os.environ.get("VOW_CHAOS_LONG") == "1"
FLAGS = ("--lease-ms", "800", "--heartbeat-ms", "200", "--reclaim-ms", "150", "--sweep-ms", "50",
         "--max-deliveries", "50")


@pytest.fixture
def pool(redis_url: str) -> Iterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    yield workers
    for w in workers:
        w.stop()


def _chaos(redis_url: str, pool: list[WorkerProcess], workflows: int, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    store = RedisStore(redis_url)
    client: redis.Redis = store.client
    starter = Scheduler(store, logic_group="chaos", serve=False)
    starter.register(apps.chaos_flow)
    starter.register(apps.work)
    pool.extend(WorkerProcess("chaos", redis_url, *FLAGS) for _ in range(4))
    handles = [starter.run(f"chaos-{i}", apps.chaos_flow, i) for i in range(workflows)]

    def finished() -> int:
        pipe = client.pipeline(transaction=False)
        for i in range(workflows):
            pipe.hget(keys.promise(f"chaos-{i}"), "state")
        return sum(1 for state in pipe.execute() if state == b"RESOLVED")

    # Rounds: kill -9 three of the four workers one after another while work is in flight (the
    # survivor and the replacements must take their tasks over), then start replacements.
    pace = threading.Event()
    landed = 0
    for _ in range(rounds):
        dead = []
        for victim in rng.sample(range(len(pool)), 3):
            pace.wait(rng.uniform(0.05, 0.2))  # the chaos schedule, not synchronisation
            if finished() == workflows:
                break
            pool[victim].kill()
            dead.append(victim)
            landed += 1
        for victim in dead:
            pool[victim] = WorkerProcess("chaos", redis_url, *FLAGS)
    try:
        wait_until(lambda: finished() == workflows, timeout=300 if LONG else 90, what="every workflow to finish")
    except AssertionError:
        raise AssertionError(_diagnose(client, workflows)) from None
    assert [h.result(timeout=5) for h in handles] == [3 * i for i in range(workflows)]
    for p in range(keys.PARTITIONS):
        assert client.xlen(keys.dead_letters(p, "chaos")) == 0
    wait_until(lambda: all(int(client.xpending(keys.task_stream(p, "chaos"), "chaos")["pending"]) == 0
                           for p in range(keys.PARTITIONS)), what="every task to be acknowledged")
    # Every step result was recorded once and is the one the workflow used.
    for i in range(workflows):
        assert store.get(f"chaos-{i}.1").value.data == str(i).encode()
    pipe = client.pipeline(transaction=False)  # (not MGET: the counters span slots on a cluster)
    for i in range(workflows):
        for n in (1, 4):
            pipe.get(f"{apps.COUNT_PREFIX}work:chaos-{i}.{n}")
    runs = [int(v) for v in pipe.execute() if v]
    print(f"chaos: {landed} kills landed mid-run; {sum(r > 1 for r in runs)} local steps ran again")
    assert landed >= 2, "the kills must hit a running system"


def _diagnose(client: redis.Redis, workflows: int) -> str:
    """What a stuck run looks like: each unfinished workflow's records, and the streams."""
    lines = []
    for i in range(workflows):
        root = f"chaos-{i}"
        if client.hget(keys.promise(root), "state") == b"RESOLVED":
            continue
        children = {n: client.hget(keys.promise(f"{root}.{n}"), "state") for n in range(1, 5)}
        lines.append(f"{root}: x={client.hgetall(keys.execution(root))} children={children} "
                     f"callbacks={[client.hkeys(keys.callbacks(f'{root}.{n}')) for n in range(1, 5)]}")
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, "chaos")
        lines.append(f"partition {p}: len={client.xlen(stream)} pending={client.xpending(stream, 'chaos')}")
    return "unfinished workflows:\n" + "\n".join(lines)


def test_chaos_bounded(redis_url: str, pool: list[WorkerProcess]) -> None:
    _chaos(redis_url, pool, workflows=120, rounds=1, seed=7)


@pytest.mark.cluster
def test_chaos_bounded_on_the_cluster(cluster_url: str, pool: list[WorkerProcess]) -> None:
    _chaos(cluster_url, pool, workflows=40, rounds=1, seed=8)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not LONG, reason="long chaos runs with make chaos (VOW_CHAOS_LONG=1)")
def test_chaos_long(redis_url: str, pool: list[WorkerProcess]) -> None:
    _chaos(redis_url, pool, workflows=1500, rounds=20, seed=11)
