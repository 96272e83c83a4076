"""``TaskQueue``: the Redis side of running tasks for one logic group, for one consumer.

A logic group's tasks are spread over 16 streams (one per partition, ``vow:{T}:q:<group>``), each
read through a consumer group named after the logic group. Per task the worker:

1. reads it (``XREADGROUP ... >``, batched; a standalone server serves all 16 streams in one
   blocking call, a cluster one blocking call per partition) or takes it over from a dead
   consumer (``XAUTOCLAIM`` after ``lease_ms`` of idleness);
2. claims the execution of the promise it drives (``claim.lua``: a lease and a fencing counter,
   at most one live lease per promise);
3. heartbeats while it runs (``heartbeat.lua`` for the lease, ``touch.lua`` for the entry);
4. commits: ``settle.lua`` (promise completed) or ``suspend.lua`` (waiting on callbacks), each
   fenced by the counter and acknowledging + deleting the entry in the same script when the entry
   is in the promise's partition (otherwise a fenced ``ack.lua`` follows).

Entries that cannot be run are moved, in one script, to the back of the stream or to the
group's dead-letter stream (``requeue.lua``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from . import keys
from .connection import connect, translate_errors
from .errors import StoreError
from .records import DurablePromise, State, Value, decode_promise, pack_map, reply_text
from .scripts import is_fakeredis
from .store import RedisStore, request_id
from .tasks import MalformedTask, TaskMessage, decode_task
from .validate import check_group

__all__ = ["Claim", "Delivery", "TaskQueue"]

#: seconds a blocking read waits before it returns empty (lets the reader notice a shutdown)
READ_BLOCK_S = 2.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to this consumer."""

    partition: int
    entry_id: str
    message: TaskMessage | None
    raw: bytes | None
    malformed: str | None
    deliveries: int  # total deliveries of this task, this one included


@dataclass(frozen=True, slots=True)
class Claim:
    status: str  # ok | busy | done | gone
    counter: int
    promise: DurablePromise | None


_text = reply_text


