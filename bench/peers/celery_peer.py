"""celery, pool solo, Redis broker (db 0) and Redis result backend (db 1)."""

from __future__ import annotations

import sys

import redis
from celery import Celery

from ..system import System
from ._common import RESULT_URL, URL, dist_version

__all__ = ["CeleryPeer", "app"]

app = Celery("bench", broker=URL, backend=RESULT_URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                task_default_queue="bench")


@app.task(name="noop")
def noop() -> None:
    return None


class CeleryPeer(System):
    name = "celery"
    notes = ("celery worker --pool solo each; done = result stored (Redis backend, counted in its db); "
             "sequential calls AsyncResult.get()")

    def version(self) -> str:
        return dist_version("celery")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", f"{__name__}:app", "worker", "--pool", "solo",
                "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"bench{index}@%h", "-Q", "bench"]

    def open(self) -> None:
        self.results = redis.Redis.from_url(RESULT_URL)
        self.expected = 0

    def close(self) -> None:
        self.results.close()

    def enqueue(self, n: int, tag: str) -> None:
        self.expected = int(self.results.dbsize()) + n
        for _ in range(n):
            noop.delay()

    def remaining(self) -> int:
        return self.expected - int(self.results.dbsize())

    def call(self, i: int, tag: str) -> None:
        noop.delay().get(timeout=30)
