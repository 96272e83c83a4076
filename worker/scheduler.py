"""``Scheduler``: the application object — registers functions, starts executions, serves a group.

A Scheduler serves its logic group in background threads from the moment a function is
registered on it, so a web process that never calls ``wait_for_ever()`` still resumes its
group's suspended workflows. ``wait_for_ever()`` blocks the main thread until SIGTERM/SIGINT,
then shuts down gracefully.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, overload

from vow.coordinator.records import FUNC_TAG, INVOKE_TAG, DurablePromise
from vow.coordinator.store import Invoke, RedisStore
from vow.coordinator.tasks import TaskKind, TaskMessage
from vow.coordinator.validate import check_group

from .codec import outcome_of
from .errors import EncodingError
from .loop import Worker, WorkerSettings
from .registry import Registry
from .retry import RetryPolicy

__all__ = ["Handle", "Scheduler", "no_autostart"]

log = logging.getLogger("vow.scheduler")

#: when False, register() does not start background serving (``vow worker start`` imports a
#: user's module with it off, then serves with its own settings)
_autostart = threading.local()


@contextlib.contextmanager
def no_autostart() -> Iterator[None]:
    """Within this block, registering functions does not start serving (for importing apps)."""
    previous = getattr(_autostart, "off", False)
    _autostart.off = True
    try:
        yield
    finally:
        _autostart.off = previous

#: default timeout of a root execution started with run()/rpc(): one year, in seconds
DEFAULT_TIMEOUT_S = 365 * 24 * 3600


class Handle:
    """A handle to one execution (a durable promise): ``done()``, ``result(timeout=None)``."""

    def __init__(self, store: RedisStore, promise_id: str) -> None:
        self.store = store
        self.id = promise_id

    def __repr__(self) -> str:
        return f"Handle({self.id!r})"

    def promise(self) -> DurablePromise:
        return self.store.get(self.id)

    def done(self) -> bool:
        return self.store.get(self.id).completed

    def result(self, timeout: float | None = None) -> Any:
        """The value, or raises the recorded error; waits (subscription, no polling) up to
        ``timeout`` seconds, then raises ``TimeoutError``."""
        promise = self.store.wait(self.id, timeout)
        ok, value = outcome_of(promise)
        if ok:
            return value
        raise value


def _invoke_data(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    try:
        return json.dumps({"func": name, "args": list(args), "kwargs": dict(kwargs)}, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise EncodingError(f"arguments of {name!r} cannot be encoded as JSON: {e}") from e


class Scheduler:
    """Registers functions of one logic group and starts or serves their executions."""

    def __init__(
        self,
        store: RedisStore,
        logic_group: str = "default",
        *,
        concurrency: int | None = None,
        settings: WorkerSettings | None = None,
        serve: bool = True,
    ) -> None:
        self.store = store
        self.group = check_group(logic_group)
        self.registry = Registry()
        self.dependencies: dict[str, Any] = {}
        base = settings or WorkerSettings()
        if concurrency is not None:
            base = WorkerSettings(**{**_fields(base), "concurrency": concurrency})
        self.settings = base
        self.serve = serve
        self._worker: Worker | None = None
        self._lock = threading.Lock()

    # -- registration ---------------------------------------------------------------------------

    @overload
    def register(self, func: Callable[..., Any], *, name: str | None = ...,
                 retry_policy: RetryPolicy | None = ...,
                 non_retryable: tuple[type[BaseException], ...] = ...) -> Callable[..., Any]: ...

    @overload
    def register(self, func: None = ..., *, name: str | None = ...,
                 retry_policy: RetryPolicy | None = ...,
                 non_retryable: tuple[type[BaseException], ...] = ...
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def register(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] = (),
    ) -> Any:
        """Register ``func`` (name defaults to its ``__name__``); also usable as a decorator."""

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            self.registry.add(f, name, retry_policy, tuple(non_retryable))
            if self.serve and not getattr(_autostart, "off", False):
                self.start()
            return f

        return add if func is None else add(func)

    def set_dependency(self, name: str, obj: Any) -> None:
        self.dependencies[name] = obj

    # -- serving --------------------------------------------------------------------------------

    @property
    def worker(self) -> Worker | None:
        return self._worker

    def start(self) -> Worker:
        """Start serving this group in background threads (idempotent)."""
        with self._lock:
            if self._worker is None:
                self._worker = Worker(self.store, self.group, self.registry, self.dependencies, self.settings)
                self._worker.start()
                atexit.register(self._stop_at_exit)
            return self._worker

    def _stop_at_exit(self) -> None:
        self.stop(grace_s=min(2.0, self.settings.shutdown_grace_s))

    def stop(self, grace_s: float | None = None) -> None:
        """Stop serving: in-flight tasks finish within the grace period, the rest are released."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.stop(grace_s)

    def wait_for_ever(self, ready: Callable[[Worker], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully and return.

        ``ready`` is called with the worker once it serves and signals are handled (a readiness
        hook for probes and tests)."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if stop.is_set():
                log.info("received %s again; still shutting down gracefully", name)
            else:
                log.info("received %s, shutting down", name)
            stop.set()

        # Handlers first: once the worker logs that it serves, a signal stops it gracefully.
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            worker = self.start()
            if ready is not None:
                ready(worker)
            while not stop.wait(1.0):
                pass
            worker.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    wait_forever = wait_for_ever

    # -- executions -----------------------------------------------------------------------------

    def run(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Handle:
        """Start ``func`` (registered here) as a durable execution ``id`` in this group.

        Idempotent on the id: if the execution exists, a handle to it is returned and nothing
        new starts."""
        name = self.registry.name_for(func)
        return self._start(id, name, self.group, args, kwargs)

    def rpc(self, id: str, func: str, *args: Any, target: str | None = None, **kwargs: Any) -> Handle:
        """Start function ``func`` registered in logic group ``target`` (default: this group)."""
        if not isinstance(func, str):
            func = getattr(func, "__name__", "")
        return self._start(id, func, check_group(target or self.group), args, kwargs)

    begin_run = run
    begin_rpc = rpc

    def get(self, id: str) -> Handle:
        """A handle to an existing execution (raises ``NotFound``)."""
        self.store.get(id)
        return Handle(self.store, id)

    def _start(self, id: str, name: str, group: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Handle:
        data = _invoke_data(name, args, kwargs)
        tags = {INVOKE_TAG: f"poll://{group}", FUNC_TAG: name}
        # A year ahead: this machine's clock is good enough (no TIME round trip).
        now = self.store.clock() if self.store.clock is not None else int(time.time() * 1000)
        invoke = Invoke(group, TaskMessage(TaskKind.INVOKE, id, group, name).encode())
        self.store.create_ex(id, now + DEFAULT_TIMEOUT_S * 1000, ikey=id, data=data, tags=tags, invoke=invoke)
        # An id created by someone else (status "exists") is that execution: the handle is to it.
        return Handle(self.store, id)


def _fields(settings: WorkerSettings) -> dict[str, Any]:
    return {f: getattr(settings, f) for f in settings.__dataclass_fields__}

