"""The Redis side of Vow: durable promises, callbacks, subscriptions, timeouts, search, and the
task streams and executions (``store.tasks``). Imports nothing of ``vow.worker`` or ``vow.cli``.

Glossary (names kept from Resonate for seed compatibility): *ikey* is an idempotency key;
``strict`` makes an idempotent retry match only when it asks for the state the promise has.
"""

from __future__ import annotations

from .errors import (
    AlreadyCompleted,
    AlreadyExists,
    CorruptRecord,
    EncodingError,
    NotConfirmed,
    NotFound,
    OutcomeUnknown,
    PromiseError,
    ScheduleExists,
    ScheduleNotFound,
    ServerNotFound,
    ServerStartError,
    StoreConnectionError,
    StoreError,
    ValidationError,
    VowError,
)
from .executions import Delivery, TaskStore
from .lua import Answer, Callback, Claim, ClaimStatus, Completion, Invoke
from .records import DurablePromise, State, Value
from .schedules import Schedule
from .search import SearchPage
from .store import RedisStore

__all__ = [
    "AlreadyCompleted",
    "AlreadyExists",
    "Answer",
    "Callback",
    "Claim",
    "ClaimStatus",
    "Completion",
    "CorruptRecord",
    "Delivery",
    "DurablePromise",
    "EncodingError",
    "Invoke",
    "NotConfirmed",
    "NotFound",
    "OutcomeUnknown",
    "PromiseError",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "RedisStore",
    "SearchPage",
    "ServerNotFound",
    "ServerStartError",
    "State",
    "StoreConnectionError",
    "StoreError",
    "TaskStore",
    "ValidationError",
    "Value",
    "VowError",
]
