"""Fault storms: Vow's guarantees while workers, the Redis process and the script cache fail.

Four scenarios, each with a bounded run in ``make test`` and a full-size run behind
``VOW_CHAOS_LONG=1`` (``make chaos``, marked slow), like ``tests/test_chaos.py``:

1. **Crash storm** — 4 worker processes of ``python -m tests.apps chaos``; every 200 ms one of
   them is killed with SIGKILL and its slot gets a new process, while remote calls (``rpc`` of
   ``work``) and 3-step workflows (``run`` of ``chaos_flow``) run. Bounded: 1,000 calls + 200
   workflows; full: 10,000 + 2,000. Nothing is lost, nothing completed with another value, the
   recorded steps hold the values the workflows used, the streams drain within 5 s of the last
   completion and nothing is dead-lettered.
2. **Redis process crash** — a server of the test's own (AOF ``everysec``, a temporary
   directory, a free port) is SIGKILLed mid-run and restarted on the same port and directory
   (bounded: once during 1,000 calls; full: 5 times during 10,000; calls created at 500/s, the
   server down 0.5-1 s each time). The producer retries a failed create with the same id
   (idempotent); every call ends RESOLVED with its value, with no operator action. The run prints
   the failed creates and the recovery times.
3. **Scripts gone** — ``SCRIPT FLUSH`` every 20-100 ms while calls run (created at 400/s), on the
   standalone server (bounded 800 calls, full 10,000) and on every node of the 3-master cluster
   (400 calls): no create or wait fails (the producer does not retry), the clients did meet
   NOSCRIPT (INFO errorstats), and every call completes.
4. **HITL survives everything** — a workflow suspended on a human promise lives through three
   generations of workers (kill -9, SIGTERM) with a Redis crash + restart in between (full: ten
   such rounds), is resolved with the real ``vow promises resolve`` CLI, and finishes exactly
   once.

Bounded, the file takes about 30 s on 2 cores (about 50 s with both cores busy elsewhere).

Randomness (which worker is killed, when the server or the scripts go) comes from a seeded
``random.Random``; every run prints its seed and its figures (run pytest with ``-s`` to see them).
The schedules pace themselves with ``threading.Event().wait`` (a chaos schedule, not
synchronisation); every wait for a state has a deadline (``wait_until``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests import apps
from tests.harness import ROOT, WorkerProcess, wait_until
from vow import RedisStore, Scheduler
from vow.coordinator import keys
from vow.coordinator.errors import VowError
from vow.server import ClusterProcess, ServerProcess, free_port

LONG = os.environ.get("VOW_CHAOS_LONG") == "1"
SKIP_LONG = pytest.mark.skipif(not LONG, reason="full-size fault storms run with make chaos (VOW_CHAOS_LONG=1)")
GROUP = "chaos"
FLAGS = ("--lease-ms", "800", "--heartbeat-ms", "200", "--reclaim-ms", "150", "--sweep-ms", "50",
         "--max-deliveries", "50")
#: seconds between two kills of the crash storm
KILL_EVERY_S = 0.2
#: the streams must be drained this long after the last completion
DRAIN_S = 5.0


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    """Every worker process a test starts; all stopped (SIGTERM, then SIGKILL) at teardown."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:  # SIGTERM to all first, so they shut down side by side
        if w.process.poll() is None:
            w.signal(signal.SIGTERM)
    for w in started:
        w.stop(10)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own: AOF everysec in a temporary directory, on a free port. A test
    may kill and start it again (same port, same directory); teardown stops whichever runs."""
    server = ServerProcess(port=free_port(), directory=tmp_path / "redis", persistence=True)
    server.start()
    yield server
    server.stop()


# -- reading the records ------------------------------------------------------------------------


def call_id(i: int) -> str:
    return f"call-{i}"


def flow_id(i: int) -> str:
    return f"chaos-{i}"


def expected_values(calls: int, workflows: int) -> dict[str, int]:
    """Promise id -> the value it must hold: i for call i, 3*i for workflow i."""
    want = {call_id(i): i for i in range(calls)}
    want.update({flow_id(i): 3 * i for i in range(workflows)})
    return want


def states(client: redis.Redis, ids: Sequence[str]) -> list[bytes | None]:
    pipe = client.pipeline(transaction=False)
    for promise_id in ids:
        pipe.hget(keys.promise(promise_id), "state")
    return list(pipe.execute())


def unfinished(client: redis.Redis, ids: Sequence[str]) -> list[str]:
    return [p for p, s in zip(ids, states(client, ids), strict=True) if s != b"RESOLVED"]


def resolved_total(client: redis.Redis) -> int:
    """Resolved promises of every partition (the search index; 16 ZCARDs)."""
    pipe = client.pipeline(transaction=False)
    for p in range(keys.PARTITIONS):
        pipe.zcard(keys.index(p, "resolved"))
    return sum(int(n) for n in pipe.execute())


def stream_totals(client: redis.Redis, group: str) -> tuple[int, int, int]:
    """(entries pending in the consumer group, entries in the streams, dead letters) of a group."""
    pending = length = dead = 0
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, group)
        if client.exists(stream):
            length += int(client.xlen(stream))
            try:
                pending += int(client.xpending(stream, group)["pending"])
            except redis.ResponseError:  # NOGROUP: the group was never created on this stream
                pass
        dead += int(client.xlen(keys.dead_letters(p, group)))
    return pending, length, dead


def held_by(client: redis.Redis, group: str, consumer: str) -> int:
    """Entries pending to one consumer (a worker about to be killed)."""
    total = 0
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, group)
        try:
            total += len(client.xpending_range(stream, group, min="-", max="+", count=1000, consumername=consumer))
        except redis.ResponseError:
            pass
    return total


def reruns(client: redis.Redis, calls: int, workflows: int) -> tuple[int, int]:
    """(steps that ran more than once, runs of steps in all), from the ``work`` counters: each
    call, and each workflow's steps .1 (local), .2 (remote) and .4 (local)."""
    names = [f"{apps.COUNT_PREFIX}work:{call_id(i)}" for i in range(calls)]
    names += [f"{apps.COUNT_PREFIX}work:{flow_id(i)}.{n}" for i in range(workflows) for n in (1, 2, 4)]
    counts: list[int] = []
    for start in range(0, len(names), 2000):
        counts += [int(v or 0) for v in client.mget(names[start:start + 2000])]
    return sum(c > 1 for c in counts), sum(counts)


