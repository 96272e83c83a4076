"""A plain function's first delivery runs without a claim (its task message carries the call) and
commits with counter 0 (``settle.lua``): refused while another worker holds a live lease, dropped
when the promise was completed meanwhile, refused when the promise is gone or its param is not
what ran; a resend applies once. And in a worker: no claim script on that path, a crafted entry
whose call differs from its promise's is run the usual way, with the promise's own call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.harness import wait_until
from vow import Context, RedisStore, Scheduler
from vow.coordinator import State, Value, keys
from vow.coordinator.executions import Delivery, Settlement
from vow.coordinator.lua import Answer
from vow.coordinator.tasks import TaskKind, TaskMessage, decode_task, invoke_message

pytestmark = pytest.mark.timeout(60)

GROUP = "unleased"


@pytest.fixture
def store(real_store: RedisStore) -> Iterator[RedisStore]:
    real_store.tasks.ensure_group(GROUP)
    yield real_store


def _delivered(store: RedisStore, promise_id: str) -> Delivery:
    Scheduler(store, GROUP, serve=False).rpc(promise_id, "f", 1)
    [delivery] = store.tasks.read(GROUP, "a", count=1, block_ms=1)
    assert delivery.message is not None and delivery.message.data is not None
    return delivery


def _settle(store: RedisStore, delivery: Delivery, data: bytes = b'"v"') -> Answer:
    assert delivery.message is not None
    s = Settlement(delivery.message.id, 0, State.RESOLVED, Value(data=data), delivery, ran_with=delivery.message.data)
    [answer] = store.tasks.settle_many([s], group=GROUP, consumer="a")
    return answer


def test_the_task_message_carries_a_small_call_only() -> None:
    small = decode_task(invoke_message("p", "g", "f", b'{"func":"f"}'))
    assert small.data == b'{"func":"f"}'
    assert decode_task(invoke_message("p", "g", "f", b"x" * 5000)).data is None
    assert decode_task(TaskMessage(TaskKind.INVOKE, "p", "g", "f").encode()).data is None


def test_it_commits_and_acknowledges_once(store: RedisStore) -> None:
    delivery = _delivered(store, "c-1")
    assert _settle(store, delivery) is Answer.OK
    assert store.get("c-1").value.data == b'"v"'
    assert store.tasks.pending_count(GROUP) == 0 and store.tasks.stream_length(GROUP) == 0
    assert _settle(store, delivery, b'"other"') is Answer.DONE  # a late duplicate changes nothing
    assert store.get("c-1").value.data == b'"v"'


def test_it_is_fenced_while_another_worker_holds_a_live_lease(store: RedisStore) -> None:
    delivery = _delivered(store, "c-2")
    claim = store.tasks.claim("c-2", group=GROUP, consumer="b", func="f", lease_ms=60_000)
    assert _settle(store, delivery) is Answer.FENCED
    assert store.get("c-2").pending and store.tasks.pending_count(GROUP) == 1  # the entry stays
    assert store.tasks.settle("c-2", claim.counter, State.RESOLVED, Value(data=b'"b"'), group=GROUP,
                              consumer="b", delivery=delivery)
    assert store.get("c-2").value.data == b'"b"'


def test_a_lapsed_lease_is_ended_and_its_holder_fenced(store: RedisStore) -> None:
    delivery = _delivered(store, "c-3")
    claim = store.tasks.claim("c-3", group=GROUP, consumer="b", func="f", lease_ms=1)
    wait_until(lambda: store.now() > store.client.zscore(keys.leases(keys.partition_of("c-3")), "c-3"),
               what="the other lease to lapse")
    assert _settle(store, delivery) is Answer.OK
    assert not store.tasks.settle("c-3", claim.counter, State.RESOLVED, Value(data=b'"b"'), group=GROUP,
                                  consumer="b", delivery=delivery)
    assert store.get("c-3").value.data == b'"v"'


def test_a_promise_gone_or_with_another_call_is_left_alone(store: RedisStore) -> None:
    gone = _delivered(store, "c-4")
    store.client.delete(keys.promise("c-4"))
    assert _settle(store, gone) is Answer.GONE
    other = _delivered(store, "c-5")
    store.client.hset(keys.promise("c-5"), "pd", b'{"func":"g","args":[],"kwargs":{}}')
    assert _settle(store, other) is Answer.RETRY
    assert store.get("c-5").pending and store.tasks.pending_count(GROUP) == 2


def test_a_resent_commit_applies_once(store: RedisStore, raw_client: redis.Redis) -> None:
    delivery = _delivered(store, "c-6")
    assert delivery.message is not None and delivery.message.data is not None
    commit = Settlement("c-6", 0, State.RESOLVED, Value(data=b'"v"'), delivery, ran_with=delivery.message.data)
    calls = []
    original = store.scripts._call

    def twice(name: str, key_list: list[str], args: list[str | bytes]) -> object:
        calls.append(name)
        if name == "settle":  # the same request (one request id) sent twice, as after a lost reply
            script = store.scripts._scripts["settle"]
            full = ["", "resent-request", *args]
            first = script(keys=key_list, args=full)
            assert script(keys=key_list, args=full) == first
            return first
        return original(name, key_list, args)

    store.scripts._call = twice  # type: ignore[method-assign]
    try:
        assert store.tasks.settle_many([commit], group=GROUP, consumer="a") == [Answer.OK]
    finally:
        store.scripts._call = original  # type: ignore[method-assign]
    assert calls == ["settle"] and store.get("c-6").value.data == b'"v"'


def test_a_worker_runs_a_first_delivery_without_a_claim(store: RedisStore, raw_client: redis.Redis) -> None:
    app = Scheduler(store, GROUP, serve=False, concurrency=2)
    runs: list[int] = []

    @app.register
    def f(ctx: Context, n: int) -> int:
        runs.append(n)
        return n * 10

    handle = app.rpc("w-1", "f", 4)
    # a crafted entry whose call is not its promise's: the worker runs the promise's own call
    app.rpc("w-2", "f", 5)
    stream = keys.task_stream(keys.partition_of("w-2"), GROUP)
    [entry_id] = [i for i, fields in raw_client.xrange(stream) if decode_task(fields[b"m"]).id == "w-2"]
    raw_client.xdel(stream, entry_id)
    raw_client.xadd(stream, {"m": invoke_message("w-2", GROUP, "f", b'{"func":"f","args":[99],"kwargs":{}}')})
    scripts: list[str] = []
    original = store.scripts._call

    def logged(name: str, key_list: list[str], args: list[str | bytes]) -> object:
        scripts.append(name)
        return original(name, key_list, args)

    store.scripts._call = logged  # type: ignore[method-assign]
    app.start()
    try:
        assert handle.result(timeout=30) == 40
        assert app.get("w-2").result(timeout=30) == 50
        assert sorted(runs) == [4, 5, 99]  # the crafted call ran; its commit was refused
        assert scripts.count("claim") == 1  # w-2's, after the refusal; w-1 was never claimed
    finally:
        app.stop()
        store.scripts._call = original  # type: ignore[method-assign]
