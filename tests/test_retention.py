"""Retention: completed promises expire with every key and index entry; pending ones never do;
a workflow's steps are kept at least as long as the workflow (coordinator/retention.py).

Time is the store's injected clock, so a 1 s retention passes without waiting."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis

from tests.conftest import Clock
from vow.coordinator import Callback, Completion, RedisStore, State, Value, keys
from vow.coordinator.errors import ValidationError
from vow.coordinator.states import Status
from vow.worker import Context

RETENTION_MS = 1000
ROOT_TAG = "vow:root"


@pytest.fixture(params=["redis", "cluster"])
def short(request: pytest.FixtureRequest, clock: Clock) -> Iterator[RedisStore]:
    """A store whose promises are kept 1 s after completion, on a server and on a cluster."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
    store = RedisStore(url, clock=clock, retention=RETENTION_MS / 1000)
    yield store
    store.close()


def all_keys(store: RedisStore) -> set[str]:
    client: Any = store.client
    if isinstance(client, redis.RedisCluster):
        found = client.keys(target_nodes=redis.RedisCluster.ALL_NODES)
    else:
        found = client.keys("*")
    return {k.decode() for k in found}


def indexed(store: RedisStore, promise_id: str) -> list[str]:
    """The partition indexes that still name ``promise_id``."""
    p = keys.partition_of(promise_id)
    names = [keys.index(p, f) for f in ("all", "pending", "resolved", "rejected")]
    names += [keys.timeouts(p), keys.expiry(p), keys.leases(p)]
    return [name for name in names if store.client.zscore(name, promise_id) is not None]


def gone(store: RedisStore, promise_id: str) -> bool:
    return store.read_records([promise_id])[promise_id] is None and not indexed(store, promise_id)


def completed_step(store: RedisStore, clock: Clock, step_id: str, root_id: str, **kwargs: Any) -> None:
    store.create_ex(
        step_id, clock.now + 60_000, tags={ROOT_TAG: root_id},
        completion=Completion(State.RESOLVED, Value(data=b"1"), None), **kwargs,
    )


def test_completed_promises_expire_with_every_key_and_index_entry(short: RedisStore, clock: Clock) -> None:
    short.create("keep-pending", clock.now + 3_600_000, data="waits")
    before = all_keys(short)
    short.create("resolved", clock.now + 60_000, data="x")
    short.resolve("resolved", data="done")
    short.create("rejected", clock.now + 60_000)
    short.reject("rejected")
    short.create("timed-out", clock.now + 500)
    short.create_ex("listened", clock.now + 60_000, listener="someone",
                    callback=Callback("keep-pending", "g", b"resume"))
    short.cancel("listened")
    completed_step(short, clock, "recorded", "recorded")  # tagged with itself: no other anchor
    done = ["resolved", "rejected", "timed-out", "listened", "recorded"]

    clock.advance(600)
    assert short.sweep() == 1  # timed-out completes at its timeout (t+500): expires at t+1500
    clock.advance(RETENTION_MS - 601)  # t+999: nothing has been completed a whole second yet
    assert short.expire() == 0
    assert all(short.read_records(done).values())

    clock.advance(600)  # t+1599: past every expiry
    assert short.expire() == len(done)
    for promise_id in done:
        assert gone(short, promise_id), (promise_id, indexed(short, promise_id))
    assert short.get("keep-pending").pending
    # what completing sent on: the listener's notification (its own TTL) and the awaiting root's task
    sent = {keys.inbox(keys.partition_of("listened"), "someone"), keys.task_stream(keys.partition_of("listened"), "g")}
    assert all_keys(short) - before == sent
    assert short.expire() == 0  # nothing left to do: a second pass finds nothing


def test_pending_promises_never_expire(short: RedisStore, clock: Clock) -> None:
    short.create("waits", clock.now + 30 * 86_400_000)
    clock.advance(10 * 86_400_000)
    assert short.expire() == 0
    assert short.get("waits").pending
    assert short.client.zcard(keys.expiry(keys.partition_of("waits"))) == 0


def test_steps_of_a_pending_workflow_stay_and_go_with_it(short: RedisStore, clock: Clock) -> None:
    root = "wf-long-wait"
    steps = [f"{root}.{i}" for i in range(1, 6)]  # spread over partitions (and nodes)
    assert len({keys.partition_of(s) for s in [root, *steps]}) > 2
    short.create(root, clock.now + 30 * 86_400_000)
    for step in steps:
        completed_step(short, clock, step, root)

    for _ in range(3):  # days pass while a human does not answer: no step may go
        clock.advance(86_400_000)
        assert short.expire() == 0
        assert all(short.read_records(steps).values())

    short.resolve(root, data="answered")
    clock.advance(RETENTION_MS - 1)
    assert short.expire() == 0
    clock.advance(2)
    removed = short.expire()
    assert removed == 1 + len(steps)
    assert all(gone(short, s) for s in [root, *steps])


def test_steps_are_kept_as_long_as_a_workflow_kept_longer(short: RedisStore, clock: Clock) -> None:
    short.create("wf-kept", clock.now + 60_000, retention="1h")
    completed_step(short, clock, "wf-kept.1", "wf-kept")  # the store's 1 s
    short.resolve("wf-kept")
    clock.advance(2 * RETENTION_MS)
    assert short.expire() == 0
    assert short.read_records(["wf-kept.1"])["wf-kept.1"] is not None
    clock.advance(3_600_000)
    assert short.expire() == 2


