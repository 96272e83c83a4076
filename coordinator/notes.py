"""Waiting for a promise to complete: subscriptions, inboxes and the notifications they receive.

A subscription (``vow:{T}:sub:<id>``: listener -> ``1``) asks the script that completes the
promise to push a notification onto the listener's inbox (``vow:{T}:inbox:<listener>``, a list
with a short TTL, in the promise's partition). The notification carries the completed record, so
a waiter needs no read after it wakes: NUL, then the record's fields and values as netstrings
(``<length>:<bytes>``), or the bare promise id when the record is too large to copy
(``notification()`` in ``scripts/_lib.lua``). A notification that is not well formed, or is of
another promise, is not trusted: the waiter reads the record instead.

A wait that subscribed in the promise's create (``Scheduler.rpc``/``run``) is one round trip:
the ``BLPOP``. Otherwise it is two: subscribe (which answers at once if the promise is already
completed), then ``BLPOP``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import keys
from .connection import translate_errors
from .errors import CorruptRecord
from .lua import request_id
from .records import DurablePromise, decode_promise

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["WAIT_RECHECK_S", "parse_notification", "wait_for"]

#: seconds a wait blocks before it renews its subscription (in case a notification was lost,
#: e.g. by a Redis restart without persistence)
WAIT_RECHECK_S = 2.0

#: most fields a record can have (a notification with more is not one Vow wrote)
_MAX_FIELDS = 64


def _netstrings(raw: bytes) -> list[bytes] | None:
    """The strings of ``<length>:<bytes>`` netstrings back to back, or None if malformed."""
    out: list[bytes] = []
    at, end = 0, len(raw)
    while at < end:
        colon = raw.find(b":", at, at + 12)
        if colon <= at or not raw[at:colon].isdigit():
            return None
        start = colon + 1
        stop = start + int(raw[at:colon])
        if stop > end or len(out) >= 2 * _MAX_FIELDS:
            return None
        out.append(raw[start:stop])
        at = stop
    return out


def parse_notification(promise_id: str, raw: object) -> DurablePromise | None:
    """The completed record a notification carries, or None when it carries none (a bare id, a
    malformed or foreign one): the waiter then reads the record."""
    if not isinstance(raw, bytes) or not raw.startswith(b"\0"):
        return None
    strings = _netstrings(raw[1:])
    if strings is None or len(strings) % 2:
        return None
    try:
        promise = decode_promise(keys.promise(promise_id), dict(zip(strings[::2], strings[1::2], strict=True)))
    except CorruptRecord:
        return None
    return promise if promise.id == promise_id and promise.completed else None


def wait_for(
    store: RedisStore, promise_id: str, timeout: float | None, listener: str | None = None
) -> DurablePromise:
    """Block until ``promise_id`` is completed; returns its record (see :meth:`RedisStore.wait`).
    ``listener``: a subscription the caller made already (in the create), so the first round
    trip is the ``BLPOP``."""
    subscribed = listener is not None
    listener = listener or request_id()
    inbox = keys.inbox(keys.partition_of(promise_id), listener)
    deadline = None if timeout is None else time.monotonic() + timeout
    promise = None if subscribed else store.subscribe(promise_id, listener)
    while promise is None or not promise.completed:
        left = WAIT_RECHECK_S if deadline is None else min(WAIT_RECHECK_S, deadline - time.monotonic())
        if left <= 0:
            with translate_errors(store.url, promise_id):
                store.client.hdel(keys.subscriptions(promise_id), listener)
            raise TimeoutError(f"promise {promise_id!r} still pending after {timeout}s")
        with translate_errors(store.url, inbox):
            notified = store.scripts.thread_client().blpop([inbox], timeout=max(left, 0.01))
        if notified:
            promise = parse_notification(promise_id, notified[1]) or store.get(promise_id)
        else:
            promise = store.subscribe(promise_id, listener)
    return promise
