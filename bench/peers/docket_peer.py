"""docket (pydocket), Redis streams."""

from __future__ import annotations

import sys

import redis.asyncio as aioredis
from docket import Docket

from ..system import AsyncSystem
from ._common import CONCURRENCY, URL, dist_version

__all__ = ["DocketPeer", "tasks"]

NAME = "bench"


async def noop() -> None:
    return None


#: what ``docket worker --tasks bench.peers.docket_peer:tasks`` registers
tasks = [noop]


class DocketPeer(AsyncSystem):
    name = "docket"
    notes = (f"docket worker CLI, concurrency {CONCURRENCY} each; done = its stream and queue empty (entries "
             "XACK+XDEL'd when finished); sequential calls execution.get_result() (pub/sub)")

    def version(self) -> str:
        return dist_version("pydocket")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "docket", "worker", "--tasks", f"{__name__}:tasks", "--docket", NAME,
                "--url", URL, "--concurrency", str(CONCURRENCY)]

    async def aopen(self) -> None:
        self.docket = Docket(name=NAME, url=URL)
        await self.docket.__aenter__()
        self.docket.register(noop)
        self.client = aioredis.Redis.from_url(URL)

    async def aclose(self) -> None:
        await self.docket.__aexit__(None, None, None)
        await self.client.aclose()

    async def enqueue_one(self, i: int, tag: str) -> None:
        await self.docket.add(noop)()

    async def aremaining(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(self.docket.stream_key)
        pipe.zcard(self.docket.queue_key)
        return sum(int(x) for x in await pipe.execute())

    async def acall(self, i: int, tag: str) -> None:
        execution = await self.docket.add(noop)()
        await execution.get_result()
