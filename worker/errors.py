"""Errors a workflow, a handle or a worker raises. All derive from ``coordinator.VowError``."""

from __future__ import annotations

from vow.coordinator.errors import EncodingError, VowError

__all__ = [
    "ApplicationError",
    "EncodingError",
    "InvalidCommand",
    "PromiseCanceled",
    "PromiseRejected",
    "PromiseTimedOut",
    "ReplayDivergence",
    "UnknownFunction",
    "ValueDecodeError",
    "WorkflowError",
]


class WorkflowError(VowError):
    """A promise a workflow or a handle waited on did not resolve."""

    def __init__(self, promise_id: str, message: str) -> None:
        super().__init__(message)
        self.promise_id = promise_id


class ApplicationError(WorkflowError):
    """The function behind the promise raised: its exception type, message and traceback text."""

    def __init__(self, promise_id: str, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(promise_id, f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.error_message = message
        self.traceback_text = traceback_text


class PromiseRejected(WorkflowError):
    """The promise was rejected with a value that is not a recorded exception (e.g. by hand)."""

    def __init__(self, promise_id: str, value: object) -> None:
        super().__init__(promise_id, f"promise {promise_id!r} was rejected: {value!r}")
        self.value = value


class PromiseCanceled(WorkflowError):
    """The promise was canceled."""

    def __init__(self, promise_id: str, value: object = None) -> None:
        super().__init__(promise_id, f"promise {promise_id!r} was canceled")
        self.value = value


class PromiseTimedOut(WorkflowError):
    """The promise reached its timeout before anyone completed it."""

    def __init__(self, promise_id: str) -> None:
        super().__init__(promise_id, f"promise {promise_id!r} timed out")


class ValueDecodeError(WorkflowError):
    """A promise's value is not JSON and not marked as bytes, so it cannot become a Python value."""


class ReplayDivergence(WorkflowError):
    """On replay a workflow asked for a different step than the one recorded at that position."""


class InvalidCommand(WorkflowError):
    """A workflow yielded something that is not a Vow command."""


class UnknownFunction(VowError):
    """A task names a function that is not registered in this logic group."""

    def __init__(self, name: str, group: str) -> None:
        super().__init__(f"function {name!r} is not registered in logic group {group!r}")
        self.name = name
        self.group = group
