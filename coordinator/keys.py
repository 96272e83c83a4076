"""Every Redis key Vow uses, one function each. No other module spells a key.

Layout
------
The keyspace is split into ``PARTITIONS`` (16) partitions. Each partition is one Redis Cluster
hash tag, so every key of a partition lives in one slot and every script touching it is
single-slot. The tags are chosen so the 16 slots sit one per 1,024-slot band: a 3-master cluster
(slot ranges split evenly) gets 5, 6 and 5 partitions.

A promise lives in partition ``partition_of(id) = crc32(id) % 16``; all of its keys share it::

    vow:{T}:p:<id>          hash    the promise record (fields in coordinator/records.py)
    vow:{T}:cb:<id>         hash    callbacks: root id -> "<logic group>\\n<task message>"
    vow:{T}:sub:<id>        hash    subscriptions: listener id -> "1"
    vow:{T}:timeouts        zset    pending promise id -> timeout (epoch ms); the sweep's index
    vow:{T}:idx:all         zset    promise id -> created_on (epoch ms); search, newest first
    vow:{T}:idx:<state>     zset    the same per state family: pending | resolved | rejected
    vow:{T}:sweep           string  a short lock so concurrent sweepers skip a fresh partition
    vow:{T}:expiry          zset    completed promise id -> when its retention ends (epoch ms);
                                    the expiry pass's index

Per partition and logic group (tasks; consumed by worker/)::

    vow:{T}:q:<group>       stream  task messages for the group (consumer group named <group>)
    vow:{T}:dead:<group>    stream  dead letters of the group, with the reason
    vow:{T}:groups          set     logic groups that ever had a task in this partition
    vow:{T}:x:<root>        hash    execution record of a root (lease owner, fencing counter)
    vow:{T}:leases          zset    root id -> lease end (epoch ms); the orphan sweep's index
    vow:{T}:inbox:<id>      list    a listener's notifications (completed records), 10 s TTL

Scripts receive the keys they address in KEYS. The only keys a script names itself are derived
from a KEYS entry by ``derive()`` in ``scripts/_lib.lua``: the entry's partition base
(``vow:{T}:``) followed by one of the suffixes above (``p:<id>``, ``cb:<id>``, ``sub:<id>``,
``x:<id>``, ``q:<group>``, ``dead:<group>``, ``inbox:<listener>``, and the partition's own
``expiry``, ``timeouts``, ``leases`` and ``idx:<family>``) — so a callback fires into
the stream of its group *in the completed promise's partition*, a subscription into an inbox of
that partition, and the sweeps reach the records of due ids. Same base, same hash tag, same slot
(the cluster test suite checks every key's slot). :func:`derive` here is the same rule in Python.

Schedules live in the partition of their id, like promises::

    vow:{T}:sched:<id>      hash    a schedule (fields in coordinator/schedules.py)
    vow:{T}:sched-due       zset    schedule id -> next tick (epoch ms); the schedule pass's index
    vow:{T}:sched-idx       zset    schedule id -> created_on (epoch ms); listing
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = [
    "PARTITIONS",
    "PREFIX",
    "PromiseKeys",
    "callbacks",
    "dead_letters",
    "execution",
    "expiry",
    "groups",
    "derive",
    "inbox",
    "index",
    "leases",
    "partition_of",
    "promise",
    "subscriptions",
    "schedule",
    "schedules_due",
    "schedules_index",
    "sweep_lock",
    "tag",
    "task_stream",
    "timeouts",
]

PREFIX = "vow"
PARTITIONS = 16

# One tag per 1,024-slot band: CRC16(tag) % 16384 lies in [i*1024, (i+1)*1024) for tag i.
# (tests/test_keys.py recomputes the slots.)
_TAGS: tuple[str, ...] = (
    "v001", "v0161", "v0242", "v0341", "v0422", "v0521", "v062", "v0712",
    "v0813", "v0910", "v1023", "v1120", "v123", "v1312", "v141", "v1560",
)

STATE_FAMILIES = ("pending", "resolved", "rejected")


def partition_of(promise_id: str) -> int:
    """The partition a promise (and every key about it) lives in."""
    return zlib.crc32(promise_id.encode("utf-8", "surrogatepass")) % PARTITIONS


def tag(partition: int) -> str:
    """The ``{...}`` hash tag of a partition, braces included."""
    return "{" + _TAGS[partition] + "}"


_BASES: tuple[str, ...] = tuple(f"{PREFIX}:{{{t}}}:" for t in _TAGS)


def _base(partition: int) -> str:
    return _BASES[partition]


def derive(key: str, suffix: str) -> str:
    """The key ``suffix`` in the partition of ``key`` (``derive()`` of ``scripts/_lib.lua``)."""
    close = key.index("}:")
    return key[: close + 2] + suffix


def promise(promise_id: str) -> str:
    return f"{_base(partition_of(promise_id))}p:{promise_id}"


def callbacks(promise_id: str) -> str:
    return f"{_base(partition_of(promise_id))}cb:{promise_id}"


def subscriptions(promise_id: str) -> str:
    return f"{_base(partition_of(promise_id))}sub:{promise_id}"


def timeouts(partition: int) -> str:
    return f"{_base(partition)}timeouts"


def index(partition: int, family: str = "all") -> str:
    """Search index of a partition: ``all`` or one state family (pending/resolved/rejected)."""
    if family != "all" and family not in STATE_FAMILIES:
        raise ValueError(f"unknown index family {family!r}")
    return f"{_base(partition)}idx:{family}"


def expiry(partition: int) -> str:
    """Completed promise id -> when its retention ends (epoch ms): the expiry pass's index."""
    return f"{_base(partition)}expiry"


