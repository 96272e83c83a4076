"""``vow streams`` through click's CliRunner, on the standalone server and on the 3-master cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.store_helpers import invoke
from vow.cli import ExitCode, cli
from vow.cli.output import WIDTH
from vow.cli.streams import _rates
from vow.coordinator import RedisStore, keys
from vow.coordinator import streams as task_streams
from vow.coordinator.connection import connect
from vow.coordinator.tasks import TaskKind, TaskMessage, decode_task

HOUR_MS = 3_600_000


def vow(*args: str, url: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--url", url], prog_name="vow")


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def message(promise_id: str, group: str, func: str = "send_email", deliveries: int = 0) -> bytes:
    return TaskMessage(TaskKind.INVOKE, promise_id, group, func, deliveries=deliveries).encode()


def hold_one_task(client: Any, partition: int, group: str, consumer: str, raw: bytes) -> str:
    """Queue a task by hand and have ``consumer`` take it without acknowledging it."""
    stream = keys.task_stream(partition, group)
    client.xadd(stream, {"m": raw})
    client.sadd(keys.groups(partition), group)
    client.xgroup_create(stream, group, id="0")
    [[_, [(entry_id, _)]]] = client.xreadgroup(group, consumer, {stream: ">"}, count=1)
    return task_streams.entry_ref(partition, entry_id.decode())


def add_dead(client: Any, partition: int, group: str, raw: bytes, reason: str) -> str:
    entry = client.xadd(keys.dead_letters(partition, group),
                        {"m": raw, "reason": reason, "from": "1-0", "consumer": "w1", "deliveries": "5"})
    client.sadd(keys.groups(partition), group)
    return task_streams.entry_ref(partition, entry.decode())


def exercise_streams(url: str, client: Any) -> None:
    """Every streams command against ``url``; shared by the standalone and the cluster test."""
    store = RedisStore(url)
    try:
        invoke(store, "job-1", "send_email", ["a@example.com"], group="email-service", timeout_ms=HOUR_MS)
    finally:
        store.close()
    held = hold_one_task(client, 6, "email-service", "worker-1", message("job-2", "email-service"))
    hold_one_task(client, 9, "email-service", "worker-2", b"\x00garbage")
    dead = add_dead(client, 12, "email-service", message("job-3", "email-service", deliveries=5), "too many deliveries")

    [row] = as_json(vow("streams", "ls", "--json", url=url))
    assert (row["group"], row["length"], row["pending"], row["lag"], row["dead"]) == ("email-service", 3, 2, 1, 1)
    assert sorted((c["name"], c["pending"]) for c in row["consumers"]) == [("worker-1", 1), ("worker-2", 1)]
    text = vow("streams", "ls", url=url)
    assert text.exit_code == 0 and "email-service" in text.stdout and "consumer worker-1" in text.stdout
    assert all(len(line) <= WIDTH for line in text.stdout.splitlines())

    pending = {e["entry"]: e for e in as_json(vow("streams", "pending", "email-service", "--json", url=url))}
    assert pending[held]["consumer"] == "worker-1" and pending[held]["deliveries"] == 1
    assert pending[held]["task"]["func"] == "send_email" and pending[held]["task"]["id"] == "job-2"
    malformed = [e for e in pending.values() if e["task"] is None]
    assert len(malformed) == 1 and malformed[0]["entry"].startswith("9-")
    text = vow("streams", "pending", "email-service", url=url)
    assert held in text.stdout and "<malformed>" in text.stdout and "send_email" in text.stdout

    [letter] = as_json(vow("streams", "dead", "--json", url=url))
    assert letter["entry"] == dead and letter["reason"] == "too many deliveries" and letter["deliveries"] == 5
    assert dead in vow("streams", "dead", "email-service", url=url).stdout

    moved = as_json(vow("streams", "requeue", "email-service", dead, "--json", url=url))
    assert moved[0]["entry"] == dead and moved[0]["requeued_as"].startswith("12-")
    _, entry_id = task_streams.parse_entry_ref(moved[0]["requeued_as"])
    [(_, fields)] = client.xrange(keys.task_stream(12, "email-service"), entry_id, entry_id)
    assert decode_task(fields[b"m"]).deliveries == 0
    assert as_json(vow("streams", "dead", "--json", url=url)) == []
    assert "no dead letters" in vow("streams", "dead", url=url).stdout

    frame = as_json(vow("streams", "monitor", "--once", "--json", url=url))
    [group] = frame["groups"]
    assert group["group"] == "email-service" and group["pending"] == 2 and group["tasks_per_second"] is None


def test_streams_commands_on_the_standalone_server(redis_url: str, raw_client: Any) -> None:
    exercise_streams(redis_url, raw_client)


@pytest.mark.cluster
def test_streams_commands_on_the_cluster(cluster_url: str) -> None:
    client = connect(cluster_url)
    try:
        exercise_streams(cluster_url, client)
        tree = json.loads(vow("tree", "job-1", "--json", url=cluster_url).stdout)
        assert tree["func"] == "send_email"
    finally:
        client.close()


def test_empty_keyspace_prints_friendly_lines(redis_url: str) -> None:
    assert "no logic groups yet" in vow("streams", "ls", url=redis_url).stdout
    assert "no pending entries" in vow("streams", "pending", "nobody", url=redis_url).stdout
    assert as_json(vow("streams", "ls", "--json", url=redis_url)) == []


def test_monitor_once_prints_one_frame_with_the_pending_count(redis_url: str, raw_client: Any) -> None:
    hold_one_task(raw_client, 3, "billing", "worker-9", message("inv-1", "billing"))
    result = vow("streams", "monitor", "--once", url=redis_url)
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if line.startswith("billing")]
    assert row.split()[:3] == ["billing", "1", "1"]  # length 1, pending 1
    assert "TASKS/S" in result.stdout and "\x1b" not in result.stdout


def test_ls_of_named_groups_includes_a_group_not_in_the_sets(redis_url: str, raw_client: Any) -> None:
    raw_client.xadd(keys.task_stream(0, "hidden"), {"m": message("x", "hidden")})
    assert as_json(vow("streams", "ls", "--json", url=redis_url)) == []
    [row] = as_json(vow("streams", "ls", "hidden", "--json", url=redis_url))
    assert (row["length"], row["lag"], row["streams"]) == (1, 1, 1)


def test_rates_are_entries_read_deltas_per_second() -> None:
    def stats(read: int) -> task_streams.GroupStats:
        return task_streams.GroupStats("g", 0, 0, 0, read, 0, (), 1)

    previous: dict[str, int] = {}
    assert _rates([stats(10)], previous, None) == {"g": None}
    assert _rates([stats(30)], previous, 2.0) == {"g": 10.0}
    assert _rates([stats(30)], previous, 1.0) == {"g": 0.0}


def test_requeue_errors(redis_url: str) -> None:
    missing = vow("streams", "requeue", "g", "4-1-0", url=redis_url)
    assert missing.exit_code == ExitCode.NOT_FOUND and "no dead letter 4-1-0" in missing.stderr
    bad = vow("streams", "requeue", "g", "not-a-ref", url=redis_url)
    assert bad.exit_code == ExitCode.USAGE and "<partition>-<entry id>" in bad.stderr
    no_entries = vow("streams", "requeue", "g", url=redis_url)
    assert no_entries.exit_code == ExitCode.USAGE