def diagnose(client: redis.Redis, ids: Sequence[str], group: str, limit: int = 20) -> str:
    """What a stuck run looks like: the unfinished promises' records, their executions and
    callbacks, the streams, the dead letters."""
    stuck = unfinished(client, ids)
    lines = [f"{len(stuck)} unfinished of {len(ids)}"]
    for promise_id in stuck[:limit]:
        children = {}
        if promise_id.startswith("chaos-"):
            children = {n: client.hgetall(keys.promise(f"{promise_id}.{n}")) for n in range(1, 5)}
        lines.append(f"{promise_id}: p={client.hgetall(keys.promise(promise_id))} "
                     f"x={client.hgetall(keys.execution(promise_id))} "
                     f"cb={client.hkeys(keys.callbacks(promise_id))} children={children}")
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, group)
        if client.exists(stream):
            lines.append(f"partition {p}: len={client.xlen(stream)} pending={client.xpending(stream, group)} "
                         f"leases={client.zrange(keys.leases(p), 0, -1, withscores=True)[:5]}")
        dead = client.xrange(keys.dead_letters(p, group), count=5)
        if dead:
            lines.append(f"partition {p} dead letters: {dead}")
    return "\n".join(lines)


def wait_finished(client: redis.Redis, ids: Sequence[str], group: str, timeout: float) -> None:
    interval = 0.05 if len(ids) <= 2000 else 0.25
    try:
        wait_until(lambda: not unfinished(client, ids), timeout=timeout, interval=interval,
                   what=f"all {len(ids)} promises to be resolved")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{diagnose(client, ids, group)}") from None


