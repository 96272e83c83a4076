"""Redis memory per kind of record: what ``vow streams ls`` shows under its groups.

Counts come from the indexes (``ZCARD``, exact). Bytes are ``MEMORY USAGE`` (which includes
Redis's own per-key overhead): exact for the per-partition keys (indexes, task streams, dead
letters), and for promise records, callbacks and execution records the mean of a sample of up to
``SAMPLE`` keys per kind times the count. Every read is pipelined: a few round trips in all,
whatever the number of promises (nothing scans the keyspace).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import keys
from .connection import translate_errors
from .streams import known_groups

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["SAMPLE", "MemoryRow", "memory_report", "used_memory"]

#: keys sampled per kind of record
SAMPLE = 32


@dataclass(frozen=True, slots=True)
class MemoryRow:
    kind: str
    count: int
    #: bytes per record (the sample's mean), or None when counted as one whole
    per_record: int | None
    total: int
    sampled: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _execute(store: RedisStore, commands: list[tuple[str, ...]]) -> list[Any]:
    if not commands:
        return []
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))


def _usage(reply: Any) -> int:
    return reply if isinstance(reply, int) else 0


def used_memory(store: RedisStore) -> int:
    """``used_memory`` of the server (summed over a cluster's masters)."""
    with translate_errors(store.url):
        info = store.client.info("memory")
    if isinstance(info, dict) and "used_memory" in info:
        return int(info["used_memory"])
    return sum(int(node.get("used_memory", 0)) for node in info.values() if isinstance(node, dict))


def memory_report(store: RedisStore) -> list[MemoryRow]:
    """One row per kind of record, largest first."""
    families = ("pending", "resolved", "rejected")
    counts = _execute(store, [("ZCARD", keys.index(p, f)) for f in families for p in range(keys.PARTITIONS)])
    per_family = {
        f: sum(_usage(c) for c in counts[i * keys.PARTITIONS:(i + 1) * keys.PARTITIONS])
        for i, f in enumerate(families)
    }
    per_partition = -(-SAMPLE // keys.PARTITIONS)
    samples = _execute(store, [
        ("ZREVRANGE", keys.index(p, f), "0", str(per_partition - 1)) for f in families for p in range(keys.PARTITIONS)
    ])
    pending_ids = [m.decode() for rows in samples[:keys.PARTITIONS] for m in (rows or [])][:SAMPLE]
    completed_ids = [m.decode() for rows in samples[keys.PARTITIONS:] for m in (rows or [])][:SAMPLE]

    rows: list[MemoryRow] = []

    def sampled(kind: str, count: int, key_names: list[str]) -> None:
        sizes = [_usage(r) for r in _execute(store, [("MEMORY", "USAGE", k) for k in key_names])]
        present = [s for s in sizes if s > 0]
        mean = sum(present) // len(present) if present else 0
        share = len(present) / len(sizes) if sizes else 0.0
        rows.append(MemoryRow(kind, int(count * share), mean, int(mean * count * share), True))

    completed = per_family["resolved"] + per_family["rejected"]
    sampled("promise records, pending", per_family["pending"], [keys.promise(i) for i in pending_ids])
    sampled("promise records, completed", completed, [keys.promise(i) for i in completed_ids])
    sampled("callbacks of pending promises", per_family["pending"], [keys.callbacks(i) for i in pending_ids])
    sampled("execution records", per_family["pending"], [keys.execution(i) for i in pending_ids])

    index_keys = [
        name for p in range(keys.PARTITIONS)
        for name in (*(keys.index(p, f) for f in ("all", *families)), keys.timeouts(p), keys.expiry(p), keys.leases(p))
    ]
    groups = known_groups(store)
    stream_keys = [keys.task_stream(p, g) for g in groups for p in range(keys.PARTITIONS)]
    dead_keys = [keys.dead_letters(p, g) for g in groups for p in range(keys.PARTITIONS)]
    for kind, names in (("indexes", index_keys), ("task streams", stream_keys), ("dead letters", dead_keys)):
        sizes = [_usage(r) for r in _execute(store, [("MEMORY", "USAGE", k) for k in names])]
        rows.append(MemoryRow(kind, sum(1 for s in sizes if s), None, sum(sizes), False))
    return sorted(rows, key=lambda r: r.total, reverse=True)