def sweep_lock(partition: int) -> str:
    return f"{_base(partition)}sweep"


def task_stream(partition: int, group: str) -> str:
    return f"{_base(partition)}q:{group}"


def dead_letters(partition: int, group: str) -> str:
    return f"{_base(partition)}dead:{group}"


def groups(partition: int) -> str:
    return f"{_base(partition)}groups"


def execution(root_id: str) -> str:
    return f"{_base(partition_of(root_id))}x:{root_id}"


def leases(partition: int) -> str:
    return f"{_base(partition)}leases"


def inbox(partition: int, listener: str) -> str:
    return f"{_base(partition)}inbox:{listener}"


def schedule(schedule_id: str) -> str:
    return f"{_base(partition_of(schedule_id))}sched:{schedule_id}"


def schedules_due(partition: int) -> str:
    """Schedule id -> its next tick (epoch ms): the schedule pass reads only the due part."""
    return f"{_base(partition)}sched-due"


def schedules_index(partition: int) -> str:
    """Schedule id -> created_on (epoch ms): listing and search."""
    return f"{_base(partition)}sched-idx"


@dataclass(frozen=True, slots=True)
class PromiseKeys:
    """The eight keys every promise script takes first (KEYS[1..8], see ``scripts/_lib.lua``)."""

    record: str
    callbacks: str
    subscriptions: str
    timeouts: str
    index_all: str
    index_pending: str
    index_resolved: str
    index_rejected: str

    @classmethod
    def of(cls, promise_id: str) -> PromiseKeys:
        base = _BASES[partition_of(promise_id)]  # (the hot path: one partition and base per call)
        return cls(
            f"{base}p:{promise_id}", f"{base}cb:{promise_id}", f"{base}sub:{promise_id}", f"{base}timeouts",
            f"{base}idx:all", f"{base}idx:pending", f"{base}idx:resolved", f"{base}idx:rejected",
        )

    def as_list(self) -> list[str]:
        return [
            self.record, self.callbacks, self.subscriptions, self.timeouts,
            self.index_all, self.index_pending, self.index_resolved, self.index_rejected,
        ]
