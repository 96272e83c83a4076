"""Worker SDK behaviour that fits one process: on the real server and on fakeredis."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.harness import wait_until
from vow.coordinator import RedisStore, State, keys
from vow.coordinator.tasks import TaskKind, TaskMessage
from vow.worker import (
    ApplicationError,
    Constant,
    Context,
    CreateDurablePromiseReq,
    Exponential,
    Linear,
    Never,
    PromiseTimedOut,
    Scheduler,
    ValueDecodeError,
    WorkerSettings,
)

FAST = WorkerSettings(
    concurrency=4, lease_ms=2000, heartbeat_ms=300, reclaim_ms=200, sweep_ms=50, max_deliveries=3,
    shutdown_grace_s=2.0,
)


@pytest.fixture(params=["redis", "fakeredis"])
def sdk_store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    if request.param == "redis":
        store = RedisStore(request.getfixturevalue("redis_url"))
    else:
        import fakeredis

        store = RedisStore(client=fakeredis.FakeRedis(), shebang=False)
    yield store
    store.close()


@pytest.fixture
def apps(sdk_store: RedisStore) -> Iterator[Any]:
    made: list[Scheduler] = []

    def make(group: str = "g", settings: WorkerSettings = FAST) -> Scheduler:
        app = Scheduler(sdk_store, logic_group=group, settings=settings)
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop(grace_s=1)


def pending(store: RedisStore, promise_id: str) -> bool:
    try:
        return store.get(promise_id).pending
    except Exception:
        return False


def test_steps_are_recorded_and_not_run_again_on_replay(apps: Any, sdk_store: RedisStore) -> None:
    runs: Counter[str] = Counter()
    app = apps()

    def step(ctx: Context, name: str) -> str:
        runs[name] += 1
        return name.upper()

    @app.register
    def flow(ctx: Context) -> Generator[Any, Any, list[Any]]:
        a = yield ctx.lfc(step, "a")
        human = yield ctx.promise(id="approve-1")
        b = yield ctx.lfc(step, "b")
        return [a, human, b]

    handle = app.run("flow-1", flow)
    wait_until(lambda: pending(sdk_store, "approve-1"), what="the workflow to wait on approve-1")
    assert sdk_store.get("flow-1").pending
    assert runs == {"a": 1}
    step_record = sdk_store.get("flow-1.1")
    assert step_record.state is State.RESOLVED and json.loads(step_record.value.data or b"") == "A"
    sdk_store.resolve("approve-1", data=json.dumps({"ok": True}))
    assert handle.result(timeout=10) == ["A", {"ok": True}, "B"]
    assert runs == {"a": 1, "b": 1}


def test_seed_story_in_one_process(apps: Any, sdk_store: RedisStore) -> None:
    sent: list[str] = []
    email = apps("email-service")
    flow = apps("workflow-service")

    def send_email(ctx: Context, address: str) -> None:
        sent.append(address)

    def step3(ctx: Context) -> str:
        return "step3"

    def workflow(ctx: Context, address: str) -> Generator[Any, Any, Any]:
        yield ctx.rfc(CreateDurablePromiseReq(
            promise_id=f"send-confirmation-email-{address}",
            data={"func": "send_email", "args": [address], "kwargs": {}},
            headers=None, tags={"resonate:invoke": "poll://email-service"},
        ))
        confirmation = yield ctx.rfc(CreateDurablePromiseReq(promise_id=f"email-confirmed-{address}"))
        third = yield ctx.lfc(step3)
        return [confirmation, third]

    email.register(name="send_email", func=send_email)
    flow.register(workflow)
    handle = flow.run("workflow-alice", workflow, "alice@example.com")
    wait_until(lambda: pending(sdk_store, "email-confirmed-alice@example.com"), what="the human wait")
    assert sent == ["alice@example.com"]
    sdk_store.resolve(
        promise_id="email-confirmed-alice@example.com", ikey=None, strict=False, headers=None, data=json.dumps(True)
    )
    assert handle.result(timeout=10) == [True, "step3"]


def test_values_bytes_json_and_non_json(apps: Any, sdk_store: RedisStore) -> None:
    app = apps()

    def echo(ctx: Context, value: Any) -> Any:
        return value

    def raw(ctx: Context) -> bytes:
        return b"\x00\xffbinary"

    @app.register
    def flow(ctx: Context) -> Generator[Any, Any, Any]:
        data = yield ctx.lfc(raw)
        nested = yield ctx.lfc(echo, {"a": [1, 2.5, None, "x"]})
        try:
            yield ctx.promise(id="free-text")
        except ValueDecodeError as e:
            return [data.hex(), nested, f"decode error: {e.promise_id}"]
        return "unexpected"

    handle = app.run("values-1", flow)
    wait_until(lambda: pending(sdk_store, "free-text"), what="the wait on free-text")
    sdk_store.resolve("free-text", data=b"yes please")  # not JSON: the workflow gets a clear error
    assert handle.result(timeout=10) == ["00ff62696e617279", {"a": [1, 2.5, None, "x"]}, "decode error: free-text"]
    assert sdk_store.get("free-text").value.data == b"yes please"  # nothing lost


def test_user_exception_is_recorded_with_type_message_and_traceback(apps: Any) -> None:
    app = apps()

    def explode(ctx: Context, n: int) -> None:
        raise ValueError(f"bad number {n}")

    app.register(explode, retry_policy=Never())
    with pytest.raises(ApplicationError) as info:
        app.run("boom-1", explode, 7).result(timeout=10)
    assert info.value.type_name == "ValueError"
    assert info.value.error_message == "bad number 7"
    assert "in explode" in info.value.traceback_text


def test_retries_follow_the_policy(apps: Any) -> None:
    app = apps()
    attempts: Counter[str] = Counter()

    def flaky(ctx: Context, name: str, failures: int) -> int:
        attempts[name] += 1
        if attempts[name] <= failures:
            raise ConnectionError("transient")
        return attempts[name]

    def fatal(ctx: Context) -> None:
        attempts["fatal"] += 1
        raise KeyError("no retry for this")

    app.register(flaky, retry_policy=Constant(delay=0.01, max_retries=3))
    app.register(fatal, retry_policy=Constant(delay=0.01, max_retries=3), non_retryable=(KeyError,))
    assert app.run("flaky-ok", flaky, "ok", 2).result(timeout=10) == 3
    with pytest.raises(ApplicationError):
        app.run("flaky-out", flaky, "out", 10).result(timeout=10)
    assert attempts["out"] == 4  # the first attempt and 3 retries
    with pytest.raises(ApplicationError):
        app.run("fatal", fatal).result(timeout=10)
    assert attempts["fatal"] == 1


def test_retry_policy_delays() -> None:
    assert [Exponential(delay=1, factor=2, max_retries=4, max_delay=5).next_delay(i) for i in range(5)] == [
        1, 2, 4, 5, None,
    ]
    assert [Linear(delay=0.5, max_retries=2).next_delay(i) for i in range(3)] == [0.5, 1.0, None]
    assert [Constant(delay=2, max_retries=1).next_delay(i) for i in range(2)] == [2, None]
    assert Never().next_delay(0) is None


def test_yielding_a_non_command_rejects_the_workflow(apps: Any) -> None:
    app = apps()

    @app.register
    def bad(ctx: Context) -> Generator[Any, Any, None]:
        yield 42

    with pytest.raises(ApplicationError) as info:
        app.run("bad-yield", bad).result(timeout=10)
    assert info.value.type_name == "InvalidCommand"
    assert "yielded 42" in str(info.value)


def test_unencodable_return_value_rejects_with_a_clear_error(apps: Any) -> None:
    app = apps()

    @app.register
    def returns_object(ctx: Context) -> object:
        return object()

    with pytest.raises(ApplicationError) as info:
        app.run("unencodable", returns_object).result(timeout=10)
    assert info.value.type_name == "EncodingError"
    assert "cannot encode a value of type object" in str(info.value)


def test_replay_divergence_is_detected(apps: Any, sdk_store: RedisStore) -> None:
    app = apps()
    version = {"step": "first"}

    def first(ctx: Context) -> int:
        return 1

    def second(ctx: Context) -> int:
        return 2

    @app.register
    def changing(ctx: Context) -> Generator[Any, Any, Any]:
        yield ctx.lfc(first if version["step"] == "first" else second)
        return (yield ctx.promise(id="divergence-gate"))

    handle = app.run("diverging", changing)
    wait_until(lambda: pending(sdk_store, "divergence-gate"), what="the gate")
    version["step"] = "second"  # the code changed while the workflow was suspended
    sdk_store.resolve("divergence-gate", data="1")
    with pytest.raises(ApplicationError) as info:
        handle.result(timeout=10)
    assert info.value.type_name == "ReplayDivergence"
    assert "'diverging'" in str(info.value) and "'diverging.1'" in str(info.value)
    assert "'first'" in str(info.value) and "'second'" in str(info.value)


def test_unknown_function_is_retried_then_dead_lettered(apps: Any, sdk_store: RedisStore) -> None:
    app = apps("lonely")

    def present(ctx: Context) -> str:
        return "here"

    app.register(present)
    sdk_store.create(
        "job-missing", sdk_store.now() + 60_000, data=json.dumps({"func": "absent", "args": []}),
        tags={"resonate:invoke": "poll://lonely"},
    )
    dead_key = keys.dead_letters(keys.partition_of("job-missing"), "lonely")
    entries = wait_until(lambda: sdk_store.client.xrange(dead_key), what="a dead letter")
    fields = entries[0][1]
    assert b"'absent'" in fields[b"reason"] and b"'lonely'" in fields[b"reason"]
    assert int(fields[b"deliveries"]) == FAST.max_deliveries
    assert sdk_store.get("job-missing").pending  # nothing lost: it can be requeued later
    assert app.run("still-works", present).result(timeout=10) == "here"


def test_malformed_stream_entries_are_dead_lettered_and_the_worker_keeps_running(
    apps: Any, sdk_store: RedisStore
) -> None:
    app = apps("tolerant")

    def fine(ctx: Context) -> str:
        return "fine"

    app.register(fine)
    stream = keys.task_stream(3, "tolerant")
    sdk_store.client.xadd(stream, {"m": b"\xc1 not msgpack"})
    sdk_store.client.xadd(stream, {"other": b"no m field"})
    wrong_kind = {"v": 1, "k": "explode", "id": "x", "g": "tolerant"}
    import msgpack

    sdk_store.client.xadd(stream, {"m": msgpack.packb(wrong_kind)})
    dead = keys.dead_letters(3, "tolerant")
    entries = wait_until(lambda: len(sdk_store.client.xrange(dead)) == 3 and sdk_store.client.xrange(dead))
    reasons = sorted(e[1][b"reason"].decode() for e in entries)
    assert any("not msgpack" in r for r in reasons)
    assert any("no 'm' field" in r for r in reasons)
    assert any("unknown task kind 'explode'" in r for r in reasons)
    assert app.run("after-garbage", fine).result(timeout=10) == "fine"


def test_run_is_idempotent_on_the_id(apps: Any) -> None:
    app = apps()
    calls: list[int] = []

    def once(ctx: Context, n: int) -> int:
        calls.append(n)
        return n * 2

    app.register(once)
    first = app.run("only-once", once, 21)
    second = app.run("only-once", once, 21)
    assert first.result(timeout=10) == second.result(timeout=10) == 42
    assert calls == [21]
    assert app.get("only-once").result(timeout=1) == 42


def test_sleep_is_a_durable_timer(apps: Any, sdk_store: RedisStore) -> None:
    app = apps()

    @app.register
    def napper(ctx: Context) -> Generator[Any, Any, str]:
        yield ctx.sleep(0.2)
        return "rested"

    assert app.run("napper", napper).result(timeout=10) == "rested"
    timer = sdk_store.get("napper.1")
    assert timer.state is State.RESOLVED and timer.tags["resonate:timeout"] == "true"


def test_human_wait_times_out(apps: Any) -> None:
    app = apps()

    @app.register
    def impatient(ctx: Context) -> Generator[Any, Any, str]:
        try:
            yield ctx.promise(id="never-answered", timeout=0.2)
        except PromiseTimedOut as e:
            return f"gave up on {e.promise_id}"
        return "answered"

    assert app.run("impatient", impatient).result(timeout=10) == "gave up on never-answered"


def test_lfi_and_rfi_handles_and_rpc(apps: Any) -> None:
    app = apps("main")
    other = apps("other")

    def double(ctx: Context, n: int) -> int:
        return n * 2

    def square(ctx: Context, n: int) -> int:
        return n * n

    other.register(square)

    @app.register
    def fan(ctx: Context) -> Generator[Any, Any, list[int]]:
        a = yield ctx.lfi(double, 2)
        b = yield ctx.rfi("square", 3).with_options(target="other")
        c = yield ctx.rfc("square", 4).with_options(target="other")
        return [(yield a), (yield b), c]

    app.register(double)
    assert app.run("fan", fan).result(timeout=10) == [4, 9, 16]
    assert app.rpc("direct-square", "square", 5, target="other").result(timeout=10) == 25


def test_dependencies_reach_functions(apps: Any) -> None:
    app = apps()
    app.set_dependency("greeting", "hello")

    def greet(ctx: Context, name: str) -> str:
        return f"{ctx.get_dependency('greeting')} {name}"

    app.register(greet)
    assert app.run("greet", greet, "bob").result(timeout=10) == "hello bob"


def test_result_timeout_and_unencodable_arguments(apps: Any) -> None:
    app = apps()

    @app.register
    def waits(ctx: Context) -> Generator[Any, Any, Any]:
        return (yield ctx.promise(id="not-yet"))

    with pytest.raises(TimeoutError):
        app.run("waits", waits).result(timeout=0.3)
    from vow.worker import EncodingError

    with pytest.raises(EncodingError):
        app.run("bad-args", waits, object())


def test_resume_message_format_is_a_task_message() -> None:
    message = TaskMessage(TaskKind.RESUME, "root", "group-a", "flow", "child", 2)
    from vow.coordinator.tasks import decode_task

    assert decode_task(message.encode()) == message


def test_a_timer_whose_deadline_passed_in_transit_fires_instead_of_failing(sdk_store: RedisStore) -> None:
    past = sdk_store.now() - 5
    _, timer = sdk_store.create_ex("late-timer", past, tags={"resonate:timeout": "true"}, allow_past=True)
    assert timer.state is State.RESOLVED and timer.completed_on == past
    _, wait = sdk_store.create_ex("late-wait", past, allow_past=True)
    assert wait.state is State.REJECTED_TIMEDOUT
    from vow.coordinator import ValidationError

    with pytest.raises(ValidationError):
        sdk_store.create("refused", past)  # the public create still refuses a past timeout
