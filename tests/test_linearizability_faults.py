"""Per-promise linearizability with the fault proxy between every client and Redis.

The same seeded 16-thread workload as ``tests/test_linearizability.py`` (create, resolve, reject,
cancel and get on shared promises, mixed ikeys and strict flags), but every thread's store talks
through ``tests/faultproxy.py`` while it drops replies and resets connections on a seeded
schedule. A call that fails is recorded as *unknown* (it may or may not have taken effect), as
the caller sees it: an ``OutcomeUnknown`` naming the promise. Every history must still be
linearizable against ``states.py`` — a resent script that applied twice, or a lost write that a
later read missed, would not be. ``make chaos`` (VOW_CHAOS_LONG=1) runs 50 more seeds.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from tests.faultproxy import FaultProxy
from tests.linearizability import check, run_workload
from vow import OutcomeUnknown, RedisStore, VowError

LONG = os.environ.get("VOW_CHAOS_LONG") == "1"
SEED_BASE = 9_000
RUNS = 5
LONG_RUNS = 50
OPS = 1_000
THREADS = 16


@pytest.mark.parametrize("seed", range(SEED_BASE, SEED_BASE + RUNS))
def test_linearizable_under_lost_replies_and_resets(redis_url: str, seed: int) -> None:
    run_and_check(redis_url, seed)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="the full-size runs need VOW_CHAOS_LONG=1")
@pytest.mark.parametrize("seed", range(SEED_BASE + RUNS, SEED_BASE + RUNS + (LONG_RUNS if LONG else 1)))
def test_linearizable_under_lost_replies_and_resets_long(redis_url: str, seed: int) -> None:
    run_and_check(redis_url, seed)


def run_and_check(redis_url: str, seed: int) -> None:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    with FaultProxy(parts.hostname, parts.port, seed=seed) as proxy:
        proxy.run_schedule(interval_s=0.02, kinds=("drop_reply", "reset"))
        history = run_workload(lambda: RedisStore(proxy.url), seed=seed, threads=THREADS, ops=OPS)
        proxy.stop_schedule()
        faults = dict(proxy.counts)
    result = check(history)
    assert result.ok, f"seed={seed} faults={faults}: {result.report()}"
    assert len(history) == OPS
    print(f"seed={seed}: {result.unknown} of {OPS} outcomes unknown; faults {faults}")
    assert sum(faults.values()) > 0, f"seed={seed}: the schedule applied no fault"


def test_a_lost_reply_is_outcome_unknown_naming_the_promise(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    with FaultProxy(parts.hostname, parts.port, seed=1) as proxy:
        store = RedisStore(proxy.url)
        store.create("warm", store.now() + 60_000)  # the connection exists: the fault can hit it
        proxy.partition()  # replies and resends alike get nothing back
        with pytest.raises(OutcomeUnknown) as caught:
            store.create("job-7", 2**52)
        proxy.heal()
        assert "outcome unknown for vow:{" in str(caught.value) and ":p:job-7" in str(caught.value)
        assert isinstance(caught.value, VowError)
        store.close()
