"""Options shared by the commands, and the parameter types that check what users type.

Durations read ``30s``, ``5m``, ``1h``, ``7d`` (also ``500ms`` and sums such as ``1h30m``).
JSON arguments are checked when parsed: text that is not JSON is a usage error (exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vow.coordinator import RedisStore
from vow.coordinator.connection import DEFAULT_URL
from vow.coordinator.errors import ValidationError
from vow.coordinator.validate import check_retention, parse_duration

__all__ = [
    "DURATION",
    "JSON_TEXT",
    "JSON_VALUE",
    "KEY_JSON",
    "KEY_VALUE",
    "check_json_text",
    "json_option",
    "open_store",
    "parse_duration",
    "retention_option",
    "url_option",
]

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    _ParamType = click.ParamType[Any, Any]  # generic in recent click; a plain class in click 8.1
else:
    _ParamType = click.ParamType

class _Duration(_ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValidationError as e:
            self.fail(str(e), param, ctx)


class _Retention(_ParamType):
    name = "DURATION|forever"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            check_retention(str(value))
        except ValidationError as e:
            self.fail(str(e), param, ctx)
        return str(value)


def retention_option(func: F) -> F:
    """``--retention``: how long the promise is kept once completed (default: the store's, 1d)."""
    return click.option(
        "--retention", type=_Retention(), metavar="DURATION|forever",
        help="How long the promise is kept once completed: 1h, 7d, or forever (default 1d).",
    )(func)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _json_problem(text: str, error: ValueError) -> str:
    return f"{text!r} is not valid JSON ({error}); quote strings as JSON, e.g. '\"text\"'"


def check_json_text(text: str) -> str:
    """``text`` if it is JSON by the rules of ``--data``, else :class:`ValidationError` saying why
    (the console checks its forms with this)."""
    try:
        _load_json(text)
    except ValueError as e:
        raise ValidationError(_json_problem(text, e)) from e
    return text


class _JsonText(_ParamType):
    """JSON text, checked and kept as typed (it is stored as that text)."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            _load_json(value)
        except ValueError as e:
            self.fail(_json_problem(value, e), param, ctx)
        return str(value)


class _JsonValue(_ParamType):
    """JSON text, parsed into its value."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return _load_json(value)
        except ValueError as e:
            self.fail(_json_problem(value, e), param, ctx)


class _KeyValue(_ParamType):
    """``key=value``: a header or a tag."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not of the form key=value", param, ctx)
        return key, text


class _KeyJson(_ParamType):
    """``key=JSON``: a keyword argument."""

    name = "KEY=JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not of the form name=JSON", param, ctx)
        try:
            return key, _load_json(text)
        except ValueError as e:
            self.fail(f"keyword {key!r}: {_json_problem(text, e)}", param, ctx)


DURATION = _Duration()
JSON_TEXT = _JsonText()
JSON_VALUE = _JsonValue()
KEY_VALUE = _KeyValue()
KEY_JSON = _KeyJson()


def url_option(func: F) -> F:
    """``--url``: the Redis URL (default from ``VOW_REDIS_URL``)."""
    return click.option(
        "--url",
        envvar="VOW_REDIS_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help="Redis URL: redis://, rediss:// (TLS), unix://, with user:password@ for ACL users; "
        "any node of a cluster works.",
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")(func)


def open_store(url: str) -> RedisStore:
    """A store for ``url``, closed when the command ends (it connects on first use)."""
    store = RedisStore(url)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(store.close)
    return store
