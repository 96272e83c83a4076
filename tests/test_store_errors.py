"""Bad input, malformed records, unreachable servers, and resent requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import redis

from vow.coordinator import (
    AlreadyCompleted,
    AlreadyExists,
    Callback,
    CorruptRecord,
    NotFound,
    RedisStore,
    State,
    StoreConnectionError,
    ValidationError,
    keys,
)
from vow.coordinator import lua as lua_module
from vow.coordinator.records import INVOKE_TAG
from vow.server import free_port

from .conftest import Clock
from .store_helpers import plain

#: seconds within which an unreachable server must be reported
UNREACHABLE_WITHIN_S = 5.0


def _nothing_written(store: RedisStore) -> None:
    assert store.client.dbsize() == 0, store.client.keys("*")


# -- validation ------------------------------------------------------------------------------------

BAD_CREATES: dict[str, dict[str, Any]] = {
    "empty id": {"promise_id": ""},
    "long id": {"promise_id": "x" * 1025},
    "int id": {"promise_id": 7},
    "none id": {"promise_id": None},
    "nul in id": {"promise_id": "a\x00b"},
    "surrogate in id": {"promise_id": "a\ud800"},
    "empty ikey": {"ikey": ""},
    "int ikey": {"ikey": 3},
    "long ikey": {"ikey": "k" * 1025},
    "int tag value": {"tags": {"a": 1}},
    "int tag key": {"tags": {1: "a"}},
    "empty tag key": {"tags": {"": "a"}},
    "tags not a map": {"tags": [("a", "b")]},
    "bytes header": {"headers": {"a": b"b"}},
    "headers not a map": {"headers": "a=b"},
    "huge tags": {"tags": {"a": "x" * 70_000}},
    "data too big": {"data": b"x" * (1024 * 1024 + 1)},
    "data an int": {"data": 5},
    "data a dict": {"data": {"a": 1}},
    "timeout now": {"timeout": 0},  # relative to the clock, see below
    "timeout past": {"timeout": -1},
    "timeout str": {"timeout": "1800000000000"},
    "timeout float": {"timeout": 1.8e12},
    "timeout bool": {"timeout": True},
    "timeout none": {"timeout": None},
    "timeout zero": {"timeout": "zero"},
    "timeout huge": {"timeout": 2**53},
    "invoke tag bad target": {"tags": {INVOKE_TAG: "http://x"}, "data": b'{"func": "f"}'},
    "invoke data not json": {"tags": {INVOKE_TAG: "poll://g"}, "data": b"{nope"},
}


@pytest.mark.parametrize("case", list(BAD_CREATES))
def test_bad_create_is_refused_and_writes_nothing(store: RedisStore, clock: Clock, case: str) -> None:
    args: dict[str, Any] = {"promise_id": "p", "timeout": clock.now + 1000} | BAD_CREATES[case]
    if case in ("timeout now", "timeout past"):
        args["timeout"] = clock.now + args["timeout"]
    if case == "timeout zero":
        args["timeout"] = 0
    with pytest.raises(ValidationError):
        store.create(**args)
    _nothing_written(store)


def test_data_limit_is_per_store(store: RedisStore, clock: Clock) -> None:
    small = RedisStore(client=store.client, clock=clock, max_data_bytes=4, shebang=store.shebang)
    small.create("ok", clock.now + 1000, data=b"1234")
    with pytest.raises(ValidationError):
        small.create("big", clock.now + 1000, data="12345")
    with pytest.raises(ValidationError):
        small.resolve("ok", data=b"12345")
    assert small.get("ok").pending


BAD_COMPLETES: dict[str, dict[str, Any]] = {
    "empty id": {"promise_id": ""},
    "data too big": {"data": b"x" * (1024 * 1024 + 1)},
    "data a list": {"data": [1]},
    "int header": {"headers": {"a": 1}},
    "int ikey": {"ikey": 1},
    "pending state": {"state": State.PENDING},
    "timedout state": {"state": State.REJECTED_TIMEDOUT},
    "state as text": {"state": "RESOLVED!"},
}


@pytest.mark.parametrize("case", list(BAD_COMPLETES))
def test_bad_complete_is_refused_and_changes_nothing(store: RedisStore, clock: Clock, case: str) -> None:
    before = store.create("p", clock.now + 1000)
    args: dict[str, Any] = {"promise_id": "p", "state": State.RESOLVED} | BAD_COMPLETES[case]
    with pytest.raises(ValidationError):
        store.complete(**args)
    assert plain(store.get("p")) == plain(before)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get(""),
        lambda s: s.get("x" * 1025),
        lambda s: s.register_callback("p", Callback("root", "bad group!", b"m")),
        lambda s: s.register_callback("p", Callback("", "group", b"m")),
        lambda s: s.subscribe("", "listener"),
    ],
    ids=["get empty", "get long", "callback bad group", "callback empty root", "subscribe empty"],
)
def test_other_bad_requests(store: RedisStore, clock: Clock, call: Callable[[RedisStore], object]) -> None:
    store.create("p", clock.now + 1000)
    with pytest.raises(ValidationError):
        call(store)
    assert store.client.exists(keys.callbacks("p"), keys.subscriptions("p")) == 0


# -- malformed records -----------------------------------------------------------------------------


def _good_fields(promise_id: str, now: int) -> dict[str, Any]:
    return {
        "id": promise_id, "state": "PENDING", "to": str(now + 1000), "ph": msgpack.packb({}),
        "tags": msgpack.packb({}), "timer": "0", "co": str(now),
    }


CORRUPTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "no state": lambda f: {k: v for k, v in f.items() if k != "state"},
    "no created_on": lambda f: {k: v for k, v in f.items() if k != "co"},
    "no timeout": lambda f: {k: v for k, v in f.items() if k != "to"},
    "no id": lambda f: {k: v for k, v in f.items() if k != "id"},
    "bad state": lambda f: f | {"state": "DONE"},
    "state lower case": lambda f: f | {"state": "pending"},
    "timeout not a number": lambda f: f | {"to": "soon"},
    "created_on not a number": lambda f: f | {"co": "1.5e3"},
    "tags not msgpack": lambda f: f | {"tags": b"\xc1\xc1"},
    "tags a list": lambda f: f | {"tags": msgpack.packb(["a"])},
    "tags int values": lambda f: f | {"tags": msgpack.packb({"a": 1})},
    "tags bytes keys": lambda f: f | {"tags": msgpack.packb({b"a": "b"}, use_bin_type=True)},
    "tags truncated": lambda f: f | {"tags": msgpack.packb({"a": "b"})[:-1]},
    "tag field not utf-8": lambda f: f | {"t:a": b"\xff"},
    "headers not msgpack": lambda f: f | {"ph": b"\xff"},
    "completed without completed_on": lambda f: f | {"state": "RESOLVED"},
    "pending with completed_on": lambda f: f | {"cd": "5"},
    "id not utf-8": lambda f: f | {"id": b"\xff\xfe"},
    "ikey not utf-8": lambda f: f | {"ikc": b"\xff"},
    "string key": lambda f: None,
    "list key": lambda f: None,
}


def _write_corrupt(store: RedisStore, now: int, case: str) -> str:
    """Write the promise 'p' malformed, by hand, in the way named by ``case``; return its key."""
    key = keys.promise("p")
    store.client.delete(key)
    fields = CORRUPTIONS[case](_good_fields("p", now))
    if case == "string key":
        store.client.set(key, "a string")
    elif case == "list key":
        store.client.rpush(key, "a", "b")
    else:
        assert fields is not None
        store.client.hset(key, mapping=fields)
    partition = keys.partition_of("p")
    store.client.zadd(keys.index(partition), {"p": now})
    store.client.zadd(keys.index(partition, "pending"), {"p": now})
    store.client.zadd(keys.timeouts(partition), {"p": now + 1000})
    return key


OPERATIONS: dict[str, Callable[[RedisStore, int], object]] = {
    "get": lambda s, now: s.get("p"),
    "create": lambda s, now: s.create("p", now + 5000, ikey="k"),
    "resolve": lambda s, now: s.resolve("p"),
    "cancel strict": lambda s, now: s.cancel("p", strict=True),
    "register": lambda s, now: s.register_callback("p", Callback("root", "g", b"m")),
    "wait": lambda s, now: s.wait("p", timeout=0.01),
    "search": lambda s, now: s.search(),
    "search pending": lambda s, now: s.search("p", state="pending"),
}

#: (case, operation) pairs that may answer normally: the damage is in a part the answer never
#: reads, or the request itself writes a well-formed record over it
TOLERATED = {
    ("no id", "create"), ("id not utf-8", "create"), ("ikey not utf-8", "create"),
    ("no id", "wait"), ("id not utf-8", "wait"), ("ikey not utf-8", "wait"),
    ("pending with completed_on", "resolve"), ("pending with completed_on", "cancel strict"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_malformed_record_is_reported_with_its_key(store: RedisStore, clock: Clock, case: str) -> None:
    problems = []
    for operation, call in OPERATIONS.items():
        key = _write_corrupt(store, clock.now, case)
        try:
            call(store, clock.now)
        except CorruptRecord as e:
            if e.key != key or key not in str(e):
                problems.append(f"{operation}: CorruptRecord names {e.key!r}")
        except (AlreadyExists, AlreadyCompleted, TimeoutError) as e:
            if (case, operation) not in TOLERATED:
                problems.append(f"{operation}: {e!r}")
        except Exception as e:  # anything else is a crash
            problems.append(f"{operation}: crashed with {e!r}")
        else:
            if (case, operation) not in TOLERATED:
                problems.append(f"{operation}: no CorruptRecord")
    assert not problems, problems


@pytest.mark.parametrize("case", ["string key", "bad state", "no timeout", "tags not msgpack"])
def test_sweep_survives_a_malformed_record(store: RedisStore, clock: Clock, case: str) -> None:
    store.create("good", clock.now + 500)
    _write_corrupt(store, clock.now, case)
    clock.advance(2000)
    assert store.sweep() in (1, 2)  # the good one, perhaps the bad one; the sweep goes on
    assert store.get("good").state is State.REJECTED_TIMEDOUT
    assert store.sweep() == 0
    assert store.client.zcard(keys.timeouts(keys.partition_of("p"))) == 0


# -- connection problems ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [lambda s: s.get("p"), lambda s: s.create("p", 2**40), lambda s: s.search(), lambda s: s.now(),
     lambda s: s.sweep()],
    ids=["get", "create", "search", "now", "sweep"],
)
def test_unreachable_server(call: Callable[[RedisStore], object]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisStore(url)  # constructing never connects
    started = time.monotonic()
    with pytest.raises(StoreConnectionError) as info:
        call(store)
    assert time.monotonic() - started < UNREACHABLE_WITHIN_S
    assert info.value.url == url and url in str(info.value)


def test_unreachable_unix_socket(tmp_path: Any) -> None:
    url = f"unix://{tmp_path}/no.sock"
    with pytest.raises(StoreConnectionError) as info:
        RedisStore(url).get("p")
    assert url in str(info.value)


@pytest.fixture
def acl_user(raw_client: redis.Redis) -> Iterator[str]:
    raw_client.acl_setuser("vowtest", enabled=True, passwords=["+right-pass"], keys=["*"], commands=["+@all"])
    yield "vowtest"
    raw_client.acl_deluser("vowtest")


def test_wrong_password(redis_url: str, acl_user: str) -> None:
    host_port = redis_url.removeprefix("redis://")
    bad = RedisStore(f"redis://{acl_user}:wrong-pass@{host_port}")
    started = time.monotonic()
    with pytest.raises(StoreConnectionError) as info:
        bad.get("p")
    assert time.monotonic() - started < UNREACHABLE_WITHIN_S
    assert "wrong-pass" not in str(info.value) and "***" in info.value.url  # the password is never shown
    good = RedisStore(f"redis://{acl_user}:right-pass@{host_port}")
    with pytest.raises(NotFound):
        good.get("p")
    good.close()


# -- resends ---------------------------------------------------------------------------------------


@pytest.fixture
def same_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request carries the same id: what a resend of one request looks like to the server."""
    monkeypatch.setattr(lua_module, "request_id", lambda: "resent-request")


