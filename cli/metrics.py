"""``vow metrics serve``: the group-level gauges of a store, in Prometheus text format.

:class:`GroupCollector` reads Redis at each scrape (:func:`cli.overview.overview`: one pipelined
round of stream figures, then the pending promises) and turns it into gauges; when Redis cannot
be read the scrape still answers, with ``vow_up 0`` and nothing else but the scrape's duration.
It is a ``prometheus_client`` collector, so the console (or any program) can register it in its
own registry: ``registry.register(GroupCollector(store))``. ``prometheus_client`` is imported
only when this module is (the ``metrics`` extra).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from vow.coordinator.errors import VowError
from vow.coordinator.store import RedisStore
from vow.worker.metrics import MetricsUnavailable, require_prometheus

from .options import open_store, url_option
from .overview import SCAN_BUDGET, Overview, overview

__all__ = ["GroupCollector", "group_metrics", "metrics"]

log = logging.getLogger("vow.metrics")

#: every metric the collector yields: name -> (type, help)
GROUP_METRICS: dict[str, tuple[str, str]] = {
    "vow_up": ("gauge", "1 when the last scrape read Redis, 0 when it could not."),
    "vow_scrape_duration_seconds": ("gauge", "Seconds the last scrape took to read Redis."),
    "vow_group_stream_length": ("gauge", "Entries in the group's task streams (pending ones included)."),
    "vow_group_pending": ("gauge", "Entries delivered to a consumer of the group and not yet acknowledged."),
    "vow_group_lag": ("gauge", "Entries not yet delivered to the group."),
    "vow_group_consumers": ("gauge", "Consumers of the group's task streams."),
    "vow_group_dead_letters": ("gauge", "Entries in the group's dead-letter streams."),
    "vow_group_entries_read": ("counter", "Entries ever delivered to the group (its rate is the throughput)."),
    "vow_suspended_workflows": ("gauge", "Pending root workflows of the group waiting on a pending promise."),
    "vow_human_waits": ("gauge", "Pending promises the group's workflows wait on that no function will complete."),
    "vow_oldest_human_wait_seconds": ("gauge", "Age of the group's oldest human wait (0 when there is none)."),
    "vow_overview_complete": ("gauge", "0 when the pending promises were more than the scan budget."),
}


def _families() -> dict[str, Any]:
    require_prometheus()
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    out: dict[str, Any] = {}
    for name, (kind, text) in GROUP_METRICS.items():
        labels = ["group"] if name.startswith(("vow_group_", "vow_suspended", "vow_human", "vow_oldest")) else []
        family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        out[name] = family(name, text, labels=labels)
    return out


def group_metrics(figures: Overview | None, duration_s: float) -> list[Any]:
    """The metric families of one overview (``None``: Redis could not be read)."""
    fam = _families()
    fam["vow_up"].add_metric([], 0 if figures is None else 1)
    fam["vow_scrape_duration_seconds"].add_metric([], duration_s)
    if figures is None:
        return [fam["vow_up"], fam["vow_scrape_duration_seconds"]]
    fam["vow_overview_complete"].add_metric([], 1 if figures.waits.complete else 0)
    for group in figures.group_names():
        stats = figures.by_group.get(group)
        if stats is not None:
            fam["vow_group_stream_length"].add_metric([group], stats.length)
            fam["vow_group_pending"].add_metric([group], stats.pending)
            if stats.lag is not None:
                fam["vow_group_lag"].add_metric([group], stats.lag)
            fam["vow_group_consumers"].add_metric([group], len(stats.consumers))
            fam["vow_group_dead_letters"].add_metric([group], stats.dead)
            fam["vow_group_entries_read"].add_metric([group], stats.entries_read)
        fam["vow_suspended_workflows"].add_metric([group], len(figures.waits.suspended.get(group, ())))
        fam["vow_human_waits"].add_metric([group], len(figures.human_waits(group)))
        fam["vow_oldest_human_wait_seconds"].add_metric([group], (figures.oldest_human_wait_ms(group) or 0) / 1000)
    return list(fam.values())


class GroupCollector:
    """A ``prometheus_client`` collector of a store's group-level figures, read at each scrape."""

    def __init__(self, store: RedisStore, budget: int = SCAN_BUDGET) -> None:
        require_prometheus()
        self.store = store
        self.budget = budget
        self._lock = threading.Lock()  # one Redis read at a time, however many scrapers

    def describe(self) -> list[Any]:
        return list(_families().values())

    def collect(self) -> Iterator[Any]:
        with self._lock:
            began = time.monotonic()
            try:
                figures: Overview | None = overview(self.store, budget=self.budget)
            except VowError as e:
                log.warning("cannot read the store for metrics: %s", e)
                figures = None
            yield from group_metrics(figures, time.monotonic() - began)


@click.group()
def metrics() -> None:
    """Prometheus metrics of a store's logic groups."""


@metrics.command(
    "serve",
    epilog="Example: vow metrics serve --port 9465  (then scrape http://HOST:9465/metrics)",
)
@url_option
@click.option("--port", type=click.IntRange(0, 65535), default=9465, show_default=True,
              help="Port to serve /metrics on.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--budget", type=click.IntRange(1), default=SCAN_BUDGET, show_default=True,
              help="Pending promises read at most per scrape (for the waits' figures).")
def serve(url: str, port: int, host: str, budget: int) -> None:
    """Serve the group-level gauges (streams, dead letters, suspended workflows, human waits)
    until SIGTERM or Ctrl-C; each scrape reads Redis."""
    require_prometheus()
    from prometheus_client import CollectorRegistry, start_http_server

    store = open_store(url)
    registry = CollectorRegistry()
    registry.register(GroupCollector(store, budget))
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as e:
        raise MetricsUnavailable(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from e
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"vow metrics: serving http://{host}:{server.server_port}/metrics for {store.display_url}", err=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    click.echo("vow metrics: stopped", err=True)
