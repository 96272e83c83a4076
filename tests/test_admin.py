"""coordinator.streams (and cli.tree) against the real server: stream figures, pending entries, dead letters, trees."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.store_helpers import invoke
from vow.cli import tree as call_graph
from vow.coordinator import NotFound, RedisStore, StoreConnectionError, StoreError, ValidationError, keys
from vow.coordinator import streams as task_streams
from vow.coordinator.errors import DeadLetterNotFound
from vow.coordinator.records import INVOKE_TAG
from vow.coordinator.tasks import TaskKind, TaskMessage, decode_task
from vow.server import free_port

HOUR_MS = 3_600_000


def message(promise_id: str, group: str = "g", func: str = "f", deliveries: int = 0) -> bytes:
    return TaskMessage(TaskKind.INVOKE, promise_id, group, func, deliveries=deliveries).encode()


def add_dead(client: Any, partition: int, group: str, raw: bytes, reason: str = "too many deliveries") -> str:
    entry = client.xadd(
        keys.dead_letters(partition, group),
        {"m": raw, "reason": reason, "from": "1-0", "consumer": "c1", "deliveries": "5"},
    )
    client.sadd(keys.groups(partition), group)
    return task_streams.entry_ref(partition, entry.decode())


def test_entry_refs_round_trip_and_bad_ones_are_refused() -> None:
    assert task_streams.parse_entry_ref("3-1712345678901-0") == (3, "1712345678901-0")
    assert task_streams.parse_entry_ref(task_streams.entry_ref(15, "1-2")) == (15, "1-2")
    for bad in ("16-1-0", "3-1712345678901", "x-1-0", "", "3-a-0"):
        with pytest.raises(ValidationError):
            task_streams.parse_entry_ref(bad)


def test_escape_glob_matches_only_the_literal_id(real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    for pid in ("a*b[1]", "a*b[1].1", "axb1.1", "a*b[1]x.1"):
        real_store.create(pid, timeout)
    page = real_store.search(call_graph.escape_glob("a*b[1]") + ".*")
    assert [p.id for p in page.promises] == ["a*b[1].1"]
    assert call_graph.escape_glob("a\\b?") == "a\\\\b\\?"


def test_function_name_from_invoke_data_else_tag(real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    invoked = invoke(real_store, "i1", "send_email", ["bob"], {"n": 1}, group="mail", timeout_ms=HOUR_MS)
    assert call_graph.function_name(invoked) == "send_email"
    assert json.loads(invoked.param.data or b"") == {"func": "send_email", "args": ["bob"], "kwargs": {"n": 1}}
    assert invoked.tags[INVOKE_TAG] == "poll://mail"
    tagged = real_store.create("t1", timeout, data="[1]", tags={"vow:func": "confirm"})
    assert call_graph.function_name(tagged) == "confirm"
    assert call_graph.function_name(real_store.create("b1", timeout, data=b"\xff")) is None


def test_group_stats_of_missing_stream_stream_without_group_and_consumed_stream(
    real_store: RedisStore, raw_client: Any
) -> None:
    assert task_streams.group_stats(real_store) == []
    for n in range(3):
        invoke(real_store, f"job-{n}", "f", group="g", timeout_ms=HOUR_MS)
    [before] = task_streams.group_stats(real_store)
    assert (before.group, before.length, before.pending, before.lag, before.consumers) == ("g", 3, 0, 3, ())
    # a worker of the group takes one task in the first partition that has any
    streams = [keys.task_stream(p, "g") for p in range(keys.PARTITIONS)]
    stream = next(s for s in streams if raw_client.exists(s))
    raw_client.xgroup_create(stream, "g", id="0")
    raw_client.xreadgroup("g", "worker-1", {stream: ">"}, count=1)
    add_dead(raw_client, 9, "g", message("job-9"))
    [after] = task_streams.group_stats(real_store, ["g", "g"])
    assert (after.length, after.pending, after.lag, after.entries_read, after.dead) == (3, 1, 2, 1, 1)
    assert [(c.name, c.pending) for c in after.consumers] == [("worker-1", 1)]
    assert after.to_dict()["consumers"][0]["name"] == "worker-1"
    [unknown] = task_streams.group_stats(real_store, ["nobody"])
    assert (unknown.length, unknown.streams, unknown.lag) == (0, 0, 0)


def test_group_stats_refuses_an_invalid_group_name(real_store: RedisStore) -> None:
    with pytest.raises(ValidationError):
        task_streams.group_stats(real_store, ["bad group"])


def test_pending_entries_decode_the_message_or_flag_it(real_store: RedisStore, raw_client: Any) -> None:
    assert task_streams.pending_entries(real_store, "g") == []
    good = keys.task_stream(2, "g")
    bad = keys.task_stream(7, "g")
    raw_client.xadd(good, {"m": message("p-1", func="charge")})
    raw_client.xadd(bad, {"m": b"\x00not msgpack"})
    for stream in (good, bad):
        raw_client.xgroup_create(stream, "g", id="0")
        raw_client.xreadgroup("g", "w", {stream: ">"})
    entries = {e.partition: e for e in task_streams.pending_entries(real_store, "g")}
    assert entries[2].task is not None and entries[2].task.func == "charge"
    assert entries[2].deliveries == 1 and entries[2].consumer == "w"
    assert entries[7].task is None and entries[7].problem
    assert entries[2].ref.startswith("2-")
    assert len(task_streams.pending_entries(real_store, "g", limit=1)) == 1


def test_dead_letters_listed_oldest_first_for_all_groups(real_store: RedisStore, raw_client: Any) -> None:
    first = add_dead(raw_client, 1, "a", message("x", group="a"))
    second = add_dead(raw_client, 5, "b", b"garbage", reason="malformed task")
    letters = task_streams.dead_letters(real_store)
    assert [d.ref for d in letters] == [first, second]
    assert letters[0].task is not None and letters[0].deliveries == 5
    assert letters[1].task is None and letters[1].reason == "malformed task"
    assert [d.ref for d in task_streams.dead_letters(real_store, "b")] == [second]


def test_requeue_resets_the_delivery_count_and_removes_the_dead_letter(
    real_store: RedisStore, raw_client: Any
) -> None:
    ref = add_dead(raw_client, 4, "g", message("job", deliveries=7))
    new_ref = task_streams.requeue(real_store, "g", ref)
    partition, entry_id = task_streams.parse_entry_ref(new_ref)
    assert partition == 4
    [(_, fields)] = raw_client.xrange(keys.task_stream(4, "g"), entry_id, entry_id)
    assert decode_task(fields[b"m"]).deliveries == 0
    assert raw_client.xlen(keys.dead_letters(4, "g")) == 0
    with pytest.raises(DeadLetterNotFound):
        task_streams.requeue(real_store, "g", ref)


def test_requeue_keeps_a_malformed_message_as_it_is(real_store: RedisStore, raw_client: Any) -> None:
    ref = add_dead(raw_client, 0, "g", b"\xc1raw")
    _, entry_id = task_streams.parse_entry_ref(task_streams.requeue(real_store, "g", ref))
    [(_, fields)] = raw_client.xrange(keys.task_stream(0, "g"), entry_id, entry_id)
    assert fields[b"m"] == b"\xc1raw"


def test_concurrent_requeues_of_one_dead_letter_queue_it_once(redis_url: str, raw_client: Any) -> None:
    ref = add_dead(raw_client, 3, "g", message("job"))
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def worker() -> None:
        store = RedisStore(redis_url)
        start.wait(timeout=10)
        try:
            outcomes.append(task_streams.requeue(store, "g", ref))
        except DeadLetterNotFound:
            outcomes.append("missing")
        finally:
            store.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert outcomes.count("missing") == 3
    assert raw_client.xlen(keys.task_stream(3, "g")) == 1


def test_call_tree_follows_ids_and_tags(real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    invoke(real_store, "wf", "workflow", timeout_ms=HOUR_MS)
    for pid in ("wf.1", "wf.2", "wf.1.1", "wf.10"):
        real_store.create(pid, timeout, tags={"vow:func": f"step-{pid}"})
    real_store.create("confirm", timeout, tags={"vow:parent": "wf.2", "vow:root": "wf"})
    real_store.create("confirm.1", timeout)
    real_store.create("orphan", timeout, tags={"vow:root": "wf"})
    real_store.create("wfx.1", timeout)  # not a child: 'wf' then 'x'
    tree = call_graph.call_tree(real_store, "wf")
    assert tree.func == "workflow"
    shape = tree.to_dict()

    def ids(node: dict[str, Any]) -> list[Any]:
        return [node["id"], [ids(c) for c in node["children"]]]

    assert ids(shape) == [
        "wf",
        [
            ["wf.1", [["wf.1.1", []]]],
            ["wf.2", [["confirm", [["confirm.1", []]]]]],
            ["wf.10", []],
            ["orphan", []],
        ],
    ]
    assert shape["children"][0]["func"] == "step-wf.1"


def test_call_tree_survives_a_tag_cycle_and_refuses_an_unknown_root(real_store: RedisStore) -> None:
    timeout = real_store.now() + HOUR_MS
    real_store.create("r", timeout)
    real_store.create("a", timeout, tags={"vow:root": "r", "vow:parent": "b"})
    real_store.create("b", timeout, tags={"vow:root": "r", "vow:parent": "a"})
    tree = call_graph.call_tree(real_store, "r")
    assert sorted(c.promise.id for c in tree.children) == ["a", "b"]
    with pytest.raises(NotFound):
        call_graph.call_tree(real_store, "missing")


def test_admin_reads_translate_connection_errors() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreConnectionError):
        task_streams.known_groups(store)
    store.close()


def test_wrongtype_key_is_reported_not_hidden(real_store: RedisStore, raw_client: Any) -> None:
    raw_client.set(keys.task_stream(0, "g"), "not a stream")
    raw_client.sadd(keys.groups(0), "g")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        task_streams.group_stats(real_store)