def check_values(store: RedisStore, want: dict[str, int], workflows: int) -> None:
    """Every promise RESOLVED with the value it must have, and each workflow's recorded steps
    hold the values the workflow used (a step recorded twice with different values would show)."""
    ids = list(want)
    records: dict[str, Any] = {}
    for start in range(0, len(ids), 2000):
        records.update(store.read_records(ids[start:start + 2000]))
    wrong = {p: r for p, r in records.items() if r is None or r.state.value != "RESOLVED"
             or json.loads(r.value.data) != want[p]}
    assert not wrong, f"{len(wrong)} promises wrong, e.g. {list(wrong.items())[:5]}"
    steps = {f"{flow_id(i)}.{n}": str(i).encode() for i in range(workflows) for n in (1, 2, 4)}
    recorded = store.read_records(list(steps)) if steps else {}
    bad = [s for s, data in steps.items() if recorded[s] is None or recorded[s].value.data != data]
    assert not bad, f"recorded steps with another value: {[(s, recorded[s]) for s in bad[:5]]}"


def check_drained(client: redis.Redis, group: str, since: float) -> float:
    """The group's pending lists and streams empty within DRAIN_S of ``since`` (the last
    completion), nothing dead-lettered; returns how long the draining took."""

    def drained() -> bool:
        pending, length, _ = stream_totals(client, group)
        return pending == 0 and length == 0

    left = DRAIN_S - (time.monotonic() - since)
    try:
        wait_until(drained, timeout=max(left, 0.1), interval=0.05, what="the pending lists and streams to drain")
    except AssertionError:
        pending, length, dead = stream_totals(client, group)
        raise AssertionError(f"not drained {DRAIN_S}s after the last completion: {pending} pending, "
                             f"{length} entries, {dead} dead letters") from None
    took = time.monotonic() - since
    assert stream_totals(client, group)[2] == 0, "nothing may be dead-lettered"
    return took


def starter(store: RedisStore) -> Scheduler:
    """A Scheduler that starts executions of the chaos group and serves nothing (a web process)."""
    scheduler = Scheduler(store, logic_group=GROUP, serve=False)
    scheduler.register(apps.chaos_flow)
    scheduler.register(apps.work)
    return scheduler


