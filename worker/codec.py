"""Python values <-> promise values (headers + bytes). No pickle, ever.

- ``bytes`` travel raw with the header ``content-type: application/octet-stream``.
- Everything else is JSON (``None``, bools, numbers, strings, lists, dicts with string keys;
  tuples arrive as lists). A value JSON cannot carry raises ``EncodingError`` at the call site.
- A value without that header is read as JSON text, so ``store.resolve(data=json.dumps(True))``
  and ``vow promises resolve ID --data true`` both arrive as ``True``. Data that is not JSON raises
  ``ValueDecodeError`` where the workflow awaits it (the promise keeps its value untouched).
- A rejection made by Vow records the exception as JSON ``{"error": {"type", "message",
  "traceback"}}`` with the header ``vow-error: 1``.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from typing import Any

from vow.coordinator.records import DurablePromise, State, Value

from .errors import (
    ApplicationError,
    EncodingError,
    PromiseCanceled,
    PromiseRejected,
    PromiseTimedOut,
    ValueDecodeError,
    WorkflowError,
)

__all__ = ["decode_value", "encode_error", "encode_value", "outcome_of"]

CONTENT_TYPE = "content-type"
OCTET_STREAM = "application/octet-stream"
ERROR_HEADER = "vow-error"


def encode_value(value: Any) -> Value:
    if isinstance(value, bytes | bytearray | memoryview):
        return Value({CONTENT_TYPE: OCTET_STREAM}, bytes(value))
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise EncodingError(
            f"cannot encode a value of type {type(value).__name__}: Vow carries JSON values and bytes ({e})"
        ) from e
    return Value({}, text.encode())


def encode_error(error: BaseException) -> Value:
    body = {
        "error": {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        }
    }
    return Value({ERROR_HEADER: "1"}, json.dumps(body, default=repr).encode())


def decode_value(promise_id: str, value: Value) -> Any:
    if value.headers.get(CONTENT_TYPE) == OCTET_STREAM:
        return value.data or b""
    if value.data is None or value.data == b"":
        return None
    try:
        return json.loads(value.data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ValueDecodeError(
            promise_id, f"value of promise {promise_id!r} is not JSON ({len(value.data)} bytes): {e}"
        ) from e


def _error_of(promise_id: str, body: Any) -> WorkflowError | None:
    if not isinstance(body, Mapping) or not isinstance(body.get("error"), Mapping):
        return None
    err = body["error"]
    return ApplicationError(
        promise_id, str(err.get("type", "Error")), str(err.get("message", "")), str(err.get("traceback", ""))
    )


def outcome_of(promise: DurablePromise) -> tuple[bool, Any]:
    """``(True, value)`` for a resolved promise, ``(False, exception)`` for a rejected one."""
    if promise.state is State.RESOLVED:
        try:
            return True, decode_value(promise.id, promise.value)
        except ValueDecodeError as e:
            return False, e
    if promise.state is State.REJECTED_TIMEDOUT:
        return False, PromiseTimedOut(promise.id)
    try:
        body = decode_value(promise.id, promise.value)
    except ValueDecodeError:
        body = promise.value.data
    if promise.state is State.REJECTED_CANCELED:
        return False, PromiseCanceled(promise.id, body)
    return False, _error_of(promise.id, body) or PromiseRejected(promise.id, body)
