"""Applications the worker tests run in real worker processes.

``python -m tests.apps APP --url URL [--group G] [--lease-ms N] ...`` builds the named app's
Scheduler, prints ``ready <consumer>`` once it serves, and serves until SIGTERM/SIGINT.

Side effects are counted in Redis (``test:count:<name>`` keys) so tests can prove how many times
a step really ran, across processes and crashes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import redis

from vow.coordinator import RedisStore
from vow.worker import Context, CreateDurablePromiseReq, Scheduler, WorkerSettings

COUNT_PREFIX = "test:count:"


def counter(ctx: Context) -> redis.Redis:
    return ctx.get_dependency("counter")  # type: ignore[no-any-return]


def bump(ctx: Context, name: str) -> int:
    return int(counter(ctx).incr(COUNT_PREFIX + name))


# -- the seed story ------------------------------------------------------------------------------


def send_email(ctx: Context, email: str) -> None:
    bump(ctx, f"send_email:{email}")
    print(f"Email sent to {email}", flush=True)


def step3(ctx: Context) -> None:
    bump(ctx, "step3")
    print("Next step in the process", flush=True)


def workflow(ctx: Context, email: str) -> Generator[Any, Any, str]:
    yield ctx.rfc(
        CreateDurablePromiseReq(
            promise_id=f"send-confirmation-email-{email}",
            data={"func": "send_email", "args": [email], "kwargs": {}},
            headers=None,
            tags={"resonate:invoke": "poll://email-service"},
        )
    )
    print(f"Email sent to {email}", flush=True)
    confirmation = yield ctx.rfc(CreateDurablePromiseReq(promise_id=f"email-confirmed-{email}"))
    print(f"Email address {email} confirmed: {confirmation}", flush=True)
    yield ctx.lfc(step3)
    bump(ctx, f"workflow-finished:{email}")
    return f"confirmed={confirmation}"


# -- crash and fencing scenarios -----------------------------------------------------------------


def slow_step(ctx: Context, name: str, seconds: float) -> str:
    """Counts its start; sleeps in small slices (so SIGSTOP/kill land mid-step)."""
    bump(ctx, f"slow-start:{name}")
    # Simulated work in slices, so a SIGSTOP or kill -9 lands in the middle of the step.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        threading.Event().wait(0.01)
    bump(ctx, f"slow-end:{name}")
    return name


def crash_workflow(ctx: Context, name: str, seconds: float) -> Generator[Any, Any, str]:
    first = yield ctx.lfc(slow_step, name, seconds)
    bump(ctx, f"after-slow:{name}")
    return f"{first}-done"


def waiter(ctx: Context, name: str) -> Generator[Any, Any, Any]:
    value = yield ctx.promise(id=f"human-{name}")
    bump(ctx, "waiter-finished")
    return value


def work(ctx: Context, i: int, seconds: float) -> int:
    bump(ctx, f"work:{ctx.id}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        threading.Event().wait(0.005)
    return i


def chaos_flow(ctx: Context, i: int) -> Generator[Any, Any, int]:
    a = yield ctx.lfc(work, i, 0.05)
    b = yield ctx.rfc("work", i, 0.05)
    yield ctx.sleep(0.05)
    c = yield ctx.lfc(work, i, 0.05)
    return int(a + b + c)


# -- soak (tests/test_soak.py) -------------------------------------------------------------------


def noop(ctx: Context, i: int) -> int:
    return i


def three_steps(ctx: Context, i: int) -> Generator[Any, Any, int]:
    a = yield ctx.lfc(noop, i)
    b = yield ctx.lfc(noop, a + 1)
    c = yield ctx.lfc(noop, b + 1)
    return int(c)


# -- schedules (tests/test_schedules.py) ---------------------------------------------------------


def scheduled_tick(ctx: Context) -> dict[str, Any]:
    """Run by each tick of a schedule: counts its run per promise (``tick:<promise id>``) and tells
    which process ran it and what that process's own clock said."""
    bump(ctx, f"tick:{ctx.id}")
    return {"pid": os.getpid(), "local_ms": int(time.time() * 1000)}


def skew_clock(seconds: float) -> None:
    """Move this process's ``time.time`` by ``seconds`` (a machine whose clock is off)."""
    real = time.time
    time.time = lambda: real() + seconds
    print(f"clock skew {seconds:+g}s", flush=True)


APPS: dict[str, tuple[str, list[Callable[..., Any]]]] = {
    "email": ("email-service", [send_email]),
    "workflow": ("workflow-service", [workflow, step3]),
    "crash": ("crash", [crash_workflow, slow_step]),
    "waiter": ("waiters", [waiter]),
    "chaos": ("chaos", [chaos_flow, work]),
    "ticks": ("ticks", [scheduled_tick]),
    "soak": ("soak", [noop, three_steps]),
}


def build(
    app: str, url: str, settings: WorkerSettings, group: str | None = None, retention: str | None = None
) -> Scheduler:
    default_group, functions = APPS[app]
    store = RedisStore(url=url) if retention is None else RedisStore(url=url, retention=retention)
    scheduler = Scheduler(store, logic_group=group or default_group, settings=settings, serve=False)
    scheduler.set_dependency("counter", RedisStore(url=url).client)  # a cluster client on a cluster
    for func in functions:
        scheduler.register(func)
    return scheduler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--group")
    parser.add_argument("--lease-ms", type=int, default=1000)
    parser.add_argument("--heartbeat-ms", type=int, default=200)
    parser.add_argument("--reclaim-ms", type=int, default=200)
    parser.add_argument("--sweep-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--orphan-ms", type=int, help="default: twice the lease")
    parser.add_argument("--clock-skew-s", type=float, default=0.0, help="move this process's time.time")
    parser.add_argument("--retention", help="the store's retention (e.g. 1s, forever)")
    parser.add_argument("--consumer-idle-ms", type=int, default=3_600_000)
    parser.add_argument("--quiet", action="store_true", help="log warnings only (no line per task)")
    args = parser.parse_args(argv)
    if args.clock_skew_s:
        skew_clock(args.clock_skew_s)  # before anything reads the clock
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stdout, format="%(relativeCreated)d %(name)s %(message)s")
    settings = WorkerSettings(
        concurrency=args.concurrency, lease_ms=args.lease_ms, heartbeat_ms=args.heartbeat_ms,
        reclaim_ms=args.reclaim_ms, sweep_ms=args.sweep_ms, max_deliveries=args.max_deliveries,
        shutdown_grace_s=args.grace, orphan_ms=args.orphan_ms or 2 * args.lease_ms,
        consumer_idle_ms=args.consumer_idle_ms,
    )
    scheduler = build(args.app, args.url, settings, args.group, args.retention)
    scheduler.wait_for_ever(ready=lambda worker: print(f"ready {worker.consumer}", flush=True))
    print("stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
