"""A seeded, replayable simulation: the store and the reference model (states.py) side by side.

A hypothesis ``RuleBasedStateMachine`` sends random create / resolve / reject / cancel / get /
search / sweep requests over a small pool of ids and idempotency keys while moving the injected
clock by hand; after every step the store's answer (status or error type, and the full record)
must equal the model's. Runs derandomized, so a failure replays the same way every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from vow.coordinator import DurablePromise, RedisStore, State, keys
from vow.coordinator.records import TIMER_TAG, decode_promise
from vow.coordinator.states import Status, apply_timeout

from .conftest import CLOCK_START_MS, Clock
from .store_helpers import Model, comparable, plain, run

settings.register_profile(
    "store-model",
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

IDS = st.sampled_from(["a", "b", "c", "d*", "e{1}"])
IKEYS = st.sampled_from([None, "k1", "k2"])
TAGS = st.sampled_from([{}, {"kind": "x"}, {TIMER_TAG: "true"}, {"kind": "x", TIMER_TAG: "true"}])
DATA = st.sampled_from([None, b"", b"v1", b"\x00\xff"])
HEADERS = st.sampled_from([{}, {"h": "1"}])
COMPLETE_STATES = st.sampled_from([State.RESOLVED, State.REJECTED, State.REJECTED_CANCELED])


class StoreVersusModel(RuleBasedStateMachine):
    #: builds the store under test around the machine's clock (set by each test)
    make_store: Callable[[Clock], RedisStore]

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(CLOCK_START_MS)
        self.store = type(self).make_store(self.clock)
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()

    def agree(self, store_call: Callable[[], Any], model_answer: Any) -> None:
        got = run(store_call)
        assert comparable(got) == comparable(model_answer), f"store {got} != model {model_answer}"

    def agree_ex(self, store_call: Callable[[], tuple[Status, DurablePromise | None]]) -> None:
        """The internal variants answer the transition's status too: it must be the model's."""
        status, promise = store_call()
        want = self.model.last
        assert want is not None
        assert status is want.status, f"store {status}, model {want.status}"
        assert (promise and plain(promise)) == (want.promise and plain(want.promise))

    @rule(promise_id=IDS, after=st.sampled_from([1, 5, 50, 500]), ikey=IKEYS, strict=st.booleans(),
          tags=TAGS, data=DATA, headers=HEADERS, with_status=st.booleans())
    def create(self, promise_id: str, after: int, ikey: str | None, strict: bool,
               tags: dict[str, str], data: bytes | None, headers: dict[str, str], with_status: bool) -> None:
        args: dict[str, Any] = dict(timeout=self.clock.now + after, ikey=ikey, strict=strict,
                                    headers=headers, data=data, tags=tags)
        model = self.model.create(self.clock.now, promise_id, **args)
        if with_status:
            self.agree_ex(lambda: self.store.create_ex(promise_id, **args))
        else:
            self.agree(lambda: self.store.create(promise_id, **args), model)

    @rule(promise_id=IDS, state=COMPLETE_STATES, ikey=IKEYS, strict=st.booleans(), data=DATA,
          headers=HEADERS, with_status=st.booleans())
    def complete(self, promise_id: str, state: State, ikey: str | None, strict: bool,
                 data: bytes | None, headers: dict[str, str], with_status: bool) -> None:
        args: dict[str, Any] = dict(ikey=ikey, strict=strict, headers=headers, data=data)
        model = self.model.complete(self.clock.now, promise_id, state, **args)
        if with_status:
            self.agree_ex(lambda: self.store.complete_ex(promise_id, state, **args))
        else:
            self.agree(lambda: self.store.complete(promise_id, state, **args), model)

    @rule(ms=st.sampled_from([0, 1, 4, 49, 50, 51, 499]))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(promise_id=IDS)
    def get(self, promise_id: str) -> None:
        self.agree(lambda: self.store.get(promise_id), self.model.get(self.clock.now, promise_id))

    @rule(family=st.sampled_from([None, "pending", "resolved", "rejected"]),
          tags=st.sampled_from([None, {"kind": "x"}]), limit=st.sampled_from([1, 2, 100]))
    def search(self, family: str | None, tags: dict[str, str] | None, limit: int) -> None:
        found: list[dict[str, Any]] = []
        cursor = None
        for _ in range(50):
            page = self.store.search("*", state=family, tags=tags, limit=limit, cursor=cursor)
            assert len(page.promises) <= limit
            found += [plain(p) for p in page.promises]
            cursor = page.cursor
            if cursor is None:
                break
        assert cursor is None, "search did not end"
        assert found == [plain(p) for p in self.model.search(self.clock.now, family, tags)]

    @precondition(lambda self: bool(self.model.promises))
    @rule()
    def sweep(self) -> None:
        assert self.store.sweep() == self.model.sweep(self.clock.now)

    @invariant()
    def records_agree(self) -> None:
        # Every record as stored, read without the store's scripts (so without applying a
        # timeout, which would hide a lazily timed-out promise from the other rules).
        for promise_id, promise in self.model.promises.items():
            fields = self.store.client.hgetall(keys.promise(promise_id))
            stored = decode_promise(keys.promise(promise_id), fields)
            assert plain(apply_timeout(stored, self.clock.now)) == plain(apply_timeout(promise, self.clock.now))


@pytest.mark.parametrize("backend", ["redis", "fakeredis"])
def test_store_agrees_with_model(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "redis":
        url = request.getfixturevalue("redis_url")

        def make(clock: Clock) -> RedisStore:
            store = RedisStore(url, clock=clock)
            store.client.flushall()
            return store
    else:
        import fakeredis

        def make(clock: Clock) -> RedisStore:
            return RedisStore(client=fakeredis.FakeRedis(), shebang=False, clock=clock)

    machine = type(f"StoreVersusModel_{backend}", (StoreVersusModel,), {"make_store": staticmethod(make)})
    run_state_machine_as_test(machine, settings=settings.get_profile("store-model"))
