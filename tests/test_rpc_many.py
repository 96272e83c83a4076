"""``Scheduler.rpc_many``: pipelined creates — every call made once, idempotent per id, a bad call
refused alone, scripts reloaded after a flush, the same results on a cluster (one by one there)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.connection import AbstractConnection

from tests.harness import wait_until
from vow import BatchError, Context, RedisStore, Scheduler
from vow.coordinator import ValidationError
from vow.coordinator import creates as creates_module

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(real_store: RedisStore) -> Iterator[Scheduler]:
    app = Scheduler(real_store, "many", serve=False, concurrency=8)

    @app.register
    def double(ctx: Context, n: int, by: int = 2) -> int:
        return n * by

    yield app
    app.stop()


def test_a_batch_is_sent_in_few_round_trips_and_every_call_runs_once(
    app: Scheduler, real_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(creates_module, "CREATE_BATCH", 100)
    real_store.estimated_now()
    app.rpc_many("double", [("warm", (0,))])  # the create script is in the server's cache
    sent = 0
    original = AbstractConnection.send_packed_command

    def counting(conn: AbstractConnection, command: object, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        original(conn, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    handles = app.rpc_many("double", [(f"n-{i}", (i,)) for i in range(250)] + [("n-kw", (5,), {"by": 3})])
    monkeypatch.setattr(AbstractConnection, "send_packed_command", original)
    assert sent == 3  # 251 creates in pipelines of 100
    assert [h.id for h in handles] == [f"n-{i}" for i in range(250)] + ["n-kw"]
    assert real_store.tasks.stream_length("many") == 252
    app.start()
    assert [h.result(timeout=30) for h in handles] == [2 * i for i in range(250)] + [15]


def test_a_batch_again_is_idempotent(app: Scheduler, real_store: RedisStore) -> None:
    app.rpc_many("double", [(f"again-{i}", (i,)) for i in range(20)])
    again = app.rpc_many("double", [(f"again-{i}", (i,)) for i in range(20)])
    assert real_store.tasks.stream_length("many") == 20  # no second task for any id
    app.start()
    assert [h.result(timeout=30) for h in again] == [2 * i for i in range(20)]


def test_an_id_taken_by_another_create_is_that_execution(app: Scheduler, real_store: RedisStore) -> None:
    real_store.create("taken", real_store.now() + 60_000, ikey="someone else")
    [handle] = app.rpc_many("double", [("taken", (1,))])
    assert handle.id == "taken" and not handle.done()
    assert real_store.tasks.stream_length("many") == 0


def test_bad_calls_are_refused_alone(app: Scheduler, real_store: RedisStore) -> None:
    with pytest.raises(BatchError) as info:
        app.rpc_many("double", [("ok-1", (1,)), ("", (2,)), ("bad-arg", (object(),)), ("ok-2", (3,))])
    assert set(info.value.errors) == {"", "bad-arg"}
    assert isinstance(info.value.errors[""], ValidationError)
    assert [h.id for h in info.value.handles] == ["ok-1", "ok-2"]
    assert real_store.tasks.stream_length("many") == 2
    with pytest.raises(ValidationError):
        app.rpc_many("", [("x", ())])


def test_scripts_flushed_from_the_server_are_reloaded(app: Scheduler, real_store: RedisStore,
                                                      raw_client: redis.Redis) -> None:
    app.rpc_many("double", [("warm", (0,))])
    raw_client.script_flush()
    handles = app.rpc_many("double", [(f"flushed-{i}", (i,)) for i in range(10)])
    assert real_store.tasks.stream_length("many") == 11  # each created once, resend recognised
    app.start()
    assert [h.result(timeout=30) for h in handles] == [2 * i for i in range(10)]


def test_on_a_cluster_a_batch_is_sent_one_by_one(cluster_url: str) -> None:
    store = RedisStore(cluster_url)
    app = Scheduler(store, "many", serve=False, concurrency=4)
    app.register(lambda ctx, n: n + 1, name="inc")
    try:
        handles = app.rpc_many("inc", [(f"c-{i}", (i,)) for i in range(20)])
        wait_until(lambda: store.tasks.stream_length("many") == 20, what="twenty tasks queued")
        app.start()
        assert [h.result(timeout=30) for h in handles] == [i + 1 for i in range(20)]
    finally:
        app.stop()
        store.close()
