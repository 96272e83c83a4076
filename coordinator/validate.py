"""Checks on every request before anything is written. Each failure is a ``ValidationError``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import ValidationError

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_ID_LENGTH",
    "check_data",
    "check_group",
    "check_id",
    "check_ikey",
    "check_map",
    "check_timeout",
]

#: characters in a promise id, idempotency key or schedule id
MAX_ID_LENGTH = 1024
#: bytes of a promise's param or value data (configurable per store)
MAX_DATA_BYTES = 1024 * 1024
#: bytes of all header or tag keys and values of one promise together
MAX_MAP_BYTES = 64 * 1024
#: largest timeout accepted, epoch ms (2**53: exact in Lua's doubles; far past year 287,000)
MAX_TIMEOUT_MS = 2**53

_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(f"{what} is not valid Unicode text") from e


def check_id(value: object, what: str = "promise id") -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ValidationError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    if "\x00" in value:
        raise ValidationError(f"{what} must not contain NUL characters")
    _utf8(value, what)
    return value


def check_ikey(value: object, what: str = "idempotency key") -> str | None:
    return None if value is None else check_id(value, what)


def check_timeout(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"timeout must be an int (epoch milliseconds), not {type(value).__name__}")
    if not 0 < value < MAX_TIMEOUT_MS:
        raise ValidationError(f"timeout {value} is out of range (epoch milliseconds, 0 < t < 2**53)")
    return value


def check_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be a mapping of strings, not {type(value).__name__}")
    size = 0
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValidationError(f"{what} must map strings to strings; got {k!r}: {type(v).__name__}")
        if not k:
            raise ValidationError(f"{what} must not have an empty key")
        size += len(_utf8(k, what)) + len(_utf8(v, what))
        out[k] = v
    if size > MAX_MAP_BYTES:
        raise ValidationError(f"{what} take {size} bytes; the limit is {MAX_MAP_BYTES}")
    return out


def check_data(value: object, limit: int, what: str = "data") -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _utf8(value, what)
    elif isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise ValidationError(f"{what} must be str or bytes, not {type(value).__name__}")
    if len(value) > limit:
        raise ValidationError(f"{what} is {len(value)} bytes; the limit is {limit}")
    return value


def check_group(value: object) -> str:
    if not isinstance(value, str) or not _GROUP.fullmatch(value):
        raise ValidationError(
            f"logic group {value!r} is not valid: 1-100 characters of letters, digits and _.:@-, "
            "starting with a letter or digit"
        )
    return value
