"""Network faults between every client and Redis: no remote call is lost, whatever reply goes missing.

Three worker processes (``python -m tests.apps chaos``) and a producer in the test process reach the
suite's real server only through a seeded :class:`tests.faultproxy.FaultProxy`. While the producer
creates remote calls (``rpc`` of ``work``, each create retried with the same id after a ``VowError``:
``rpc`` is idempotent on its id), the proxy drops a reply, resets or black-holes one connection every
150 ms. Once the faults stop, every call must end RESOLVED with its own value (read through a direct
client, not the proxy), with nothing dead-lettered, no stream entry left pending, and its function run
at least once (at-least-once: more is allowed and reported).

This is the test of commit e395d1c. Before it, a claim whose reply was lost was resent by redis-py,
found the lease its own first run had just taken and answered ``busy``; the worker acknowledged the
entry and nobody ever ran the task: the promise stayed PENDING with empty streams. Since then every
script recognises its own resend (a request id per call) and the orphan sweep re-queues an execution
whose lease lapsed with nobody claiming it again. On the code before the fix this test fails with
promises stuck PENDING.

The bounded run is part of ``make test``; ``make chaos`` (``VOW_CHAOS_LONG=1``) runs the full-size one
(1,000 calls plus 1,000 three-step workflows). ``VOW_FAULT_SEED`` replays a schedule's kinds (timing
still varies). Run pytest with ``-s`` to see each run's figures.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import msgpack
import pytest
import redis

from tests import apps
from tests.faultproxy import FaultProxy, _Link
from tests.harness import WorkerProcess, wait_until
from vow import VowError
from vow.coordinator import RedisStore, keys
from vow.worker import Scheduler
from vow.worker.codec import outcome_of

LONG = os.environ.get("VOW_CHAOS_LONG") == "1"
SEED = int(os.environ.get("VOW_FAULT_SEED", "20260417"))
GROUP = "chaos"
WORKERS = 3
FLAGS = ("--lease-ms", "800", "--heartbeat-ms", "200", "--reclaim-ms", "150", "--sweep-ms", "50",
         "--orphan-ms", "1600", "--max-deliveries", "50")
#: a fault every FAULT_INTERVAL_S on one random healthy connection; a black hole lasts BLACK_HOLE_S
FAULT_INTERVAL_S = 0.15
BLACK_HOLE_S = 0.3
#: attempts at one create before the producer gives up (each is itself up to 3 sends by redis-py)
CREATE_ATTEMPTS = 50
#: worker log lines that show a recovery path being taken, counted in the report
RECOVERY_LINES = ("re-queued", "interrupted", "lease of", "failed:", "lost lease", "busy elsewhere")


class CountingProxy(FaultProxy):
    """The suite's fault proxy, also counting the replies it really discarded: an armed ``drop_reply``
    whose link then carried a reply, i.e. a command that ran on the server while its sender never
    heard back. (``counts["drop_reply"]`` counts links armed, some of which were never used again.)"""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int | None = None) -> None:
        super().__init__(upstream_host, upstream_port, seed=seed)
        self.replies_dropped = 0

    def _pump(self, link: _Link, side: str) -> None:
        armed = side == "upstream" and link.drop_next_reply and not link.closed
        super()._pump(link, side)
        if armed and link.closed:
            self.replies_dropped += 1  # the loop thread is the only writer


@dataclass
class Produced:
    """What the producer created (promise id -> expected value) and the errors it retried."""

    expected: dict[str, int] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    most_attempts: int = 1
    seconds: float = 0.0


@pytest.fixture
def proxy(redis_url: str) -> Iterator[CountingProxy]:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    p = CountingProxy(parts.hostname, parts.port, seed=SEED)
    p.start()
    yield p
    p.stop()


@pytest.fixture
def pool(proxy: CountingProxy) -> Iterator[list[WorkerProcess]]:
    """Worker processes, stopped before the proxy goes (so they stop over a healthy network)."""
    workers: list[WorkerProcess] = []
    yield workers
    proxy.stop_schedule()
    for w in workers:
        w.stop()


def _create(start: Callable[[], object], produced: Produced, deadline: float) -> None:
    """One create, retried with the same id after a connection error (idempotent on the id)."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            start()
        except VowError as e:
            produced.failures[type(e).__name__] += 1
            if time.monotonic() > deadline:
                raise
            continue
        produced.most_attempts = max(produced.most_attempts, attempt)
        return
    raise AssertionError(f"a create failed {CREATE_ATTEMPTS} times in a row")


