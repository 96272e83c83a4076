"""The durable promise record and its encoding in a Redis hash.

Hash fields of ``vow:{T}:p:<id>`` (written only by the Lua scripts; read only by
:func:`decode_promise`, which trusts nothing):

=========  ===========================================================================
``id``     the promise id
``state``  ``PENDING`` | ``RESOLVED`` | ``REJECTED`` | ``REJECTED_CANCELED`` | ``REJECTED_TIMEDOUT``
``to``     timeout, absolute epoch milliseconds
``ph``     param headers, msgpack map str -> str
``pd``     param data, raw bytes (absent = none)
``vh``     value headers, msgpack map str -> str (absent until completed)
``vd``     value data, raw bytes (absent = none)
``ikc``    idempotency key for create (absent = none)
``ikv``    idempotency key for complete (absent = none)
``t:<k>``  the value of tag ``k``, one field per tag (so the hash stays a listpack: one blob of
           all tags often passes the 64 bytes a listpack value may have); a record written
           before that has them all in ``tags``, a msgpack map str -> str, still read
``timer``  ``1`` when tagged ``resonate:timeout=true`` (times out RESOLVED)
``co``     created_on, epoch ms
``cd``     completed_on, epoch ms (absent while pending)
``rqc``    request id of the create that wrote the record (makes a resent create idempotent)
``rqv``    request id of the completion (makes a resent resolve/reject/cancel idempotent)
``rn``     retention, ms: the completed promise expires this long after ``cd`` (absent = kept
           for ever)
=========  ===========================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgpack

from .errors import CorruptRecord

__all__ = ["ANCHOR_TAG", "DurablePromise", "State", "Value", "decode_promise", "pack_map", "reply_text", "unpack_map"]

#: the tags the store gives a meaning (Resonate's wire convention): a timer resolves on timeout,
#: an invoke tag routes the promise's task to a logic group. (The SDK's own vow:* tags are in
#: worker/tags.py.)
TIMER_TAG = "resonate:timeout"
INVOKE_TAG = "resonate:invoke"
#: the retention anchor: a promise tagged with another promise's id (the SDK tags every step of
#: a workflow with its root, worker/tags.py ROOT_TAG) is kept at least as long as that promise,
#: and never expires while it is pending (see scripts/expire.lua)
ANCHOR_TAG = "vow:root"
#: the record's field of a tag is this prefix and the tag's name (see the table above)
TAG_FIELD_PREFIX = "t:"


class State(enum.StrEnum):
    PENDING = "PENDING"
    RESOLVED = "RESOLVED"
    REJECTED = "REJECTED"
    REJECTED_CANCELED = "REJECTED_CANCELED"
    REJECTED_TIMEDOUT = "REJECTED_TIMEDOUT"

    @property
    def family(self) -> str:
        """``pending``, ``resolved`` or ``rejected`` (the three rejected states share one)."""
        if self is State.PENDING:
            return "pending"
        if self is State.RESOLVED:
            return "resolved"
        return "rejected"


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Value:
    """A promise's param or value: string headers and opaque bytes."""

    headers: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    data: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.headers, MappingProxyType):
            object.__setattr__(self, "headers", _frozen(self.headers))


@dataclass(frozen=True, slots=True)
class DurablePromise:
    """An immutable snapshot of a durable promise."""

    id: str
    state: State
    param: Value
    value: Value
    timeout: int
    idempotency_key_for_create: str | None
    idempotency_key_for_complete: str | None
    tags: Mapping[str, str]
    created_on: int
    completed_on: int | None
    #: ms a completed promise is kept after ``completed_on``; None = for ever (storage policy,
    #: not part of the promise's value: left out of equality)
    retention: int | None = field(default=None, compare=False)

    @property
    def pending(self) -> bool:
        return self.state is State.PENDING

    @property
    def completed(self) -> bool:
        return self.state is not State.PENDING

    @property
    def is_timer(self) -> bool:
        return self.tags.get(TIMER_TAG) == "true"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (data left as bytes; callers choose how to print it)."""
        return {
            "id": self.id,
            "state": self.state.value,
            "param": {"headers": dict(self.param.headers), "data": self.param.data},
            "value": {"headers": dict(self.value.headers), "data": self.value.data},
            "timeout": self.timeout,
            "idempotencyKeyForCreate": self.idempotency_key_for_create,
            "idempotencyKeyForComplete": self.idempotency_key_for_complete,
            "tags": dict(self.tags),
            "createdOn": self.created_on,
            "completedOn": self.completed_on,
        }


def pack_map(mapping: Mapping[str, str] | None) -> bytes:
    return msgpack.packb(dict(mapping or {}), use_bin_type=True)  # type: ignore[no-any-return]


def reply_text(raw: object) -> str:
    """A Redis reply item as text (bytes decoded; ``None`` as "")."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return "" if raw is None else str(raw)