def plan(calls: int, workflows: int) -> list[tuple[str, int]]:
    """The order of creation: calls and workflows interleaved evenly."""
    order: list[tuple[str, int]] = []
    flows = iter(range(workflows))
    for i in range(calls):
        if workflows and i % max(1, calls // workflows) == 0:
            order.extend(("flow", j) for j in [next(flows, -1)] if j >= 0)
        order.append(("call", i))
    order.extend(("flow", j) for j in flows)
    return order


def create(scheduler: Scheduler, kind: str, i: int) -> None:
    if kind == "call":
        scheduler.rpc(call_id(i), "work", i, 0, target=GROUP)
    else:
        scheduler.run(flow_id(i), apps.chaos_flow, i)


# -- 1. crash storm -----------------------------------------------------------------------------


@dataclass
class Storm:
    """Every ``period`` seconds, SIGKILL one live worker and start a new process in its slot
    (in a thread of its own, so the cadence does not wait for the start)."""

    url: str
    slots: list[WorkerProcess | None]
    started: list[WorkerProcess]
    rng: random.Random
    period: float = KILL_EVERY_S
    kills: int = 0
    kills_holding: int = 0  # kills of a worker that had task entries pending to it
    skipped: int = 0        # ticks with every slot still restarting
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._spawn(self._run)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            tick = time.monotonic()
            while True:
                tick += self.period
                if self._stop.wait(max(0.0, tick - time.monotonic())):  # the schedule's pace
                    return
                self._kill_one(client)
        except BaseException as e:  # reported by stop(), never lost in a thread
            self.errors.append(e)
        finally:
            client.close()

    def _kill_one(self, client: redis.Redis) -> None:
        with self._lock:
            live = [i for i, w in enumerate(self.slots) if w is not None]
            if not live:
                self.skipped += 1
                return
            slot = self.rng.choice(live)
            victim = self.slots[slot]
            self.slots[slot] = None
        assert victim is not None
        holding = held_by(client, GROUP, victim.consumer)
        victim.kill()
        self.kills += 1
        self.kills_holding += holding > 0
        self._spawn(lambda: self._restart(slot))

    def _restart(self, slot: int) -> None:
        try:
            worker = WorkerProcess("chaos", self.url, *FLAGS)
        except BaseException as e:
            self.errors.append(e)
            return
        with self._lock:
            self.started.append(worker)
            self.slots[slot] = worker

    def stop(self) -> None:
        """End the storm and wait until every slot has its worker again."""
        self._stop.set()
        while True:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
            if not threads:
                break
            for t in threads:
                t.join(30)
        assert not self.errors, f"the storm failed: {self.errors!r}"


def _crash_storm(url: str, procs: list[WorkerProcess], calls: int, workflows: int, seed: int, timeout: float) -> None:
    print(f"\ncrash storm: seed {seed}, {calls} calls + {workflows} workflows, a kill every {KILL_EVERY_S}s")
    rng = random.Random(seed)
    store = RedisStore(url)
    client: redis.Redis = store.client
    scheduler = starter(store)
    slots: list[WorkerProcess | None] = [WorkerProcess("chaos", url, *FLAGS) for _ in range(4)]
    procs.extend(w for w in slots if w is not None)
    storm = Storm(url, slots, procs, rng)
    want = expected_values(calls, workflows)
    began = time.monotonic()
    storm.start()
    try:
        for kind, i in plan(calls, workflows):
            create(scheduler, kind, i)  # Redis is fine here: every create must succeed
        produced = time.monotonic() - began
        wait_finished(client, list(want), GROUP, timeout)
        last = time.monotonic()
    finally:
        storm.stop()
    took = check_drained(client, GROUP, last)
    check_values(store, want, workflows)
    again, runs = reruns(client, calls, workflows)
    print(f"crash storm: created in {produced:.1f}s, all resolved after {last - began:.1f}s; "
          f"{storm.kills} kills landed ({storm.kills_holding} on a worker holding tasks, {storm.skipped} ticks "
          f"with no live worker); {again} steps ran more than once ({runs} step runs for "
          f"{calls + 3 * workflows} steps); drained {took:.2f}s after the last completion")
    assert storm.kills >= 5, "the kills must hit a running system"
    store.close()


@pytest.mark.timeout(180)
def test_crash_storm_bounded(redis_url: str, procs: list[WorkerProcess]) -> None:
    _crash_storm(redis_url, procs, calls=1000, workflows=200, seed=20_241, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SKIP_LONG
def test_crash_storm_long(redis_url: str, procs: list[WorkerProcess]) -> None:
    _crash_storm(redis_url, procs, calls=10_000, workflows=2_000, seed=20_242, timeout=700)


# -- 2. Redis process crash ---------------------------------------------------------------------


@dataclass
class Producer:
    """Creates calls 0..n-1 in a thread; a failed create is retried with the same id (the
    Scheduler passes the id as the idempotency key, so a create that did land answers as such)."""

    scheduler: Scheduler
    calls: int
    retry: bool = True
    pace_s: float = 0.0  # seconds between two creates (the schedule's pace; 0: as fast as it goes)
    produced: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, error)
    successes: list[float] = field(default_factory=list)  # monotonic time of each create
    errors: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pace = threading.Event()
        try:
            for i in range(self.calls):
                while True:
                    try:
                        self.scheduler.rpc(call_id(i), "work", i, 0, target=GROUP)
                        break
                    except VowError as e:
                        self.failures.append((time.monotonic(), f"{type(e).__name__}: {e}"))
                        if not self.retry:
                            raise
                        pace.wait(0.05)  # retry backoff
                self.successes.append(time.monotonic())
                self.produced = i + 1
                if self.pace_s:
                    pace.wait(self.pace_s)
        except BaseException as e:  # reported by join()
            self.errors.append(e)

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the producer is stuck after {self.produced} creates"
        assert not self.errors, f"the producer failed: {self.errors!r}"


def _first_after(times: list[float], moment: float) -> float | None:
    return next((t for t in times if t > moment), None)


def _loaded(client: redis.Redis) -> bool:
    """The server answers and has finished loading its AOF (``ServerProcess.start`` returns as
    soon as INFO answers, which a server does while it is still loading)."""
    try:
        return str(client.info("persistence").get("loading")) == "0" and bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):  # BusyLoadingError is a ConnectionError
        return False


