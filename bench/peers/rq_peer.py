"""rq, with its SimpleWorker (no fork per job: rq's fastest mode)."""

from __future__ import annotations

import sys

import redis
from rq import Queue

from ..system import System
from ._common import URL, dist_version

__all__ = ["RqPeer", "noop"]


def noop() -> None:
    return None


class RqPeer(System):
    name = "rq"
    notes = ("rq worker --worker-class SimpleWorker (no fork per job) each; done = finished registry count; "
             "sequential calls job.latest_result(timeout=) (blocking stream read)")

    def version(self) -> str:
        return dist_version("rq")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "rq.cli", "worker", "--url", URL, "--worker-class", "rq.worker.SimpleWorker",
                "--logging_level", "WARNING", "bench"]

    def open(self) -> None:
        self.client = redis.Redis.from_url(URL)
        self.queue = Queue("bench", connection=self.client)
        self.expected = 0

    def close(self) -> None:
        self.client.close()

    def finished(self) -> int:
        return int(self.queue.finished_job_registry.count)

    def enqueue(self, n: int, tag: str) -> None:
        self.expected = self.finished() + n
        for _ in range(n):
            self.queue.enqueue(noop)

    def remaining(self) -> int:
        return self.expected - self.finished()

    def call(self, i: int, tag: str) -> None:
        job = self.queue.enqueue(noop)
        if job.latest_result(timeout=30) is None:
            raise TimeoutError("no rq result in 30 s")