def _text(key: str, name: str, raw: object) -> str:
    if not isinstance(raw, bytes):
        raise CorruptRecord(key, f"field {name!r} is missing")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptRecord(key, f"field {name!r} is not UTF-8") from e


def _int(key: str, name: str, raw: object) -> int:
    text = _text(key, name, raw)
    try:
        return int(text)
    except ValueError as e:
        raise CorruptRecord(key, f"field {name!r} is not an integer: {text[:40]!r}") from e


def _map(key: str, name: str, raw: object) -> Mapping[str, str]:
    if raw is None:
        return _frozen(None)
    if not isinstance(raw, bytes):
        raise CorruptRecord(key, f"field {name!r} is not bytes")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise CorruptRecord(key, f"field {name!r} is not msgpack") from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise CorruptRecord(key, f"field {name!r} is not a map of strings")
    return _frozen(obj)


def unpack_map(key: str, name: str, raw: object) -> Mapping[str, str]:
    """A msgpack map of strings from a record field (absent = empty), or :class:`CorruptRecord`."""
    return _map(key, name, raw)


def _optional_text(key: str, name: str, raw: object) -> str | None:
    return None if raw is None else _text(key, name, raw)


def _tags(key: str, f: Mapping[str, bytes]) -> Mapping[str, str]:
    """A record's tags: one field ``t:<name>`` each (a record written before that: the msgpack
    map in ``tags``)."""
    tags = dict(_map(key, "tags", f["tags"])) if "tags" in f else {}
    for name, raw in f.items():
        if name.startswith(TAG_FIELD_PREFIX):
            tags[name[len(TAG_FIELD_PREFIX):]] = _text(key, name, raw)
    return MappingProxyType(tags)


def decode_promise(key: str, fields: Mapping[bytes, bytes] | Mapping[str, bytes]) -> DurablePromise:
    """Build a :class:`DurablePromise` from a record hash, or raise :class:`CorruptRecord`."""
    try:
        f: dict[str, bytes] = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    except UnicodeDecodeError as e:
        raise CorruptRecord(key, "a field name is not UTF-8") from e
    state_text = _text(key, "state", f.get("state"))
    try:
        state = State(state_text)
    except ValueError as e:
        raise CorruptRecord(key, f"unknown state {state_text[:40]!r}") from e
    completed_raw = f.get("cd")
    completed_on = None if completed_raw is None else _int(key, "cd", completed_raw)
    if (completed_on is None) != (state is State.PENDING):
        raise CorruptRecord(key, f"state {state} does not agree with completed_on")
    for name in ("pd", "vd"):
        if name in f and not isinstance(f[name], bytes):
            raise CorruptRecord(key, f"field {name!r} is not bytes")
    return DurablePromise(
        id=_text(key, "id", f.get("id")),
        state=state,
        param=Value(_map(key, "ph", f.get("ph")), f.get("pd")),
        value=Value(_map(key, "vh", f.get("vh")), f.get("vd")),
        timeout=_int(key, "to", f.get("to")),
        idempotency_key_for_create=_optional_text(key, "ikc", f.get("ikc")),
        idempotency_key_for_complete=_optional_text(key, "ikv", f.get("ikv")),
        tags=_tags(key, f),
        created_on=_int(key, "co", f.get("co")),
        completed_on=completed_on,
        retention=None if f.get("rn") is None else _int(key, "rn", f.get("rn")),
    )
