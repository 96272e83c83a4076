"""The application the metrics tests serve with ``vow worker start tests.metrics_app:app``:
functions that succeed, fail, fail twice then succeed, and a workflow that waits on a human.

``max_deliveries=1``: a task for a function nobody registered is dead-lettered at its first
delivery, so the test's one dead letter comes without waiting for redeliveries.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from vow import Context, RedisStore, Scheduler
from vow.worker import Constant, Never, WorkerSettings

GROUP = "metrics-test"

app = Scheduler(
    RedisStore(), GROUP, settings=WorkerSettings(max_deliveries=1, concurrency=4, shutdown_grace_s=5.0)
)


@app.register
def ok(ctx: Context, i: int) -> int:
    return i


@app.register(retry_policy=Never())
def boom(ctx: Context) -> None:
    raise ValueError("boom")


@app.register(retry_policy=Constant(delay=0.01, max_retries=5))
def flaky(ctx: Context, failures: int) -> int:
    """Raises on its first ``failures`` attempts, then returns the attempt number."""
    if ctx.attempt < failures:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@app.register
def waiter(ctx: Context, name: str) -> Generator[Any, Any, Any]:
    value = yield ctx.promise(id=f"human-{name}")
    return value
