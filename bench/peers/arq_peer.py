"""arq (asyncio, Redis)."""

from __future__ import annotations

import sys
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import ResultNotFound

from ..system import AsyncSystem
from ._common import URL, dist_version

__all__ = ["ArqPeer", "WorkerSettings"]

#: seconds between two polls of the queue by a worker, and of a result by the producer (arq's
#: default for both is 0.5 s)
POLL_DELAY_S = 0.001
QUEUE = "arq:queue"


async def noop(ctx: Any) -> None:
    return None


class WorkerSettings:
    """What ``arq bench.peers.arq_peer.WorkerSettings`` runs."""

    functions = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
    poll_delay = POLL_DELAY_S
    max_jobs = 10


class ArqPeer(AsyncSystem):
    name = "arq"
    notes = (f"arq CLI, max_jobs 10 (its default), poll_delay {POLL_DELAY_S} s (default 0.5); done = its queue "
             f"empty (a job leaves it when finished); sequential calls job.result(poll_delay={POLL_DELAY_S}), "
             "re-read once when it races with the job's end (arq 0.25 reads result and queue apart)")

    def version(self) -> str:
        return dist_version("arq")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "arq", f"{__name__}.WorkerSettings"]

    async def aopen(self) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(URL))

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def enqueue_one(self, i: int, tag: str) -> None:
        await self.pool.enqueue_job("noop")

    async def aremaining(self) -> int:
        return int(await self.pool.zcard(QUEUE))

    async def acall(self, i: int, tag: str) -> None:
        job = await self.pool.enqueue_job("noop")
        assert job is not None
        try:
            await job.result(timeout=30, poll_delay=POLL_DELAY_S)
        except ResultNotFound:
            # arq 0.25's result() reads the result, then the queue, in two commands: a job that
            # finishes in between is "not found"; its result is there by then
            if await job.result_info() is None:
                raise
