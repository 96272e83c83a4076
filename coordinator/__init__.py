"""Vow's promise store on Redis: durable promises, callbacks, subscriptions, timeouts, search.

Glossary (names kept from Resonate for seed compatibility): *ikey* is an idempotency key;
``strict`` makes an idempotent retry match only when it asks for the state the promise has.
"""

from __future__ import annotations

from .errors import (
    AlreadyCompleted,
    AlreadyExists,
    CorruptRecord,
    EncodingError,
    NotFound,
    PromiseError,
    ServerNotFound,
    ServerStartError,
    StoreConnectionError,
    StoreError,
    ValidationError,
    VowError,
)
from .records import DurablePromise, State, Value
from .search import SearchPage
from .store import Callback, Invoke, RedisStore, Step

__all__ = [
    "AlreadyCompleted",
    "AlreadyExists",
    "Callback",
    "CorruptRecord",
    "DurablePromise",
    "EncodingError",
    "Invoke",
    "NotFound",
    "PromiseError",
    "RedisStore",
    "SearchPage",
    "ServerNotFound",
    "ServerStartError",
    "State",
    "Step",
    "StoreConnectionError",
    "StoreError",
    "ValidationError",
    "Value",
    "VowError",
]
