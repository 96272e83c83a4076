"""``TaskStore`` (``store.tasks``): the Redis side of running tasks — streams, leases, commits.

A logic group's tasks are spread over 16 streams (one per partition, ``vow:{T}:q:<group>``), each
read through a consumer group named after the logic group. Per task a worker:

1. reads it (:meth:`TaskStore.read`: ``XREADGROUP ... >``, batched) or takes it over from a
   dead consumer (:meth:`TaskStore.reclaim`: ``XAUTOCLAIM`` after ``lease_ms`` of idleness);
2. claims the execution of the promise it drives (a lease and a fencing counter, at most one
   live lease per promise);
3. heartbeats while it runs (the lease, and the entry's idle time);
4. commits: :meth:`settle` (promise completed) or :meth:`suspend` (waiting on callbacks), each
   fenced by the counter and acknowledging + deleting the entry in the same script when the entry
   is in the promise's partition (otherwise a fenced :meth:`ack` follows).

Entries that cannot be run are moved, in one script, to the back of the stream or to the group's
dead-letter stream. :meth:`sweep_orphans` is the second line of defence: it re-queues executions
whose lease lapsed with nobody claiming them again (their entry lost), so no pending promise is
stranded. Every method translates Redis errors into Vow errors (``StoreError`` and its family),
for everything it sends — the caller's ``except VowError`` sees every failure.

The consumer side (this worker's identity, its reading connection and threads) is
``worker/consumer.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from . import keys
from .connection import translate_errors
from .lua import Answer, Claim, Commit
from .records import State, Value, reply_text
from .tasks import MalformedTask, TaskKind, TaskMessage, decode_task
from .validate import check_group

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["Delivery", "Settlement", "TaskStore"]

#: executions re-queued per orphan-sweep script call
ORPHAN_BATCH = 200


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to a consumer."""

    partition: int
    entry_id: str
    message: TaskMessage | None
    raw: bytes | None
    malformed: str | None
    deliveries: int  # total deliveries of this task, this one included


@dataclass(frozen=True, slots=True)
class Settlement:
    """A finished execution to commit: ``promise_id`` completed with ``state`` and ``value``
    under the lease ``counter``, driven by the task ``delivery``; or, with counter 0, run
    without a lease from the param data ``ran_with`` that the task message carried."""

    promise_id: str
    counter: int
    state: State
    value: Value
    delivery: Delivery
    ran_with: bytes | None = None


def _int_field(fields: Any, name: bytes) -> int:
    raw = fields.get(name) if isinstance(fields, dict) else None
    try:
        return max(0, int(raw)) if raw is not None else 0
    except (TypeError, ValueError):
        return 0


def delivery(partition: int, entry_id: str, fields: Any, times: int) -> Delivery:
    """A :class:`Delivery` of a stream entry's fields (``m``: the message; ``n``: deliveries an
    orphan re-queue carried forward), delivered ``times`` times to the group so far."""
    raw = fields.get(b"m") if isinstance(fields, dict) else None
    try:
        message = decode_task(raw)
    except MalformedTask as e:
        return Delivery(partition, entry_id, None, raw if isinstance(raw, bytes) else None, str(e), times)
    return Delivery(partition, entry_id, message, raw, None, message.deliveries + _int_field(fields, b"n") + times)


def _missing_group(error: redis.ResponseError) -> bool:
    return "NOGROUP" in str(error)


