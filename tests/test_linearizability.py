"""The linearizability checker (tests/linearizability.py) on hand-written histories, and the store
under 16 concurrent threads against the real server, every run checked.

Hand-written histories use times in seconds (t=1.0 ...) and timeouts far in the future. The
integration runs are 20 runs of 1,000 operations (16 threads, ~40 promises per run, ids distinct per
run); ``VOW_CHAOS_LONG=1`` runs 200 of them. A store that serves stale reads must fail the check
(the workload and the checker together do catch a real violation).
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable

import pytest

from tests.linearizability import (
    UNKNOWN,
    CheckResult,
    Failure,
    HistoryRecorder,
    Kind,
    Op,
    OpArgs,
    PromiseView,
    Result,
    SearchBudgetExceeded,
    apply,
    check,
    matches,
    observe,
    run_workload,
)
from vow.coordinator import (
    AlreadyCompleted,
    AlreadyExists,
    DurablePromise,
    NotFound,
    RedisStore,
    State,
    StoreConnectionError,
)

LONG = os.environ.get("VOW_CHAOS_LONG") == "1"
THREADS = 16
RUNS = 20
#: operations per run (all threads together)
OPS = 1000
LONG_RUNS = 200
SEED_BASE = 7_000
#: the long runs' seeds (a single skipped placeholder unless VOW_CHAOS_LONG=1)
LONG_SEEDS = range(SEED_BASE + RUNS, SEED_BASE + RUNS + (LONG_RUNS if LONG else 1))

P = "p1"


def op(process: int, kind: Kind, start: float, end: float | None, result: Result, *,
       promise_id: str = P, ikey: str | None = None, strict: bool = False, data: bytes | None = None) -> Op:
    return Op(process, kind, promise_id, OpArgs(ikey=ikey, strict=strict, data=data), start, end, result)


def pending(param: bytes | None = b"a", ikc: str | None = None) -> PromiseView:
    return PromiseView(P, State.PENDING, param_data=param, ikey_create=ikc)


def done(state: State, value: bytes | None, ikv: str | None = None, param: bytes | None = b"a",
         ikc: str | None = None) -> PromiseView:
    return PromiseView(P, state, param_data=param, value_data=value, ikey_create=ikc, ikey_complete=ikv)


def assert_fails(result: CheckResult, promise_id: str = P) -> str:
    assert not result.ok, result.report()
    assert [v.promise_id for v in result.failures] == [promise_id]
    report = result.report()
    assert repr(promise_id) in report and "longest linearizable prefix" in report
    return report


# -- good histories ----------------------------------------------------------------------------


def test_sequential_history_passes() -> None:
    history = [
        op(0, "get", 1, 2, Failure("NotFound")),
        op(0, "resolve", 3, 4, Failure("NotFound"), data=b"x"),
        op(0, "create", 5, 6, pending(ikc="c"), ikey="c", data=b"a"),
        op(1, "create", 7, 8, pending(ikc="c"), ikey="c", data=b"b"),           # dedup: the stored one
        op(1, "create", 9, 10, Failure("AlreadyExists", State.PENDING), ikey="d", data=b"b"),
        op(0, "get", 11, 12, pending(ikc="c")),
        op(0, "resolve", 13, 14, done(State.RESOLVED, b"v", "k", ikc="c"), ikey="k", data=b"v"),
        op(1, "resolve", 15, 16, done(State.RESOLVED, b"v", "k", ikc="c"), ikey="k", data=b"w"),  # dedup
        op(1, "reject", 17, 18, Failure("AlreadyCompleted", State.RESOLVED), ikey="k", strict=True),
        op(1, "cancel", 19, 20, Failure("AlreadyCompleted"), ikey="j"),
        op(0, "create", 21, 22, done(State.RESOLVED, b"v", "k", ikc="c"), ikey="c"),  # not strict: dedup
        op(0, "create", 23, 24, Failure("AlreadyExists", State.RESOLVED), ikey="c", strict=True),
        op(1, "get", 25, 26, done(State.RESOLVED, b"v", "k", ikc="c")),
    ]
    result = check(history)
    assert result.ok, result.report()
    assert result.ops == len(history) and result.unknown == 0


def test_concurrent_overlapping_history_passes() -> None:
    history = [
        op(0, "create", 1.0, 3.0, pending(), data=b"a"),
        op(1, "create", 1.5, 3.5, Failure("AlreadyExists", State.PENDING), data=b"b"),
        op(2, "get", 2.0, 2.5, Failure("NotFound")),                   # before both creates
        op(0, "resolve", 4.0, 6.0, done(State.RESOLVED, b"v"), data=b"v"),
        op(1, "reject", 4.5, 5.0, Failure("AlreadyCompleted", State.RESOLVED), data=b"w"),  # after the resolve
        op(2, "get", 4.2, 7.0, pending()),                             # before the resolve
        op(3, "get", 5.5, 6.5, done(State.RESOLVED, b"v")),
    ]
    result = check(history)
    assert result.ok, result.report()


def test_only_the_second_order_works() -> None:
    # A is invoked first but answers AlreadyExists: B, invoked later and returning earlier, won.
    a = op(0, "create", 1.0, 10.0, Failure("AlreadyExists", State.PENDING), data=b"a")
    b = op(1, "create", 2.0, 5.0, pending(param=b"b"), data=b"b")
    result = check([a, b])
    assert result.ok, result.report()
    assert result.verdicts[P].order == (b, a)
    assert result.verdicts[P].steps > 2  # it tried A first and backtracked


def test_shared_create_ikey_answers_created_twice() -> None:
    history = [
        op(0, "create", 1, 3, pending(ikc="c"), ikey="c", data=b"a"),
        op(1, "create", 2, 4, pending(ikc="c"), ikey="c", data=b"b"),  # the retry sees a's param
    ]
    assert check(history).ok


def test_promises_are_checked_separately() -> None:
    good = op(0, "create", 1, 2, PromiseView("q", State.PENDING, param_data=b"a"), promise_id="q", data=b"a")
    bad = op(1, "get", 1, 2, pending())  # p1 is never created
    result = check([good, bad])
    assert set(result.verdicts) == {"q", P}
    assert result.verdicts["q"].ok
    assert_fails(result)


# -- bad histories -----------------------------------------------------------------------------


def test_lost_write_fails() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, 4, done(State.RESOLVED, b"v"), data=b"v"),
        op(1, "get", 5, 6, pending()),
    ]
    report = assert_fails(check(history))
    assert "p1 get" in report and "model answers RESOLVED" in report


def test_changed_value_fails() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, 5, done(State.RESOLVED, b"v", "k"), ikey="k", data=b"v"),
        op(1, "resolve", 4, 6, done(State.RESOLVED, b"v", "k"), ikey="k", data=b"w"),  # dedup, fine
        op(2, "get", 7, 8, done(State.RESOLVED, b"v", "k")),
        op(3, "get", 9, 10, done(State.RESOLVED, b"w", "k")),
    ]
    assert_fails(check(history))


def test_double_completion_fails() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, 5, done(State.RESOLVED, b"v", "k1"), ikey="k1", data=b"v"),
        op(1, "resolve", 4, 6, done(State.RESOLVED, b"w", "k2"), ikey="k2", data=b"w"),
    ]
    assert_fails(check(history))


def test_resolve_and_reject_both_succeeding_fails() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, 5, done(State.RESOLVED, b"v"), data=b"v"),
        op(1, "reject", 4, 6, done(State.REJECTED, b"w"), data=b"w"),
    ]
    assert_fails(check(history))


@pytest.mark.parametrize("ikeys", [(None, None), ("c1", "c2"), ("c1", None)])
def test_created_twice_without_matching_ikeys_fails(ikeys: tuple[str | None, str | None]) -> None:
    history = [
        op(0, "create", 1, 3, pending(b"a", ikeys[0]), ikey=ikeys[0], data=b"a"),
        op(1, "create", 2, 4, pending(b"b", ikeys[1]), ikey=ikeys[1], data=b"b"),
    ]
    assert_fails(check(history))


def test_wrong_error_state_fails() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "cancel", 3, 4, done(State.REJECTED_CANCELED, None)),
        op(1, "resolve", 5, 6, Failure("AlreadyCompleted", State.RESOLVED), data=b"v"),
    ]
    assert_fails(check(history))


def test_real_time_order_is_respected() -> None:
    # The get returned before the resolve was invoked: it cannot see the resolve's value.
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(1, "get", 3, 4, done(State.RESOLVED, b"v")),
        op(0, "resolve", 5, 6, done(State.RESOLVED, b"v"), data=b"v"),
    ]
    assert_fails(check(history))


# -- unknown outcomes --------------------------------------------------------------------------


@pytest.mark.parametrize("returned", [None, 4.0])
def test_unknown_op_that_took_effect_passes(returned: float | None) -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, returned, UNKNOWN, data=b"v"),
        op(1, "get", 10, 11, done(State.RESOLVED, b"v")),
    ]
    assert check(history).ok


@pytest.mark.parametrize("returned", [None, 4.0])
def test_unknown_op_that_did_not_take_effect_passes(returned: float | None) -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, returned, UNKNOWN, data=b"v"),
        op(1, "get", 10, 11, pending()),
        op(1, "reject", 12, 13, done(State.REJECTED, b"r"), data=b"r"),
    ]
    result = check(history)
    assert result.ok, result.report()
    assert result.unknown == 1


def test_unknown_op_cannot_take_effect_before_its_invocation() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(1, "get", 3, 4, done(State.RESOLVED, b"v")),
        op(0, "resolve", 5, None, UNKNOWN, data=b"v"),
    ]
    assert_fails(check(history))


def test_unknown_op_cannot_be_undone() -> None:
    history = [
        op(0, "create", 1, 2, pending(), data=b"a"),
        op(0, "resolve", 3, None, UNKNOWN, data=b"v"),
        op(1, "get", 5, 6, done(State.RESOLVED, b"v")),
        op(1, "get", 7, 8, pending()),
    ]
    assert_fails(check(history))


def test_search_budget_raises_instead_of_hanging() -> None:
    history = [op(i, "create", 1.0 + i / 100, None, UNKNOWN, data=b"%d" % i) for i in range(14)]
    history.append(op(99, "get", 5, 6, pending(b"nobody")))
    assert not check(history).ok
    with pytest.raises(SearchBudgetExceeded, match=repr(P)):
        check(history, max_steps=10)


def test_read_only_ops_placed_early_do_not_hide_a_linearization() -> None:
    # The get that saw PENDING overlaps the resolve: it must be placed before it, the other after.
    for first, second in ((pending(), done(State.RESOLVED, b"v")), (done(State.RESOLVED, b"v"), pending())):
        history = [
            op(0, "create", 1, 2, pending(), data=b"a"),
            op(0, "resolve", 3, 10, done(State.RESOLVED, b"v"), data=b"v"),
            op(1, "get", 3.5, 9, first),
            op(2, "get", 4, 5, second),
        ]
        result = check(history)
        assert result.ok, result.report()


# -- the search against brute force --------------------------------------------------------------


def brute_force(ops: list[Op]) -> bool:
    """Every real-time-respecting order, no memo, no reductions (tiny histories only)."""

    def search(placed: frozenset[int], model: DurablePromise | None) -> bool:
        todo = [i for i in range(len(ops)) if i not in placed]
        if all(not ops[i].known for i in todo):
            return True
        horizon = min(ops[i].deadline for i in todo)
        for i in todo:
            if ops[i].invoked_at <= horizon:
                after, want = apply(model, ops[i])
                if matches(ops[i].result, want) and search(placed | {i}, after):
                    return True
        return False

    return search(frozenset(), None)


RANDOM_KINDS: tuple[Kind, ...] = ("create", "create", "resolve", "reject", "cancel", "get", "get")


def random_history(rng: random.Random) -> list[Op]:
    """A history made linearizable (each op takes effect at a random point of its interval), then
    sometimes corrupted (one answer swapped for another op's) and some outcomes made unknown."""
    timed: list[tuple[float, Op]] = []
    for i in range(rng.randint(1, 7)):
        start = rng.uniform(0, 10)
        end = start + rng.uniform(0, 4)
        args = OpArgs(ikey=rng.choice([None, "a", "b"]), strict=rng.random() < 0.3, data=b"%d" % i)
        kind = rng.choice(RANDOM_KINDS)
        timed.append((rng.uniform(start, end), Op(i, kind, P, args, start, end, UNKNOWN)))
    model: DurablePromise | None = None
    ops: list[Op] = []
    for _, o in sorted(timed, key=lambda pair: pair[0]):
        model, answer = apply(model, o)
        ops.append(dataclasses.replace(o, result=answer))
    if len(ops) > 1 and rng.random() < 0.5:
        a, b = rng.sample(range(len(ops)), 2)
        ops[a] = dataclasses.replace(ops[a], result=ops[b].result)
    return [dataclasses.replace(o, result=UNKNOWN) if rng.random() < 0.15 else o for o in ops]


def test_search_agrees_with_brute_force() -> None:
    rng = random.Random(1234)
    verdicts = []
    for n in range(1500):
        history = random_history(rng)
        want = brute_force(history)
        got = check(history)
        assert got.ok == want, f"history #{n}: brute force says {want}\n{got.report()}\n{history}"
        verdicts.append(want)
    assert 0.2 < sum(verdicts) / len(verdicts) < 0.9  # both kinds of history were tried


# -- recording ---------------------------------------------------------------------------------


def raising(error: Exception) -> Callable[[], DurablePromise]:
    def call() -> DurablePromise:
        raise error

    return call


def test_observe_maps_outcomes() -> None:
    assert observe(raising(NotFound("x"))) == Failure("NotFound")
    assert observe(raising(AlreadyExists("x", "PENDING"))) == Failure("AlreadyExists", State.PENDING)
    assert observe(raising(AlreadyCompleted("x", "RESOLVED"))) == Failure("AlreadyCompleted", State.RESOLVED)
    assert observe(raising(StoreConnectionError("redis://h", "reset"))) == UNKNOWN
    assert observe(raising(ConnectionResetError())) == UNKNOWN


def test_recorder_marks_unanswered_calls_unknown() -> None:
    recorder = HistoryRecorder()
    recorder.invoke(3, "resolve", P, OpArgs(data=b"v"))
    token = recorder.invoke(4, "get", P, OpArgs())
    recorder.respond(token, Failure("NotFound"))
    history = recorder.history()
    assert [(o.process, o.returned_at is None, o.result) for o in history] == [
        (4, False, Failure("NotFound")), (3, True, UNKNOWN)]
    returned = history[0].returned_at
    assert returned is not None and history[0].invoked_at <= returned
    assert check(history).ok


# -- the store under concurrency -------------------------------------------------------------


def run_and_check(url: str, seed: int, ops: int) -> None:
    history = run_workload(lambda: RedisStore(url), seed=seed, threads=THREADS, ops=ops)
    assert len(history) == ops, f"seed={seed}: {len(history)} of {ops} operations recorded"
    result = check(history)
    assert result.ok, f"seed={seed}: {result.report()}"
    assert result.unknown == 0, f"seed={seed}: {result.unknown} operations failed without a fault injected"
    answers = {(o.kind, o.result.kind if isinstance(o.result, Failure) else o.result.state.family) for o in history}
    wanted = {("create", "pending"), ("create", "AlreadyExists"), ("get", "NotFound"), ("get", "pending"),
              ("resolve", "resolved"), ("resolve", "AlreadyCompleted")}
    assert wanted <= answers, f"seed={seed}: the workload never saw {sorted(wanted - answers)}"


@pytest.mark.parametrize("seed", range(SEED_BASE, SEED_BASE + RUNS))
def test_store_is_linearizable(redis_url: str, seed: int) -> None:
    run_and_check(redis_url, seed, OPS)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="the full-size runs need VOW_CHAOS_LONG=1")
