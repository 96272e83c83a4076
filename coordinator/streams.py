"""Operator queries of task streams and dead letters: what ``vow streams`` shows and does.

Plain functions over a :class:`~vow.coordinator.store.RedisStore` (the CLI only parses, calls
these, and prints); all read-only except :func:`requeue`, one script call per dead letter.

Streams are read with ``XLEN``, ``XINFO GROUPS``, ``XINFO CONSUMERS`` and ``XPENDING`` on
``keys.task_stream(p, group)`` and ``keys.dead_letters(p, group)`` for each of the 16 partitions.
Every command names keys of a single partition (one hash tag), so each is single-slot on a Redis
Cluster; commands of several partitions travel in non-transactional pipelines, which redis-py
splits per node. The consumer group on a task stream is named after its logic group. A stream
may not exist yet, or exist without its consumer group (no worker has started): both read as
empty, with every entry counted as lag.

Glossary: the *PEL* (pending entries list) holds entries delivered to a consumer and not yet
acknowledged; *lag* counts entries not yet delivered to the group; *entries read* counts entries
ever delivered to the group (its change over time is the group's throughput). A stream entry is
named across partitions as ``<partition>-<entry id>`` (e.g. ``3-1712345678901-0``): an *entry
reference*.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from . import keys
from .connection import translate_errors
from .errors import CorruptRecord, DeadLetterNotFound, ValidationError
from .records import reply_text
from .tasks import MalformedTask, TaskMessage, decode_task
from .validate import check_group

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = [
    "ENTRY_DELETED",
    "ConsumerStats",
    "DeadLetter",
    "DeadLetterNotFound",
    "GroupStats",
    "PendingEntry",
    "dead_letters",
    "entry_ref",
    "group_stats",
    "known_groups",
    "parse_entry_ref",
    "pending_entries",
    "requeue",
]

#: the problem of a pending entry whose stream entry is gone (acknowledged and deleted meanwhile)
ENTRY_DELETED = "entry deleted from the stream"

_ENTRY_REF = re.compile(r"(\d{1,2})-(\d+-\d+)")


# -- entry references ---------------------------------------------------------------------------


def entry_ref(partition: int, entry_id: str) -> str:
    """``<partition>-<entry id>``: a stream entry named across the 16 partitions."""
    return f"{partition}-{entry_id}"


def parse_entry_ref(ref: str) -> tuple[int, str]:
    """``(partition, entry id)`` from ``<partition>-<entry id>``, or :class:`ValidationError`."""
    match = _ENTRY_REF.fullmatch(ref.strip())
    if match is None or int(match.group(1)) >= keys.PARTITIONS:
        raise ValidationError(
            f"entry {ref!r} is not of the form <partition>-<entry id> "
            f"(partition 0-{keys.PARTITIONS - 1}, e.g. 3-1712345678901-0)"
        )
    return int(match.group(1)), match.group(2)


_text = reply_text


def _int(raw: object) -> int | None:
    try:
        return int(_text(raw))
    except ValueError:
        return None


def _absent(reply: object) -> bool:
    """A pipelined reply that means 'no stream' or 'no consumer group yet'."""
    if not isinstance(reply, redis.ResponseError):
        return False
    text = str(reply)
    return "no such key" in text or "NOGROUP" in text


def _checked(reply: object) -> Any:
    """A pipelined reply, re-raised if it is an error other than a missing stream or group."""
    if isinstance(reply, Exception) and not _absent(reply):
        raise reply
    return reply


# -- groups and their figures -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """One consumer of a group, summed over the partitions it reads."""

    name: str
    pending: int
    idle_ms: int


@dataclass(frozen=True, slots=True)
class GroupStats:
    """A logic group's task streams, summed over the 16 partitions."""

    group: str
    #: entries in the task streams (pending ones included; acknowledged ones are deleted)
    length: int
    #: entries delivered and not yet acknowledged (the PEL)
    pending: int
    #: entries not yet delivered to the group; ``None`` when Redis cannot tell
    lag: int | None
    #: entries ever delivered to the group
    entries_read: int
    #: entries in the dead-letter streams
    dead: int
    consumers: tuple[ConsumerStats, ...]
    #: partitions in which the group's task stream exists
    streams: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"consumers": [dataclasses.asdict(c) for c in self.consumers]}


