"""Helpers shared by the promise store test suites: outcomes, the reference model, deadlines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.harness import wait_until  # noqa: F401  (the one deadline helper; re-exported)
from vow.coordinator import AlreadyCompleted, AlreadyExists, DurablePromise, NotFound, RedisStore, State, Value, states
from vow.coordinator.errors import PromiseError
from vow.coordinator.states import Status

#: what a store call answered: ("ok", promise) or (error class name, state named by the error)
Outcome = tuple[str, Any]

_ERRORS: dict[Status, str] = {
    Status.ALREADY_EXISTS: "AlreadyExists",
    Status.ALREADY_COMPLETED: "AlreadyCompleted",
    Status.NOT_FOUND: "NotFound",
}


def run(call: Callable[[], DurablePromise]) -> Outcome:
    """Call a store method; turn the promise errors into comparable outcomes."""
    try:
        return "ok", call()
    except (AlreadyExists, AlreadyCompleted) as e:
        return type(e).__name__, e.state
    except NotFound:
        return "NotFound", None
    except PromiseError as e:  # pragma: no cover - a new error type is a failure to look at
        raise AssertionError(f"unexpected promise error {e!r}") from e


def model_outcome(result: states.Transition) -> Outcome:
    """The outcome the store must answer for a transition of the reference model."""
    if result.status in _ERRORS:
        return _ERRORS[result.status], (None if result.promise is None else result.promise.state.value)
    assert result.promise is not None
    return "ok", result.promise


def same_record(a: DurablePromise, b: DurablePromise) -> bool:
    return plain(a) == plain(b)


def plain(p: DurablePromise) -> dict[str, Any]:
    """Every field of a promise, as plain comparable values."""
    return p.to_dict()


class Model:
    """The reference state machine (coordinator/states.py) holding promises in a dict."""

    def __init__(self) -> None:
        self.promises: dict[str, DurablePromise] = {}
        self.last: states.Transition | None = None  # the last create/complete transition, with its status

    def create(
        self,
        now: int,
        promise_id: str,
        timeout: int,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Outcome:
        request = states.CreateRequest(promise_id, timeout, ikey, strict, Value(headers or {}, data), tags)
        result = self.last = states.create(self.promises.get(promise_id), request, now)
        if result.promise is not None:
            self.promises[promise_id] = result.promise
        return model_outcome(result)

    def complete(
        self,
        now: int,
        promise_id: str,
        state: State,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Outcome:
        request = states.CompleteRequest(promise_id, state, ikey, strict, Value(headers or {}, data))
        result = self.last = states.complete(self.promises.get(promise_id), request, now)
        if result.promise is not None:
            self.promises[promise_id] = result.promise
        return model_outcome(result)

    def get(self, now: int, promise_id: str) -> Outcome:
        if promise_id not in self.promises:
            return "NotFound", None
        self.promises[promise_id] = states.apply_timeout(self.promises[promise_id], now)
        return "ok", self.promises[promise_id]

    def sweep(self, now: int) -> int:
        moved = 0
        for promise_id, promise in list(self.promises.items()):
            after = states.apply_timeout(promise, now)
            if after is not promise:
                moved += 1
                self.promises[promise_id] = after
        return moved

    def search(self, now: int, family: str | None, tags: Mapping[str, str] | None = None) -> list[DurablePromise]:
        found = []
        for promise in self.promises.values():
            current = states.apply_timeout(promise, now)
            if family is not None and current.state.family != family:
                continue
            if any(current.tags.get(k) != v for k, v in (tags or {}).items()):
                continue
            found.append(current)
        return sorted(found, key=lambda p: (p.created_on, p.id.encode()), reverse=True)


def comparable(outcome: Outcome) -> tuple[str, Any]:
    kind, detail = outcome
    return (kind, plain(detail)) if kind == "ok" else (kind, detail)


def search_all(store: RedisStore, **kwargs: Any) -> tuple[list[DurablePromise], int]:
    """Every promise a search finds, following the cursor; also the number of pages read."""
    found: list[DurablePromise] = []
    cursor = None
    pages = 0
    while True:
        page = store.search(cursor=cursor, **kwargs)
        pages += 1
        found.extend(page.promises)
        if page.cursor is None:
            return found, pages
        assert pages < 10_000, "search never ended"
        cursor = page.cursor


@dataclass
class Recorder:
    """Collects mismatches so one test can report all of them at once."""

    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)


def invoke(
    store: RedisStore, promise_id: str, func: str, args: Any = (), kwargs: Any = None, *, group: str = "default",
    timeout_ms: int,
) -> DurablePromise:
    """``store.invoke`` with a timeout relative to now (what ``vow invoke --timeout`` does)."""
    return store.invoke(promise_id, func, args, kwargs, group=group, timeout=store.now() + timeout_ms)
