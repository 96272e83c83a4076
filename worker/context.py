"""What a workflow yields, and the ``Context`` that builds it.

Glossary (names kept from Resonate's generator SDK, with readable aliases):

- ``lfc`` — *local function call* (alias ``run``): run a function here as a durable step and
  wait for it; ``lfi`` — *local function invocation* (alias ``begin_run``): the same, returning a
  promise to ``yield`` later.
- ``rfc`` — *remote function call* (alias ``rpc``): create a promise whose function runs in
  another logic group (or, with a bare ``CreateDurablePromiseReq``, a promise something outside
  resolves) and wait for it; ``rfi`` (alias ``begin_rpc``): the same, returning a promise.

Every command is an immutable value; ``with_options`` returns a changed copy. Yielding anything
else from a workflow rejects the workflow with ``InvalidCommand``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vow.coordinator.validate import check_retention

from .registry import function_name
from .retry import RetryPolicy

__all__ = [
    "Context",
    "CreateDurablePromiseReq",
    "LocalCall",
    "Options",
    "Promise",
    "PromiseWait",
    "RemoteCall",
    "Sleep",
]


@dataclass(frozen=True, slots=True)
class CreateDurablePromiseReq:
    """The seed's request form: a promise with an explicit id, optional invoke data and tags.

    ``data={"func": ..., "args": [...], "kwargs": {...}}`` with the tag
    ``resonate:invoke=poll://group`` runs that function in that group; without them the promise
    waits for something outside to resolve it. ``timeout`` is in seconds from now (default: the
    workflow's own timeout).
    """

    promise_id: str
    data: Any = None
    headers: Mapping[str, str] | None = None
    tags: Mapping[str, str] | None = None
    timeout: float | None = None
    ikey: str | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class Options:
    id: str | None = None
    target: str | None = None
    timeout: float | None = None
    retry_policy: RetryPolicy | None = None
    non_retryable: tuple[type[BaseException], ...] = ()
    tags: Mapping[str, str] | None = None
    #: how long the call's promise is kept once completed (default: as long as its workflow's)
    retention: object = None


class _WithOptions:
    options: Options

    def with_options(self, **changes: Any) -> Any:
        """A copy with options changed: ``id``, ``target``, ``timeout`` (s), ``retry_policy``,
        ``non_retryable``, ``tags``, ``retention`` (s, timedelta, ``"7d"`` or ``"forever"``)."""
        if "non_retryable" in changes:
            changes["non_retryable"] = tuple(changes["non_retryable"])
        if changes.get("retention") is not None:
            check_retention(changes["retention"])  # a bad value fails here, before anything is written
        try:
            options = dataclasses.replace(self.options, **changes)
        except TypeError as e:
            raise TypeError(f"unknown option in {sorted(changes)}: {e}") from None
        return dataclasses.replace(self, options=options)  # type: ignore[type-var]


@dataclass(frozen=True)
class LocalCall(_WithOptions):
    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Options = Options()
    handle: bool = False  # lfi: give back a promise instead of waiting


@dataclass(frozen=True)
class RemoteCall(_WithOptions):
    func: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    request: CreateDurablePromiseReq | None = None
    options: Options = Options()
    handle: bool = False  # rfi: give back a promise instead of waiting


@dataclass(frozen=True)
class Sleep(_WithOptions):
    seconds: float
    options: Options = Options()


@dataclass(frozen=True)
class PromiseWait(_WithOptions):
    """A bare durable promise (created if missing) that something outside completes."""

    options: Options = Options()


@dataclass(frozen=True, slots=True)
class Promise:
    """A handle to a child promise returned by ``lfi``/``rfi``: ``yield`` it to wait."""

    id: str


class Context:
    """Passed as the first argument to every registered function."""

    def __init__(
        self,
        promise_id: str,
        root_id: str,
        dependencies: Mapping[str, Any],
        *,
        attempt: int = 0,
        group: str = "default",
    ) -> None:
        self.id = promise_id
        self.root_id = root_id
        self.attempt = attempt
        self.group = group
        self._dependencies = dependencies

    def __repr__(self) -> str:
        return f"Context(id={self.id!r}, root_id={self.root_id!r})"

    def get_dependency(self, name: str) -> Any:
        try:
            return self._dependencies[name]
        except KeyError:
            raise KeyError(f"no dependency named {name!r}: set it with app.set_dependency({name!r}, obj)") from None

    # -- local --------------------------------------------------------------------------------

    def lfc(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> LocalCall:
        if not callable(func):
            raise TypeError(f"lfc needs a function, not {type(func).__name__}")
        return LocalCall(func, args, kwargs)

    def lfi(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> LocalCall:
        return dataclasses.replace(self.lfc(func, *args, **kwargs), handle=True)

    run = lfc
    begin_run = lfi

    # -- remote -------------------------------------------------------------------------------

    def rfc(self, func: str | CreateDurablePromiseReq, *args: Any, **kwargs: Any) -> RemoteCall:
        if isinstance(func, CreateDurablePromiseReq):
            if args or kwargs:
                raise TypeError("rfc(CreateDurablePromiseReq(...)) takes no other arguments")
            return RemoteCall(request=func)
        if isinstance(func, str):
            return RemoteCall(func, args, kwargs)
        if callable(func):
            return RemoteCall(function_name(func), args, kwargs)
        raise TypeError(f"rfc needs a function name or a CreateDurablePromiseReq, not {type(func).__name__}")

    def rfi(self, func: str | CreateDurablePromiseReq, *args: Any, **kwargs: Any) -> RemoteCall:
        return dataclasses.replace(self.rfc(func, *args, **kwargs), handle=True)

    rpc = rfc
    begin_rpc = rfi

    # -- waiting ------------------------------------------------------------------------------

    def promise(self, id: str | None = None, timeout: float | None = None) -> PromiseWait:
        """Wait on a durable promise that something outside resolves (human-in-the-loop)."""
        return PromiseWait(Options(id=id, timeout=timeout))

    def sleep(self, seconds: float) -> Sleep:
        """A durable timer: the workflow holds nothing while it sleeps."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"sleep needs a non-negative number of seconds, not {seconds!r}")
        return Sleep(float(seconds))
