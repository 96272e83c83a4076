"""Worker metrics: what a worker reports about its tasks, and the Prometheus exporter of it.

The worker loop (``loop.py``) and the executor (``executor.py``) call a :class:`Metrics` object at
each event of a task's life; the default, :data:`NO_METRICS`, does nothing and needs nothing
installed. :class:`PrometheusMetrics` records them with ``prometheus_client`` (the ``metrics``
extra), which is imported only when metrics are asked for (``vow worker start --metrics-port``,
``Scheduler(..., metrics_port=...)``); without it installed that is a :class:`MetricsUnavailable`
error naming the extra.

Events and where they happen (every counter is labelled ``group`` and ``function``):

=========================  ====================================================================
``task_started``           the worker claimed an execution (lease taken) and runs it; with the
                           queue wait: the stream entry's enqueue time (its id's milliseconds)
                           to the claim, on the server's clock
``task_finished``          the claimed execution ended, with its :class:`TaskOutcome` and its
                           duration (claim to commit); exactly once per ``task_started``
``task_retried``           a plain function (or a workflow's local step) raised and its retry
                           policy runs it again
``task_dead_lettered``     the entry went to the group's dead-letter stream
``task_reclaimed``         the entry was taken over (``XAUTOCLAIM``) from a consumer that held it
                           past the lease
=========================  ====================================================================

The gauges (tasks in flight, leases held) are read from the watched workers when scraped.

One process, one registry, one port: ``vow worker start`` runs one process (threads, no fork), so
each worker process serves its own port and Prometheus sums the targets; prometheus_client's
multiprocess mode is not used (the README's Metrics section says why).
"""

from __future__ import annotations

import enum
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from vow.coordinator.errors import VowError
from vow.coordinator.tasks import TaskMessage

from .registry import Registry

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "NO_METRICS",
    "DURATION_BUCKETS",
    "Metrics",
    "MetricsServer",
    "MetricsUnavailable",
    "PrometheusMetrics",
    "TaskOutcome",
    "UNREGISTERED",
    "WatchedWorker",
    "function_label",
    "queue_wait_s",
    "require_prometheus",
    "serve_metrics",
]

#: the ``function`` label of a task whose function is not registered in the group (keeps the
#: label's values bounded by the code, whatever names tasks carry)
UNREGISTERED = "(unregistered)"

#: histogram buckets of task duration and queue wait, seconds (a millisecond to ten minutes)
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
)


class MetricsUnavailable(VowError):
    """Metrics were asked for and ``prometheus_client`` (the ``metrics`` extra) is not installed."""


class TaskOutcome(enum.StrEnum):
    """How a claimed execution ended."""

    #: its promise was resolved
    SUCCEEDED = "succeeded"
    #: its promise was rejected (the function raised, after its retries)
    FAILED = "failed"
    #: the workflow waits on promises; its lease was released
    SUSPENDED = "suspended"
    #: the commit was refused: another claim took the execution over (the result is discarded)
    FENCED = "fenced"
    #: ended without a commit: given back on shutdown, Redis unreachable (left for reclaim), the
    #: function unknown here (requeued or dead-lettered), or an internal error
    RELEASED = "released"


class WatchedWorker(Protocol):
    """What the gauges read from a worker when scraped."""

    group: str

    def gauges(self) -> tuple[int, int]:
        """Tasks running now, execution leases held now."""
        ...


def function_label(registry: Registry, task: TaskMessage | str | None) -> str:
    """The ``function`` label of a task: its function name if registered in ``registry``, else
    :data:`UNREGISTERED` (so the label's values stay bounded by the code, whatever tasks name)."""
    name = task.func if isinstance(task, TaskMessage) else task
    return name if name and registry.get(name) is not None else UNREGISTERED


def queue_wait_s(entry_id: str, now_ms: int) -> float | None:
    """Seconds from a stream entry's enqueue time (the milliseconds of its id) to ``now_ms``."""
    millis, _, _ = entry_id.partition("-")
    try:
        return max(0, now_ms - int(millis)) / 1000
    except ValueError:
        return None


class Metrics:
    """What a worker reports; this base class records nothing (the default, :data:`NO_METRICS`)."""

    #: whether anything is recorded (the worker skips computing labels when not)
    enabled = False

    def watch(self, worker: WatchedWorker) -> None:
        """Read this worker's gauges at each scrape (it is held weakly)."""

    def task_started(self, group: str, function: str, queue_wait_s: float | None) -> None:
        """An execution was claimed and runs."""

    def task_finished(self, group: str, function: str, outcome: TaskOutcome, duration_s: float) -> None:
        """A claimed execution ended."""

    def task_retried(self, group: str, function: str) -> None:
        """A function raised and runs again under its retry policy."""

    def task_dead_lettered(self, group: str, function: str) -> None:
        """A task went to the dead-letter stream."""

    def task_reclaimed(self, group: str, function: str) -> None:
        """A task entry was taken over from a consumer past its lease."""


NO_METRICS = Metrics()


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as e:
        raise MetricsUnavailable(
            "metrics need prometheus_client, which is not installed: pip install 'vow[metrics]'"
        ) from e
    return prometheus_client


def require_prometheus() -> None:
    """Raise :class:`MetricsUnavailable` unless ``prometheus_client`` can be imported."""
    _client()


