"""The task message: what the promise store puts on a logic group's stream.

A task is a stream entry in ``vow:{T}:q:<group>`` with one field ``m`` holding a msgpack map:

========  =====================================================================================
``v``     format version, ``1``
``k``     kind: ``invoke`` (run the function of promise ``id``) or ``resume`` (re-drive the
          suspended root workflow ``id`` because promise ``by`` completed)
``id``    the promise to drive: the invoked promise, or the root of the workflow to resume
``g``     the logic group that must run it
``f``     function name, informational (the promise's own data is authoritative), may be ``""``
``by``    resume only: the promise whose completion queued this task, else ``""``
``n``     deliveries this task had before this entry was written (a requeued task carries its
          count forward), ``0`` for a fresh task
``d``     invoke only, optional: the promise's param data (the call's ``{"func", "args",
          "kwargs"}``) when it is at most ``MESSAGE_DATA_MAX`` bytes, so a worker can run a plain
          function's first delivery without reading the promise first (``worker/loop.py``)
========  =====================================================================================

Routing tags (``resonate:invoke``) name the group: ``poll://group``, ``poll://any@group`` and
``poll://uni@group/process`` all route to ``group`` (Vow delivers to any worker of the group).
Anything read from a stream is validated by :func:`decode_task`; a malformed entry raises
:class:`MalformedTask`, which workers dead-letter with the reason.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import EncodingError, ValidationError, VowError
from .validate import check_group

__all__ = [
    "MalformedTask",
    "TaskKind",
    "TaskMessage",
    "decode_task",
    "invoke_data",
    "invoke_function",
    "invoke_message",
    "invoke_target",
    "parse_invoke_data",
]

VERSION = 1
#: bytes a task message may take (well above any real one)
MAX_MESSAGE_BYTES = 8192
#: invoke data up to this many bytes travels in the task message too (field ``d``)
MESSAGE_DATA_MAX = 2048


class MalformedTask(VowError):
    """A stream entry is not a valid task message."""


class TaskKind(enum.StrEnum):
    INVOKE = "invoke"
    RESUME = "resume"


@dataclass(frozen=True, slots=True)
class TaskMessage:
    kind: TaskKind
    id: str
    group: str
    func: str = ""
    by: str = ""
    deliveries: int = 0
    data: bytes | None = None

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": VERSION, "k": self.kind.value, "id": self.id, "g": self.group,
            "f": self.func, "by": self.by, "n": self.deliveries,
        }
        if self.data is not None:
            body["d"] = self.data
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def invoke_message(promise_id: str, group: str, func: str, data: bytes | None) -> bytes:
    """The invoke task of ``promise_id``, carrying its param ``data`` when that is small."""
    carried = data if data is not None and len(data) <= MESSAGE_DATA_MAX else None
    return TaskMessage(TaskKind.INVOKE, promise_id, group, func, data=carried).encode()


def decode_task(raw: object) -> TaskMessage:
    """Parse and check a stream entry's ``m`` field."""
    if not isinstance(raw, bytes):
        raise MalformedTask("entry has no 'm' field of bytes")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedTask(f"message is {len(raw)} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise MalformedTask(f"message is not msgpack ({type(e).__name__})") from e
    if not isinstance(body, dict):
        raise MalformedTask("message is not a map")
    if body.get("v") != VERSION:
        raise MalformedTask(f"unknown message version {body.get('v')!r}")
    try:
        kind = TaskKind(str(body.get("k")))
    except ValueError as e:
        raise MalformedTask(f"unknown task kind {body.get('k')!r}") from e
    fields: dict[str, Any] = {}
    for name in ("id", "g", "f", "by"):
        value = body.get(name, "")
        if not isinstance(value, str):
            raise MalformedTask(f"field {name!r} is not a string")
        fields[name] = value
    deliveries = body.get("n", 0)
    if isinstance(deliveries, bool) or not isinstance(deliveries, int) or deliveries < 0:
        raise MalformedTask("field 'n' is not a non-negative integer")
    if not fields["id"]:
        raise MalformedTask("field 'id' is empty")
    data = body.get("d")
    if data is not None and (not isinstance(data, bytes) or kind is not TaskKind.INVOKE):
        raise MalformedTask("field 'd' is not the bytes of an invoke's data")
    try:
        check_group(fields["g"])
    except ValidationError as e:
        raise MalformedTask(str(e)) from e
    return TaskMessage(kind, fields["id"], fields["g"], fields["f"], fields["by"], deliveries, data)


def invoke_target(tag: str) -> str:
    """The logic group named by a ``resonate:invoke`` tag value."""
    if not tag.startswith("poll://"):
        raise ValidationError(f"resonate:invoke target {tag!r} is not supported: use poll://<group>")
    rest = tag[len("poll://"):]
    if "@" in rest:
        mode, _, rest = rest.partition("@")
        if mode not in ("any", "uni"):
            raise ValidationError(f"resonate:invoke target {tag!r}: unknown mode {mode!r}")
    group = rest.split("/", 1)[0]
    return check_group(group)


def parse_invoke_data(data: bytes | None) -> tuple[str, list[Any], dict[str, Any]]:
    """Function name, args and kwargs from a promise's invoke data (JSON, the seed's convention)."""
    if data is None:
        raise ValidationError('invoke data is missing: expected {"func": ..., "args": [...], "kwargs": {...}}')
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # (RecursionError: nested too deep)
        raise ValidationError(f"invoke data is not JSON ({e})") from e
    if not isinstance(body, dict) or not isinstance(body.get("func"), str) or not body["func"]:
        raise ValidationError("invoke data must be a JSON object with a non-empty string 'func'")
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValidationError("invoke data: 'args' must be a list and 'kwargs' an object")
    return body["func"], args, kwargs


def invoke_data(func: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """The invoke data of a call of ``func``: ``{"func", "args", "kwargs"}`` as compact JSON, or
    :class:`EncodingError` for arguments JSON cannot carry."""
    try:
        return json.dumps(
            {"func": func, "args": list(args), "kwargs": dict(kwargs or {})}, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError, RecursionError) as e:
        raise EncodingError(f"arguments of {func!r} cannot be encoded as JSON: {e}") from e


def invoke_function(data: bytes | None) -> str | None:
    """The function named by invoke data, or None when the data is not invoke data."""
    try:
        return parse_invoke_data(data)[0]
    except ValidationError:
        return None