@pytest.mark.parametrize("seed", LONG_SEEDS)
def test_store_is_linearizable_long(redis_url: str, seed: int) -> None:
    run_and_check(redis_url, seed, OPS)


class StaleReadStore(RedisStore):
    """A broken store: each instance answers every get after the first from its own cache."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.cache: dict[str, DurablePromise | None] = {}

    def get(self, promise_id: str) -> DurablePromise:
        if promise_id not in self.cache:
            try:
                self.cache[promise_id] = super().get(promise_id)
            except NotFound:
                self.cache[promise_id] = None
        cached = self.cache[promise_id]
        if cached is None:
            raise NotFound(promise_id)
        return cached


def test_stale_reads_are_caught(redis_url: str) -> None:
    # Few promises, so each thread reads each of them many times while others change them. A
    # run sees a stale read only if some thread read a promise before it changed and again after
    # (a run misses it about once in 40): up to 5 runs.
    reports = []
    for seed in range(SEED_BASE - 5, SEED_BASE):
        ids = [f"stale-{seed}-{i}" for i in range(8)]
        history = run_workload(lambda: StaleReadStore(redis_url), seed=seed, threads=THREADS, ops=OPS,
                               promise_ids=ids)
        result = check(history)
        reports.append(f"seed={seed}: {result.report()}")
        if not result.ok:
            assert "longest linearizable prefix" in result.report(), f"seed={seed}: {result.report()}"
            return
    raise AssertionError("stale reads went unnoticed:\n" + "\n".join(reports))