def _produce(url: str, calls: int, flows: int, rate: float) -> Produced:
    """Create ``calls`` remote calls and ``flows`` workflows through ``url``, ``rate`` creates a second."""
    app = Scheduler(RedisStore(url), logic_group=GROUP, serve=False)
    app.register(apps.chaos_flow)
    app.register(apps.work)
    produced = Produced()
    starts: list[tuple[str, int, Callable[[], object]]] = []
    for i in range(max(calls, flows)):
        if i < calls:
            starts.append((f"call-{i}", i, partial(app.rpc, f"call-{i}", "work", i, 0, target=GROUP)))
        if i < flows:
            starts.append((f"flow-{i}", 3 * i, partial(app.run, f"flow-{i}", apps.chaos_flow, i)))
    pace = threading.Event()
    t0 = time.monotonic()
    deadline = t0 + len(starts) / rate + 60
    for n, (promise_id, value, start) in enumerate(starts):
        pace.wait(max(0.0, t0 + n / rate - time.monotonic()))  # the producer's pace, not synchronisation
        _create(start, produced, deadline)
        produced.expected[promise_id] = value
    produced.seconds = time.monotonic() - t0
    app.store.close()
    return produced


def _states(client: redis.Redis, ids: list[str]) -> dict[str, str]:
    pipe = client.pipeline(transaction=False)
    for promise_id in ids:
        pipe.hget(keys.promise(promise_id), "state")
    return {i: (s or b"MISSING").decode() for i, s in zip(ids, pipe.execute(), strict=True)}


def _unfinished(client: redis.Redis, ids: list[str]) -> list[str]:
    return [i for i, state in _states(client, ids).items() if state != "RESOLVED"]


def _entries_of(client: redis.Redis, stream: str, promise_id: str) -> list[str]:
    """The stream entries whose task drives ``promise_id``, with their pending-list state."""
    found = []
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
    for entry_id, fields in entries:
        try:
            message = msgpack.unpackb(fields[b"m"])
        except (KeyError, ValueError, msgpack.ExtraData):
            continue
        if isinstance(message, dict) and message.get("id") == promise_id:
            pel = client.xpending_range(stream, GROUP, entry_id, entry_id, 1)
            found.append(f"{entry_id.decode()} {message} pending={pel}")
    return found


def _diagnose(client: redis.Redis, proxy: CountingProxy, produced: Produced, stuck: list[str],
              pool: list[WorkerProcess]) -> str:
    """A stuck run: the seed, the faults, and each stuck promise's execution record and streams."""
    lines = [f"{len(stuck)} of {len(produced.expected)} promises not RESOLVED; seed={proxy.seed} "
             f"faults={dict(proxy.counts)} replies dropped={proxy.replies_dropped} "
             f"producer failures={dict(produced.failures)}"]
    states = _states(client, stuck)
    for promise_id in stuck[:25]:
        p = keys.partition_of(promise_id)
        stream = keys.task_stream(p, GROUP)
        lines.append(
            f"{promise_id}: state={states[promise_id]} x={client.hgetall(keys.execution(promise_id))} "
            f"lease={client.zscore(keys.leases(p), promise_id)} "
            f"{_steps(client, promise_id)} entries={_entries_of(client, stream, promise_id)}"
        )
    for p in range(keys.PARTITIONS):
        stream = keys.task_stream(p, GROUP)
        lines.append(f"partition {p}: len={client.xlen(stream)} pending={client.xpending(stream, GROUP)} "
                     f"dead={client.xlen(keys.dead_letters(p, GROUP))}")
    for w in pool:
        lines.append(f"worker {w.consumer} recovery lines: {_recovery(w)}")
    return "\n".join(lines)


def _steps(client: redis.Redis, promise_id: str) -> str:
    """A call's run count; for a workflow, each step's state and run count (steps 1, 2, 4 run ``work``)."""
    if not promise_id.startswith("flow-"):
        return f"runs={client.get(f'{apps.COUNT_PREFIX}work:{promise_id}')!r}"
    children = [f"{promise_id}.{n}" for n in range(1, 5)]
    states = _states(client, children)
    runs = {c: client.get(f"{apps.COUNT_PREFIX}work:{c}") for c in children}
    return "steps=" + ", ".join(f"{c} {states[c]} runs={runs[c]!r}" for c in children)


def _recovery(worker: WorkerProcess) -> dict[str, int]:
    counts = {text: worker.output.count(text) for text in RECOVERY_LINES}
    return {text: n for text, n in counts.items() if n}


