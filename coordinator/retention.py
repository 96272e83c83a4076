"""Retention: completed promises leave Redis a while after their completion.

Every promise carries its retention (record field ``rn``, ms; written by its create, from the
create's ``retention=`` or the store's). The script that completes it (complete, settle, a
timeout, a create of a recorded step) puts it in its partition's expiry index
``vow:{T}:expiry`` scored by completion + retention. Pending promises are never in it.

:func:`expire_due` is the expiry pass, run by every worker's maintenance loop beside the timeout
sweep. When nothing is due it is one round trip (each partition's earliest expiry and the
server's TIME in one pipeline); otherwise ``expire.lua`` removes the due promises of a partition
with every key and index entry, O(expired). A promise anchored to a workflow (tagged
``vow:root`` = another id: a step, a remote call, a wait or a timer of that workflow) is held
back by the script and decided here, because the workflow may live in another partition (another
slot): while the workflow is pending the step is kept (checked again one retention later); once
the workflow is completed the step is kept until the workflow expires; a workflow gone takes its
steps with it. So a replay never misses a recorded step, and ``vow tree`` of a kept workflow
shows all of it.

:func:`purge_promises` is the operator's removal on demand (``vow promises purge``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import keys
from .connection import translate_errors
from .lua import Held
from .records import ANCHOR_TAG, State

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["EXPIRE_BATCH", "due_partitions", "expire_due", "purge_promises"]

#: promises examined per expire script call (bounds one script's run time)
EXPIRE_BATCH = 500
#: expire script calls per partition in one pass at most (the next pass goes on)
MAX_CALLS = 100
#: verdict: remove now / keep for ever (else: keep until that epoch ms)
REMOVE, KEEP_FOR_EVER = 0, -1


def due_partitions(store: RedisStore, index: Callable[[int], str]) -> tuple[int, list[int]]:
    """(now, the partitions whose index ``index(p)`` has an entry scored <= now) in one round
    trip: each partition's earliest entry and, on a standalone server, its TIME, pipelined."""
    client = store.client
    server_time = store.clock is None and not store.is_cluster
    with translate_errors(store.url):
        pipe = client.pipeline(transaction=False)
        for p in range(keys.PARTITIONS):
            pipe.zrange(index(p), 0, 0, withscores=True)
        if server_time:
            pipe.time()
        replies = pipe.execute()
    if server_time:
        seconds, micros = replies.pop()
        now = int(seconds) * 1000 + int(micros) // 1000
    else:
        now = store.now()
    return now, [p for p, rows in enumerate(replies) if rows and int(rows[0][1]) <= now]


def expire_due(store: RedisStore, limit: int | None = None) -> int:
    """Remove every completed promise whose retention has passed (at most ``limit``, if given);
    returns how many were removed."""
    _, partitions = due_partitions(store, keys.expiry)
    total = 0
    for partition in partitions:
        verdicts: list[tuple[str, int]] = []
        for _ in range(MAX_CALLS):  # each call removes or postpones what it saw; bounded anyway
            batch = EXPIRE_BATCH if limit is None else min(EXPIRE_BATCH, limit - total)
            if batch <= 0:
                return total
            removed, more, held, now = store.scripts.expire(
                partition, anchor_tag=ANCHOR_TAG, limit=batch, verdicts=verdicts
            )
            total += removed
            verdicts = _verdicts(store, held, now) if held else []
            if not more and not verdicts:
                break
    return total


def _verdicts(store: RedisStore, held: list[Held], now: int) -> list[tuple[str, int]]:
    """Read each held promise's anchor (state, and when it expires) and decide, by the clock of
    the script that held them (a step kept until a time that has passed meanwhile goes now)."""
    anchors = sorted({h.anchor for h in held})
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for anchor in anchors:
            pipe.hget(keys.promise(anchor), "state")
            pipe.zscore(keys.expiry(keys.partition_of(anchor)), anchor)
        replies = pipe.execute()
    seen: dict[str, tuple[Any, Any]] = {
        anchor: (replies[2 * i], replies[2 * i + 1]) for i, anchor in enumerate(anchors)
    }
    verdicts = []
    for h in held:
        state, expires = seen[h.anchor]
        if state is None:
            keep = REMOVE  # the workflow is gone: its steps go too
        elif state == State.PENDING.value.encode():
            keep = now + max(h.retention or 0, 1000)  # may still replay it: look again later
        elif expires is None:
            keep = KEEP_FOR_EVER  # the workflow is kept for ever, and so are its steps
        else:
            keep = int(expires) if int(expires) > now else REMOVE
        verdicts.append((h.promise_id, keep))
    return verdicts


def purge_promises(
    store: RedisStore, id_pattern: str, family: str | None, older_than_ms: int | None, dry_run: bool
) -> list[str]:
    """Remove the completed promises matching ``id_pattern`` (and ``family``, and completed more
    than ``older_than_ms`` ago) now. The search pages through the indexes; each removal is
    checked again by ``purge.lua`` (a promise never pending, matching at removal time)."""
    if family not in (None, "resolved", "rejected"):
        raise ValueError(f"family must be resolved or rejected, not {family!r}")
    before = None if older_than_ms is None else store.now() - older_than_ms
    matched: list[str] = []
    families = [family] if family else ["resolved", "rejected"]
    for fam in families:
        cursor = None
        while True:
            page = store.search(id_pattern, state=fam, limit=100, cursor=cursor)
            for promise in page.promises:
                if promise.pending or promise.completed_on is None:
                    continue
                if before is not None and promise.completed_on >= before:
                    continue
                matched.append(promise.id)
            cursor = page.cursor
            if cursor is None:
                break
    if dry_run:
        return matched
    return [
        promise_id for promise_id in matched
        if store.scripts.purge(promise_id, family=family, completed_before=before)
    ]
