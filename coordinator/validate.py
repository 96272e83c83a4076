"""Checks on every request before anything is written. Each failure is a ``ValidationError``."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping

from .errors import ValidationError

__all__ = [
    "DEFAULT_RETENTION_MS",
    "FOREVER",
    "MAX_DATA_BYTES",
    "MAX_ID_LENGTH",
    "check_data",
    "check_group",
    "check_id",
    "check_ikey",
    "check_map",
    "check_retention",
    "check_timeout",
    "parse_duration",
]

#: characters in a promise id, idempotency key or schedule id
MAX_ID_LENGTH = 1024
#: bytes of a promise's param or value data (configurable per store)
MAX_DATA_BYTES = 1024 * 1024
#: bytes of all header or tag keys and values of one promise together
MAX_MAP_BYTES = 64 * 1024
#: largest timeout accepted, epoch ms (2**53: exact in Lua's doubles; far past year 287,000)
MAX_TIMEOUT_MS = 2**53

#: how long a completed promise is kept unless told otherwise: one day (README, "Memory")
DEFAULT_RETENTION_MS = 86_400_000
#: the retention that keeps completed promises for ever
FOREVER = "forever"

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

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


def parse_duration(text: str) -> int:
    """Milliseconds of a duration such as ``30s``, ``5m``, ``1h``, ``7d`` or ``1h30m``."""
    cleaned = text.strip().lower()
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        position = match.end()
    if not cleaned or position != len(cleaned):
        raise ValidationError(f"{text!r} is not a duration: use a number and a unit, e.g. 30s, 5m, 1h, 7d")
    if total < 1:
        raise ValidationError(f"duration {text!r} must be at least 1ms")
    return int(total)


def check_retention(value: object) -> int | None:
    """A retention in ms, or None for ``"forever"``. Accepts seconds (int or float), a
    ``timedelta``, a duration text (``"7d"``) or ``"forever"``; anything <= 0 is refused."""
    if isinstance(value, str):
        if value.strip().lower() == FOREVER:
            return None
        return parse_duration(value)
    if isinstance(value, datetime.timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = float(value) * 1000
    else:
        raise ValidationError(f"retention must be seconds, a timedelta, a duration such as '7d' or 'forever', "
                              f"not {type(value).__name__}")
    if not math.isfinite(ms) or ms < 1:
        raise ValidationError(f"retention must be positive, not {value!r}")
    if ms > MAX_TIMEOUT_MS:
        raise ValidationError(f"retention {value!r} is too long: use 'forever'")
    return int(ms)