class TaskStore:
    """Task streams and executions of every logic group, on one store's connection."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    @property
    def _client(self) -> Any:
        return self._store.client

    @property
    def _url(self) -> str:
        return self._store.url

    # -- streams ------------------------------------------------------------------------------

    def ensure_group(self, group: str) -> None:
        """Create ``group``'s consumer group on every partition's stream (from the first entry,
        so tasks queued before any worker existed are delivered)."""
        check_group(group)
        with translate_errors(self._url):
            for partition in range(keys.PARTITIONS):
                try:
                    self._client.xgroup_create(keys.task_stream(partition, group), group, id="0", mkstream=True)
                except redis.ResponseError as e:
                    if "BUSYGROUP" not in str(e):
                        raise
                self._client.sadd(keys.groups(partition), group)

    def read(
        self, group: str, consumer: str, *, count: int, block_ms: int, partitions: Iterable[int] | None = None,
        connection: Any = None,
    ) -> list[Delivery]:
        """New entries for ``consumer``; blocks up to ``block_ms`` when there are none. ``connection``
        is the reader's own client (a blocking read must not hold the shared pool's sockets)."""
        chosen = list(range(keys.PARTITIONS)) if partitions is None else list(partitions)
        by_stream = {keys.task_stream(p, group).encode(): p for p in chosen}
        # COUNT applies to each stream: ask each for its share, so one worker does not take 16
        # times its free slots and starve the others of its group.
        per_stream = max(1, -(-count // len(chosen)))
        client = connection if connection is not None else self._client
        with translate_errors(self._url):
            reply = client.xreadgroup(
                group, consumer, {s.decode(): ">" for s in by_stream}, count=per_stream, block=max(1, block_ms)
            )
        if isinstance(reply, dict):  # RESP3
            reply = [[k, v[0] if v and isinstance(v[0], list) else v] for k, v in reply.items()]
        out: list[Delivery] = []
        for stream, entries in reply or []:
            partition = by_stream[stream if isinstance(stream, bytes) else str(stream).encode()]
            out += [delivery(partition, reply_text(entry_id), fields, 1) for entry_id, fields in entries]
        return out

    def reclaim(
        self, group: str, consumer: str, *, min_idle_ms: int, count: int, cursors: list[str]
    ) -> list[Delivery]:
        """Take over entries idle longer than ``min_idle_ms`` from dead or stuck consumers.
        ``cursors`` (one per partition, ``"0-0"`` to start) are advanced in place."""
        out: list[Delivery] = []
        with translate_errors(self._url):
            for partition in range(keys.PARTITIONS):
                stream = keys.task_stream(partition, group)
                try:
                    cursor, entries, *_ = self._client.xautoclaim(
                        stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursors[partition], count=count
                    )
                except redis.ResponseError as e:
                    if _missing_group(e):
                        continue
                    raise
                cursors[partition] = reply_text(cursor)
                entries = [(reply_text(i), f) for i, f in entries if f is not None]
                if entries:
                    times = self._delivery_counts(stream, group, consumer, [i for i, _ in entries])
                    out += [delivery(partition, i, f, times.get(i, 1)) for i, f in entries]
        return out

    def _delivery_counts(self, stream: str, group: str, consumer: str, ids: list[str]) -> dict[str, int]:
        rows = self._client.xpending_range(
            stream, group, min=ids[0], max=ids[-1], count=len(ids) * 4 + 10, consumername=consumer
        )
        return {reply_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    def own_pending(self, group: str, consumer: str, limit: int = 1000) -> list[Delivery]:
        """Entries still pending to ``consumer`` (e.g. read while it was stopping)."""
        out: list[Delivery] = []
        with translate_errors(self._url):
            for partition in range(keys.PARTITIONS):
                stream = keys.task_stream(partition, group)
                try:
                    rows = self._client.xpending_range(
                        stream, group, min="-", max="+", count=limit, consumername=consumer
                    )
                except redis.ResponseError as e:
                    if _missing_group(e):
                        continue
                    raise
                for row in rows:
                    entry_id = reply_text(row["message_id"])
                    entries = self._client.xrange(stream, min=entry_id, max=entry_id)
                    fields = entries[0][1] if entries else {}
                    out.append(delivery(partition, entry_id, fields, int(row["times_delivered"])))
        return out

    def pending_count(self, group: str) -> int:
        """Entries read by some consumer of ``group`` and not yet acknowledged (all partitions)."""
        total = 0
        with translate_errors(self._url):
            for partition in range(keys.PARTITIONS):
                try:
                    total += int(self._client.xpending(keys.task_stream(partition, group), group)["pending"])
                except redis.ResponseError as e:
                    if not _missing_group(e):
                        raise
        return total

    def stream_length(self, group: str) -> int:
        with translate_errors(self._url):
            return sum(int(self._client.xlen(keys.task_stream(p, group))) for p in range(keys.PARTITIONS))

    # -- executions ---------------------------------------------------------------------------

    def claim(self, promise_id: str, *, group: str, consumer: str, func: str, lease_ms: int) -> Claim:
        """Take the execution lease of ``promise_id`` for ``consumer`` (see ``claim.lua``)."""
        return self.claim_many([(promise_id, func)], group=group, consumer=consumer, lease_ms=lease_ms)[0].checked()

    def claim_many(
        self, tasks: Sequence[tuple[str, str]], *, group: str, consumer: str, lease_ms: int
    ) -> list[Claim]:
        """Claim the executions of ``tasks`` (promise id, function name) in one script call; on a
        cluster they must share a partition (:meth:`batch_key`). A claim whose record came back
        malformed carries the error (:meth:`Claim.checked`) and leaves the others alone."""
        items = [(pid, TaskMessage(TaskKind.INVOKE, pid, group, func).encode()) for pid, func in tasks]
        return self._store.scripts.claim(items, consumer=consumer, lease_ms=lease_ms, group=group)

    def batch_key(self, promise_id: str) -> int:
        """Executions with the same key can be claimed or settled in one script call: any on a
        standalone server (0), one partition's on a cluster (a script's keys share a slot)."""
        return keys.partition_of(promise_id) if self._store.is_cluster else 0

    def heartbeat(self, promise_id: str, counter: int, *, lease_ms: int) -> bool:
        """Extend the lease held under ``counter``; False when a newer claim fenced it."""
        return self._store.scripts.heartbeat(promise_id, counter=counter, lease_ms=lease_ms)

    def touch(self, group: str, consumer: str, partition: int, entry_ids: list[str]) -> int:
        """Reset the idle time of entries ``consumer`` still owns (so nobody reclaims them)."""
        if not entry_ids:
            return 0
        return self._store.scripts.touch(partition, group=group, consumer=consumer, entry_ids=entry_ids)

    def settle(
        self, promise_id: str, counter: int, state: State, value: Value, *, group: str, consumer: str,
        delivery: Delivery,
    ) -> bool:
        """Complete the driven promise and end the execution; ``False`` when fenced."""
        settlement = Settlement(promise_id, counter, state, value, delivery)
        return self.settle_many([settlement], group=group, consumer=consumer)[0] is Answer.OK

    def settle_many(self, settlements: Sequence[Settlement], *, group: str, consumer: str) -> list[Answer]:
        """Settle finished executions in one script call (a group commit; on a cluster they must
        share a partition, :meth:`batch_key`): each ``OK``, ``FENCED``, or for one run without a
        lease also ``DONE``, ``GONE`` or ``RETRY`` (see ``settle.lua``). A task entry the script
        cannot reach (another partition's, on a cluster) is acknowledged after an ``OK``."""
        commits = []
        for s in settlements:
            home = keys.partition_of(s.promise_id)
            in_script = s.delivery.partition == home or not self._store.is_cluster
            stream = keys.task_stream(s.delivery.partition if in_script else home, group)
            commits.append(Commit(s.promise_id, s.counter, s.state, s.value, stream,
                                  s.delivery.entry_id if in_script else None, s.ran_with))
        answers = self._store.scripts.settle(commits, group=group)
        for s, commit, answer in zip(settlements, commits, answers, strict=True):
            if answer in (Answer.OK, Answer.DONE) and commit.entry_id is None:
                self.ack(group, consumer, s.delivery)
        return answers

    def suspend(self, promise_id: str, counter: int, *, group: str, consumer: str, delivery: Delivery) -> Answer:
        """Release the lease while waiting; ``WAKE`` means drive again now; ``FENCED`` lost it."""
        same = delivery.partition == keys.partition_of(promise_id)
        answer = self._store.scripts.suspend(
            promise_id, counter=counter, group=group, entry_id=delivery.entry_id if same else None
        )
        if answer is Answer.OK and not same:
            self.ack(group, consumer, delivery)
        return answer

    def release(self, promise_id: str, counter: int) -> bool:
        """Let go of the lease without committing; False when it was no longer held."""
        return self._store.scripts.release(promise_id, counter=counter) is Answer.OK

    def sweep_orphans(self, grace_ms: int) -> int:
        """Re-queue every execution whose lease lapsed over ``grace_ms`` ago and that nobody
        claimed again (see ``orphans.lua``); returns how many were re-queued."""
        total = 0
        for partition in range(keys.PARTITIONS):
            more = True
            while more:
                count, more = self._store.scripts.orphans(partition, limit=ORPHAN_BATCH, grace_ms=grace_ms)
                total += count
        return total

    def remove_consumers(self, group: str, consumer: str | None = None, min_idle_ms: int | None = None) -> int:
        """Remove consumers of ``group`` that hold no entry, on every partition's stream:
        ``consumer`` itself (a graceful stop), or every one idle ``min_idle_ms`` or more (dead
        workers). A consumer holding entries is never removed. Returns how many were removed."""
        check_group(group)
        return sum(
            self._store.scripts.consumers(partition, group=group, consumer=consumer, min_idle_ms=min_idle_ms)
            for partition in range(keys.PARTITIONS)
        )

    # -- stream entries -----------------------------------------------------------------------

    def ack(self, group: str, consumer: str, delivery: Delivery) -> bool:
        """Acknowledge and delete an entry ``consumer`` owns (or that is already acknowledged)."""
        return bool(self._store.scripts.ack(
            delivery.partition, group=group, consumer=consumer, entry_ids=[delivery.entry_id]))

    def requeue(self, group: str, consumer: str, delivery: Delivery, message: bytes) -> bool:
        """Put the task at the back of its stream as a fresh entry (if ``consumer`` owns it)."""
        return self._store.scripts.requeue(
            delivery.partition, group=group, consumer=consumer, entry_id=delivery.entry_id, message=message
        ) is not None

    def dead_letter(self, group: str, consumer: str, delivery: Delivery, reason: str) -> bool:
        """Move the entry to the group's dead-letter stream with the reason."""
        return self._store.scripts.requeue(
            delivery.partition, group=group, consumer=consumer, entry_id=delivery.entry_id,
            message=delivery.raw if delivery.raw is not None else b"", reason=reason, deliveries=delivery.deliveries,
        ) is not None
