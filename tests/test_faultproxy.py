"""The fault proxy against the suite's real server: each fault as the client and the server see it.

Clients go through the proxy with redis-py's retries off (``Retry(NoBackoff(), 0)``) so that every
fault reaches the test; the server's side is checked with a direct client (``raw_client``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from tests.faultproxy import DEFAULT_SCHEDULE_KINDS, FaultProxy
from tests.harness import wait_until

FAULTS = (RedisConnectionError, RedisTimeoutError)
#: the schedule test's seed: its first 10 kinds include all three default kinds (asserted below)
SEED = 20260101


@pytest.fixture
def upstream(redis_url: str) -> tuple[str, int]:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def proxy(upstream: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(*upstream, seed=SEED) as p:
        yield p
    assert p.alive_threads() == []


def _client(proxy: FaultProxy, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[redis.Redis]:
    c = _client(proxy)
    yield c
    c.close()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="faultproxy-test") as pool:
        yield pool


def _blocked_in_blpop(direct: redis.Redis) -> bool:
    return any(c.get("cmd") == "blpop" and "b" in c.get("flags", "") for c in direct.client_list())


def _blpop_in_flight(executor: ThreadPoolExecutor, client: redis.Redis, direct: redis.Redis,
                     timeout: int = 10) -> Future[object]:
    """Start a BLPOP through the proxy and return once the server holds it blocked."""
    future: Future[object] = executor.submit(client.blpop, ["q"], timeout)
    wait_until(lambda: _blocked_in_blpop(direct) or future.done(), timeout=5, what="BLPOP blocked on the server")
    assert not future.done(), future.exception()
    return future


def test_pass_through_forwards_commands_pipelines_and_blocking_pops(
    proxy: FaultProxy, client: redis.Redis, raw_client: redis.Redis, executor: ThreadPoolExecutor
) -> None:
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    pipe = client.pipeline(transaction=True)
    pipe.incr("n")
    pipe.incr("n")
    pipe.get("n")
    assert pipe.execute() == [1, 2, b"2"]
    assert raw_client.get("n") == b"2"
    # a reply larger than one recv chunk arrives whole
    big = b"x" * 300_000
    client.set("big", big)
    assert client.get("big") == big

    popped = _blpop_in_flight(executor, client, raw_client)
    raw_client.rpush("q", "job")
    assert popped.result(timeout=5) == (b"q", b"job")
    assert proxy.events == [] and proxy.counts == Counter()
    assert proxy.connections() == [1]


def test_drop_reply_runs_the_command_but_the_client_never_sees_the_reply(
    proxy: FaultProxy, client: redis.Redis, raw_client: redis.Redis
) -> None:
    client.ping()
    conn = proxy.drop_reply()
    started = time.monotonic()
    with pytest.raises(FAULTS):
        client.incr("n")
    assert time.monotonic() - started < 1.5
    assert raw_client.get("n") == b"1"  # it ran, exactly once
    assert [(e.kind, e.conn) for e in proxy.events] == [("drop_reply", conn)]
    assert conn not in proxy.connections()  # the link closed as the reply was dropped
    # a new connection carries on from the server's real state
    assert client.incr("n") == 2
    assert proxy.connections() == [conn + 1]
    assert raw_client.get("n") == b"2"


def test_reset_fails_a_command_in_flight_promptly(
    proxy: FaultProxy, client: redis.Redis, raw_client: redis.Redis, executor: ThreadPoolExecutor
) -> None:
    popped = _blpop_in_flight(executor, client, raw_client)
    started = time.monotonic()
    conn = proxy.reset()
    assert isinstance(popped.exception(timeout=5), RedisConnectionError)
    assert time.monotonic() - started < 1.5  # the RST, not the BLPOP's 10 s timeout
    assert proxy.counts == Counter({"reset": 1})
    assert conn not in proxy.connections()
    assert client.ping() is True  # through a new connection


def test_reset_is_an_rst_for_the_client(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(100) == b"+PONG\r\n"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            raw.recv(100)


def test_black_hole_times_out_and_only_a_new_connection_works_afterwards(
    proxy: FaultProxy, raw_client: redis.Redis
) -> None:
    client = _client(proxy, timeout=0.3)
    try:
        client.ping()
        conn = proxy.black_hole(1.0)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            client.set("k", "v")
        assert 0.25 < time.monotonic() - started < 1.0  # the client's socket_timeout, well inside the hole
        assert raw_client.get("k") is None  # the command never reached the server
        # once the hole ends the link is reset, never resumed
        wait_until(lambda: conn not in proxy.connections(), timeout=3, what="black-holed link reset")
        assert client.set("k", "v") is True
        assert proxy.connections() == [conn + 1]
    finally:
        client.close()


def test_black_hole_holds_bytes_then_resets_the_same_connection(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(100) == b"+PONG\r\n"
        proxy.black_hole(0.4)
        raw.sendall(b"PING\r\n")
        raw.settimeout(0.2)
        with pytest.raises(TimeoutError):
            raw.recv(100)  # nothing comes back while the hole lasts
        raw.settimeout(3)
        with pytest.raises(ConnectionResetError):
            raw.recv(100)  # and the held PING is never answered: the connection is reset


def test_partition_silences_current_and_new_connections_until_healed(
    proxy: FaultProxy, raw_client: redis.Redis
) -> None:
    before, during = _client(proxy, timeout=0.3), _client(proxy, timeout=0.3)
    try:
        before.ping()
        proxy.set_mode("blackhole")
        assert [e.kind for e in proxy.events] == ["partition"]
        with pytest.raises(RedisTimeoutError):
            before.set("k", "v")
        with pytest.raises(RedisTimeoutError):
            during.ping()  # a connection made during the partition is accepted but held too
        proxy.heal()
        assert proxy.connections() == []  # everything that lived through it was reset
        assert before.set("k", "v") is True and during.get("k") == b"v"
        assert [e.kind for e in proxy.events] == ["partition", "heal"] and proxy.mode == "pass"

        proxy.partition(0.3)
        wait_until(lambda: proxy.mode == "pass", timeout=3, what="the partition to heal itself")
        assert before.get("k") == b"v"
    finally:
        before.close()
        during.close()


def test_explicit_faults_name_an_open_connection(proxy: FaultProxy, client: redis.Redis) -> None:
    with pytest.raises(LookupError):
        proxy.reset()  # nothing open yet
    client.ping()
    with pytest.raises(LookupError):
        proxy.drop_reply(conn=99)
    with pytest.raises(ValueError):
        proxy.apply("explode")
    assert proxy.apply("pass") == 1
    assert client.ping() is True
    assert proxy.counts == Counter({"pass": 1})


def test_upstream_must_be_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("192.0.2.1", 6379)


def test_seed_fixes_the_planned_kinds_and_is_kept_when_chosen(upstream: tuple[str, int]) -> None:
    assert FaultProxy(*upstream, seed=7).plan(40) == FaultProxy(*upstream, seed=7).plan(40)
    assert FaultProxy(*upstream, seed=7).plan(40) != FaultProxy(*upstream, seed=8).plan(40)
    chosen = FaultProxy(*upstream)
    assert isinstance(chosen.seed, int)
    assert FaultProxy(*upstream, seed=chosen.seed).plan(40) == chosen.plan(40)


def _load(client: redis.Redis, stop: threading.Event) -> tuple[int, int]:
    """INCR until told to stop; every fault must surface as a connection error or a timeout."""
    ok = failed = 0
    while not stop.is_set():
        try:
            assert isinstance(client.incr("n"), int)  # a desynchronised stream would hand back the wrong reply
            ok += 1
        except FAULTS:
            failed += 1
    return ok, failed


def _scheduled_run(upstream: tuple[str, int], direct: redis.Redis, executor: ThreadPoolExecutor,
                   faults: int) -> list[str]:
    """Run the seeded schedule under load until ``faults`` faults were applied; return their kinds."""
    direct.delete("n")
    stop = threading.Event()
    with FaultProxy(*upstream, seed=SEED) as proxy:
        clients = [_client(proxy, timeout=0.3) for _ in range(2)]
        try:
            loads = [executor.submit(_load, c, stop) for c in clients]
            proxy.run_schedule(interval_s=0.05, black_hole_s=0.2)
            wait_until(lambda: len(proxy.events) >= faults or any(f.done() for f in loads), timeout=30,
                       what=f"{faults} scheduled faults")
            proxy.stop_schedule()
            stop.set()
            results = [f.result(timeout=5) for f in loads]
        finally:
            stop.set()
            for c in clients:
                c.close()
        events = proxy.events
    kinds = [e.kind for e in events]
    assert kinds == proxy.plan(len(kinds))
    assert proxy.counts == Counter(kinds)
    assert all(e.conn >= 1 for e in events)
    # every acknowledged INCR happened; a failed one may or may not have (drop_reply: it did)
    ok, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    assert failed > 0
    assert ok <= int(direct.get("n") or 0) <= ok + failed
    return kinds


def test_seeded_schedule_applies_faults_and_replays_the_same_kinds(
    upstream: tuple[str, int], raw_client: redis.Redis, executor: ThreadPoolExecutor
) -> None:
    first = _scheduled_run(upstream, raw_client, executor, faults=10)
    second = _scheduled_run(upstream, raw_client, executor, faults=10)
    assert len(first) >= 10 and len(second) >= 10
    assert first[:10] == second[:10] == FaultProxy(*upstream, seed=SEED).plan(10)
    assert set(first[:10]) == set(DEFAULT_SCHEDULE_KINDS)


def test_schedule_ends_by_itself_on_duration_or_stop_event(proxy: FaultProxy) -> None:
    proxy.run_schedule(interval_s=0.02, duration_s=0.2)
    wait_until(lambda: len(proxy.alive_threads()) == 1, timeout=3, what="the schedule to end on its duration")
    stop = threading.Event()
    proxy.run_schedule(interval_s=0.02, stop_event=stop)
    assert len(proxy.alive_threads()) == 2
    stop.set()
    wait_until(lambda: len(proxy.alive_threads()) == 1, timeout=3, what="the schedule to end on its stop event")
    assert proxy.events == []  # no connection was open, so nothing was applied (and nothing drawn)


def test_stop_closes_everything_and_ends_its_threads_promptly(
    upstream: tuple[str, int], raw_client: redis.Redis, executor: ThreadPoolExecutor
) -> None:
    proxy = FaultProxy(*upstream, seed=SEED).start()
    blocked, holed = _client(proxy), _client(proxy)
    try:
        popped = _blpop_in_flight(executor, blocked, raw_client)
        holed.ping()
        proxy.black_hole(30.0)  # the newest link: ``holed``'s
        proxy.run_schedule(interval_s=10.0)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 3.0
        assert proxy.alive_threads() == []
        assert not [t for t in threading.enumerate() if t.name.startswith(f"faultproxy-{proxy.port}")]
        assert isinstance(popped.exception(timeout=5), RedisConnectionError)
        with pytest.raises(RuntimeError):
            proxy.connections()
        proxy.stop()  # idempotent
    finally:
        blocked.close()
        holed.close()
        proxy.stop()