def _runs(client: redis.Redis, produced: Produced) -> list[int]:
    """How many times each call's ``work`` ran (a workflow's three steps count as three calls)."""
    names: list[str] = []
    for promise_id in produced.expected:
        steps = (".1", ".2", ".4") if promise_id.startswith("flow-") else ("",)
        names.extend(f"{apps.COUNT_PREFIX}work:{promise_id}{step}" for step in steps)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.get(name)
    return [int(v or 0) for v in pipe.execute()]


def _network_faults(redis_url: str, proxy: CountingProxy, pool: list[WorkerProcess], *, calls: int, flows: int,
                    rate: float, tail_s: float, finish_s: float) -> None:
    started = time.monotonic()
    direct = RedisStore(redis_url)
    client: redis.Redis = direct.client
    pool.extend(WorkerProcess("chaos", proxy.url, *FLAGS) for _ in range(WORKERS))

    proxy.run_schedule(interval_s=FAULT_INTERVAL_S, kinds=("drop_reply", "reset", "black_hole"),
                       black_hole_s=BLACK_HOLE_S)
    produced = _produce(proxy.url, calls, flows, rate)
    threading.Event().wait(tail_s)  # the schedule's length: faults go on while the last calls run
    proxy.stop_schedule()
    faulted = time.monotonic()

    ids = list(produced.expected)
    try:
        wait_until(lambda: not _unfinished(client, ids), timeout=finish_s, interval=0.1,
                   what="every promise to be RESOLVED")
    except AssertionError:
        raise AssertionError(_diagnose(client, proxy, produced, _unfinished(client, ids), pool)) from None
    finished = time.monotonic()

    values = {i: outcome_of(direct.get(i)) for i in ids}
    wrong = {i: v for i, v in values.items() if v != (True, produced.expected[i])}
    assert not wrong, f"completed with another value (seed={proxy.seed}): {dict(list(wrong.items())[:20])}"
    dead = {p: client.xlen(keys.dead_letters(p, GROUP)) for p in range(keys.PARTITIONS)}
    assert not any(dead.values()), f"dead-lettered (seed={proxy.seed}): {dead}"
    wait_until(lambda: all(int(client.xpending(keys.task_stream(p, GROUP), GROUP)["pending"]) == 0
                           for p in range(keys.PARTITIONS)), timeout=20, what="every task to be acknowledged")
    runs = _runs(client, produced)
    assert min(runs) >= 1, f"{runs.count(0)} calls never ran (seed={proxy.seed})"

    counts = proxy.counts
    recovery: Counter[str] = Counter()
    for w in pool:
        recovery.update(_recovery(w))
    print(f"\nnetwork faults: seed={proxy.seed} {len(ids)} promises ({calls} calls, {flows} workflows) "
          f"created in {produced.seconds:.1f}s; faults {dict(counts)} over {faulted - started:.1f}s, "
          f"{proxy.replies_dropped} replies dropped in flight; producer retried {sum(produced.failures.values())} "
          f"creates {dict(produced.failures)} (at most {produced.most_attempts} attempts); all RESOLVED "
          f"{finished - faulted:.1f}s after the faults stopped; {sum(r > 1 for r in runs)} of {len(runs)} "
          f"calls ran more than once (max {max(runs)}); worker recovery lines {dict(recovery)}; "
          f"total {time.monotonic() - started:.1f}s")
    # The faults must have hit a running system, not only idle connections.
    assert counts["drop_reply"] >= 10 and counts["reset"] >= 5 and counts["black_hole"] >= 5, dict(counts)
    assert proxy.replies_dropped >= 5, f"only {proxy.replies_dropped} replies were dropped in flight"
    direct.close()


@pytest.mark.timeout(180)
def test_no_remote_call_is_lost_to_network_faults(redis_url: str, proxy: CountingProxy,
                                                  pool: list[WorkerProcess]) -> None:
    _network_faults(redis_url, proxy, pool, calls=800, flows=0, rate=80, tail_s=2.0, finish_s=60)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not LONG, reason="long network-fault runs with make chaos (VOW_CHAOS_LONG=1)")
def test_no_call_or_workflow_is_lost_to_network_faults_long(redis_url: str, proxy: CountingProxy,
                                                            pool: list[WorkerProcess]) -> None:
    _network_faults(redis_url, proxy, pool, calls=1000, flows=1000, rate=80, tail_s=5.0, finish_s=240)
