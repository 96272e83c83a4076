"""The calibration floor: a plain redis-py job queue, the least any Python queue on Redis can do.

Each of the worker processes (``python -m bench.floor --url URL --queue KEY``) runs one thread:
``BRPOP KEY``, then one reply per job (``INCR KEY:done``, or ``LPUSH`` to the reply list named in
the job). With the producer's ``LPUSH`` that is three round trips per job and nothing recorded:
the floor of this machine, measured in the same run as the systems.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import redis

from .redisstats import named_url
from .system import System

__all__ = ["FloorSystem", "main", "worker"]

QUEUE = "bench:floor"


def worker(url: str, key: str) -> None:
    """Pop a job, answer it, until SIGTERM."""
    client = redis.Redis.from_url(url)
    done = f"{key}:done"
    while True:
        item = client.brpop([key], timeout=1)
        if item is None:
            continue
        reply = item[1]
        if reply:
            client.lpush(reply, b"1")
        else:
            client.incr(done)


class FloorSystem(System):
    name = "floor"
    notes = "plain redis-py: LPUSH, 2 x one-thread BRPOP + reply; nothing recorded"

    def worker_command(self, index: int) -> list[str]:
        url = named_url(self.settings.url, f"bench-floor-{index + 1}")
        return [sys.executable, "-m", f"{__package__}.floor", "--url", url, "--queue", QUEUE]

    def open(self) -> None:
        self.client = redis.Redis.from_url(named_url(self.settings.url, "bench-client"))
        self.expected = 0
        self.reply = f"{QUEUE}:reply:{os.getpid()}".encode()

    def close(self) -> None:
        self.client.close()

    def enqueue(self, n: int, tag: str) -> None:
        self.expected = int(self.client.get(f"{QUEUE}:done") or 0) + n
        for _ in range(n):
            self.client.lpush(QUEUE, b"")

    def remaining(self) -> int:
        return self.expected - int(self.client.get(f"{QUEUE}:done") or 0)

    def call(self, i: int, tag: str) -> None:
        self.client.lpush(QUEUE, self.reply)
        if self.client.brpop([self.reply], timeout=30) is None:
            raise TimeoutError("no reply in 30 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        worker(args.url, args.queue)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
