"""Search: promises by id glob, state family and tags, newest first, paged with an opaque cursor.

Each partition keeps sorted sets of its promise ids scored by ``created_on`` (all, and one per
state family). A page merges the 16 partitions' indexes newest first (ties broken by id, in
Redis's byte order), filters ids by the glob in Python, then reads the candidate records in one
pipeline and filters them by state and tags. Nothing scans the keyspace (no ``KEYS``, no
``SCAN``). A ``resolved``/``rejected`` search also reads the pending indexes and keeps their
entries whose timeout is due (one ``ZMSCORE`` per batch): they have timed out for every reader
even before the sweep moves them.

Cost of one call: at most ``SCAN_BUDGET`` index entries are examined (read in batches of
``FETCH``, one pipeline per batch round) plus one ``HGETALL`` per glob-matching candidate. When
the budget runs out before the page is full, the page is returned short with a cursor: keep
paging until the cursor is ``None``. The cursor is the (created_on, id) of the last examined
entry, so paging never repeats or skips a promise that existed when paging started.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from . import keys
from .errors import CorruptRecord, ValidationError
from .records import DurablePromise, decode_promise
from .states import apply_timeout
from .validate import check_map

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["SCAN_BUDGET", "Glob", "SearchPage", "search_promises"]

#: index entries examined at most by one search call
SCAN_BUDGET = 2000
#: index entries read from one partition per round
FETCH = 64
MAX_LIMIT = 100
_CURSOR_VERSION = 1

Position = tuple[int, bytes]  # (created_on, id bytes); pages run from newer to older


@dataclass(frozen=True, slots=True)
class SearchPage:
    promises: list[DurablePromise]
    cursor: str | None


#: one step of a compiled glob: ``None`` is ``*``, anything else tests one character
_Token = Callable[[str], bool] | None


def _any(_: str) -> bool:
    return True


def _end(_: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class _Class:
    """``[...]``: single characters and inclusive ranges, maybe negated."""

    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]
    negate: bool

    def __call__(self, c: str) -> bool:
        return (c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)) != self.negate


def _parse_class(pattern: str, i: int) -> tuple[_Class, int]:
    """Parse ``[...]`` whose body starts at ``i``, exactly as Redis's ``stringmatchlen`` does: ``^``
    negates, ``\\x`` is ``x``, ``a-z`` is a range (ends in either order), the first ``]`` closes
    (so ``[]`` is empty), and an unclosed class runs to the end of the pattern."""
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    while i < n:
        if pattern[i] == "\\" and i + 1 < n:
            chars.add(pattern[i + 1])
            i += 2
        elif pattern[i] == "]":
            i += 1
            break
        elif i + 2 < n and pattern[i + 1] == "-":
            lo, hi = sorted((pattern[i], pattern[i + 2]))
            ranges.append((lo, hi))
            i += 3
        else:
            chars.add(pattern[i])
            i += 1
    return _Class(frozenset(chars), tuple(ranges), negate), i


class Glob:
    """A Redis-style glob (``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\`` escapes), matched
    per character in O(len(pattern) * len(text)) — no regular expression, so no pattern can make
    a search backtrack for ever."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens: list[_Token] = []
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i]
            if c == "*":
                if not tokens or tokens[-1] is not None:
                    tokens.append(None)
                i += 1
            elif c == "?":
                tokens.append(_any)
                i += 1
            elif c == "[":
                cls, i = _parse_class(pattern, i + 1)
                tokens.append(cls)
            else:
                if c == "\\" and i + 1 < n:
                    i += 1
                tokens.append(pattern[i].__eq__)
                i += 1
        self.tokens = tokens

    def fullmatch(self, text: str) -> bool:
        tokens = self.tokens
        t = p = 0
        star, resume = -1, 0  # the last ``*`` seen, and where its match would grow by one
        while t < len(text):
            token = tokens[p] if p < len(tokens) else _end
            if token is None:
                star, resume = p, t
                p += 1
            elif token(text[t]):
                p += 1
                t += 1
            elif star >= 0:  # let the last ``*`` take one more character and retry after it
                resume += 1
                p, t = star + 1, resume
            else:
                return False
        return all(token is None for token in tokens[p:])


