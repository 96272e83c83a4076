"""``Scheduler``: the application object — registers functions, starts executions, serves a group.

When serving starts (the one place this is decided):

- ``Scheduler(store, group)`` (``serve=True``, the default) serves its group in background threads
  from the first function registered on it — the seed's behaviour: a web process that never
  calls ``wait_for_ever()`` still resumes its group's suspended workflows, also after a restart.
- ``Scheduler(store, group, serve=False)`` serves only when told: ``start()`` or ``wait_for_ever()``.
- Inside ``with Scheduler.deferred_serving():`` registering starts nothing, in any thread of the
  process. ``vow worker start`` imports a user's module that way, then serves its Scheduler with
  the command line's settings (``wait_for_ever(group=..., concurrency=..., store=...)``).

``wait_for_ever()`` (alias ``wait_forever()``) blocks the main thread until SIGTERM/SIGINT, then
shuts down gracefully.

``Scheduler(..., metrics_port=9464)`` serves Prometheus metrics of its worker on that port while it
serves (``worker/metrics.py``; needs the ``metrics`` extra, checked at construction).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from vow.coordinator.errors import AlreadyExists, ScheduleExists, VowError
from vow.coordinator.lua import request_id
from vow.coordinator.records import INVOKE_TAG, DurablePromise
from vow.coordinator.schedules import Schedule
from vow.coordinator.store import RedisStore
from vow.coordinator.tasks import invoke_data
from vow.coordinator.validate import check_group

from .codec import outcome_of
from .loop import Worker, WorkerSettings
from .metrics import MetricsServer, require_prometheus, serve_metrics
from .registry import Registry
from .retry import RetryPolicy
from .tags import FUNC_TAG

__all__ = ["BatchError", "Handle", "Scheduler"]

log = logging.getLogger("vow.scheduler")

_deferred_lock = threading.Lock()
#: open ``Scheduler.deferred_serving()`` blocks, process-wide
_deferred = 0

#: default timeout of a root execution started with run()/rpc(): one year, in seconds
DEFAULT_TIMEOUT_S = 365 * 24 * 3600
#: default timeout of a scheduled run after its tick: one day, in seconds
DEFAULT_SCHEDULED_TIMEOUT_S = 24 * 3600


class BatchError(VowError):
    """Some calls of :meth:`Scheduler.rpc_many` could not be made: ``errors`` (id -> error) says
    why; ``handles`` are the calls that were."""

    def __init__(self, errors: Mapping[str, VowError], handles: list[Handle]) -> None:
        first_id, first = next(iter(errors.items()))
        super().__init__(f"{len(errors)} call(s) of the batch failed; {first_id!r}: {first}")
        self.errors = dict(errors)
        self.handles = handles


class Handle:
    """A handle to one execution (a durable promise): ``done()``, ``result(timeout=None)``.

    A handle from :meth:`Scheduler.rpc` or :meth:`Scheduler.run` subscribed in the create, so its
    first ``result()`` is one round trip (the wait on its inbox, whose notification carries the
    record); a completed record, once seen, is kept and answers every later call."""

    def __init__(
        self, store: RedisStore, promise_id: str, *, listener: str | None = None,
        promise: DurablePromise | None = None,
    ) -> None:
        self.store = store
        self.id = promise_id
        self._lock = threading.Lock()
        self._listener = listener
        self._completed = promise if promise is not None and promise.completed else None

    def __repr__(self) -> str:
        return f"Handle({self.id!r})"

    def _seen(self, promise: DurablePromise) -> DurablePromise:
        if promise.completed:
            self._completed = promise
        return promise

    def promise(self) -> DurablePromise:
        return self._completed or self._seen(self.store.get(self.id))

    def done(self) -> bool:
        return self.promise().completed

    def result(self, timeout: float | None = None) -> Any:
        """The value, or raises the recorded error; waits (subscription, no polling) up to
        ``timeout`` seconds, then raises ``TimeoutError``."""
        promise = self._completed
        if promise is None:
            with self._lock:  # the create's subscription serves one wait; later ones subscribe anew
                listener, self._listener = self._listener, None
            promise = self._seen(self.store.wait(self.id, timeout, listener=listener))
        ok, value = outcome_of(promise)
        if ok:
            return value
        raise value


class Scheduler:
    """Registers functions of one logic group and starts or serves their executions (serving
    starts as the module docstring says)."""

    def __init__(
        self,
        store: RedisStore,
        logic_group: str = "default",
        *,
        concurrency: int | None = None,
        settings: WorkerSettings | None = None,
        serve: bool = True,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
    ) -> None:
        self.store = store
        self.group = check_group(logic_group)
        self.registry = Registry()
        self.dependencies: dict[str, Any] = {}
        base = settings or WorkerSettings()
        self.settings = base if concurrency is None else base.replace(concurrency=concurrency)
        self.serve = serve
        #: serve Prometheus metrics on this port while serving (``worker/metrics.py``)
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        if metrics_port is not None:
            require_prometheus()  # fail here, not at the first register()
        self._metrics: MetricsServer | None = None
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
            if self.serve and not _deferred:
                self.start()
            return f

        return add if func is None else add(func)

    def set_dependency(self, name: str, obj: Any) -> None:
        self.dependencies[name] = obj

    # -- serving --------------------------------------------------------------------------------

    @property
    def worker(self) -> Worker | None:
        return self._worker

    @staticmethod
    @contextlib.contextmanager
    def deferred_serving() -> Iterator[None]:
        """Within this block, registering a function starts no serving, in any thread (for
        importing an application to serve it with other settings)."""
        global _deferred
        with _deferred_lock:
            _deferred += 1
        try:
            yield
        finally:
            with _deferred_lock:
                _deferred -= 1

    def start(
        self, *, group: str | None = None, concurrency: int | None = None, store: RedisStore | None = None,
        metrics_port: int | None = None,
    ) -> Worker:
        """Start serving in background threads (idempotent): this Scheduler's group, settings,
        store and metrics port, or the ones given (``vow worker start --group/--concurrency/--url/
        --metrics-port``)."""
        with self._lock:
            if self._worker is None:
                settings = self.settings if concurrency is None else self.settings.replace(concurrency=concurrency)
                served = check_group(group or self.group)
                port = self.metrics_port if metrics_port is None else metrics_port
                if port is not None and self._metrics is None:
                    self._metrics = serve_metrics(port, self.metrics_host)
                    log.info("metrics on http://%s:%d/metrics", self.metrics_host, self._metrics.port)
                self._worker = Worker(
                    store or self.store, served, self.registry, self.dependencies, settings,
                    metrics=self._metrics.metrics if self._metrics is not None else None,
                )
                self._worker.start()
                atexit.register(self._stop_at_exit)
            elif group is not None or concurrency is not None or store is not None or metrics_port is not None:
                raise RuntimeError("this Scheduler already serves; its group and settings can no longer change")
            return self._worker

    def _stop_at_exit(self) -> None:
        self.stop(grace_s=min(2.0, self.settings.shutdown_grace_s))

    def stop(self, grace_s: float | None = None) -> None:
        """Stop serving: in-flight tasks finish within the grace period, the rest are released."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.stop(grace_s)
        with self._lock:
            metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.close()

    @property
    def metrics_server(self) -> MetricsServer | None:
        """The metrics server while serving with a metrics port (its ``port`` is the bound one)."""
        return self._metrics

    def wait_for_ever(
        self,
        ready: Callable[[Worker], None] | None = None,
        *,
        group: str | None = None,
        concurrency: int | None = None,
        store: RedisStore | None = None,
        metrics_port: int | None = None,
    ) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully and return.

        ``ready`` is called with the worker once it serves and signals are handled (a readiness
        hook for probes and tests). ``group``, ``concurrency``, ``store`` and ``metrics_port`` are
        as for :meth:`start`."""
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
            worker = self.start(group=group, concurrency=concurrency, store=store, metrics_port=metrics_port)
            if ready is not None:
                ready(worker)
            while not stop.wait(1.0):
                pass
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    wait_forever = wait_for_ever

    # -- executions -----------------------------------------------------------------------------

    def run(
        self, id: str, func: Callable[..., Any] | str, *args: Any, retention: object = None, **kwargs: Any
    ) -> Handle:
        """Start ``func`` (registered here) as a durable execution ``id`` in this group.

        Idempotent on the id: if the execution exists, a handle to it is returned and nothing
        new starts. ``retention`` (seconds, a timedelta, ``"7d"``, ``"forever"``; default the
        store's) is how long the execution and all its steps are kept once it completes."""
        name = self.registry.name_for(func)
        return self._start(id, name, self.group, args, kwargs, retention)

    def rpc(
        self, id: str, func: str, *args: Any, target: str | None = None, retention: object = None, **kwargs: Any
    ) -> Handle:
        """Start function ``func`` registered in logic group ``target`` (default: this group)."""
        if not isinstance(func, str):
            func = getattr(func, "__name__", "")
        return self._start(id, func, check_group(target or self.group), args, kwargs, retention)

    def rpc_many(
        self,
        func: str,
        calls: Iterable[tuple[str, Sequence[Any]] | tuple[str, Sequence[Any], Mapping[str, Any]]],
        *,
        target: str | None = None,
        retention: object = None,
    ) -> list[Handle]:
        """:meth:`rpc` of ``func`` for each call, ``(id, args)`` or ``(id, args, kwargs)``, with the
        creates pipelined (``RedisStore.invoke_many``: one round trip per 500 on a standalone
        server). Idempotent per id like :meth:`rpc`; a call that cannot be made raises its error
        after the others were sent (``BatchError`` holds each). Its handles subscribe on their
        first ``result()`` (two round trips), not in the create."""
        group = check_group(target or self.group)
        normalised = [(c[0], tuple(c[1]), dict(c[2]) if len(c) > 2 else {}) for c in calls]
        timeout = self.store.estimated_now() + DEFAULT_TIMEOUT_S * 1000
        results = self.store.invoke_many(
            func, normalised, group=group, timeout=timeout, tags={FUNC_TAG: func}, retention=retention
        )
        handles, errors = [], {}
        for (promise_id, _, _), result in zip(normalised, results, strict=True):
            if isinstance(result, AlreadyExists):
                handles.append(Handle(self.store, promise_id))  # that execution, as rpc() answers
            elif isinstance(result, VowError):
                errors[promise_id] = result
            else:
                handles.append(Handle(self.store, promise_id, promise=result))
        if errors:
            raise BatchError(errors, handles)
        return handles

    def schedule(
        self,
        schedule_id: str,
        cron: str,
        func: Callable[..., Any] | str,
        *args: Any,
        timezone: str = "UTC",
        promise_timeout_s: float = DEFAULT_SCHEDULED_TIMEOUT_S,
        description: str = "",
        **kwargs: Any,
    ) -> Schedule:
        """Run ``func(ctx, *args, **kwargs)`` in this group at every tick of ``cron``.

        Each tick creates the promise ``{schedule_id}.{tick ms}``, which invokes ``func`` here;
        it times out ``promise_timeout_s`` after its tick. Idempotent: calling it again with the
        same definition (every start of the program) keeps the schedule; a changed definition
        replaces it."""
        name = self.registry.name_for(func) if not isinstance(func, str) else func
        data = invoke_data(name, args, kwargs)
        tags = {INVOKE_TAG: f"poll://{self.group}", FUNC_TAG: name}
        timeout_ms = max(1, int(promise_timeout_s * 1000))
        definition = json.dumps([cron, timezone, data, self.group, timeout_ms, description], sort_keys=True)
        ikey = "app:" + hashlib.sha256(definition.encode()).hexdigest()[:32]
        template = f"{schedule_id}.{{{{.timestamp}}}}"

        def create() -> Schedule:
            return self.store.schedules.create(
                schedule_id, cron, template, timeout_ms, promise_data=data, promise_tags=tags, ikey=ikey,
                description=description, timezone=timezone,
            )

        try:
            return create()
        except ScheduleExists:
            log.info("schedule %r changed; replacing it", schedule_id)
            self.store.schedules.delete(schedule_id)
            return create()

    def get(self, id: str) -> Handle:
        """A handle to an existing execution (raises ``NotFound``)."""
        self.store.get(id)
        return Handle(self.store, id)

    def _start(
        self, id: str, name: str, group: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], retention: object
    ) -> Handle:
        timeout = self.store.estimated_now() + DEFAULT_TIMEOUT_S * 1000
        listener = request_id()
        try:
            promise = self.store.invoke(
                id, name, args, kwargs, group=group, timeout=timeout, ikey=id, tags={FUNC_TAG: name},
                retention=retention, listener=listener,
            )
        except AlreadyExists:
            # An id created by someone else is that execution: the handle is to it (its create
            # registered no subscription).
            return Handle(self.store, id)
        return Handle(self.store, id, listener=listener, promise=promise)
