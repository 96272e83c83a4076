"""Vow's worker SDK: the Scheduler (app object), Context, commands, retry policies, errors.

Glossary: ``lfc``/``lfi`` run a function locally as a durable step (call / invoke-and-await-later),
``rfc``/``rfi`` run it remotely in a logic group (or wait on a bare promise). See worker/context.py.
"""

from __future__ import annotations

from vow.coordinator.errors import EncodingError

from .context import Context, CreateDurablePromiseReq, Promise
from .errors import (
    ApplicationError,
    InvalidCommand,
    PromiseCanceled,
    PromiseRejected,
    PromiseTimedOut,
    ReplayDivergence,
    UnknownFunction,
    ValueDecodeError,
    WorkflowError,
)
from .loop import Worker, WorkerSettings
from .retry import Constant, Exponential, Linear, Never, RetryPolicy
from .scheduler import BatchError, Handle, Scheduler

__all__ = [
    "ApplicationError",
    "BatchError",
    "Constant",
    "Context",
    "CreateDurablePromiseReq",
    "EncodingError",
    "Exponential",
    "Handle",
    "InvalidCommand",
    "Linear",
    "Never",
    "Promise",
    "PromiseCanceled",
    "PromiseRejected",
    "PromiseTimedOut",
    "ReplayDivergence",
    "RetryPolicy",
    "Scheduler",
    "UnknownFunction",
    "ValueDecodeError",
    "Worker",
    "WorkerSettings",
    "WorkflowError",
]
