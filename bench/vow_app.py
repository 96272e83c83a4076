"""The Vow application the benchmark's worker processes serve: logic group ``bench``.

Served with the CLI, ``vow worker start bench.vow_app:app --url URL --concurrency 16`` (run from
the folder that holds ``bench/``); the benchmark's producer registers the same functions on its
own ``Scheduler(store, "bench", serve=False)`` to start them by reference.

- :func:`noop`: a remote call that does nothing, so the cost measured is Vow's alone;
- :func:`three_steps`: a workflow of three durable local steps, and :func:`no_steps`, the same
  without them (the difference in Redis memory is what the three recorded steps cost);
- :func:`seed_workflow`: the seed's human-in-the-loop shape: a remote call (``send_email``) to the
  group, then a wait on a bare promise ``confirm-{key}`` that the benchmark resolves, then one
  local step, :func:`mark`, which returns the wall-clock time it ran (``time.time()``; the
  producer runs on the same machine, so the two clocks are the same clock).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

from vow import Context, CreateDurablePromiseReq, RedisStore, Scheduler

__all__ = ["GROUP", "app", "confirmation_id", "mark", "no_steps", "noop", "register", "seed_workflow", "step",
           "three_steps"]

GROUP = "bench"


def noop(ctx: Context) -> None:
    """A remote call that does nothing."""
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


def no_steps(ctx: Context) -> Generator[Any, Any, int]:
    """:func:`three_steps` without its steps: the baseline of the per-step memory figure."""
    if False:  # a generator function that yields nothing
        yield None
    return 6


def send_email(ctx: Context, key: str) -> None:
    """The seed's remote step (it sends nothing here)."""
    return None


def mark(ctx: Context) -> float:
    """The local step after the human's answer: when it ran (epoch seconds)."""
    return time.time()


def confirmation_id(key: str) -> str:
    return f"confirm-{key}"


def seed_workflow(ctx: Context, key: str) -> Generator[Any, Any, float]:
    """The seed's shape: remote call, wait for a human, one more step; returns when that step ran."""
    yield ctx.rfc(CreateDurablePromiseReq(
        promise_id=f"email-{key}", data={"func": "send_email", "args": [key], "kwargs": {}},
        tags={"resonate:invoke": f"poll://{GROUP}"},
    ))
    yield ctx.rfc(CreateDurablePromiseReq(promise_id=confirmation_id(key)))
    ran = yield ctx.lfc(mark)
    return float(ran)


def register(scheduler: Scheduler) -> Scheduler:
    for func in (noop, three_steps, no_steps, send_email, seed_workflow):
        scheduler.register(func)
    return scheduler


#: what ``vow worker start bench.vow_app:app`` serves (``--url`` overrides this store's URL)
app = register(Scheduler(RedisStore(os.environ.get("VOW_REDIS_URL", "redis://127.0.0.1:6379/0")), GROUP))