class PrometheusMetrics(Metrics):
    """The worker metrics in a ``prometheus_client`` registry (a new one unless given)."""

    enabled = True

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        client = _client()
        from prometheus_client.core import GaugeMetricFamily

        if registry is None:  # a registry of its own, with the client's standard process metrics
            registry = client.CollectorRegistry()
            for standard in (client.ProcessCollector, client.PlatformCollector, client.GCCollector):
                standard(registry=registry)
        self.registry: CollectorRegistry = registry
        self._gauge_family = GaugeMetricFamily
        self._workers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        labels = ("group", "function")

        def counter(name: str, doc: str) -> Any:
            return client.Counter(name, doc, labels, registry=self.registry)

        self.started = counter("vow_tasks_started", "Executions claimed and run by this worker.")
        self.succeeded = counter("vow_tasks_succeeded", "Executions whose promise this worker resolved.")
        self.failed = counter("vow_tasks_failed", "Executions whose promise this worker rejected (after retries).")
        self.suspended = counter("vow_tasks_suspended", "Workflow executions that suspended on pending promises.")
        self.fenced = counter("vow_tasks_fenced", "Commits refused because another claim took the execution over.")
        self.released = counter("vow_tasks_released", "Claimed executions that ended without a commit.")
        self.retried = counter("vow_tasks_retried", "Retries of a function under its retry policy.")
        self.dead_lettered = counter("vow_tasks_dead_lettered", "Tasks moved to the dead-letter stream.")
        self.reclaimed = counter("vow_tasks_reclaimed", "Task entries taken over from a consumer past its lease.")
        self.duration = client.Histogram(
            "vow_task_duration_seconds", "Claim to commit of an execution, seconds.", labels,
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.queue_wait = client.Histogram(
            "vow_task_queue_wait_seconds", "Enqueue of the task entry to the claim, seconds.", labels,
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self._by_outcome = {
            TaskOutcome.SUCCEEDED: self.succeeded, TaskOutcome.FAILED: self.failed,
            TaskOutcome.SUSPENDED: self.suspended, TaskOutcome.FENCED: self.fenced,
            TaskOutcome.RELEASED: self.released,
        }
        self.registry.register(self)

    # -- the Metrics interface ------------------------------------------------------------------

    def watch(self, worker: WatchedWorker) -> None:
        with self._lock:
            self._workers.add(worker)

    def task_started(self, group: str, function: str, queue_wait_s: float | None) -> None:
        self.started.labels(group, function).inc()
        if queue_wait_s is not None:
            self.queue_wait.labels(group, function).observe(queue_wait_s)

    def task_finished(self, group: str, function: str, outcome: TaskOutcome, duration_s: float) -> None:
        self._by_outcome[outcome].labels(group, function).inc()
        self.duration.labels(group, function).observe(duration_s)

    def task_retried(self, group: str, function: str) -> None:
        self.retried.labels(group, function).inc()

    def task_dead_lettered(self, group: str, function: str) -> None:
        self.dead_lettered.labels(group, function).inc()

    def task_reclaimed(self, group: str, function: str) -> None:
        self.reclaimed.labels(group, function).inc()

    # -- the gauges, as a collector of this registry ---------------------------------------------

    def describe(self) -> list[Any]:
        return list(self._gauges({}, {}))

    def collect(self) -> Iterator[Any]:
        in_flight: dict[str, int] = {}
        leases: dict[str, int] = {}
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            running, held = worker.gauges()
            in_flight[worker.group] = in_flight.get(worker.group, 0) + running
            leases[worker.group] = leases.get(worker.group, 0) + held
        yield from self._gauges(in_flight, leases)

    def _gauges(self, in_flight: dict[str, int], leases: dict[str, int]) -> Iterator[Any]:
        family = self._gauge_family
        running = family("vow_tasks_in_flight", "Tasks this process's workers are running now.", labels=["group"])
        held = family("vow_leases_held", "Execution leases this process's workers hold now.", labels=["group"])
        for group, count in sorted(in_flight.items()):
            running.add_metric([group], count)
        for group, count in sorted(leases.items()):
            held.add_metric([group], count)
        yield running
        yield held

    def render(self) -> bytes:
        """The registry in Prometheus text format (what a scrape returns)."""
        return _client().generate_latest(self.registry)  # type: ignore[no-any-return]


class MetricsServer:
    """An HTTP server of one registry's metrics in a daemon thread, shared by the Schedulers of a
    process that ask for the same port (see :func:`serve_metrics`); closed when the last lets go."""

    def __init__(self, metrics: PrometheusMetrics, port: int, host: str = "0.0.0.0") -> None:
        self.metrics = metrics
        try:
            self._server, self._thread = _client().start_http_server(port, host, registry=metrics.registry)
        except OSError as e:
            raise MetricsUnavailable(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from e
        self.host = host
        self.port: int = self._server.server_port
        self.users = 1

    @property
    def closed(self) -> bool:
        return self.users <= 0

    def close(self) -> None:
        """Let go of the server; the last user stops it and closes its socket (idempotent)."""
        with _servers_lock:
            if self.users <= 0:
                return
            self.users -= 1
            if self.users > 0:
                return
            for key in [k for k, v in _servers.items() if v is self]:
                del _servers[key]
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_servers_lock = threading.Lock()
#: the process's servers by (host, port): Schedulers asking for the same port share one
_servers: dict[tuple[str, int], MetricsServer] = {}


def serve_metrics(port: int, host: str = "0.0.0.0") -> MetricsServer:
    """The process's metrics server on ``host:port``, started on first use (port 0: a free port);
    each call is one user, to :meth:`MetricsServer.close` once."""
    with _servers_lock:
        server = _servers.get((host, port)) if port else None
        if server is None:
            server = MetricsServer(PrometheusMetrics(), port, host)
            _servers[(host, server.port)] = server
        else:
            server.users += 1
        return server