def known_groups(store: RedisStore) -> list[str]:
    """Every logic group that ever had a task queued, from the per-partition group sets."""
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for partition in range(keys.PARTITIONS):
            pipe.smembers(keys.groups(partition))
        replies = pipe.execute()
    return sorted({_text(member) for members in replies for member in members})


@dataclass
class _Totals:
    length: int = 0
    pending: int = 0
    lag: int | None = 0
    entries_read: int = 0
    dead: int = 0
    streams: int = 0
    consumers: dict[str, ConsumerStats] = field(default_factory=dict)

    def add_group_info(self, info: dict[str, Any] | None, length: int) -> None:
        if info is None:  # a stream without the consumer group: nothing delivered yet
            self.lag = None if self.lag is None else self.lag + length
            return
        self.pending += int(info.get("pending") or 0)
        self.entries_read += int(info.get("entries-read") or 0)
        lag = info.get("lag")
        self.lag = None if self.lag is None or lag is None else self.lag + int(lag)

    def add_consumer(self, row: dict[str, Any]) -> None:
        name = _text(row.get("name"))
        pending = int(row.get("pending") or 0)
        idle = int(row.get("idle") or 0)
        seen = self.consumers.get(name)
        if seen is not None:
            pending += seen.pending
            idle = min(idle, seen.idle_ms)
        self.consumers[name] = ConsumerStats(name, pending, idle)


def group_stats(store: RedisStore, groups: Sequence[str] | None = None) -> list[GroupStats]:
    """Figures of each group (every known group when ``groups`` is None), in name order."""
    names = sorted(set(groups)) if groups is not None else known_groups(store)
    for name in names:
        check_group(name)
    pairs = [(g, p) for g in names for p in range(keys.PARTITIONS)]
    totals = {g: _Totals() for g in names}
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for g, p in pairs:
            pipe.xlen(keys.task_stream(p, g))
            pipe.xlen(keys.dead_letters(p, g))
            pipe.xinfo_groups(keys.task_stream(p, g))
        replies = pipe.execute(raise_on_error=False)
        with_group: list[tuple[str, int]] = []
        for i, (g, p) in enumerate(pairs):
            length, dead, infos = (_checked(r) for r in replies[3 * i : 3 * i + 3])
            total = totals[g]
            total.length += int(length)
            total.dead += int(dead)
            if _absent(infos):
                continue
            total.streams += 1
            info = next((row for row in infos if _text(row.get("name")) == g), None)
            total.add_group_info(info, int(length))
            if info is not None:
                with_group.append((g, p))
        if with_group:
            pipe = store.client.pipeline(transaction=False)
            for g, p in with_group:
                pipe.xinfo_consumers(keys.task_stream(p, g), g)
            for (g, _), rows in zip(with_group, pipe.execute(raise_on_error=False), strict=True):
                for row in [] if _absent(rows) else _checked(rows):
                    totals[g].add_consumer(row)
    return [
        GroupStats(
            group=g, length=t.length, pending=t.pending, lag=t.lag, entries_read=t.entries_read,
            dead=t.dead, consumers=tuple(sorted(t.consumers.values(), key=lambda c: c.name)),
            streams=t.streams,
        )
        for g, t in totals.items()
    ]


# -- pending entries ----------------------------------------------------------------------------