def _crash_redis(server: ServerProcess, client: redis.Redis, rng: random.Random) -> tuple[float, float]:
    """SIGKILL the server, leave it down for 0.5-1 s, start it again on its port and directory;
    (kill time, the time it had loaded its AOF again)."""
    threading.Event().wait(rng.uniform(0.0, 0.1))  # the chaos schedule: land at a random moment
    killed = time.monotonic()
    server.kill()
    threading.Event().wait(rng.uniform(0.5, 1.0))  # down for a moment, as until a supervisor restarts it
    server.start()
    client.connection_pool.disconnect()
    wait_until(lambda: _loaded(client), timeout=60, interval=0.005, what="the restarted server to load its AOF")
    return killed, time.monotonic()


def _redis_restarts(server: ServerProcess, procs: list[WorkerProcess], calls: int, restarts: int, seed: int) -> None:
    print(f"\nredis crash: seed {seed}, {calls} calls at 500/s, {restarts} SIGKILL + restart of the server "
          "(AOF everysec, down 0.5-1 s)")
    rng = random.Random(seed)
    url = server.url
    store = RedisStore(url)
    watcher = redis.Redis.from_url(url, socket_timeout=5)  # the test's own eyes, outside Vow
    procs.extend(WorkerProcess("chaos", url, *FLAGS) for _ in range(4))
    producer = Producer(starter(store), calls, pace_s=1 / 500)  # 500 creates/s: the run spans the outages
    producer.start()
    outages: list[tuple[float, float, float, float | None]] = []
    for k in range(1, restarts + 1):
        wait_until(lambda k=k: producer.produced >= k * calls // (restarts + 1) or producer.errors,
                   timeout=120, what=f"the producer to reach {k}/{restarts + 1} of the calls")
        killed, back = _crash_redis(server, watcher, rng)
        # Recovery: the next successful create, and the next task a worker completes (counted
        # from what the server had when it came back).
        resolved_back = resolved_total(watcher)
        wait_until(lambda b=resolved_back: resolved_total(watcher) > b, timeout=60,
                   interval=0.01, what="a worker to complete a task after the restart")
        worked = time.monotonic()
        wait_until(lambda b=back: _first_after(producer.successes, b) or producer.produced == calls,
                   timeout=60, interval=0.01, what="the producer to create again after the restart")
        outages.append((killed, back, worked, _first_after(producer.successes, back)))
    producer.join(120)
    want = expected_values(calls, 0)
    wait_finished(watcher, list(want), GROUP, timeout=300 if LONG else 90)
    last = time.monotonic()
    check_drained(watcher, GROUP, last)
    check_values(store, want, 0)
    again, _ = reruns(watcher, calls, 0)
    print(f"redis crash: {len(producer.failures)} creates failed during the outages (retried with the same id; "
          f"first: {producer.failures[0][1] if producer.failures else '-'}); {again} calls ran more than once")
    for n, (killed, back, worked, created) in enumerate(outages, 1):
        print(f"  restart {n}: server back {back - killed:.2f}s after SIGKILL; next create "
              f"{(created - back) if created else float('nan'):.2f}s and next completed task "
              f"{worked - back:.2f}s after it was back ({worked - killed:.2f}s after the kill)")
    assert len(outages) == restarts
    watcher.close()
    store.close()


@pytest.mark.timeout(150)
def test_redis_crash_bounded(own_server: ServerProcess, procs: list[WorkerProcess]) -> None:
    _redis_restarts(own_server, procs, calls=1000, restarts=1, seed=31_337)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SKIP_LONG
def test_redis_crash_long(own_server: ServerProcess, procs: list[WorkerProcess]) -> None:
    _redis_restarts(own_server, procs, calls=10_000, restarts=5, seed=31_338)


# -- 3. scripts gone ----------------------------------------------------------------------------


