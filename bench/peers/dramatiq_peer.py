"""dramatiq with its Redis broker (and its Redis results backend for the sequential calls)."""

from __future__ import annotations

import sys

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from ..system import System
from ._common import RESULT_URL, URL, dist_version

__all__ = ["DramatiqPeer", "broker", "noop", "noop_result"]

QUEUE = "bench"
broker = RedisBroker(url=URL)
backend = RedisBackend(url=RESULT_URL)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def noop() -> None:
    return None


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def noop_result() -> None:
    return None


class DramatiqPeer(System):
    name = "dramatiq"
    notes = ("dramatiq CLI, 1 process x 8 threads (its default) each; done = message acked (gone from "
             "dramatiq:bench.msgs); sequential calls store results (RedisBackend, get_result(block=True))")

    def version(self) -> str:
        return dist_version("dramatiq")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "dramatiq", f"{__name__}", "--processes", "1", "--queues", QUEUE]

    def open(self) -> None:
        self.client = redis.Redis.from_url(URL)

    def close(self) -> None:
        self.client.close()

    def enqueue(self, n: int, tag: str) -> None:
        for _ in range(n):
            noop.send()

    def remaining(self) -> int:
        return int(self.client.hlen(f"dramatiq:{QUEUE}.msgs"))

    def call(self, i: int, tag: str) -> None:
        noop_result.send().get_result(backend=backend, block=True, timeout=30_000)
