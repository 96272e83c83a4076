"""The worker process of the benchmark: serves logic group ``bench`` until SIGTERM/SIGINT.

Run as ``python -m bench.worker_app --url URL --group bench --concurrency 16`` from the repository
root. It registers :func:`noop` (a plain function) and :func:`three_steps` (a generator workflow
doing three local steps), then calls ``wait_for_ever()``. With ``--parent-pid`` it also stops by
itself when that process is gone, so a benchmark killed with SIGKILL leaves no worker behind.

With ``--raw-queue KEY`` it is instead the calibration worker of the benchmark: plain redis-py, one
thread, ``BRPOP KEY`` then one reply per job (``INCR`` of ``KEY:done``, or ``LPUSH`` to the reply
list named in the job) — three round trips per job counting the client's ``LPUSH``, the floor of
any Python job queue on Redis on this machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Generator
from typing import Any

import redis

from vow.coordinator import RedisStore
from vow.worker import Context, Scheduler

__all__ = ["main", "noop", "raw_worker", "step", "three_steps"]

#: seconds between two checks that the parent process is still alive
PARENT_POLL_S = 0.5


def noop(ctx: Context) -> None:
    """A remote call that does nothing: the cost measured is Vow's alone."""
    return None


def step(ctx: Context, i: int) -> int:
    """One local step of :func:`three_steps`."""
    return i


def three_steps(ctx: Context) -> Generator[Any, Any, int]:
    """A workflow of three durable local steps (each recorded as a child promise)."""
    a = yield ctx.lfc(step, 1)
    b = yield ctx.lfc(step, 2)
    c = yield ctx.lfc(step, 3)
    return int(a) + int(b) + int(c)


def _watch_parent(parent_pid: int) -> None:
    """SIGTERM ourselves (a graceful stop) once the benchmark process is gone."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def raw_worker(url: str, key: str) -> None:
    """The calibration worker: pop a job, answer it, forever (stopped by SIGTERM)."""
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_app", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Redis URL")
    parser.add_argument("--group", default="bench", help="logic group to serve (default: bench)")
    parser.add_argument("--concurrency", type=int, default=16, help="executor threads (default: 16)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    parser.add_argument("--raw-queue", default=None, metavar="KEY", help="be a plain redis-py calibration worker")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), name="bench-parent", daemon=True).start()
    if args.raw_queue:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raw_worker(args.url, args.raw_queue)
        return
    app = Scheduler(RedisStore(args.url), args.group, concurrency=args.concurrency)
    app.register(noop)
    app.register(three_steps)
    app.wait_for_ever()


if __name__ == "__main__":
    main()