@dataclass
class Flusher:
    """``SCRIPT FLUSH`` on every node, at random intervals, until stopped."""

    nodes: list[redis.Redis]
    rng: random.Random
    low: float = 0.02
    high: float = 0.1
    flushes: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.rng.uniform(self.low, self.high)):  # the schedule's pace
                for node in self.nodes:
                    node.script_flush()
                self.flushes += 1
        except BaseException as e:
            self.errors.append(e)

    def stop(self) -> None:
        self._stop.set()
        assert self.thread is not None
        self.thread.join(10)
        assert not self.errors, f"the flusher failed: {self.errors!r}"


def noscript_replies(nodes: list[redis.Redis]) -> int:
    """NOSCRIPT errors the servers have answered so far (INFO errorstats): each one a client that
    met a flushed script cache (and, if nothing failed, reloaded the script and went on)."""
    return sum(int(node.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0)) for node in nodes)


def _waiter(store: RedisStore, producer: Producer, out: list[Any]) -> None:
    """Waits on each call's handle as soon as it is created (subscribe + BLPOP + get, all
    scripts but BLPOP): a caller-visible failure would land in ``out``."""
    scheduler = Scheduler(store, GROUP, serve=False)
    try:
        for i in range(producer.calls):
            wait_until(lambda i=i: producer.produced > i or producer.errors, timeout=60,
                       interval=0.005, what=f"call {i} to be created")
            if producer.errors:
                return
            out.append(scheduler.get(call_id(i)).result(timeout=60))
    except BaseException as e:
        out.append(e)


def _scripts_gone(url: str, nodes: list[redis.Redis], procs: list[WorkerProcess], workers: int, calls: int,
                  seed: int) -> None:
    rate = 400
    print(f"\nscripts gone: seed {seed}, {calls} calls at {rate}/s on {len(nodes)} node(s), "
          "SCRIPT FLUSH every 20-100 ms")
    rng = random.Random(seed)
    store = RedisStore(url)
    procs.extend(WorkerProcess("chaos", url, *FLAGS) for _ in range(workers))
    noscript_before = noscript_replies(nodes)
    producer = Producer(starter(store), calls, retry=False, pace_s=1 / rate)
    flusher = Flusher(nodes, rng)
    results: list[Any] = []
    waiter = threading.Thread(target=_waiter, args=(store, producer, results), daemon=True)
    flusher.start()
    began = time.monotonic()
    try:
        producer.start()
        waiter.start()
        producer.join(120)
        waiter.join(120)
    finally:
        flusher.stop()
    took = time.monotonic() - began
    noscript = noscript_replies(nodes) - noscript_before
    for node in nodes:
        node.close()
    assert not producer.failures, f"caller-visible failures: {producer.failures[:5]}"
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"a wait failed: {failures[:3]!r}"
    assert results == list(range(calls))
    want = expected_values(calls, 0)
    wait_finished(store.client, list(want), GROUP, timeout=30)
    check_drained(store.client, GROUP, time.monotonic())
    check_values(store, want, 0)
    logged = sum(w.output.count("NOSCRIPT") for w in procs)
    print(f"scripts gone: {flusher.flushes} flushes in {took:.1f}s; {noscript} NOSCRIPT replies met and "
          f"recovered by the clients; 0 failed creates or waits; {logged} NOSCRIPT mentions in the workers' logs")
    assert flusher.flushes >= 10, "the flushes must land while calls run"
    assert noscript > 0, "the flushes must hit clients holding cached scripts"
    assert stream_totals(store.client, GROUP)[2] == 0, "nothing may be dead-lettered"
    store.close()


@pytest.mark.timeout(120)
def test_scripts_gone_bounded(redis_url: str, redis_server: ServerProcess, procs: list[WorkerProcess]) -> None:
    _scripts_gone(redis_url, [redis_server.client()], procs, workers=3, calls=800, seed=4_242)


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_scripts_gone_on_the_cluster(
    cluster_url: str, redis_cluster: ClusterProcess, procs: list[WorkerProcess]
) -> None:
    nodes = [node.client() for node in redis_cluster.nodes]
    _scripts_gone(cluster_url, nodes, procs, workers=2, calls=400, seed=4_343)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SKIP_LONG