def test_steps_of_a_workflow_kept_for_ever_are_kept_for_ever(short: RedisStore, clock: Clock) -> None:
    short.create("wf-ever", clock.now + 60_000, retention="forever")
    completed_step(short, clock, "wf-ever.1", "wf-ever")
    short.resolve("wf-ever")
    clock.advance(365 * 86_400_000)
    assert short.expire() == 0
    assert all(short.read_records(["wf-ever", "wf-ever.1"]).values())
    assert short.client.zcard(keys.expiry(keys.partition_of("wf-ever.1"))) == 0  # not looked at again


def test_a_step_written_with_its_tags_in_one_blob_is_still_anchored(short: RedisStore, clock: Clock) -> None:
    """Records written before tags were fields of their own keep their anchor."""
    short.create("wf-old", clock.now + 60_000)
    completed_step(short, clock, "wf-old.1", "wf-old")
    key = keys.promise("wf-old.1")
    short.client.hdel(key, f"t:{ROOT_TAG}")
    short.client.hset(key, "tags", msgpack.packb({ROOT_TAG: "wf-old"}))
    assert short.get("wf-old.1").tags == {ROOT_TAG: "wf-old"}
    clock.advance(2 * RETENTION_MS)
    assert short.expire() == 0  # its workflow is pending: kept
    short.resolve("wf-old")
    clock.advance(2 * RETENTION_MS)
    assert short.expire() == 2


def test_a_step_record_with_long_tags_stays_a_listpack(short: RedisStore, clock: Clock) -> None:
    """One field per tag: tags of 100 bytes in all (a blob of them would pass the 64-byte listpack
    limit and take ~650 bytes more) leave the record compact."""
    root = "workflow-alice@example.com"
    tags = {ROOT_TAG: root, "vow:parent": root, "vow:func": "x" * 30}
    short.create_ex(f"{root}.1", clock.now + 60_000, tags=tags, completion=Completion(State.RESOLVED, Value(), None))
    assert short.client.object("encoding", keys.promise(f"{root}.1")) == b"listpack"
    assert short.get(f"{root}.1").tags == tags


def test_a_step_whose_workflow_is_gone_goes_at_its_own_expiry(short: RedisStore, clock: Clock) -> None:
    completed_step(short, clock, "orphan.1", "never-existed")
    clock.advance(RETENTION_MS)
    assert short.expire() == 1
    assert gone(short, "orphan.1")


def test_a_store_that_keeps_for_ever_expires_nothing(redis_url: str, clock: Clock) -> None:
    store = RedisStore(redis_url, clock=clock, retention="forever")
    try:
        store.create("p", clock.now + 60_000)
        assert store.resolve("p").retention is None
        store.create("q", clock.now + 60_000, retention=1)
        store.resolve("q")
        clock.advance(365 * 86_400_000)
        assert store.expire() == 1  # only q, which asked for 1 s
        assert store.get("p").completed
    finally:
        store.close()


def test_an_idempotent_create_after_expiry_makes_a_new_promise(short: RedisStore, clock: Clock) -> None:
    short.create("once", clock.now + 60_000, ikey="k")
    short.resolve("once", data="first")
    status, _ = short.create_ex("once", clock.now + 60_000, ikey="k")
    assert status is Status.DEDUPLICATED  # kept: the same promise
    clock.advance(RETENTION_MS)
    assert short.expire() == 1
    status, again = short.create_ex("once", clock.now + 60_000, ikey="k")
    assert status is Status.CREATED and again.pending  # expired: a new promise under the id


def test_the_retention_is_recorded_on_each_promise(short: RedisStore, clock: Clock) -> None:
    assert short.create("default", clock.now + 60_000).retention == RETENTION_MS
    assert short.create("one-week", clock.now + 60_000, retention="7d").retention == 7 * 86_400_000
    assert short.create("td", clock.now + 60_000, retention=datetime.timedelta(minutes=2)).retention == 120_000
    assert short.get("one-week").retention == 7 * 86_400_000


@pytest.mark.parametrize("bad", [0, -1, -0.5, "0s", "soon", "7x", "", True, None, float("nan"), [1]])
def test_a_bad_retention_is_refused_before_anything_is_written(redis_url: str, bad: Any) -> None:
    if bad is not None:
        with pytest.raises(ValidationError, match="retention|duration"):
            RedisStore(redis_url, retention=bad)
    store = RedisStore(redis_url)
    try:
        if bad is None:
            return  # None means "the store's" in a create
        with pytest.raises(ValidationError, match="retention|duration"):
            store.create("p", store.now() + 60_000, retention=bad)
        assert store.read_records(["p"])["p"] is None
        assert store.client.dbsize() == 0
    finally:
        store.close()


def test_a_bad_step_retention_fails_at_the_call(redis_url: str) -> None:
    ctx = Context("root", "root", {})
    with pytest.raises(ValidationError, match="retention"):
        ctx.lfc(print).with_options(retention=-5)
    assert ctx.lfc(print).with_options(retention="2h").options.retention == "2h"


def test_purge_removes_completed_promises_only(short: RedisStore, clock: Clock) -> None:
    for i in range(3):
        short.create(f"job-{i}", clock.now + 60_000)
    short.create("job-pending", clock.now + 60_000)
    short.create("other", clock.now + 60_000)
    short.resolve("job-0")
    short.reject("job-1")
    clock.advance(10_000)
    short.resolve("job-2")
    short.resolve("other")

    assert sorted(short.purge("job-*", dry_run=True)) == ["job-0", "job-1", "job-2"]
    assert all(short.read_records(["job-0", "job-1", "job-2"]).values())  # a dry run removes nothing
    assert short.purge("job-*", family="resolved", older_than_ms=5_000) == ["job-0"]
    assert short.purge("job-*", family="rejected") == ["job-1"]
    assert gone(short, "job-0") and gone(short, "job-1")
    assert short.purge("job-*") == ["job-2"]
    assert short.get("job-pending").pending and short.get("other").completed
