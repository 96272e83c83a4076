"""``vow promises``, ``vow invoke``, ``vow tree`` and the error contract, through click's CliRunner."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.cli_helpers import as_json, fits, one_line_error, vow
from tests.store_helpers import invoke
from vow.cli import ExitCode, cli
from vow.cli.calls import DEFAULT_GROUP
from vow.coordinator import RedisStore, State, keys
from vow.coordinator import streams as task_streams
from vow.server import ServerProcess, free_port

HOUR_MS = 3_600_000


# -- promises -----------------------------------------------------------------------------------


def test_create_get_resolve_round_trip(redis_url: str, real_store: RedisStore) -> None:
    created = as_json(vow("promises", "create", "p1", "--timeout", "1h", "--data", '{"a": [1, 2]}',
                          "--header", "h=v", "--tag", "owner=alice", "--ikey", "c1", "--json", url=redis_url))
    assert created["state"] == "PENDING"
    assert created["param"] == {"headers": {"h": "v"}, "data": {"a": [1, 2]}}
    assert created["tags"] == {"owner": "alice"} and created["idempotencyKeyForCreate"] == "c1"
    assert abs(created["timeout"] - (real_store.now() + HOUR_MS)) < 60_000

    resolved = as_json(vow("promises", "resolve", "p1", "--data", "true", "--ikey", "k1", "--json", url=redis_url))
    assert resolved["state"] == "RESOLVED" and resolved["value"]["data"] is True
    assert real_store.get("p1").value.data == b"true"  # stored as the JSON text given

    text = vow("promises", "get", "p1", url=redis_url)
    assert text.exit_code == 0 and "RESOLVED" in text.stdout and "owner=alice" in text.stdout
    assert fits(text.stdout)


def test_create_default_timeout_is_a_day(redis_url: str, real_store: RedisStore) -> None:
    created = as_json(vow("promises", "create", "p-default", "--json", url=redis_url))
    assert abs(created["timeout"] - (real_store.now() + 24 * HOUR_MS)) < 60_000


def test_reject_and_cancel(redis_url: str, real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    real_store.create("r1", timeout)
    real_store.create("c1", timeout)
    rejected = as_json(vow("promises", "reject", "r1", "--data", '{"error": "declined"}', "--json", url=redis_url))
    assert rejected["state"] == "REJECTED" and rejected["value"]["data"] == {"error": "declined"}
    canceled = as_json(vow("promises", "cancel", "c1", "--header", "why=user", "--json", url=redis_url))
    assert canceled["state"] == "REJECTED_CANCELED" and canceled["value"]["headers"] == {"why": "user"}


def test_idempotent_retries_succeed(redis_url: str) -> None:
    for _ in range(2):
        assert vow("promises", "create", "d1", "--ikey", "k", url=redis_url).exit_code == 0
    for _ in range(2):
        assert vow("promises", "resolve", "d1", "--ikey", "r", "--strict", url=redis_url).exit_code == 0


def test_data_that_is_not_json_prints_as_base64(redis_url: str, real_store: RedisStore) -> None:
    real_store.create("bin", real_store.now() + HOUR_MS, data=b"\xff\x00raw")
    record = as_json(vow("promises", "get", "bin", "--json", url=redis_url))
    assert record["param"]["data"] == {"base64": base64.b64encode(b"\xff\x00raw").decode()}
    assert "base64:" in vow("promises", "get", "bin", url=redis_url).stdout


def test_long_values_are_wrapped_to_80_columns(redis_url: str) -> None:
    long_text = json.dumps({"text": "word " * 60, "blob": "x" * 300})
    vow("promises", "create", "long-" + "i" * 90, "--data", long_text, url=redis_url)
    shown = vow("promises", "get", "long-" + "i" * 90, url=redis_url)
    assert shown.exit_code == 0 and fits(shown.stdout)
    listed = vow("promises", "search", url=redis_url)
    assert listed.exit_code == 0 and fits(listed.stdout)


def test_search_filters_and_pages(redis_url: str, real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    for n in range(3):
        real_store.create(f"job-{n}", timeout, tags={"kind": "job"})
    real_store.create("other", timeout)
    real_store.resolve("job-0")
    first = as_json(vow("promises", "search", "job-*", "--limit", "2", "--json", url=redis_url))
    assert [p["id"] for p in first["promises"]] == ["job-2", "job-1"] and first["cursor"]
    rest = as_json(vow("promises", "search", "job-*", "--limit", "2", "--cursor", first["cursor"], "--json",
                       url=redis_url))
    assert [p["id"] for p in rest["promises"]] == ["job-0"] and rest["cursor"] is None
    pending = as_json(vow("promises", "search", "--state", "pending", "--tag", "kind=job", "--json", url=redis_url))
    assert sorted(p["id"] for p in pending["promises"]) == ["job-1", "job-2"]
    table = vow("promises", "search", "--limit", "1", url=redis_url)
    assert table.exit_code == 0 and "STATE" in table.stdout and "next page: --cursor" in table.stdout
    empty = vow("promises", "search", "nothing-*", url=redis_url)
    assert empty.exit_code == 0 and "no promises found" in empty.stdout


# -- errors -------------------------------------------------------------------------------------


def test_unknown_promise_is_not_found(redis_url: str) -> None:
    line = one_line_error(vow("promises", "get", "ghost", url=redis_url), ExitCode.NOT_FOUND)
    assert "ghost" in line and "not found" in line
    one_line_error(vow("promises", "resolve", "ghost", url=redis_url), ExitCode.NOT_FOUND)
    one_line_error(vow("tree", "ghost", url=redis_url), ExitCode.NOT_FOUND)


def test_resolve_completed_with_a_different_ikey_is_a_conflict(redis_url: str, real_store: RedisStore) -> None:
    real_store.create("done", real_store.now() + HOUR_MS)
    assert vow("promises", "resolve", "done", "--ikey", "first", url=redis_url).exit_code == 0
    line = one_line_error(vow("promises", "resolve", "done", "--ikey", "second", url=redis_url), ExitCode.CONFLICT)
    assert "already completed" in line and "RESOLVED" in line
    line = one_line_error(vow("promises", "create", "done", url=redis_url), ExitCode.CONFLICT)
    assert "already exists" in line


@pytest.mark.parametrize(
    "args",
    [
        ["promises", "create", "x", "--data", "{not json"],
        ["promises", "resolve", "x", "--data", "hello"],
        ["promises", "create", "x", "--data", "NaN"],
        ["invoke", "x", "--func", "f", "--arg", "[1,"],
        ["invoke", "x", "--func", "f", "--kwarg", "n={"],
        ["invoke", "x", "--func", "f", "--kwarg", "no-equals-sign"],
    ],
)
def test_invalid_json_is_a_usage_error(redis_url: str, args: list[str]) -> None:
    line = one_line_error(vow(*args, url=redis_url), ExitCode.USAGE)
    assert "not valid JSON" in line or "name=JSON" in line


@pytest.mark.parametrize("duration", ["10", "1y", "h", "-5m", "5 m", "0s"])
def test_bad_duration_is_a_usage_error(redis_url: str, duration: str) -> None:
    line = one_line_error(vow("promises", "create", "x", "--timeout", duration, url=redis_url), ExitCode.USAGE)
    assert "--timeout" in line


def test_durations_add_up(redis_url: str, real_store: RedisStore) -> None:
    created = as_json(vow("promises", "create", "sum", "--timeout", "1h30m", "--json", url=redis_url))
    assert abs(created["timeout"] - (real_store.now() + HOUR_MS * 3 // 2)) < 60_000


def test_store_validation_errors_are_usage_errors(redis_url: str) -> None:
    one_line_error(vow("promises", "search", "--cursor", "garbage!", url=redis_url), ExitCode.USAGE)
    one_line_error(vow("invoke", "x", "--func", "f", "--target", "bad group", url=redis_url), ExitCode.USAGE)


def test_unreachable_redis_names_the_url_and_fails_fast() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    line = one_line_error(vow("promises", "get", "x", url=url), ExitCode.CONNECTION)
    assert time.monotonic() - started < 5
    assert url in line


def test_url_comes_from_the_environment(redis_url: str, real_store: RedisStore) -> None:
    real_store.create("env", real_store.now() + HOUR_MS)
    result = CliRunner().invoke(cli, ["promises", "get", "env"], env={"VOW_REDIS_URL": redis_url})
    assert result.exit_code == 0 and "env" in result.stdout


def test_debug_shows_the_traceback() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(cli, ["--debug", "promises", "get", "x", "--url", url])
    assert result.exit_code == ExitCode.CONNECTION
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.fixture(scope="module")
def password_server() -> Iterator[ServerProcess]:
    # The password is set after start: ServerProcess's readiness PING carries no password.
    server = ServerProcess()
    server.start()
    try:
        client = server.client()
        client.config_set("requirepass", "pw")
        client.close()
        yield server
    finally:
        server.stop()


def test_wrong_password_is_a_connection_error_without_the_password(password_server: ServerProcess) -> None:
    url = f"redis://:wrong-secret@127.0.0.1:{password_server.port}/0"
    line = one_line_error(vow("promises", "get", "x", url=url), ExitCode.CONNECTION)
    assert "authentication failed" in line and f"127.0.0.1:{password_server.port}" in line
    assert "wrong-secret" not in line
    good = f"redis://:pw@127.0.0.1:{password_server.port}/0"
    one_line_error(vow("promises", "get", "x", url=good), ExitCode.NOT_FOUND)


def test_acl_denial_is_a_connection_error(redis_url: str, raw_client: Any) -> None:
    raw_client.acl_setuser("reader", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
                           commands=["+@all", "-@scripting"])
    try:
        port = redis_url.split(":")[2].split("/")[0]
        line = one_line_error(vow("promises", "get", "x", url=f"redis://reader:secret@127.0.0.1:{port}/0"),
                              ExitCode.CONNECTION)
        assert "permission denied" in line
    finally:
        raw_client.acl_deluser("reader")


def test_usage_errors_are_one_line_with_a_help_pointer(redis_url: str) -> None:
    line = one_line_error(vow("promises", "get", url=redis_url), ExitCode.USAGE)
    assert "vow promises get --help" in line
    one_line_error(vow("promises", "frobnicate"), ExitCode.USAGE)


def test_every_command_has_help_with_an_example() -> None:
    commands = [
        ["dev"], ["invoke"], ["tree"], ["promises", "get"], ["promises", "search"], ["promises", "create"],
        ["promises", "resolve"], ["promises", "reject"], ["promises", "cancel"], ["streams", "ls"],
        ["streams", "monitor"], ["streams", "pending"], ["streams", "dead"], ["streams", "requeue"],
    ]
    for args in commands:
        result = CliRunner().invoke(cli, [*args, "--help"], prog_name="vow")
        assert result.exit_code == 0, args
        assert "Example" in result.stdout and f"vow {' '.join(args)}" in result.stdout, args
        if args != ["dev"]:
            assert "--url" in result.stdout, args


# -- invoke and tree ----------------------------------------------------------------------------


def test_invoke_creates_the_call_and_queues_the_task(redis_url: str, real_store: RedisStore) -> None:
    record = as_json(vow("invoke", "job-42", "--func", "send_email", "--arg", '"bob@example.com"', "--arg", "3",
                         "--kwarg", "urgent=true", "--target", "email-service", "--timeout", "5m", "--json",
                         url=redis_url))
    assert record["param"]["data"] == {"func": "send_email", "args": ["bob@example.com", 3],
                                       "kwargs": {"urgent": True}}
    assert record["tags"] == {"resonate:invoke": "poll://email-service"}
    [stats] = task_streams.group_stats(real_store)
    assert (stats.group, stats.length) == ("email-service", 1)
    default = vow("invoke", "job-43", "--func", "f", url=redis_url)
    assert default.exit_code == 0 and "'default'" in default.stdout


def resolve_when_queued(url: str, promise_id: str, state: State, data: str) -> threading.Thread:
    """Complete the promise as soon as its invoke task reaches the stream (a blocking read)."""
    stream = keys.task_stream(keys.partition_of(promise_id), DEFAULT_GROUP)

    def run() -> None:
        client = redis.Redis.from_url(url)
        store = RedisStore(url)
        try:
            assert client.xread({stream: "0-0"}, block=20_000)
            store.complete(promise_id, state, data=data)
        finally:
            client.close()
            store.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_invoke_wait_prints_the_value(redis_url: str) -> None:
    thread = resolve_when_queued(redis_url, "sum-1", State.RESOLVED, "3")
    result = vow("invoke", "sum-1", "--func", "add", "--arg", "1", "--arg", "2", "--wait", "--wait-timeout", "20",
                 url=redis_url)
    thread.join(timeout=20)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3"


def test_invoke_wait_on_a_rejected_call_exits_7(redis_url: str) -> None:
    thread = resolve_when_queued(redis_url, "bad-1", State.REJECTED, '{"error": "boom"}')
    result = vow("invoke", "bad-1", "--func", "f", "--wait", "--json", url=redis_url)
    thread.join(timeout=20)
    assert result.exit_code == ExitCode.REJECTED
    assert json.loads(result.stdout)["value"]["data"] == {"error": "boom"}
    assert "REJECTED" in result.stderr


def test_invoke_wait_timeout_exits_6(redis_url: str) -> None:
    line = one_line_error(vow("invoke", "slow", "--func", "f", "--wait", "--wait-timeout", "0.2", url=redis_url),
                          ExitCode.WAIT_TIMEOUT)
    assert "still pending" in line
    one_line_error(vow("invoke", "y", "--func", "f", "--wait-timeout", "1", url=redis_url), ExitCode.USAGE)


def test_tree_prints_the_call_graph(redis_url: str, real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    invoke(real_store, "wf", "workflow", timeout_ms=HOUR_MS)
    invoke(real_store, "wf.1", "send_email", group="email-service", timeout_ms=HOUR_MS)
    real_store.create("wf.2", timeout)
    real_store.create("email-confirmed", timeout, tags={"vow:parent": "wf", "vow:root": "wf"})
    real_store.resolve("wf.1")
    text = vow("tree", "wf", url=redis_url)
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0] == "wf  PENDING  workflow"
    assert "wf.1  RESOLVED  send_email" in lines[1] and lines[1].startswith("├── ")
    assert lines[-1].startswith("└── ") and "email-confirmed" in lines[-1]
    tree = as_json(vow("tree", "wf", "--json", url=redis_url))
    assert [c["id"] for c in tree["children"]] == ["wf.1", "wf.2", "email-confirmed"]
    assert tree["children"][0] == {"id": "wf.1", "state": "RESOLVED", "func": "send_email", "children": []}