class TaskQueue:
    """Read, claim, heartbeat and commit the tasks of ``group`` as consumer ``consumer``."""

    def __init__(self, store: RedisStore, group: str, consumer: str, *, lease_ms: int) -> None:
        self.store = store
        self.group = check_group(group)
        self.consumer = consumer
        self.lease_ms = lease_ms
        self.streams = [keys.task_stream(p, group) for p in range(keys.PARTITIONS)]
        self._partition_of_stream = {s.encode(): p for p, s in enumerate(self.streams)}
        self._reader: Any = None
        self._reader_lock = threading.Lock()
        self._reader_id: int | None = None
        self._closed = False
        self._autoclaim_cursor = ["0-0"] * keys.PARTITIONS

    @property
    def client(self) -> Any:
        return self.store.client

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, redis.RedisCluster)

    def _reader_client(self) -> Any:
        """A client whose socket timeout outlasts a blocking read."""
        if self._reader is None:
            with self._reader_lock:
                if self._reader is None:
                    if self.store._client is not None and is_fakeredis(self.store.client):
                        self._reader = self.store.client
                    else:
                        self._reader = connect(self.store.url, socket_timeout=READ_BLOCK_S + 10)
        return self._reader

    def close(self) -> None:
        """Close the reader's connections (a read blocked on them returns with an error)."""
        reader = self._reader
        if self._reader_id is not None:
            try:  # ends a blocked XREADGROUP at once (closing a socket does not, with hiredis)
                with translate_errors(self.store.url):
                    self.client.client_unblock(self._reader_id)
            except StoreError:
                pass
        if reader is not None and reader is not self.store._client and not self._closed:
            self._closed = True
            if isinstance(reader, redis.RedisCluster):
                reader.close()
            else:
                reader.connection_pool.disconnect(inuse_connections=True)

    # -- streams ----------------------------------------------------------------------------

    def ensure_groups(self) -> None:
        """Create the consumer group on every partition's stream (from the first entry, so tasks
        queued before any worker existed are delivered)."""
        with translate_errors(self.store.url):
            for partition, stream in enumerate(self.streams):
                try:
                    self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
                except redis.ResponseError as e:
                    if "BUSYGROUP" not in str(e):
                        raise
                self.client.sadd(keys.groups(partition), self.group)

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy`` (``None`` where CONFIG is not allowed)."""
        try:
            with translate_errors(self.store.url):
                reply = self.client.config_get("maxmemory-policy")
        except StoreError:
            return None
        if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
            reply = next(iter(reply.values()))  # a cluster answers per node
        value = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
        return _text(value) if value is not None else None

    def read(
        self, count: int, block_s: float = READ_BLOCK_S, partitions: Iterable[int] | None = None
    ) -> list[Delivery]:
        """New entries for this consumer; blocks up to ``block_s`` when there are none."""
        chosen = list(range(keys.PARTITIONS)) if partitions is None else list(partitions)
        streams = {self.streams[p]: ">" for p in chosen}
        # COUNT applies to each stream: ask each for its share, so one worker does not take 16
        # times its free slots and starve the others of its group.
        per_stream = max(1, -(-count // len(chosen)))
        reader = self._reader_client()
        try:
            with translate_errors(self.store.url):
                if self._reader_id is None and not self.is_cluster and reader is not self.store._client:
                    # One thread reads through this pool, so later reads reuse this connection.
                    self._reader_id = int(reader.client_id())
                reply = reader.xreadgroup(
                    self.group, self.consumer, streams, count=per_stream, block=max(1, int(block_s * 1000))
                )
        except StoreError:
            self._reader_id = None  # the connection may be replaced
            raise
        return self._parse_read(reply or [])

    def _parse_read(self, reply: Any) -> list[Delivery]:
        if isinstance(reply, dict):  # RESP3
            reply = [[k, v[0] if v and isinstance(v[0], list) else v] for k, v in reply.items()]
        out: list[Delivery] = []
        for stream, entries in reply:
            partition = self._partition_of_stream[stream if isinstance(stream, bytes) else str(stream).encode()]
            for entry_id, fields in entries:
                out.append(self._delivery(partition, _text(entry_id), fields, 1))
        return out

    def _delivery(self, partition: int, entry_id: str, fields: Any, times: int) -> Delivery:
        raw = fields.get(b"m") if isinstance(fields, dict) else None
        try:
            message = decode_task(raw)
        except MalformedTask as e:
            return Delivery(partition, entry_id, None, raw if isinstance(raw, bytes) else None, str(e), times)
        return Delivery(partition, entry_id, message, raw, None, message.deliveries + times)

    def _each_stream(self, command: Callable[[str], Any]) -> Iterator[tuple[int, str, Any]]:
        """``command(stream)`` on every partition's stream; streams without the group are skipped."""
        with translate_errors(self.store.url):
            for partition, stream in enumerate(self.streams):
                try:
                    reply = command(stream)
                except redis.ResponseError as e:
                    if "NOGROUP" in str(e):
                        continue
                    raise
                yield partition, stream, reply

    def reclaim(self, count: int = 32) -> list[Delivery]:
        """Take over entries idle longer than the lease from dead or stuck consumers."""
        out: list[Delivery] = []

        def autoclaim(stream: str) -> Any:
            partition = self.streams.index(stream)
            return self.client.xautoclaim(
                stream, self.group, self.consumer, min_idle_time=self.lease_ms,
                start_id=self._autoclaim_cursor[partition], count=count,
            )

        for partition, stream, reply in self._each_stream(autoclaim):
            cursor, entries = reply[0], reply[1]
            self._autoclaim_cursor[partition] = _text(cursor)
            entries = [(i, f) for i, f in entries if f is not None]
            if not entries:
                continue
            counts = self._delivery_counts(stream, [_text(i) for i, _ in entries])
            for entry_id, fields in entries:
                ident = _text(entry_id)
                out.append(self._delivery(partition, ident, fields, counts.get(ident, 1)))
        return out

    def own_pending(self, limit: int = 1000) -> list[Delivery]:
        """Entries still pending to this consumer (e.g. read while it was stopping)."""
        out: list[Delivery] = []

        def mine(stream: str) -> Any:
            return self.client.xpending_range(
                stream, self.group, min="-", max="+", count=limit, consumername=self.consumer
            )

        for partition, stream, rows in self._each_stream(mine):
            for row in rows:
                ident = _text(row["message_id"])
                entries = self.client.xrange(stream, min=ident, max=ident)
                fields = entries[0][1] if entries else {}
                out.append(self._delivery(partition, ident, fields, int(row["times_delivered"])))
        return out

    def _delivery_counts(self, stream: str, ids: list[str]) -> dict[str, int]:
        rows = self.client.xpending_range(
            stream, self.group, min=ids[0], max=ids[-1], count=len(ids) * 4 + 10, consumername=self.consumer
        )
        return {_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    # -- executions -------------------------------------------------------------------------

    def _script(self, name: str, key_list: list[str], args: list[Any]) -> Any:
        with translate_errors(self.store.url, key_list[0]):
            return getattr(self.store.scripts, name)(keys=key_list, args=args)

    def claim(self, promise_id: str) -> Claim:
        key_list = self.store.promise_keys(promise_id) + [keys.execution(promise_id)]
        args = [self.store._now_arg(), promise_id, self.consumer, str(self.lease_ms)]
        status, counter, fields = self._script("claim", key_list, args)
        promise = None
        if fields:
            promise = decode_promise(keys.promise(promise_id), dict(zip(fields[::2], fields[1::2], strict=True)))
        return Claim(_text(status), int(counter), promise)

    def heartbeat(self, promise_id: str, counter: int) -> bool:
        args = [self.store._now_arg(), str(counter), str(self.lease_ms)]
        return bool(self._script("heartbeat", [keys.execution(promise_id)], args))

    def touch(self, partition: int, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        args = [self.group, self.consumer, *entry_ids]
        return int(self._script("touch", [self.streams[partition]], args))

    def settle(self, promise_id: str, counter: int, state: State, value: Value, delivery: Delivery) -> bool:
        """Complete the driven promise and end the execution; ``False`` when fenced."""
        same = delivery.partition == keys.partition_of(promise_id)
        key_list = self.store.promise_keys(promise_id) + [
            keys.execution(promise_id),
            self.streams[keys.partition_of(promise_id)],
        ]
        args = [
            self.store._now_arg(), request_id(), promise_id, str(counter), state.value,
            pack_map(value.headers), "1" if value.data is not None else "0", value.data or b"",
            self.group, delivery.entry_id if same else "",
        ]
        if _text(self._script("settle", key_list, args)) == "fenced":
            return False
        if not same:
            self.ack(delivery)
        return True

    def suspend(self, promise_id: str, counter: int, delivery: Delivery) -> str:
        """Release the lease while waiting; ``wake`` means drive again now; ``fenced`` lost it."""
        same = delivery.partition == keys.partition_of(promise_id)
        key_list = [keys.execution(promise_id), self.streams[keys.partition_of(promise_id)]]
        args = [str(counter), self.group, delivery.entry_id if same else ""]
        answer = _text(self._script("suspend", key_list, args))
        if answer == "ok" and not same:
            self.ack(delivery)
        return answer

    def release(self, promise_id: str, counter: int) -> bool:
        return bool(self._script("release", [keys.execution(promise_id)], [str(counter)]))

    def ack(self, delivery: Delivery) -> bool:
        args = [self.group, self.consumer, delivery.entry_id]
        return bool(self._script("ack", [self.streams[delivery.partition]], args))

    def requeue(self, delivery: Delivery, message: bytes) -> bool:
        """Put the task at the back of its stream as a fresh entry (if this consumer owns it)."""
        return self._move(delivery, message, "queue", "", 0)

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move the entry to the group's dead-letter stream with the reason."""
        message = delivery.raw if delivery.raw is not None else b""
        return self._move(delivery, message, "dead", reason, delivery.deliveries)

    def _move(self, delivery: Delivery, message: bytes, where: str, reason: str, deliveries: int) -> bool:
        key_list = [self.streams[delivery.partition], keys.dead_letters(delivery.partition, self.group)]
        args = [self.group, self.consumer, delivery.entry_id, message, where, reason, str(deliveries)]
        return bool(self._script("requeue", key_list, args))

    def pending_count(self) -> int:
        """Entries read by some consumer of the group and not yet acknowledged (all partitions)."""
        return sum(int(info["pending"]) for _, _, info in self._each_stream(
            lambda stream: self.client.xpending(stream, self.group)))

    def stream_length(self) -> int:
        with translate_errors(self.store.url):
            return sum(int(self.client.xlen(s)) for s in self.streams)
