"""Search: id globs, state families, tags, newest-first order and cursor paging."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator

import msgpack
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from vow.coordinator import RedisStore, State, ValidationError, search
from vow.coordinator.records import TIMER_TAG
from vow.server import ServerProcess

from .conftest import Clock
from .store_helpers import search_all


def _order_key(created_on: int, promise_id: str) -> tuple[int, bytes]:
    return created_on, promise_id.encode()


def _ids(store: RedisStore, **kwargs: object) -> list[str]:
    found, _ = search_all(store, **kwargs)
    return [p.id for p in found]


def _assert_newest_first(found: list) -> None:  # type: ignore[type-arg]
    order = [_order_key(p.created_on, p.id) for p in found]
    assert order == sorted(order, reverse=True)


def test_empty_store(store: RedisStore) -> None:
    page = store.search()
    assert page.promises == [] and page.cursor is None


def test_paging_through_a_thousand_each_once_newest_first(store: RedisStore, clock: Clock) -> None:
    ids = [f"job-{n:04d}" for n in range(1000)]
    for n, promise_id in enumerate(ids):
        if n % 3 == 0:
            clock.advance(1)  # three promises per millisecond: ties in the index
        store.create(promise_id, clock.now + 60_000)
    found, pages = search_all(store, limit=100)
    assert pages in (10, 11)
    assert len(found) == 1000 and sorted(p.id for p in found) == ids
    _assert_newest_first(found)
    assert found[0].id == "job-0999"
    # Every page but the last is full when nothing is filtered out.
    page = store.search(limit=100)
    assert len(page.promises) == 100 and page.cursor is not None
    second = store.search(limit=100, cursor=page.cursor)
    assert {p.id for p in page.promises}.isdisjoint(p.id for p in second.promises)


def test_paging_many_promises_in_one_millisecond(store: RedisStore, clock: Clock) -> None:
    ids = {f"tie-{n}" for n in range(150)}
    for promise_id in ids:
        store.create(promise_id, clock.now + 60_000)
    found, pages = search_all(store, limit=7)
    assert pages >= 150 // 7
    assert len(found) == 150 and {p.id for p in found} == ids
    assert [p.id for p in found] == sorted(ids, key=str.encode, reverse=True)


def test_short_pages_when_the_budget_runs_out(
    store: RedisStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SCAN_BUDGET", 30)
    hits = set()
    for n in range(240):
        clock.advance(n % 2)
        promise_id = f"hit-{n}" if n % 37 == 0 else f"miss-{n}"
        if n % 37 == 0:
            hits.add(promise_id)
        store.create(promise_id, clock.now + 60_000)
    found, pages = search_all(store, id_pattern="hit-*", limit=100)
    assert [p.id for p in found].count("hit-0") == 1
    assert {p.id for p in found} == hits and len(found) == len(hits)
    assert pages >= 240 // 30  # short pages, each with a cursor to continue
    _assert_newest_first(found)


def test_paging_is_stable_while_promises_are_added_and_completed(store: RedisStore, clock: Clock) -> None:
    old = [f"old-{n}" for n in range(100)]
    for n, promise_id in enumerate(old):
        clock.advance(n % 2)
        store.create(promise_id, clock.now + 60_000)
    first = store.search(limit=40)
    seen = [p.id for p in first.promises]
    cursor = first.cursor
    for n in range(30):
        clock.advance(1)
        store.create(f"new-{n}", clock.now + 60_000)  # newer than the cursor: not on later pages
    for promise_id in old[:60:3]:
        store.resolve(promise_id)  # completing does not move a promise in the "all" index
    while cursor is not None:
        page = store.search(limit=40, cursor=cursor)
        seen += [p.id for p in page.promises]
        cursor = page.cursor
    assert sorted(seen) == sorted(old)


def test_state_families(store: RedisStore, clock: Clock) -> None:
    t = clock.now
    timer = {TIMER_TAG: "true"}
    store.create("pending", t + 10_000)
    store.create("resolved", t + 10_000)
    store.resolve("resolved")
    store.create("rejected", t + 10_000)
    store.reject("rejected")
    store.create("canceled", t + 10_000)
    store.cancel("canceled")
    store.create("timedout-read", t + 100)
    store.create("timedout-lazy", t + 100)
    store.create("timer-read", t + 100, tags=timer)
    store.create("timer-lazy", t + 100, tags=timer)
    clock.advance(100)
    assert store.get("timedout-read").state is State.REJECTED_TIMEDOUT
    assert store.get("timer-read").state is State.RESOLVED
    # "timedout-lazy" and "timer-lazy" timed out but nothing wrote it yet: every reader sees it.
    want = {
        "pending": {"pending"},
        "resolved": {"resolved", "timer-read", "timer-lazy"},
        "rejected": {"rejected", "canceled", "timedout-read", "timedout-lazy"},
    }
    everything = set().union(*want.values())
    for sweep in (False, True):
        if sweep:
            assert store.sweep() == 2
        for family, ids in want.items():
            found, _ = search_all(store, state=family)
            assert {p.id for p in found} == ids, (family, sweep)
            assert len(found) == len(ids)
            assert all(p.state.family == family for p in found)
            assert {p.id for p in found if p.state is State.REJECTED_TIMEDOUT} <= {"timedout-read", "timedout-lazy"}
            _assert_newest_first(found)
        assert set(_ids(store, state=None)) == everything
        assert set(_ids(store, state="REJECTED")) == want["rejected"]  # the family name, any case


def test_rejected_search_pages_through_many_due_pending(store: RedisStore, clock: Clock) -> None:
    for n in range(150):
        store.create(f"due-{n}", clock.now + 10 + n % 2 * 10_000)
    clock.advance(10)
    found, _ = search_all(store, state="rejected", limit=9)
    assert sorted(p.id for p in found) == sorted(f"due-{n}" for n in range(0, 150, 2))
    found, _ = search_all(store, state="pending", limit=9)
    assert sorted(p.id for p in found) == sorted(f"due-{n}" for n in range(1, 150, 2))


def test_tag_filters_must_all_match(store: RedisStore, clock: Clock) -> None:
    tags = {
        "a": {"env": "prod", "team": "x"},
        "b": {"env": "prod"},
        "c": {"env": "dev", "team": "x"},
        "d": {},
    }
    for promise_id, t in tags.items():
        store.create(promise_id, clock.now + 1000, tags=t)
    store.resolve("b")
    assert set(_ids(store, tags={"env": "prod"})) == {"a", "b"}
    assert set(_ids(store, tags={"env": "prod", "team": "x"})) == {"a"}
    assert set(_ids(store, tags={"team": "x"})) == {"a", "c"}
    assert set(_ids(store, tags={"env": "staging"})) == set()
    assert set(_ids(store, tags={})) == {"a", "b", "c", "d"}
    assert set(_ids(store, tags={"env": "prod"}, state="resolved")) == {"b"}
    assert set(_ids(store, tags={"env": "prod"}, state="pending")) == {"a"}


SPECIAL_IDS = ["a*b", "a_b", "a%b", "a{b}c", "axb", "ab", "{x}", "a\\b", "a[b]", "A*B", "é*ü"]
GLOBS = {
    "*": set(SPECIAL_IDS),
    "a\\*b": {"a*b"},
    "a*b": {"a*b", "a_b", "a%b", "axb", "ab", "a\\b"},
    "a_b": {"a_b"},
    "a%b": {"a%b"},
    "a{b}c": {"a{b}c"},
    "{*": {"{x}"},
    "*}*": {"a{b}c", "{x}"},
    "a?b": {"a*b", "a_b", "a%b", "axb", "a\\b"},
    "a\\\\b": {"a\\b"},
    "a\\[b\\]": {"a[b]"},
    "a[_%]b": {"a_b", "a%b"},
    "a[^_%]b": {"a*b", "axb", "a\\b"},
    "[A-Z]*": {"A*B"},
    "é\\*ü": {"é*ü"},
    "nothing*": set(),
}


@pytest.mark.parametrize("pattern", list(GLOBS))
def test_id_globs(store: RedisStore, clock: Clock, pattern: str) -> None:
    for promise_id in SPECIAL_IDS:
        store.create(promise_id, clock.now + 1000)
    assert set(_ids(store, id_pattern=pattern)) == GLOBS[pattern]


def test_globs_match_like_redis(raw_client: redis.Redis) -> None:
    """The store's glob agrees with the server's own matcher (SSCAN MATCH) on every pattern."""
    raw_client.sadd("ids", *SPECIAL_IDS)
    for pattern in GLOBS:
        by_redis = {m.decode() for m in raw_client.sscan_iter("ids", match=pattern)}
        by_vow = {i for i in SPECIAL_IDS if search.Glob(pattern).fullmatch(i)}
        assert by_vow == by_redis, pattern


#: pieces of patterns, including the odd corners of Redis's matcher (empty and unclosed classes,
#: escapes inside classes, ranges written backwards or ending in "]")
GLOB_PIECES = ["a", "b", "-", "^", "]", "\\", "*", "?", "[", "[ab]", "[^a]", "[a-c]", "[c-a]", "[]", "[^]",
               "[\\]]", "[a-]", "[-a]", "\\*", "\\[", "\\\\"]
GLOB_TEXTS = sorted({"".join(t) for n in range(1, 4) for t in itertools.product("ab-^]\\*[", repeat=n)})


@pytest.fixture(scope="module")
def glob_server() -> Iterator[redis.Redis]:
    """A set holding every short text over the glob alphabet, on a server of its own."""
    with ServerProcess() as server:
        client = server.client()
        client.sadd("texts", *GLOB_TEXTS)
        yield client
        client.close()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(pieces=st.lists(st.sampled_from(GLOB_PIECES), min_size=1, max_size=4))
def test_glob_agrees_with_redis_on_any_pattern(glob_server: redis.Redis, pieces: list[str]) -> None:
    pattern = "".join(pieces)
    by_redis = {m.decode() for m in glob_server.sscan_iter("texts", match=pattern, count=10_000)}
    by_vow = {t for t in GLOB_TEXTS if search.Glob(pattern).fullmatch(t)}
    assert by_vow == by_redis, pattern


def test_no_pattern_makes_search_backtrack_for_ever(store: RedisStore, clock: Clock) -> None:
    store.create("a" * 1024, clock.now + 1000)
    store.create("a" * 1023 + "b", clock.now + 1000)
    started = time.monotonic()
    assert _ids(store, id_pattern="*a*a*a*a*a*a*a*a*a*c") == []
    assert _ids(store, id_pattern="*a*a*a*a*a*a*a*a*a*b") == ["a" * 1023 + "b"]
    assert time.monotonic() - started < 5  # a backtracking matcher takes hours here


def test_odd_classes_do_not_crash(store: RedisStore, clock: Clock) -> None:
    for promise_id in ("x", "]", "^"):
        store.create(promise_id, clock.now + 1000)
    assert set(_ids(store, id_pattern="[^]")) == {"x", "]", "^"}  # an empty negated class: any character
    assert _ids(store, id_pattern="[]") == []
    assert set(_ids(store, id_pattern="[")) == set()
    assert set(_ids(store, id_pattern="[x")) == {"x"}  # unclosed: the class runs to the end


def _cursor(body: object) -> str:
    return base64.urlsafe_b64encode(msgpack.packb(body, use_bin_type=True)).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["not a cursor!", "AAAA", "é", "=", _cursor([2, 5, b"x"]), _cursor([1, "5", b"x"]), _cursor([1, 5, "x"]),
     _cursor("text"), _cursor([1, 5]), _cursor({"v": 1}), _cursor([1, 5, b"x"]) + "garbage",
     _cursor([1, True, b"x"]), _cursor([1, 5, b"x", 4]), 5, b"AAAA"],
)
def test_invalid_cursor(store: RedisStore, clock: Clock, cursor: str) -> None:
    store.create("p", clock.now + 1000)
    with pytest.raises(ValidationError):
        store.search(cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 101, 1000, True, 1.5, "10", None])
def test_invalid_limit(store: RedisStore, limit: object) -> None:
    with pytest.raises(ValidationError):
        store.search(limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"state": "done"}, {"state": ""}, {"state": "REJECTED_CANCELED"}, {"id_pattern": ""},
     {"tags": {"a": 1}}, {"tags": ["a"]}],
)
def test_invalid_filters(store: RedisStore, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        store.search(**kwargs)  # type: ignore[arg-type]


def test_limits_at_the_edges(store: RedisStore, clock: Clock) -> None:
    for n in range(3):
        store.create(f"p{n}", clock.now + 1000)
    assert len(store.search(limit=1).promises) == 1
    assert len(store.search(limit=100).promises) == 3


def test_search_never_scans_the_keyspace(redis_url: str, raw_client: redis.Redis, clock: Clock) -> None:
    store = RedisStore(redis_url, clock=clock)
    for n in range(50):
        store.create(f"p{n}", clock.now + 1000, tags={"n": str(n % 2)})
    raw_client.config_resetstat()
    search_all(store, id_pattern="p1*", tags={"n": "1"}, state="rejected", limit=3)
    search_all(store, limit=3)
    stats = raw_client.info("commandstats")
    assert "cmdstat_zrevrangebyscore" in stats
    assert not {"cmdstat_keys", "cmdstat_scan"} & set(stats)
    store.close()
