"""Prometheus metrics: a real worker scraped after a known mix of tasks, every count exact; the
gauges of a worker; the group-level collector and ``vow metrics serve``; a clear error without
prometheus_client.

Counts are read from scrapes until the mix has finished (a condition with a deadline, no sleep)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ROOT, wait_until
from vow import Context, RedisStore, Scheduler
from vow.cli import cli
from vow.cli.metrics import GroupCollector, group_metrics
from vow.cli.overview import Overview, overview
from vow.coordinator import keys, streams
from vow.coordinator.lua import Commit
from vow.coordinator.records import State, Value
from vow.coordinator.waits import human_waits
from vow.processes import ManagedProcess
from vow.server import free_port
from vow.worker import WorkerSettings
from vow.worker.metrics import UNREGISTERED, MetricsUnavailable, serve_metrics

pytestmark = pytest.mark.timeout(90)

VOW = str(Path(sys.executable).parent / "vow")
GROUP = "metrics-test"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return parse(response.read().decode())


def scrape_when(port: int, predicate: Callable[[Samples], bool], what: str) -> Samples:
    """The first scrape for which ``predicate`` holds (scraping until a deadline)."""

    def ready() -> Samples | None:
        samples = scrape(port)
        return samples if predicate(samples) else None

    return wait_until(ready, what=what)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, group: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and ("group", group) in labels)


FINISHED = ["vow_tasks_succeeded_total", "vow_tasks_failed_total", "vow_tasks_suspended_total",
            "vow_tasks_fenced_total", "vow_tasks_released_total"]


def finished(samples: Samples, group: str) -> float:
    return sum(total(samples, name, group) for name in FINISHED)


def settled(samples: Samples, group: str, count: int) -> bool:
    """``count`` executions finished and no task running any more (a task is in flight until its
    entry is forgotten, a moment after its outcome is counted)."""
    return finished(samples, group) == count and value(samples, "vow_tasks_in_flight", group=group) == 0


# -- a real `vow worker start --metrics-port` after a known mix ---------------------------------


@pytest.fixture
def metrics_worker(redis_url: str) -> Iterator[tuple[ManagedProcess, int]]:
    port = free_port()
    worker = ManagedProcess(
        "metrics worker", [VOW, "worker", "start", "tests.metrics_app:app", "--metrics-port", str(port),
                           "--metrics-host", "127.0.0.1"],
        env={**os.environ, "VOW_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, new_session=False,
    )
    try:
        worker.wait_for_line("serving group 'metrics-test'", timeout=30)
        yield worker, port
    finally:
        assert worker.stop(20) == 0, worker.output


def test_worker_counts_a_known_mix_exactly(metrics_worker: tuple[ManagedProcess, int], redis_url: str) -> None:
    worker, port = metrics_worker
    with closing(RedisStore(redis_url)) as store:
        client = Scheduler(store, GROUP, serve=False)
        oks = [client.rpc(f"ok-{i}", "ok", i) for i in range(5)]
        booms = [client.rpc(f"boom-{i}", "boom") for i in range(2)]
        flaky = client.rpc("flaky-1", "flaky", 2)
        client.rpc("nope-1", "nope")  # no such function: dead-lettered at its first delivery
        flow = client.rpc("flow-alice", "waiter", "alice")
        assert [h.result(timeout=20) for h in oks] == list(range(5))
        for handle in booms:
            with pytest.raises(Exception, match="boom"):
                handle.result(timeout=20)
        assert flaky.result(timeout=20) == 2
        wait_until(lambda: len(streams.dead_letters(store, GROUP)) == 1, what="the dead letter")
        wait_until(lambda: value(scrape(port), "vow_tasks_suspended_total", group=GROUP, function="waiter") == 1,
                   what="the workflow to suspend")
        store.resolve("human-alice", data='"yes"')
        assert flow.result(timeout=20) == "yes"

    # 5 ok + 2 boom + 1 flaky + 1 unknown + 2 drives of the workflow (first run, resume)
    samples = scrape_when(port, lambda s: settled(s, GROUP, 11), "11 finished tasks")
    expected = {
        "vow_tasks_started_total": {"ok": 5, "boom": 2, "flaky": 1, UNREGISTERED: 1, "waiter": 2},
        "vow_tasks_succeeded_total": {"ok": 5, "flaky": 1, "waiter": 1},
        "vow_tasks_failed_total": {"boom": 2},
        "vow_tasks_suspended_total": {"waiter": 1},
        "vow_tasks_released_total": {UNREGISTERED: 1},
        "vow_tasks_retried_total": {"flaky": 2},
        "vow_tasks_dead_lettered_total": {UNREGISTERED: 1},
        "vow_tasks_reclaimed_total": {},
        "vow_tasks_fenced_total": {},
        "vow_task_duration_seconds_count": {"ok": 5, "boom": 2, "flaky": 1, UNREGISTERED: 1, "waiter": 2},
        "vow_task_queue_wait_seconds_count": {"ok": 5, "boom": 2, "flaky": 1, UNREGISTERED: 1, "waiter": 2},
    }
    for name, by_function in expected.items():
        seen = {dict(labels)["function"]: v for (n, labels), v in samples.items()
                if n == name and ("group", GROUP) in labels and v}
        assert seen == by_function, (name, seen)
    assert value(samples, "vow_tasks_in_flight", group=GROUP) == 0
    assert value(samples, "vow_leases_held", group=GROUP) == 0
    # a histogram's +Inf bucket holds every observation; the retries' 10 ms delays are in flaky's time
    assert value(samples, "vow_task_duration_seconds_bucket", group=GROUP, function="ok", le="+Inf") == 5
    assert value(samples, "vow_task_duration_seconds_sum", group=GROUP, function="flaky") >= 0.02
    assert "metrics on http://127.0.0.1:" in worker.output


# -- gauges, reclaims and fencing, in this process ----------------------------------------------


def test_in_flight_leases_reclaimed_and_fenced(redis_url: str) -> None:
    group = "metrics-gauges"
    release = threading.Event()
    # Leases for plain functions too: the gauge of leases held and the usurper need one.
    settings = WorkerSettings(concurrency=2, lease_ms=3000, heartbeat_ms=300, reclaim_ms=100, orphan_ms=60_000,
                              lease_plain_calls=True)
    with closing(RedisStore(redis_url)) as store:
        app = Scheduler(store, group, settings=settings, serve=False, metrics_port=0, metrics_host="127.0.0.1")

        @app.register
        def hold(ctx: Context) -> str:
            assert release.wait(30)
            return "held"

        @app.register
        def usurped(ctx: Context) -> str:
            """Another claimer takes this execution over and completes it: our commit is fenced."""
            assert store.tasks.release(ctx.id, 1)
            claim = store.tasks.claim(ctx.id, group=group, consumer="usurper", func="usurped", lease_ms=60_000)
            assert claim.counter == 2
            stream = keys.task_stream(keys.partition_of(ctx.id), group)
            commit = Commit(ctx.id, 2, State.RESOLVED, Value(data=b'"usurper"'), stream, None)
            store.scripts.settle([commit], group=group)
            return "mine"

        # A task read by a consumer that died: taken over after the lease.
        store.tasks.ensure_group(group)
        ghost = app.rpc("ghost-1", "hold")
        assert len(store.tasks.read(group, "ghost", count=16, block_ms=1)) == 1
        app.start()
        try:
            server = app.metrics_server
            assert server is not None
            port = server.port
            wait_until(lambda: value(scrape(port), "vow_tasks_in_flight", group=group) == 1, what="hold running")
            samples = scrape(port)
            assert value(samples, "vow_leases_held", group=group) == 1
            assert value(samples, "vow_tasks_reclaimed_total", group=group, function="hold") == 1
            release.set()
            assert ghost.result(timeout=20) == "held"
            assert app.rpc("usurped-1", "usurped").result(timeout=20) == "usurper"

            samples = scrape_when(port, lambda s: settled(s, group, 2) and store.tasks.pending_count(group) == 0,
                                  "the fenced entry reclaimed and acknowledged")
        finally:
            app.stop(grace_s=5)
    assert value(samples, "vow_tasks_started_total", group=group, function="hold") == 1
    assert value(samples, "vow_tasks_started_total", group=group, function="usurped") == 1
    assert value(samples, "vow_tasks_succeeded_total", group=group, function="hold") == 1
    assert value(samples, "vow_tasks_fenced_total", group=group, function="usurped") == 1
    # the ghost's entry, and the fenced commit's entry (left pending, taken over, found completed)
    assert total(samples, "vow_tasks_reclaimed_total", group) == 2
    assert value(samples, "vow_tasks_in_flight", group=group) == 0
    assert value(samples, "vow_leases_held", group=group) == 0
    with pytest.raises(urllib.error.URLError):
        scrape(port)  # stopped with the Scheduler


def test_schedulers_of_one_port_share_one_server() -> None:
    first = serve_metrics(0, "127.0.0.1")
    second = serve_metrics(first.port, "127.0.0.1")
    try:
        assert second is first
    finally:
        second.close()
    assert scrape(first.port) is not None  # one user left
    first.close()
    with pytest.raises(urllib.error.URLError):
        scrape(first.port)


# -- group-level gauges -------------------------------------------------------------------------


def collected(store: RedisStore) -> Samples:
    registry = CollectorRegistry()
    registry.register(GroupCollector(store))
    return parse(generate_latest(registry).decode())


def test_group_gauges(redis_url: str) -> None:
    with closing(RedisStore(redis_url)) as store:
        app = Scheduler(store, "waiters", settings=WorkerSettings(max_deliveries=1), serve=False)

        @app.register
        def wait_for(ctx: Context, name: str) -> Generator[Any, Any, Any]:
            value = yield ctx.promise(id=f"human-{name}")
            yield ctx.sleep(3600)  # a durable timer is a wait, not a human wait
            return value

        app.start()
        try:
            app.rpc("wf-a", "wait_for", "a")
            app.rpc("wf-b", "wait_for", "b")
            app.rpc("nope", "nothing")  # dead-lettered
            idle = Scheduler(store, "idle", serve=False)
            idle.rpc("queued-1", "anything")  # no worker: length 1, lag 1
            wait_until(lambda: len(streams.dead_letters(store, "waiters")) == 1, what="the dead letter")
            wait_until(lambda: len(overview(store).human_waits("waiters")) == 2, what="two human waits")
            samples = collected(store)
            assert value(samples, "vow_up") == 1
            assert value(samples, "vow_overview_complete") == 1
            assert value(samples, "vow_human_waits", group="waiters") == 2
            assert value(samples, "vow_suspended_workflows", group="waiters") == 2
            assert value(samples, "vow_oldest_human_wait_seconds", group="waiters") > 0
            assert value(samples, "vow_group_dead_letters", group="waiters") == 1
            assert value(samples, "vow_group_consumers", group="waiters") == 1
            assert value(samples, "vow_group_stream_length", group="idle") == 1
            assert value(samples, "vow_group_lag", group="idle") == 1
            assert value(samples, "vow_group_pending", group="idle") == 0
            assert value(samples, "vow_human_waits", group="idle") == 0

            # resolving a, its workflow goes on to a timer: still suspended, no longer a human wait
            store.resolve("human-a", data="true")
            def on_its_timer() -> Overview | None:
                # the timer first: figures read before it exists would not count wf-a as suspended
                timer = any(p.id.startswith("wf-a.") and p.is_timer for p in store.search("wf-a.*").promises)
                figures = overview(store)
                return figures if timer and len(figures.human_waits("waiters")) == 1 else None

            figures = wait_until(on_its_timer, what="wf-a waiting on its timer")
            assert [w.root for w in figures.human_waits("waiters")] == ["wf-b"]
            assert figures.waits.suspended == {"waiters": {"wf-a", "wf-b"}}
            samples = collected(store)
            assert value(samples, "vow_suspended_workflows", group="waiters") == 2
            assert value(samples, "vow_group_entries_read_total", group="waiters") >= 4
        finally:
            app.stop(grace_s=5)


def test_the_overview_counts_the_human_waits_the_inbox_lists(redis_url: str) -> None:
    """A promise created elsewhere (no workflow tags) that a workflow awaits is a human wait for
    the Inbox (coordinator/waits.py) and for the metrics alike."""
    with closing(RedisStore(redis_url)) as store:
        app = Scheduler(store, "agree", serve=False)

        @app.register
        def awaits(ctx: Context) -> Generator[Any, Any, Any]:
            return (yield ctx.promise(id="approval-external"))

        store.create("approval-external", store.now() + 600_000)  # by another system, before
        app.start()
        try:
            app.rpc("wf-external", "awaits")
            wait_until(lambda: [w.promise.id for w in human_waits(store).waits] == ["approval-external"],
                       what="the Inbox lists the external promise")
            assert [(w.promise.id, w.root) for w in overview(store).human_waits("agree")] == [
                ("approval-external", "wf-external")]
            assert value(collected(store), "vow_human_waits", group="agree") == 1
        finally:
            app.stop(grace_s=5)


def test_group_collector_reports_redis_down_as_vow_up_0() -> None:
    with closing(RedisStore(f"redis://127.0.0.1:{free_port()}/0")) as store:
        samples = collected(store)
    assert value(samples, "vow_up") == 0
    assert {name for name, _ in samples} == {"vow_up", "vow_scrape_duration_seconds"}
    assert group_metrics(None, 0.0)[0].name == "vow_up"


def test_vow_metrics_serve_scrapes_and_survives_an_outage(redis_url: str) -> None:
    port = free_port()
    down = f"redis://127.0.0.1:{free_port()}/0"
    for url, up in [(redis_url, 1), (down, 0)]:
        server = ManagedProcess(
            "vow metrics serve", [VOW, "metrics", "serve", "--url", url, "--port", str(port), "--host", "127.0.0.1"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, new_session=False,
        )
        try:
            server.wait_for_line("vow metrics: serving", timeout=30)
            assert value(scrape(port), "vow_up") == up
        finally:
            assert server.stop(20) == 0, server.output
        assert "vow metrics: stopped" in server.output


# -- without prometheus_client ------------------------------------------------------------------


def test_metrics_without_prometheus_client_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import prometheus_client raises
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["worker", "start", "tests.metrics_app:app", "--metrics-port", "9464"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: metrics need prometheus_client, which is not installed: pip install 'vow[metrics]'"
    ]
    result = CliRunner().invoke(cli, ["metrics", "serve"])
    assert result.exit_code == 1 and "pip install 'vow[metrics]'" in result.stderr
    with closing(RedisStore("redis://127.0.0.1:1/0")) as store, pytest.raises(MetricsUnavailable, match="metrics"):
        Scheduler(store, "g", serve=False, metrics_port=9464)
    # without metrics asked for, nothing needs it
    with closing(RedisStore("redis://127.0.0.1:1/0")) as store:
        Scheduler(store, "g", serve=False)


def test_nothing_imports_prometheus_client_unless_metrics_are_asked_for() -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "import vow.cli.main, vow.cli.metrics, vow.worker.metrics\n"
            "from vow import RedisStore, Scheduler\n"
            "from vow.worker import Worker\n"
            "Scheduler(RedisStore('redis://127.0.0.1:1/0'), 'g', serve=False).store.close()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_port_in_use_is_a_clear_error() -> None:
    first = serve_metrics(0, "127.0.0.1")
    try:
        with pytest.raises(MetricsUnavailable, match=f"cannot serve metrics on 0.0.0.0:{first.port}"):
            serve_metrics(first.port, "0.0.0.0")
    finally:
        first.close()


# -- the Grafana dashboard ----------------------------------------------------------------------


def exposed_families() -> dict[str, set[str]]:
    """Every metric family Vow exposes (worker and group) -> the sample names a query can use."""
    from vow.cli.metrics import GROUP_METRICS
    from vow.worker.metrics import PrometheusMetrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    families = {f.name: f.type for f in PrometheusMetrics().registry.collect() if f.name.startswith("vow_")}
    families.update({name: kind for name, (kind, _) in GROUP_METRICS.items()})
    return {name: {name + s for s in suffixes[kind]} for name, kind in families.items()}


def test_the_grafana_dashboard_uses_exactly_the_exposed_names() -> None:
    dashboard = json.loads((ROOT / "examples" / "grafana" / "vow-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bvow_[a-z_]+", expr)}
    families = exposed_families()
    known = set().union(*families.values())
    assert used <= known, f"the dashboard queries metrics Vow does not expose: {sorted(used - known)}"
    unused = sorted(f for f, names in families.items() if not names & used)
    assert not unused, f"metrics without a panel: {unused}"
    assert len(families) == 25  # 13 of the workers, 12 of the groups
