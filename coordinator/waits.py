"""Operator query: the *human waits* — pending promises a workflow waits on that no function will
complete (what the Inbox of ``vow console`` lists, and what a person resolves by hand).

A pending promise is a human wait when

- no function runs it: it has no ``resonate:invoke`` tag (an invoke is completed by its worker);
- it is not a timer (``resonate:timeout=true``: the clock resolves it);
- a workflow waits on it: it holds callbacks (``keys.callbacks``: one field per root workflow
  suspended on it), or it is a step of a workflow (tagged ``vow:root``, the retention anchor the
  worker SDK writes on every child of a workflow).

Built on the store's public search (pending family, newest first) plus one pipelined ``HKEYS`` of
the candidates' callbacks per page: at most ``scan`` pending promises are examined per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import keys
from .connection import translate_errors
from .records import ANCHOR_TAG, INVOKE_TAG, DurablePromise, reply_text

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["HumanWait", "HumanWaits", "human_waits", "is_human_wait_candidate", "waiting_roots"]

#: pending promises examined at most by one :func:`human_waits` call (100 per search page)
DEFAULT_SCAN = 1000
_PAGE = 100


@dataclass(frozen=True, slots=True)
class HumanWait:
    """A pending promise a workflow waits on, and the root workflows waiting for it."""

    promise: DurablePromise
    #: root workflow ids: the ``vow:root`` tag first, then any other root with a callback
    roots: tuple[str, ...]

    @property
    def root(self) -> str | None:
        return self.roots[0] if self.roots else None


@dataclass(frozen=True, slots=True)
class HumanWaits:
    waits: list[HumanWait]
    #: True when more pending promises exist than were examined (the list may be incomplete)
    truncated: bool


def is_human_wait_candidate(promise: DurablePromise) -> bool:
    """Pending, no invoke tag, not a timer (whether anyone waits on it is checked separately)."""
    return promise.pending and INVOKE_TAG not in promise.tags and not promise.is_timer


def _callback_roots(store: RedisStore, promises: list[DurablePromise]) -> list[list[str]]:
    if not promises:
        return []
    with translate_errors(store.url):
        pipe = store.client.pipeline(transaction=False)
        for promise in promises:
            pipe.hkeys(keys.callbacks(promise.id))
        replies = pipe.execute()
    return [sorted(reply_text(field) for field in reply) for reply in replies]


def waiting_roots(store: RedisStore, promises: list[DurablePromise]) -> list[tuple[str, ...]]:
    """For each promise, the root workflows waiting on it: its ``vow:root`` tag first, then any
    other root with a callback on it (one pipelined round trip)."""
    out = []
    for promise, callback_roots in zip(promises, _callback_roots(store, promises), strict=True):
        tagged = promise.tags.get(ANCHOR_TAG)
        out.append(tuple(([tagged] if tagged else []) + [r for r in callback_roots if r != tagged]))
    return out


def human_waits(store: RedisStore, limit: int = 100, scan: int = DEFAULT_SCAN) -> HumanWaits:
    """Up to ``limit`` human waits, newest first, from at most ``scan`` pending promises."""
    found: list[HumanWait] = []
    cursor: str | None = None
    examined = 0
    while examined < scan and len(found) < limit:
        page = store.search("*", state="pending", limit=_PAGE, cursor=cursor)
        examined += len(page.promises)
        candidates = [p for p in page.promises if is_human_wait_candidate(p)]
        for promise, roots in zip(candidates, waiting_roots(store, candidates), strict=True):
            if roots:
                found.append(HumanWait(promise, roots))
        cursor = page.cursor
        if cursor is None:
            return HumanWaits(found[:limit], truncated=False)
    return HumanWaits(found[:limit], truncated=True)
