"""``Consumer``: this worker's identity in its group's consumer groups, and the connection it
reads tasks with.

A blocking ``XREADGROUP`` must not hold a socket of the shared pool (and its socket timeout must
outlast the block), so the consumer reads through a dedicated connection of its own. On a
standalone server it remembers that connection's ``CLIENT ID``, so :meth:`Consumer.close` can end a
blocked read at once with ``CLIENT UNBLOCK`` (closing the socket does not, with hiredis). The
Redis commands themselves are the store's (:class:`~vow.coordinator.executions.TaskStore`).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from vow.coordinator.errors import StoreError
from vow.coordinator.executions import Delivery
from vow.coordinator.store import RedisStore

__all__ = ["READ_BLOCK_S", "Consumer", "consumer_name"]

#: seconds a blocking read waits before it returns empty (lets the reader notice a shutdown)
READ_BLOCK_S = 2.0


def consumer_name() -> str:
    """``host:pid:random``: unique per worker, readable in ``vow streams ls``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Consumer:
    """Reads ``group``'s new tasks as consumer ``name`` (one reading thread per partition set)."""

    def __init__(self, store: RedisStore, group: str, name: str | None = None) -> None:
        self.store = store
        self.group = group
        self.name = name or consumer_name()
        self._connection: Any = None
        self._connection_id: int | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _reader(self) -> Any:
        if self._connection is None:
            with self._lock:
                if self._closed:  # a read after close() would open a connection nobody closes
                    raise StoreError(f"consumer {self.name} is closed")
                if self._connection is None:
                    self._connection = self.store.dedicated_connection(socket_timeout=READ_BLOCK_S + 10)
        return self._connection

    def read(
        self, count: int, partitions: Iterable[int] | None = None, block_s: float = READ_BLOCK_S
    ) -> list[Delivery]:
        """New entries for this consumer; blocks up to ``block_s`` when there are none."""
        connection = self._reader()
        try:
            return self._read(connection, count, partitions, block_s)
        finally:
            if self._closed:
                # close() ran while this read was under way: a read that redis-py retried may have
                # opened a socket after it; the reading thread closes it on its way out, so no
                # socket outlives a stopped worker (a worker whose join timed out included).
                self._disconnect(connection)

    def _read(
        self, connection: Any, count: int, partitions: Iterable[int] | None, block_s: float
    ) -> list[Delivery]:
        try:
            if self._connection_id is None:
                # One thread reads through this connection's pool, so later reads reuse it.
                self._connection_id = self.store.connection_id(connection)
            return self.store.tasks.read(
                self.group, self.name, count=count, block_ms=int(block_s * 1000), partitions=partitions,
                connection=connection,
            )
        except StoreError:
            self._connection_id = None  # the connection may be replaced
            raise
        except Exception as e:
            # A read racing close() fails inside redis-py in more ways than its own errors (hiredis
            # on a socket just closed: TypeError); after close() every such failure means "closed".
            if self._closed:
                raise StoreError(f"consumer {self.name} is closed") from e
            raise

    def close(self) -> None:
        """End a blocked read at once and close the reading connection. Idempotent, and worth
        calling again once the reading threads have ended: a read cut by the first call may have
        reconnected (redis-py retries) before it noticed."""
        with self._lock:
            connection = self._connection
            self._closed = True
        if self._connection_id is not None:
            try:
                self.store.unblock(self._connection_id)
            except StoreError:
                pass
        if connection is not None:
            self._disconnect(connection)

    def _disconnect(self, connection: Any) -> None:
        if connection is self.store.client:
            return
        pool = getattr(connection, "connection_pool", None)
        if pool is not None:
            pool.disconnect(inuse_connections=True)
        else:  # a cluster client: its nodes' pools
            connection.close()