def test_scripts_gone_long(redis_url: str, redis_server: ServerProcess, procs: list[WorkerProcess]) -> None:
    _scripts_gone(redis_url, [redis_server.client()], procs, workers=4, calls=10_000, seed=4_244)


# -- 4. HITL survives everything ----------------------------------------------------------------


def _suspended(client: redis.Redis, root: str, human: str) -> bool:
    """The workflow waits on the human promise and holds nothing: its callback is registered,
    no lease, no task entry pending anywhere."""
    if client.hget(keys.promise(human), "state") != b"PENDING":
        return False
    if not client.hexists(keys.callbacks(human), root):
        return False
    if client.hexists(keys.execution(root), "o"):
        return False
    pending, length, _ = stream_totals(client, "waiters")
    return pending == 0 and length == 0


def _resolve_with_cli(url: str, promise_id: str, data: str) -> str:
    vow = Path(sys.executable).with_name("vow")
    done = subprocess.run(
        [str(vow), "promises", "resolve", promise_id, "--data", data, "--url", url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"vow promises resolve failed ({done.returncode}): {done.stdout}{done.stderr}"
    return done.stdout


def _hitl(server: ServerProcess, procs: list[WorkerProcess], rounds: int) -> None:
    url = server.url
    root, human = "wait-alice", "human-alice"
    watcher = redis.Redis.from_url(url)
    store = RedisStore(url)
    app = Scheduler(store, "waiters", serve=False)
    app.register(apps.waiter)
    gen = WorkerProcess("waiter", url)
    procs.append(gen)
    handle = app.run(root, "waiter", "alice")
    wait_until(lambda: _suspended(watcher, root, human), timeout=30, what="the workflow to suspend on the human")
    for _ in range(rounds):
        gen.kill()                                   # generation 1: kill -9 while it waits
        gen = WorkerProcess("waiter", url)           # generation 2
        procs.append(gen)
        server.kill()                                # Redis crashes while generation 2 serves...
        server.start()                               # ...and comes back from its AOF
        watcher.connection_pool.disconnect()
        wait_until(lambda: _loaded(watcher), timeout=60, what="the restarted server to load its AOF")
        wait_until(lambda: _suspended(watcher, root, human), timeout=30, what="the wait to survive the restart")
        assert gen.stop() == 0, gen.output           # generation 2: SIGTERM, a clean exit
        gen = WorkerProcess("waiter", url)           # generation 3 (the next round's generation 1)
        procs.append(gen)
        assert _suspended(watcher, root, human)
    assert not handle.done()
    assert int(watcher.get(apps.COUNT_PREFIX + "waiter-finished") or 0) == 0
    shown = _resolve_with_cli(url, human, '"yes"')
    assert "RESOLVED" in shown, shown
    assert handle.result(timeout=30) == "yes"
    # Exactly once: the count, and nothing left that could run it again.
    wait_until(lambda: stream_totals(watcher, "waiters")[:2] == (0, 0)
               and not watcher.hexists(keys.execution(root), "o"), timeout=10, what="the resume to be acked")
    assert int(watcher.get(apps.COUNT_PREFIX + "waiter-finished") or 0) == 1
    assert stream_totals(watcher, "waiters")[2] == 0
    assert f"task {root} resume" in gen.output and "-> resolved" in gen.output, gen.output
    print(f"\nhitl: {rounds} round(s) of kill -9 / restart of Redis / SIGTERM; resumed on the last generation "
          f"({gen.consumer}), finished once with 'yes'")
    watcher.close()
    store.close()


@pytest.mark.timeout(120)
def test_hitl_survives_everything(own_server: ServerProcess, procs: list[WorkerProcess]) -> None:
    _hitl(own_server, procs, rounds=1)


@pytest.mark.slow
@pytest.mark.timeout(600)
@SKIP_LONG
def test_hitl_survives_everything_long(own_server: ServerProcess, procs: list[WorkerProcess]) -> None:
    _hitl(own_server, procs, rounds=10)