def _decode(raw: object) -> tuple[TaskMessage | None, str | None]:
    """The task message of an ``m`` field, or ``(None, why it is malformed)``."""
    try:
        return decode_task(raw), None
    except MalformedTask as e:
        return None, str(e)


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A task delivered to a consumer and not yet acknowledged."""

    group: str
    partition: int
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int
    #: the decoded message; ``None`` when it is malformed or the entry is gone
    task: TaskMessage | None
    #: why ``task`` is ``None``
    problem: str | None

    @property
    def ref(self) -> str:
        return entry_ref(self.partition, self.entry_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.ref,
            "group": self.group,
            "consumer": self.consumer,
            "idle_ms": self.idle_ms,
            "deliveries": self.deliveries,
            "task": _task_dict(self.task),
            "problem": self.problem,
        }


def _task_dict(task: TaskMessage | None) -> dict[str, Any] | None:
    return None if task is None else dataclasses.asdict(task) | {"kind": task.kind.value}


def pending_entries(store: RedisStore, group: str, limit: int = 100) -> list[PendingEntry]:
    """Up to ``limit`` pending entries of ``group`` over every partition, longest idle first."""
    check_group(group)
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for p in range(keys.PARTITIONS):
            pipe.xpending_range(keys.task_stream(p, group), group, "-", "+", limit)
        rows: list[tuple[int, dict[str, Any]]] = []
        for p, reply in enumerate(pipe.execute(raise_on_error=False)):
            if not _absent(reply):
                rows += [(p, row) for row in _checked(reply)]
        rows.sort(key=lambda r: -int(r[1]["time_since_delivered"]))
        rows = rows[:limit]
        if not rows:
            return []
        pipe = store.client.pipeline(transaction=False)
        for p, row in rows:
            entry_id = _text(row["message_id"])
            pipe.xrange(keys.task_stream(p, group), entry_id, entry_id)
        bodies = pipe.execute()
    out: list[PendingEntry] = []
    for (p, row), found in zip(rows, bodies, strict=True):
        if found:
            task, problem = _decode(found[0][1].get(b"m"))
        else:
            task, problem = None, ENTRY_DELETED
        out.append(
            PendingEntry(
                group=group, partition=p, entry_id=_text(row["message_id"]),
                consumer=_text(row["consumer"]), idle_ms=int(row["time_since_delivered"]),
                deliveries=int(row["times_delivered"]), task=task, problem=problem,
            )
        )
    return out


# -- dead letters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task a worker gave up on, kept in the group's dead-letter stream with the reason."""

    group: str
    partition: int
    entry_id: str
    reason: str
    #: the entry id the task had on its task stream
    original_id: str
    consumer: str
    deliveries: int | None
    message: bytes | None
    task: TaskMessage | None
    problem: str | None

    @property
    def ref(self) -> str:
        return entry_ref(self.partition, self.entry_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.ref,
            "group": self.group,
            "reason": self.reason,
            "from": self.original_id,
            "consumer": self.consumer,
            "deliveries": self.deliveries,
            "task": _task_dict(self.task),
            "problem": self.problem,
        }


def _dead_letter(group: str, partition: int, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    message = fields.get(b"m")
    task, problem = _decode(message)
    return DeadLetter(
        group=group, partition=partition, entry_id=_text(entry_id), reason=_text(fields.get(b"reason")),
        original_id=_text(fields.get(b"from")), consumer=_text(fields.get(b"consumer")),
        deliveries=_int(fields.get(b"deliveries")), message=message, task=task, problem=problem,
    )


def _entry_order(letter: DeadLetter) -> tuple[int, int, str, int]:
    ms, _, seq = letter.entry_id.partition("-")
    return int(ms or 0), int(seq or 0), letter.group, letter.partition


def dead_letters(store: RedisStore, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``group`` (of every known group if None), oldest first."""
    names = [check_group(group)] if group is not None else known_groups(store)
    pairs = [(g, p) for g in names for p in range(keys.PARTITIONS)]
    if not pairs:
        return []
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for g, p in pairs:
            pipe.xrange(keys.dead_letters(p, g), "-", "+", count=limit)
        replies = pipe.execute()
    letters = [
        _dead_letter(g, p, entry_id, fields)
        for (g, p), entries in zip(pairs, replies, strict=True)
        for entry_id, fields in entries
    ]
    letters.sort(key=_entry_order)
    return letters[:limit]


def _requeued_message(raw: bytes) -> bytes:
    """The message to put back: its delivery count reset, or the raw bytes if it is malformed."""
    try:
        return dataclasses.replace(decode_task(raw), deliveries=0).encode()
    except MalformedTask:
        return raw


def requeue(store: RedisStore, group: str, ref: str) -> str:
    """Move one dead letter back onto its task stream; returns the new entry's reference.

    One read of the dead letter, then one script (``revive.lua``) that moves it only while it
    still holds what was read, so two concurrent requeues of the same entry queue it once.
    """
    check_group(group)
    partition, entry_id = parse_entry_ref(ref)
    dead = keys.dead_letters(partition, group)
    with translate_errors(store.url, dead):
        found = store.client.xrange(dead, entry_id, entry_id)
    if not found:
        raise DeadLetterNotFound(group, ref)
    raw = found[0][1].get(b"m")
    if not isinstance(raw, bytes):
        raise CorruptRecord(dead, f"dead letter {ref} has no 'm' field to requeue")
    new_id = store.scripts.revive(
        partition, group=group, entry_id=entry_id, expected=raw, message=_requeued_message(raw)
    )
    if new_id is None:
        raise DeadLetterNotFound(group, ref)
    return entry_ref(partition, new_id)
