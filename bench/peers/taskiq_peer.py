"""taskiq with taskiq-redis: the list broker and the stream broker, results in Redis."""

from __future__ import annotations

import sys

import redis.asyncio as aioredis
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, RedisStreamBroker

from ..system import AsyncSystem
from ._common import RESULT_URL, URL, dist_version

__all__ = ["TaskiqListPeer", "TaskiqStreamPeer", "list_broker", "stream_broker"]

#: seconds between two result polls of ``wait_result`` (taskiq's default is 0.2 s)
CHECK_INTERVAL_S = 0.001

list_broker = ListQueueBroker(URL, queue_name="bench-list").with_result_backend(RedisAsyncResultBackend(RESULT_URL))
stream_broker = RedisStreamBroker(URL, queue_name="bench-stream").with_result_backend(
    RedisAsyncResultBackend(RESULT_URL))


@list_broker.task(task_name="noop")
async def noop_list() -> None:
    return None


@stream_broker.task(task_name="noop")
async def noop_stream() -> None:
    return None


class _TaskiqPeer(AsyncSystem):
    broker_attr = ""
    notes = ("taskiq worker CLI, --workers 1 each (max 100 async tasks, its default); done = result stored "
             f"(RedisAsyncResultBackend, counted in its db); sequential calls wait_result(check_interval="
             f"{CHECK_INTERVAL_S})")

    def version(self) -> str:
        return f"{dist_version('taskiq')}/{dist_version('taskiq-redis')}"

    def worker_command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "taskiq", "worker", f"{__name__}:{self.broker_attr}", "--workers", "1"]

    def task(self) -> object:
        return noop_list if self.broker_attr == "list_broker" else noop_stream

    async def aopen(self) -> None:
        self.broker = list_broker if self.broker_attr == "list_broker" else stream_broker
        await self.broker.startup()
        self.results = aioredis.Redis.from_url(RESULT_URL)
        self.expected = 0

    async def aclose(self) -> None:
        await self.broker.shutdown()
        await self.results.aclose()

    async def aenqueue(self, n: int, tag: str) -> None:
        self.expected = int(await self.results.dbsize()) + n
        task = noop_list if self.broker_attr == "list_broker" else noop_stream
        for _ in range(n):
            await task.kiq()

    async def aremaining(self) -> int:
        return self.expected - int(await self.results.dbsize())

    async def acall(self, i: int, tag: str) -> None:
        task = noop_list if self.broker_attr == "list_broker" else noop_stream
        sent = await task.kiq()
        await sent.wait_result(check_interval=CHECK_INTERVAL_S, timeout=30)


class TaskiqListPeer(_TaskiqPeer):
    name = "taskiq-list"
    broker_attr = "list_broker"


class TaskiqStreamPeer(_TaskiqPeer):
    name = "taskiq-stream"
    broker_attr = "stream_broker"
