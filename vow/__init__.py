"""Vow: durable promises and distributed async/await for Python, coordinated through Redis.

This is the public API; users write ``from vow import Scheduler, Context, RedisStore, ...``.
The parts live in subpackages (see ARCHITECTURE.md): ``vow.coordinator`` (the Redis side: the
promise store and task streams), ``vow.worker`` (the SDK: Scheduler, Context, the worker loop),
``vow.cli`` (the ``vow`` command). ``vow.server`` starts a Redis-compatible server for
development, the demo, tests and benchmarks; ``vow.processes`` runs and watches subprocesses.

Glossary (names kept from Resonate for seed compatibility): *ikey* is an idempotency key;
``strict`` makes an idempotent retry match only when it asks for the state the promise has;
``lfc``/``lfi`` run a function locally as a durable step, ``rfc``/``rfi`` remotely in a logic
group (or wait on a bare promise).
"""

from __future__ import annotations

from .coordinator import (
    AlreadyCompleted,
    AlreadyExists,
    CorruptRecord,
    DurablePromise,
    EncodingError,
    NotConfirmed,
    NotFound,
    OutcomeUnknown,
    PromiseError,
    RedisStore,
    SearchPage,
    State,
    StoreConnectionError,
    StoreError,
    ValidationError,
    Value,
    VowError,
)
from .worker import (
    ApplicationError,
    BatchError,
    Constant,
    Context,
    CreateDurablePromiseReq,
    Exponential,
    Handle,
    InvalidCommand,
    Linear,
    Never,
    Promise,
    PromiseCanceled,
    PromiseRejected,
    PromiseTimedOut,
    ReplayDivergence,
    RetryPolicy,
    Scheduler,
    UnknownFunction,
    ValueDecodeError,
    WorkerSettings,
    WorkflowError,
)

__all__ = [
    "AlreadyCompleted",
    "AlreadyExists",
    "ApplicationError",
    "BatchError",
    "Constant",
    "Context",
    "CorruptRecord",
    "CreateDurablePromiseReq",
    "DurablePromise",
    "EncodingError",
    "Exponential",
    "Handle",
    "InvalidCommand",
    "Linear",
    "Never",
    "NotConfirmed",
    "NotFound",
    "OutcomeUnknown",
    "Promise",
    "PromiseCanceled",
    "PromiseError",
    "PromiseRejected",
    "PromiseTimedOut",
    "RedisStore",
    "ReplayDivergence",
    "RetryPolicy",
    "Scheduler",
    "SearchPage",
    "State",
    "StoreConnectionError",
    "StoreError",
    "UnknownFunction",
    "ValidationError",
    "Value",
    "ValueDecodeError",
    "VowError",
    "WorkerSettings",
    "WorkflowError",
]
