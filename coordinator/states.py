"""The durable promise state machine as pure functions (no I/O; ``now`` is passed in).

This is the reference the Lua scripts are tested against (tests run both side by side). The
semantics are those of Resonate's server v0.8.2:

create on an existing id
    returns the stored promise when both create idempotency keys are set and equal and
    (not strict, or the promise is still pending); otherwise ``AlreadyExists``.
resolve / reject / cancel
    PENDING before its timeout -> the requested state. PENDING at or past its timeout -> it first
    times out; then a timer promise (now RESOLVED) or a strict request -> ``AlreadyCompleted``,
    otherwise the timed-out promise is returned. Completed -> returned unchanged when both
    complete idempotency keys are set and equal and (not strict, or the same state was asked
    for); returned when not strict and REJECTED_TIMEDOUT; else ``AlreadyCompleted``. Unknown id
    -> ``NotFound``.
timeout
    a PENDING promise with ``now >= timeout`` is REJECTED_TIMEDOUT (RESOLVED if it carries the
    tag ``resonate:timeout=true``), ``completed_on = timeout``, empty value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .records import TIMER_TAG, DurablePromise, State, Value

__all__ = [
    "CompleteRequest",
    "CreateRequest",
    "Transition",
    "Status",
    "apply_timeout",
    "complete",
    "create",
]


class Status(enum.StrEnum):
    """What a transition answered; the Lua scripts return the same words."""

    CREATED = "created"          # a new promise was written
    COMPLETED = "completed"      # a pending promise moved to the requested state
    DEDUPLICATED = "dedup"       # an idempotent retry: the stored promise is returned
    TIMEDOUT = "timedout"        # not strict, the promise had timed out: returned as is
    ALREADY_EXISTS = "exists"
    ALREADY_COMPLETED = "already"
    NOT_FOUND = "notfound"
    FOUND = "ok"                 # get: the record is returned
    REGISTERED = "registered"    # register: the callback/subscription was stored

    @property
    def ok(self) -> bool:
        return self not in (Status.ALREADY_EXISTS, Status.ALREADY_COMPLETED, Status.NOT_FOUND)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    id: str
    timeout: int
    ikey: str | None = None
    strict: bool = False
    param: Value = Value()
    tags: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CompleteRequest:
    id: str
    state: State
    ikey: str | None = None
    strict: bool = False
    value: Value = Value()


@dataclass(frozen=True, slots=True)
class Transition:
    """The status, and the promise as stored afterwards (None only for NOT_FOUND)."""

    status: Status
    promise: DurablePromise | None


def timedout_state(promise: DurablePromise) -> State:
    return State.RESOLVED if promise.tags.get(TIMER_TAG) == "true" else State.REJECTED_TIMEDOUT


def apply_timeout(promise: DurablePromise, now: int) -> DurablePromise:
    """The promise as it is at ``now``: a due pending promise has timed out."""
    if promise.state is State.PENDING and now >= promise.timeout:
        return replace(
            promise,
            state=timedout_state(promise),
            value=Value(),
            idempotency_key_for_complete=None,
            completed_on=promise.timeout,
        )
    return promise


def _match(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a == b


def create(existing: DurablePromise | None, request: CreateRequest, now: int) -> Transition:
    if existing is None:
        promise = DurablePromise(
            id=request.id,
            state=State.PENDING,
            param=request.param,
            value=Value(),
            timeout=request.timeout,
            idempotency_key_for_create=request.ikey,
            idempotency_key_for_complete=None,
            tags=dict(request.tags or {}),
            created_on=now,
            completed_on=None,
        )
        # A create whose timeout is already due times out at once (the store refuses such
        # requests up front; the model keeps the rule total).
        return Transition(Status.CREATED, apply_timeout(promise, now))
    current = apply_timeout(existing, now)
    if _match(request.ikey, current.idempotency_key_for_create) and (
        not request.strict or current.state is State.PENDING
    ):
        return Transition(Status.DEDUPLICATED, current)
    return Transition(Status.ALREADY_EXISTS, current)


def complete(existing: DurablePromise | None, request: CompleteRequest, now: int) -> Transition:
    if existing is None:
        return Transition(Status.NOT_FOUND, None)
    if existing.state is State.PENDING:
        if now < existing.timeout:
            done = replace(
                existing,
                state=request.state,
                value=request.value,
                idempotency_key_for_complete=request.ikey,
                completed_on=now,
            )
            return Transition(Status.COMPLETED, done)
        current = apply_timeout(existing, now)
        if current.state is State.RESOLVED or request.strict:
            return Transition(Status.ALREADY_COMPLETED, current)
        return Transition(Status.TIMEDOUT, current)
    if _match(request.ikey, existing.idempotency_key_for_complete) and (
        not request.strict or request.state is existing.state
    ):
        return Transition(Status.DEDUPLICATED, existing)
    if not request.strict and existing.state is State.REJECTED_TIMEDOUT:
        return Transition(Status.TIMEDOUT, existing)
    return Transition(Status.ALREADY_COMPLETED, existing)
