"""Shared fixtures: real servers started by the suite itself, fakeredis, an injectable clock.

- ``redis_server``: one standalone server for the session (from vow.server, the same code
  ``vow dev`` uses); each test that asks for ``redis_url``/``real_store`` gets an empty keyspace.
- ``redis_cluster``: a 3-master cluster for the session (started on first use, ~2 s).
- ``store``: parametrized over the real server and fakeredis (the contract suites run on both).
- ``clock``: a hand-moved clock injected into the store (time never passes by itself).

Under ``CI=true`` a missing server binary fails the run instead of skipping.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from vow.coordinator import RedisStore
from vow.coordinator.errors import ServerNotFound
from vow.server import ClusterProcess, ServerProcess, find_server_binary

#: a fixed starting time for the injected clock (2026-01-01T00:00:00Z)
CLOCK_START_MS = 1_767_225_600_000


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, start: int = CLOCK_START_MS) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def _binary() -> str:
    try:
        return find_server_binary()
    except ServerNotFound as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no server binary: {e}")
        pytest.skip(str(e))


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect cycles after every test and report, on stderr with the test's name, any socket the
    collector had to close (a Redis connection left in a reference cycle). Known open problem:
    a few multi-process and failover tests leave one (see the issue notes); reported here rather
    than failing at a random later test or at the end of the session."""
    yield
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    for w in caught:
        if issubclass(w.category, ResourceWarning):
            print(f"\nLEAK {request.node.nodeid}: {w.message}", file=sys.stderr)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    server = ServerProcess(binary=_binary())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: ServerProcess) -> Iterator[str]:
    client = redis_server.client()
    client.flushall()
    client.script_flush()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterProcess]:
    cluster = ClusterProcess(binary=_binary())
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: ClusterProcess) -> Iterator[str]:
    for node in redis_cluster.nodes:
        client = node.client()
        client.flushall()
        client.close()
    yield redis_cluster.url


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_store(backend: str, request: pytest.FixtureRequest, clock: Clock | None) -> RedisStore:
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        return RedisStore(url, clock=clock)
    if backend == "cluster":
        url = request.getfixturevalue("cluster_url")
        return RedisStore(url, clock=clock)
    import fakeredis

    return RedisStore(client=fakeredis.FakeRedis(), shebang=False, clock=clock)


@pytest.fixture(params=["redis", "fakeredis"])
def store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[RedisStore]:
    """A store with an injected clock, on the real server and on fakeredis."""
    s = make_store(request.param, request, clock)
    yield s
    s.close()


@pytest.fixture
def real_store(redis_url: str) -> Iterator[RedisStore]:
    """A store on the real server using the server's own clock."""
    s = RedisStore(redis_url)
    yield s
    s.close()


@pytest.fixture
def raw_client(redis_url: str) -> Iterator[redis.Redis]:
    client: Any = redis.Redis.from_url(redis_url)
    yield client
    client.close()
