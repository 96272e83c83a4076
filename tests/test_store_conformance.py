"""The promise transition table: every create/complete case, on the real server and on fakeredis.

Each row sets a promise up (pending, completed in some state, or already timed out), then sends
one request with an idempotency key that is equal / different / absent, strict or not, before or
at the promise's timeout, with or without the timer tag (``resonate:timeout=true``).

Three answers must agree for every row: the store's, the pure reference model's
(``coordinator/states.py``), and :func:`expected` below — the rules of Resonate server v0.8.2
written out again by hand in terms of the row, so that a bug shared by the model and the Lua
scripts cannot hide. ``EXPLICIT`` pins the answer of the most telling rows literally.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from vow.coordinator import AlreadyCompleted, AlreadyExists, NotFound, RedisStore, State, ValidationError
from vow.coordinator.records import TIMER_TAG

from .conftest import Clock
from .store_helpers import Model, Recorder, comparable, plain, run

#: the promise's timeout, relative to the start of its row
TIMEOUT_AFTER_MS = 1_000
#: room on the clock for one row
ROW_SPAN_MS = 10_000

COMPLETED = ("RESOLVED", "REJECTED", "REJECTED_CANCELED")
EXISTING = ("none", "PENDING", *COMPLETED, "TIMEDOUT")
IKEYS = ("equal", "different", "request-none", "stored-none", "both-none")
OPS = ("create", "resolve", "reject", "cancel")
OP_STATE = {"resolve": "RESOLVED", "reject": "REJECTED", "cancel": "REJECTED_CANCELED"}


@dataclass(frozen=True)
class Row:
    op: str        # create | resolve | reject | cancel
    existing: str  # none | PENDING | RESOLVED | REJECTED | REJECTED_CANCELED | TIMEDOUT (timed out earlier)
    ikey: str      # how the request's idempotency key relates to the stored one (see IKEYS)
    strict: bool
    late: bool     # the request arrives at the promise's timeout (the boundary: now == timeout)
    timer: bool    # the promise carries resonate:timeout=true

    @property
    def stored_ikey(self) -> str | None:
        return None if self.ikey in ("stored-none", "both-none") else "k"

    @property
    def request_ikey(self) -> str | None:
        return {"equal": "k", "different": "other"}.get(self.ikey, None if self.ikey != "stored-none" else "k")

    def __str__(self) -> str:
        return (f"{self.op} on {self.existing} ikey={self.ikey} strict={self.strict} "
                f"late={self.late} timer={self.timer}")


def rows(op: str, existing: str) -> list[Row]:
    out = []
    for ikey, strict, late, timer in itertools.product(IKEYS, (False, True), (False, True), (False, True)):
        if existing == "TIMEDOUT" and not late:
            continue  # a promise that timed out earlier is only met after its timeout
        if existing == "none" and (late or ikey not in ("equal", "request-none")):
            continue  # nothing stored: only the request's own key and options matter
        out.append(Row(op, existing, ikey, strict, late, timer))
    return out


def expected(row: Row) -> tuple[str, str | None]:
    """The answer by the rules, hand-written: ("ok" or the error name, the state returned/named)."""
    timed_out = "RESOLVED" if row.timer else "REJECTED_TIMEDOUT"
    if row.existing == "none":
        return ("ok", "PENDING") if row.op == "create" else ("NotFound", None)
    if row.existing == "TIMEDOUT" or (row.existing == "PENDING" and row.late):
        now_state = timed_out
    else:
        now_state = row.existing
    keys_match = row.ikey == "equal"

    if row.op == "create":
        if keys_match and (not row.strict or now_state == "PENDING"):
            return "ok", now_state
        return "AlreadyExists", now_state

    asked = OP_STATE[row.op]
    if row.existing == "PENDING" and not row.late:
        return "ok", asked
    if row.existing == "PENDING":  # reaches its timeout with this very request
        if row.timer or row.strict:
            return "AlreadyCompleted", timed_out
        return "ok", "REJECTED_TIMEDOUT"
    # completed before the request; a timeout leaves no complete idempotency key behind
    if keys_match and row.existing != "TIMEDOUT" and (not row.strict or asked == now_state):
        return "ok", now_state
    if not row.strict and now_state == "REJECTED_TIMEDOUT":
        return "ok", now_state
    return "AlreadyCompleted", now_state


#: rows whose answers are pinned literally: (op, existing, ikey, strict, late, timer) -> answer
EXPLICIT: dict[tuple[str, str, str, bool, bool, bool], tuple[str, str | None]] = {
    ("create", "none", "equal", False, False, False): ("ok", "PENDING"),
    ("create", "none", "request-none", True, False, True): ("ok", "PENDING"),
    ("create", "PENDING", "equal", False, False, False): ("ok", "PENDING"),
    ("create", "PENDING", "equal", True, False, False): ("ok", "PENDING"),
    ("create", "PENDING", "different", False, False, False): ("AlreadyExists", "PENDING"),
    ("create", "PENDING", "request-none", False, False, False): ("AlreadyExists", "PENDING"),
    ("create", "PENDING", "both-none", False, False, False): ("AlreadyExists", "PENDING"),
    ("create", "PENDING", "equal", False, True, False): ("ok", "REJECTED_TIMEDOUT"),
    ("create", "PENDING", "equal", True, True, False): ("AlreadyExists", "REJECTED_TIMEDOUT"),
    ("create", "PENDING", "equal", False, True, True): ("ok", "RESOLVED"),
    ("create", "RESOLVED", "equal", False, False, False): ("ok", "RESOLVED"),
    ("create", "RESOLVED", "equal", True, False, False): ("AlreadyExists", "RESOLVED"),
    ("create", "TIMEDOUT", "equal", False, True, False): ("ok", "REJECTED_TIMEDOUT"),
    ("resolve", "none", "equal", False, False, False): ("NotFound", None),
    ("cancel", "none", "request-none", True, False, False): ("NotFound", None),
    ("resolve", "PENDING", "equal", False, False, False): ("ok", "RESOLVED"),
    ("reject", "PENDING", "both-none", True, False, False): ("ok", "REJECTED"),
    ("cancel", "PENDING", "different", False, False, True): ("ok", "REJECTED_CANCELED"),
    ("resolve", "PENDING", "equal", False, True, False): ("ok", "REJECTED_TIMEDOUT"),
    ("resolve", "PENDING", "equal", True, True, False): ("AlreadyCompleted", "REJECTED_TIMEDOUT"),
    ("resolve", "PENDING", "equal", False, True, True): ("AlreadyCompleted", "RESOLVED"),
    ("reject", "PENDING", "both-none", False, True, True): ("AlreadyCompleted", "RESOLVED"),
    ("resolve", "RESOLVED", "equal", False, False, False): ("ok", "RESOLVED"),
    ("resolve", "RESOLVED", "equal", True, False, False): ("ok", "RESOLVED"),
    ("reject", "RESOLVED", "equal", False, False, False): ("ok", "RESOLVED"),
    ("reject", "RESOLVED", "equal", True, False, False): ("AlreadyCompleted", "RESOLVED"),
    ("resolve", "RESOLVED", "different", False, False, False): ("AlreadyCompleted", "RESOLVED"),
    ("resolve", "RESOLVED", "request-none", False, False, False): ("AlreadyCompleted", "RESOLVED"),
    ("resolve", "RESOLVED", "stored-none", False, False, False): ("AlreadyCompleted", "RESOLVED"),
    ("resolve", "RESOLVED", "both-none", False, False, False): ("AlreadyCompleted", "RESOLVED"),
    ("cancel", "REJECTED", "equal", True, False, False): ("AlreadyCompleted", "REJECTED"),
    ("cancel", "REJECTED_CANCELED", "equal", True, True, False): ("ok", "REJECTED_CANCELED"),
    ("resolve", "TIMEDOUT", "equal", False, True, False): ("ok", "REJECTED_TIMEDOUT"),
    ("resolve", "TIMEDOUT", "different", True, True, False): ("AlreadyCompleted", "REJECTED_TIMEDOUT"),
    ("reject", "TIMEDOUT", "both-none", False, True, True): ("AlreadyCompleted", "RESOLVED"),
}


def _state_of(outcome: tuple[str, object]) -> str | None:
    kind, detail = outcome
    if kind == "ok":
        return detail.state.value  # type: ignore[attr-defined, no-any-return]
    return detail  # type: ignore[return-value]


def play(store: RedisStore, clock: Clock, model: Model, row: Row, promise_id: str) -> list[str]:
    """Set the row up on the store and the model, send its request, and list every disagreement."""
    start = clock.now
    timeout = start + TIMEOUT_AFTER_MS
    tags = {"suite": "conformance"} | ({TIMER_TAG: "true"} if row.timer else {})
    create_ikey = row.stored_ikey if row.op == "create" else "c"
    complete_ikey = row.stored_ikey if row.op != "create" else "v"
    rec = Recorder()

    if row.existing != "none":
        args = dict(timeout=timeout, ikey=create_ikey, headers={"h": "param"}, data=b"param", tags=tags)
        rec.check(comparable(run(lambda: store.create(promise_id, **args)))  # type: ignore[arg-type]
                  == comparable(model.create(clock.now, promise_id, **args)), "setup create differs")  # type: ignore[arg-type]
    if row.existing in COMPLETED:
        clock.advance(10)
        state = State(row.existing)
        args = dict(ikey=complete_ikey, headers={"h": "first"}, data=b"first")
        rec.check(comparable(run(lambda: store.complete(promise_id, state, **args)))  # type: ignore[arg-type]
                  == comparable(model.complete(clock.now, promise_id, state, **args)), "setup complete differs")  # type: ignore[arg-type]
    if row.existing == "TIMEDOUT":
        clock.now = timeout + 5
        rec.check(comparable(run(lambda: store.get(promise_id))) == comparable(model.get(clock.now, promise_id)),
                  "setup timeout differs")
    if row.late:
        clock.now = max(clock.now, timeout)
    else:
        clock.now = start + 20

    if row.op == "create":
        req = dict(timeout=clock.now + 5 * TIMEOUT_AFTER_MS, ikey=row.request_ikey, strict=row.strict,
                   headers={"h": "again"}, data=b"again", tags=tags)
        got = run(lambda: store.create(promise_id, **req))  # type: ignore[arg-type]
        want = model.create(clock.now, promise_id, **req)  # type: ignore[arg-type]
    else:
        state = State(OP_STATE[row.op])
        req = dict(ikey=row.request_ikey, strict=row.strict, headers={"h": row.op}, data=row.op.encode())
        got = run(lambda: store.complete(promise_id, state, **req))  # type: ignore[arg-type]
        want = model.complete(clock.now, promise_id, state, **req)  # type: ignore[arg-type]

    rec.check(comparable(got) == comparable(want), f"store answered {got}, model {want}")
    answer = (got[0], _state_of(got))
    rec.check(answer == expected(row), f"store answered {answer}, the rules say {expected(row)}")
    key = (row.op, row.existing, row.ikey, row.strict, row.late, row.timer)
    if key in EXPLICIT:
        rec.check(answer == EXPLICIT[key], f"store answered {answer}, pinned {EXPLICIT[key]}")

    # What is stored afterwards is the model's record too (nothing written by a refused request).
    after_store, after_model = run(lambda: store.get(promise_id)), model.get(clock.now, promise_id)
    rec.check(comparable(after_store) == comparable(after_model),
              f"stored record {after_store} differs from the model's {after_model}")
    return [f"{row}: {p}" for p in rec.problems]


@pytest.mark.parametrize("existing", EXISTING)
@pytest.mark.parametrize("op", OPS)
def test_transition_table(store: RedisStore, clock: Clock, op: str, existing: str) -> None:
    model = Model()
    table = rows(op, existing)
    assert table
    problems: list[str] = []
    for n, row in enumerate(table):
        clock.now = clock.now + ROW_SPAN_MS
        problems += play(store, clock, model, row, f"{op}-{existing}-{n}")
    assert not problems, "\n".join(problems)


def test_explicit_rows_are_in_the_table() -> None:
    every = {(r.op, r.existing, r.ikey, r.strict, r.late, r.timer)
             for op, existing in itertools.product(OPS, EXISTING) for r in rows(op, existing)}
    assert set(EXPLICIT) <= every
    for key, answer in EXPLICIT.items():
        assert expected(Row(*key)) == answer, key


# -- single cases whose effects the table does not show ---------------------------------------------


def test_completion_records_value_ikey_and_completed_on(store: RedisStore, clock: Clock) -> None:
    start = clock.now
    store.create("p", start + 1000, ikey="c", headers={"a": "1"}, data=b"in", tags={"t": "1"})
    clock.advance(7)
    done = store.resolve("p", ikey="v", headers={"b": "2"}, data=b"out")
    assert plain(done) == {
        "id": "p", "state": "RESOLVED",
        "param": {"headers": {"a": "1"}, "data": b"in"},
        "value": {"headers": {"b": "2"}, "data": b"out"},
        "timeout": start + 1000,
        "idempotencyKeyForCreate": "c", "idempotencyKeyForComplete": "v",
        "tags": {"t": "1"}, "createdOn": start, "completedOn": start + 7,
    }
    assert plain(store.get("p")) == plain(done)


@pytest.mark.parametrize("timer", [False, True])
def test_timeout_boundary(store: RedisStore, clock: Clock, timer: bool) -> None:
    start = clock.now
    tags = {TIMER_TAG: "true"} if timer else {}
    store.create("p", start + 100, tags=tags)
    clock.now = start + 99
    assert store.get("p").state is State.PENDING
    clock.now = start + 100
    p = store.get("p")
    assert p.state is (State.RESOLVED if timer else State.REJECTED_TIMEDOUT)
    assert p.completed_on == start + 100
    assert p.value.data is None and dict(p.value.headers) == {}
    assert p.idempotency_key_for_complete is None
    clock.advance(10_000)
    assert plain(store.get("p")) == plain(p)  # completed_on stays the timeout, not the read time


def test_timer_tag_must_be_exactly_true(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 10, tags={TIMER_TAG: "yes"})
    clock.advance(10)
    assert store.get("p").state is State.REJECTED_TIMEDOUT


def test_create_in_the_past_is_refused_and_writes_nothing(store: RedisStore, clock: Clock) -> None:
    for timeout in (clock.now, clock.now - 1):
        with pytest.raises(ValidationError):
            store.create("p", timeout)
    with pytest.raises(NotFound):
        store.get("p")
    assert store.search().promises == []


def test_errors_name_the_state(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 100)
    store.cancel("p")
    with pytest.raises(AlreadyCompleted) as completed:
        store.resolve("p")
    assert completed.value.state == "REJECTED_CANCELED" and completed.value.promise_id == "p"
    assert "REJECTED_CANCELED" in str(completed.value)
    with pytest.raises(AlreadyExists) as exists:
        store.create("p", clock.now + 100)
    assert exists.value.state == "REJECTED_CANCELED"
    with pytest.raises(NotFound) as missing:
        store.reject("q")
    assert missing.value.promise_id == "q"


def test_complete_refuses_other_states(store: RedisStore, clock: Clock) -> None:
    store.create("p", clock.now + 100)
    for state in (State.PENDING, State.REJECTED_TIMEDOUT):
        with pytest.raises(ValidationError):
            store.complete("p", state)
    assert store.get("p").state is State.PENDING


@pytest.mark.parametrize("timer", [False, True])
@pytest.mark.parametrize("ago", [0, 1, 500])
def test_create_in_the_past_when_allowed_matches_the_model(store: RedisStore, clock: Clock, timer: bool,
                                                           ago: int) -> None:
    """The SDK's ``allow_past``: a deadline that passed in transit creates the promise timed out."""
    tags = {TIMER_TAG: "true"} if timer else {}
    model = Model()
    want = model.create(clock.now, "p", clock.now - ago, ikey="k", data=b"d", tags=tags)
    status, got = store.create_ex("p", clock.now - ago, ikey="k", data=b"d", tags=tags, allow_past=True)
    assert model.last is not None and status is model.last.status
    assert comparable(("ok", got)) == comparable(want)
    assert got.state is (State.RESOLVED if timer else State.REJECTED_TIMEDOUT)
    assert got.completed_on == clock.now - ago
    assert [p.id for p in store.search(state="resolved" if timer else "rejected").promises] == ["p"]
    assert store.search(state="pending").promises == []
    assert store.sweep() == 0
