"""The key layout: 16 partitions, one hash tag each, one tag per 1,024-slot band."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from vow.coordinator import keys


def crc16_xmodem(data: bytes) -> int:
    """CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key: str) -> int:
    """The cluster slot of a key: CRC16 of the text in its first non-empty ``{...}``."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16_xmodem(key.encode()) % 16384


def test_crc16_matches_the_known_vector_and_redis_py() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3  # the CRC16/XMODEM check value
    for key in ("foo", "{user1000}.following", "a{b}c{d}", "{}x", "vow:{v001}:p:x"):
        assert slot(key) == key_slot(key.encode())


def test_sixteen_tags_one_per_band() -> None:
    assert keys.PARTITIONS == 16
    bands = [slot(keys.tag(p)) // 1024 for p in range(keys.PARTITIONS)]
    assert bands == list(range(16))
    assert len({keys.tag(p) for p in range(keys.PARTITIONS)}) == 16


def test_three_masters_get_five_six_five_partitions() -> None:
    per_master = [0, 0, 0]
    for p in range(keys.PARTITIONS):
        per_master[min(slot(keys.tag(p)) // (16384 // 3), 2)] += 1
    assert sorted(per_master) == [5, 5, 6]


@pytest.mark.parametrize("promise_id", ["a", "workflow-alice", "x{y}z", "{v001}", "*", "é", "a" * 1024])
def test_every_key_of_a_promise_shares_its_partition_slot(promise_id: str) -> None:
    p = keys.partition_of(promise_id)
    want = slot(keys.tag(p))
    promise_keys = [
        keys.promise(promise_id), keys.callbacks(promise_id), keys.subscriptions(promise_id),
        keys.timeouts(p), keys.index(p), *(keys.index(p, f) for f in ("pending", "resolved", "rejected")),
        keys.sweep_lock(p), keys.task_stream(p, "group"), keys.dead_letters(p, "group"), keys.groups(p),
        keys.inbox(p, "listener"),
    ]
    for key in promise_keys:
        assert key.startswith(f"{keys.PREFIX}:{keys.tag(p)}:"), key
        assert slot(key) == want == key_slot(key.encode()), key
    # the rule the scripts use to name keys they are not passed (derive() in _lib.lua)
    base = keys.timeouts(p)
    assert keys.derive(base, "p:" + promise_id) == keys.promise(promise_id)
    assert keys.derive(base, "cb:" + promise_id) == keys.callbacks(promise_id)
    assert keys.derive(base, "sub:" + promise_id) == keys.subscriptions(promise_id)
    assert keys.derive(keys.promise(promise_id), "q:group") == keys.task_stream(p, "group")
    assert keys.derive(keys.promise(promise_id), "inbox:listener") == keys.inbox(p, "listener")
    assert keys.derive(keys.leases(p), "x:" + promise_id) == keys.execution(promise_id)
    assert keys.derive(keys.leases(p), "dead:group") == keys.dead_letters(p, "group")


def test_root_keys_live_in_the_root_partition() -> None:
    for root in ("root-1", "r{2}", "wf"):
        assert slot(keys.execution(root)) == slot(keys.tag(keys.partition_of(root)))
        assert slot(keys.schedule(root)) == slot(keys.tag(keys.partition_of(root)))


def test_partitions_are_stable_and_all_used() -> None:
    assert keys.partition_of("workflow-alice") == keys.partition_of("workflow-alice")
    assert {keys.partition_of(f"id-{n}") for n in range(500)} == set(range(keys.PARTITIONS))
    # the same text, however it arrives, maps to the same partition
    assert keys.partition_of("é") == keys.partition_of("\u00e9")


def test_unknown_index_family() -> None:
    with pytest.raises(ValueError):
        keys.index(0, "done")


@pytest.mark.parametrize("promise_id", ["p", "workflow-alice@example.com.1", "ünïcode-✓", "a" * 300])
def test_promise_keys_are_the_keys_each_function_names(promise_id: str) -> None:
    p = keys.partition_of(promise_id)
    assert keys.PromiseKeys.of(promise_id).as_list() == [
        keys.promise(promise_id), keys.callbacks(promise_id), keys.subscriptions(promise_id), keys.timeouts(p),
        keys.index(p), keys.index(p, "pending"), keys.index(p, "resolved"), keys.index(p, "rejected"),
    ]
    assert keys.promise(promise_id) == f"vow:{keys.tag(p)}:p:{promise_id}"