def test_resent_create_is_not_already_exists(store: RedisStore, clock: Clock, same_request_id: None) -> None:
    timeout = clock.now + 1000
    first = store.create("p", timeout, data=b"d")  # no idempotency key
    clock.advance(1)  # a resend is the same request (same timeout), sent a little later
    again = store.create("p", timeout, data=b"d")
    assert plain(again) == plain(first)


def test_resent_create_queues_its_invoke_once(store: RedisStore, clock: Clock, same_request_id: None) -> None:
    args: dict[str, Any] = {"tags": {INVOKE_TAG: "poll://email"}, "data": b'{"func": "send", "args": []}'}
    store.create("p", clock.now + 1000, **args)
    store.create("p", clock.now + 1000, **args)
    assert store.client.xlen(keys.task_stream(keys.partition_of("p"), "email")) == 1


def test_resent_resolve_is_not_already_completed(store: RedisStore, clock: Clock, same_request_id: None) -> None:
    store.create("p", clock.now + 1000)
    store.register_callback("p", Callback("root", "email", b"m"))
    first = store.resolve("p", data=b"v")
    clock.advance(1)
    again = store.resolve("p", data=b"v")
    assert plain(again) == plain(first)
    assert store.client.xlen(keys.task_stream(keys.partition_of("p"), "email")) == 1


def test_a_different_request_is_still_refused(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 1000)
    store.resolve("p")
    with pytest.raises(AlreadyExists):
        store.create("p", clock.now + 1000)
    with pytest.raises(AlreadyCompleted):
        store.resolve("p")
