"""streaq (Redis streams)."""

from __future__ import annotations

import asyncio
import sys

from streaq import Worker

from ..system import AsyncSystem
from ._common import CONCURRENCY, URL, dist_version

__all__ = ["StreaqPeer", "worker"]

#: what ``streaq bench.peers.streaq_peer:worker`` runs
worker = Worker(redis_url=URL, queue_name="bench", concurrency=CONCURRENCY)


@worker.task
async def noop() -> None:
    return None


class StreaqPeer(AsyncSystem):
    name = "streaq"
    notes = (f"streaq CLI, concurrency {CONCURRENCY} each; done = the stream empty (entries XACK+XDEL'd when "
             "finished); sequential calls task.result()")

    def version(self) -> str:
        return dist_version("streaq")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "streaq", "run", f"{__name__}:worker"]

    async def aopen(self) -> None:
        # ``async with worker`` opens anyio cancel scopes that must be left by the task that
        # entered them: one task holds the producer's session open until aclose()
        self.entered = asyncio.Event()
        self.leave = asyncio.Event()
        self.session = asyncio.ensure_future(self._session())
        await asyncio.wait([self.session, asyncio.ensure_future(self.entered.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if self.session.done():
            self.session.result()  # raises what failed

    async def _session(self) -> None:
        async with worker:
            self.entered.set()
            await self.leave.wait()

    async def aclose(self) -> None:
        self.leave.set()
        await self.session

    async def aenqueue(self, n: int, tag: str) -> None:
        for _ in range(n):
            await noop.enqueue()

    async def aremaining(self) -> int:
        return int(await worker.queue_size())

    async def acall(self, i: int, tag: str) -> None:
        task = await noop.enqueue()
        await task.result(timeout=30)
