"""saq on Redis."""

from __future__ import annotations

import sys
from typing import Any

from saq import Queue

from ..system import AsyncSystem
from ._common import CONCURRENCY, URL, dist_version

__all__ = ["SaqPeer", "settings"]

#: seconds between two status checks of ``queue.apply`` (saq's default is 0.5 s)
POLL_S = 0.001


async def noop(ctx: Any) -> None:
    return None


queue = Queue.from_url(URL, name="bench")
#: what ``saq bench.peers.saq_peer.settings`` serves
settings = {"queue": queue, "functions": [noop], "concurrency": CONCURRENCY}


class SaqPeer(AsyncSystem):
    name = "saq"
    notes = (f"saq CLI, concurrency {CONCURRENCY} each; done = the incomplete set empty; sequential calls "
             f"queue.apply(poll_interval={POLL_S})")

    def version(self) -> str:
        return dist_version("saq")

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "saq", f"{__name__}.settings", "--workers", "1"]

    async def aopen(self) -> None:
        self.queue = Queue.from_url(URL, name="bench")
        await self.queue.connect()

    async def aclose(self) -> None:
        await self.queue.disconnect()

    async def aenqueue(self, n: int, tag: str) -> None:
        for _ in range(n):
            await self.queue.enqueue("noop")

    async def aremaining(self) -> int:
        return int(await self.queue.count("incomplete"))

    async def acall(self, i: int, tag: str) -> None:
        await self.queue.apply("noop", timeout=30, poll_interval=POLL_S)