def encode_cursor(position: Position) -> str:
    raw = msgpack.packb([_CURSOR_VERSION, position[0], position[1]], use_bin_type=True)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    if not isinstance(cursor, str):
        raise ValidationError(f"search cursor must be a string, not {type(cursor).__name__}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, score, ident = msgpack.unpackb(raw, raw=False)
    except (binascii.Error, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as e:
        raise ValidationError(f"invalid search cursor {cursor[:40]!r}") from e
    if version != _CURSOR_VERSION or type(score) is not int or not isinstance(ident, bytes):
        raise ValidationError(f"invalid search cursor {cursor[:40]!r}")
    return score, ident


def _family(state: str | None) -> str:
    if state is None:
        return "all"
    lowered = state.lower()
    if lowered in ("pending", "resolved", "rejected"):
        return lowered
    raise ValidationError(f"state must be pending, resolved or rejected, not {state!r}")


class _Partition:
    """One partition's index, read newest first in batches below a position."""

    def __init__(self, index_key: str, start: Position | None, timeouts_key: str | None = None) -> None:
        self.key = index_key
        self.buffer: list[Position] = []
        self.below = start  # everything at or above this position has been read
        self.exhausted = False
        # Set when this is a pending index read for a resolved/rejected search: only its entries
        # whose timeout is due (per this timeout index) are candidates.
        self.timeouts_key = timeouts_key
        self.due: set[bytes] = set()

    def queue(self, pipe: Any) -> None:
        if self.below is None:
            pipe.zrevrangebyscore(self.key, "+inf", "-inf", start=0, num=FETCH, withscores=True)
            return
        score = self.below[0]
        pipe.zrevrangebyscore(self.key, score, score, withscores=True)  # ties at the position
        pipe.zrevrangebyscore(self.key, f"({score}", "-inf", start=0, num=FETCH, withscores=True)

    def take(self, replies: list[Any]) -> None:
        rows: list[Position] = []
        if self.below is None:
            fetched = replies[0]
            rows = [(int(s), m) for m, s in fetched]
        else:
            ties, fetched = replies
            rows = [(int(s), m) for m, s in ties if m < self.below[1]]
            rows.sort(reverse=True)
            rows += [(int(s), m) for m, s in fetched]
        self.exhausted = len(fetched) < FETCH
        self.buffer = rows
        if rows:
            self.below = rows[-1]

    @property
    def needs_fetch(self) -> bool:
        return not self.buffer and not self.exhausted

    def replies_needed(self) -> int:
        return 1 if self.below is None else 2


def search_promises(
    store: RedisStore,
    id_pattern: str,
    state: str | None,
    tags: Mapping[str, str] | None,
    limit: int,
    cursor: str | None,
) -> SearchPage:
    if not isinstance(id_pattern, str) or not id_pattern:
        raise ValidationError("id pattern must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be an int from 1 to {MAX_LIMIT}, not {limit!r}")
    family = _family(state)
    wanted_tags = check_map(tags, "tags")
    matcher = Glob(id_pattern)
    start = decode_cursor(cursor) if cursor else None
    parts = [_Partition(keys.index(p, family), start) for p in range(keys.PARTITIONS)]
    if family in ("resolved", "rejected"):
        # A pending promise past its timeout is already REJECTED_TIMEDOUT (RESOLVED for a timer)
        # for every reader, but only the sweep moves it to its family's index: read the pending
        # indexes too, keeping only their due entries.
        parts += [_Partition(keys.index(p, "pending"), start, keys.timeouts(p)) for p in range(keys.PARTITIONS)]
    client = store.client
    now = store.now()

    found: list[DurablePromise] = []
    seen: set[bytes] = set()
    examined = 0
    last: Position | None = None
    while len(found) < limit and examined < SCAN_BUDGET:
        _fetch(client, [p for p in parts if p.needs_fetch], now)
        live = [p for p in parts if p.buffer]
        if not live:
            last = None
            break
        # Pop entries newest first while every partition that may hold newer ones has a buffer.
        candidates: list[Position] = []
        while len(candidates) < limit - len(found) and examined < SCAN_BUDGET:
            heads = [p for p in parts if p.buffer]
            if not heads or any(p.needs_fetch for p in parts):
                break
            best = max(heads, key=lambda p: p.buffer[0])
            position = best.buffer.pop(0)
            examined += 1
            last = position
            if best.timeouts_key is not None and position[1] not in best.due:
                continue
            if position[1] in seen:
                continue  # read from the pending index and, once swept, from its family's index
            if matcher.fullmatch(position[1].decode("utf-8", "replace")):
                seen.add(position[1])
                candidates.append(position)
        found.extend(_load(store, client, candidates, family, wanted_tags, now))
        if all(p.exhausted and not p.buffer for p in parts):
            last = None
            break
    return SearchPage(found[:limit], encode_cursor(last) if last is not None else None)


def _fetch(client: Any, stale: list[_Partition], now: int) -> None:
    """Refill the buffers of ``stale`` partitions (one pipeline, and one more for due checks)."""
    if not stale:
        return
    pipe = client.pipeline(transaction=False)
    for p in stale:
        p.queue(pipe)
    replies = pipe.execute()
    offset = 0
    for p in stale:
        n = p.replies_needed()
        p.take(replies[offset : offset + n])
        offset += n
    # Note which entries just read from pending indexes have a due timeout.
    readers = [p for p in stale if p.timeouts_key is not None and p.buffer]
    if not readers:
        return
    pipe = client.pipeline(transaction=False)
    for p in readers:
        pipe.zmscore(p.timeouts_key, [m for _, m in p.buffer])
    for p, scores in zip(readers, pipe.execute(), strict=True):
        p.due = {m for (_, m), score in zip(p.buffer, scores, strict=True) if score is not None and score <= now}


def _load(
    store: RedisStore,
    client: Any,
    candidates: list[Position],
    family: str,
    wanted_tags: Mapping[str, str],
    now: int,
) -> list[DurablePromise]:
    if not candidates:
        return []
    pipe = client.pipeline(transaction=False)
    ids = [c[1].decode("utf-8", "replace") for c in candidates]
    for promise_id in ids:
        pipe.hgetall(keys.promise(promise_id))
    out: list[DurablePromise] = []
    for promise_id, fields in zip(ids, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(fields, Exception):
            if "WRONGTYPE" in str(fields):
                raise CorruptRecord(keys.promise(promise_id), "holds a value of the wrong Redis type") from fields
            raise fields
        if not fields:
            continue  # indexed but gone (removed by hand): skip
        # Reads apply due timeouts, as every read does; the sweep writes them.
        promise = apply_timeout(decode_promise(keys.promise(promise_id), fields), now)
        if family != "all" and promise.state.family != family:
            continue
        if any(promise.tags.get(k) != v for k, v in wanted_tags.items()):
            continue
        out.append(promise)
    return out
