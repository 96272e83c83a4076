"""The functions a Scheduler serves, by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .retry import RetryPolicy

__all__ = ["Registered", "Registry", "function_name"]


def function_name(func: Any) -> str:
    """The name a function is registered and recorded under by default: its ``__name__``."""
    return getattr(func, "__name__", repr(func))


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    func: Callable[..., Any]
    is_generator: bool
    retry_policy: RetryPolicy | None
    non_retryable: tuple[type[BaseException], ...]


class Registry:
    def __init__(self) -> None:
        self._by_name: dict[str, Registered] = {}

    def add(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] = (),
    ) -> Registered:
        if not callable(func):
            raise TypeError(f"register needs a function, not {type(func).__name__}")
        name = name or getattr(func, "__name__", None)
        if not name or not isinstance(name, str):
            raise ValueError("register needs a name for this function (name=...)")
        existing = self._by_name.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"a different function is already registered as {name!r}")
        entry = Registered(name, func, inspect.isgeneratorfunction(func), retry_policy, tuple(non_retryable))
        self._by_name[name] = entry
        return entry

    def get(self, name: str) -> Registered | None:
        return self._by_name.get(name)

    def name_for(self, func: Callable[..., Any] | str) -> str:
        """The registered name of ``func`` (a function or a name); raises if not registered."""
        if isinstance(func, str):
            if func not in self._by_name:
                raise ValueError(f"no function registered as {func!r}")
            return func
        for entry in self._by_name.values():
            if entry.func is func:
                return entry.name
        raise ValueError(f"function {getattr(func, '__name__', func)!r} is not registered: call app.register first")

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)
