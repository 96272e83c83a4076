"""Vow as a measured system, and the figures only Vow has (workflows, HITL, memory, round trips).

Vow is driven through its public API only: the producer is ``Scheduler(store, "bench",
serve=False)`` (``rpc`` for calls, ``run`` for workflows, ``Handle.result`` to wait, and
``rpc_many`` for the batch row when the installed Vow has it); the workers are
``vow worker start bench.vow_app:app`` processes. What the benchmark reads besides is read-only
probing of the server: how many promises are completed (the completed-promise indexes) and
whether the group's task streams are empty (every task handed out and acknowledged), both
through :class:`Probe`, the one place that knows Vow's key layout.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType

import redis

from vow import NotFound, RedisStore, Scheduler

from .procs import CpuMeter, CpuReading, descendants
from .profile import Profiler
from .redisstats import Monitor, ServerDelta, ServerSnapshot, Trace, attribute, delta, named_url, percentile, snapshot
from .system import Figure, Settings, System, SystemResult, throughput, wait_for

__all__ = ["VowSystem", "vow_extras"]

#: the CLI's console script (pyproject: vow = "vow.cli.main:main"); vow.cli has no __main__ module
VOW_CLI = "import sys; from vow.cli.main import main; sys.argv[0] = 'vow'; main()"


def load_app() -> ModuleType:
    """``bench.vow_app`` without letting its module-level Scheduler serve in this process."""
    with Scheduler.deferred_serving():
        return importlib.import_module(f"{__package__}.vow_app")


class Probe:
    """Read-only looks at the server: completed promises, and whether the task streams are empty."""

    def __init__(self, client: redis.Redis, group: str) -> None:
        from vow.coordinator import keys

        self.client = client
        self.partitions = range(keys.PARTITIONS)
        self.indexes = [keys.index(p, family) for p in self.partitions for family in ("resolved", "rejected")]
        self.streams = [keys.task_stream(p, group) for p in self.partitions]

    def completed(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in self.indexes:
            pipe.zcard(key)
        return sum(pipe.execute())

    def queued(self) -> int:
        """Task entries in the group's streams (an entry stays until its task is acknowledged)."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.streams:
            pipe.xlen(key)
        return sum(pipe.execute())


class VowSystem(System):
    name = "vow"
    notes = "2 x `vow worker start`, concurrency 16; producer Scheduler.rpc one by one"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.funcs = load_app()
        self.run_id = f"r{os.getpid()}"
        self.expected = 0
        self.units = 1  # completed promises per unit of the current batch
        self.start: Callable[[int, str], object] = self.start_call
        self.batched = False

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return dist_version("vow")
        except PackageNotFoundError:
            return "?"

    def worker_command(self, index: int) -> list[str]:
        s = self.settings
        return [sys.executable, "-c", VOW_CLI, "worker", "start", f"{__package__}.vow_app:app",
                "--url", named_url(s.url, f"bench-worker-{index + 1}"), "--concurrency", str(s.concurrency),
                "--log-level", "WARNING"]

    def open(self) -> None:
        s = self.settings
        self.store = RedisStore(named_url(s.url, "bench-client"))
        self.app = self.funcs.register(Scheduler(self.store, self.funcs.GROUP, serve=False))
        self.probe_client = redis.Redis.from_url(named_url(s.url, "bench-probe"))
        self.probe = Probe(self.probe_client, self.funcs.GROUP)

    def close(self) -> None:
        self.store.close()
        self.probe_client.close()

    def pid(self, tag: str, i: int) -> str:
        return f"{self.run_id}-{tag}-{i}"

    def start_call(self, i: int, tag: str) -> object:
        return self.app.rpc(self.pid(tag, i), "noop")

    def start_workflow(self, i: int, tag: str) -> object:
        return self.app.run(self.pid(tag, i), self.funcs.three_steps)

    def start_no_steps(self, i: int, tag: str) -> object:
        return self.app.run(self.pid(tag, i), self.funcs.no_steps)

    def enqueue(self, n: int, tag: str) -> None:
        self.expected = self.probe.completed() + n * self.units
        if self.batched:
            self.app.rpc_many("noop", [(self.pid(tag, i), ()) for i in range(n)])
            return
        start = self.start
        for i in range(n):
            start(i, tag)

    def remaining(self) -> int:
        return self.expected - self.probe.completed()

    def call(self, i: int, tag: str) -> None:
        self.app.rpc(self.pid(tag, i), "noop").result(timeout=30)

    def quiet(self) -> bool:
        """Nothing queued or in flight in the group (every workflow finished or suspended)."""
        return self.probe.queued() == 0

    def kind(self, start: Callable[[int, str], object], units: int, batched: bool = False) -> _Kind:
        return _Kind(self, start, units, batched)


class _Kind:
    """``with system.kind(start, units):`` batches start something else than no-op calls, or (with
    ``batched``) enqueue every no-op call of a batch with one ``rpc_many``."""

    def __init__(self, system: VowSystem, start: Callable[[int, str], object], units: int,
                 batched: bool = False) -> None:
        self.system, self.start, self.units, self.batched = system, start, units, batched

    def __enter__(self) -> None:
        self.saved = (self.system.start, self.system.units, self.system.batched)
        self.system.start, self.system.units, self.system.batched = self.start, self.units, self.batched

    def __exit__(self, *exc: object) -> None:
        self.system.start, self.system.units, self.system.batched = self.saved


def settled(system: VowSystem) -> ServerSnapshot:
    """A snapshot once nothing is queued or in flight, after ``MEMORY PURGE`` (the allocator's
    free pages returned), so memory deltas hold only what the measured executions keep."""
    wait_for(system.quiet, timeout=60, what="group not quiet", check=system.check_workers)
    system.probe_client.memory_purge()
    return snapshot(system.probe_client)


def server_delta(system: VowSystem, run: Callable[[], object]) -> ServerDelta:
    before = settled(system)
    run()
    return delta(before, settled(system))


def measured(system: VowSystem, worker_pids: list[int], run: Callable[[], object]) -> tuple[ServerDelta, CpuReading]:
    """``server_delta`` and the CPU time of the producer, the workers and the server meanwhile."""
    server = int(system.probe_client.info("server")["process_id"])
    before = settled(system)
    meter = CpuMeter({"client": [os.getpid()], "workers": descendants(worker_pids), "redis": [server]})
    run()
    reading = meter.stop()
    return delta(before, settled(system)), reading


def cpu_per_unit(reading: CpuReading, n: int) -> dict[str, float]:
    """Microseconds of CPU per unit, by process role."""
    return {role: seconds / n * 1e6 for role, seconds in reading.roles.items()}


def trace(system: VowSystem, units: int, run: Callable[[], object]) -> Trace:
    """Run with MONITOR: every command sent, attributed to client / workers, per unit."""
    with Monitor(system.settings.url) as mon:
        names = {c["addr"]: c.get("name", "") for c in system.probe_client.client_list()}
        run()
        names.update({c["addr"]: c.get("name", "") for c in system.probe_client.client_list()})
        mon.end(system.probe_client)
    if mon.error is not None:
        raise RuntimeError(f"MONITOR failed: {mon.error!r}")
    return attribute(mon.entries, names, units)


def workflows(system: VowSystem, result: SystemResult, worker_pids: list[int]) -> None:
    s = system.settings
    n = max(50, s.jobs // 2 if not s.quick else s.jobs)
    with system.kind(system.start_workflow, 4):
        system.batch(min(100, n), "wfwarm")
        result.figures["workflows_per_s"] = throughput(system, s.runs, n, "wf")
        d3, cpu3 = measured(system, worker_pids, lambda: system.batch(n, "wfmem"))
    with system.kind(system.start_no_steps, 1):
        d0 = server_delta(system, lambda: system.batch(n, "wf0mem"))
    calls, cpu1 = measured(system, worker_pids, lambda: system.batch(n, "callmem"))
    result.extra["cpu_us_per_call"] = cpu_per_unit(cpu1, n)
    result.extra["cpu_us_per_3step_workflow"] = cpu_per_unit(cpu3, n)
    result.extra["memory_per_recorded_step_bytes"] = (d3.memory - d0.memory) / (3 * n)
    result.extra["memory_per_completed_call_bytes"] = calls.memory / n
    result.extra["memory_per_completed_3step_workflow_bytes"] = d3.memory / n
    result.extra["commands_executed_per_call"] = calls.commands / n
    result.extra["script_calls_per_call"] = calls.script_calls / n
    result.extra["commands_executed_per_3step_workflow"] = d3.commands / n
    result.extra["script_calls_per_3step_workflow"] = d3.script_calls / n


def timed_trace(system: VowSystem, units: int, run: Callable[[], object]) -> tuple[Trace, Trace]:
    """The trace of ``run``, and of an idle window as long: what the workers send by the clock
    (polls, sweeps), whatever the load, attributed to the same number of units."""
    t0 = time.perf_counter()
    busy = trace(system, units, run)
    seconds = time.perf_counter() - t0
    # a measurement window, not synchronisation: the background traffic of that long
    idle = trace(system, units, lambda: time.sleep(seconds))
    return busy, idle


def round_trips(system: VowSystem, result: SystemResult) -> None:
    n = 100 if system.settings.quick else 1000
    calls, idle_calls = timed_trace(system, n, lambda: system.batch(n, "trcall"))
    with system.kind(system.start_workflow, 4):
        flows, idle_flows = timed_trace(system, n, lambda: system.batch(n, "trwf"))

    def sequential() -> None:
        for i in range(n // 4):
            system.call(i, "trseq")

    seq = trace(system, n // 4, sequential)
    result.extra["round_trips_per_call"] = calls.round_trips()
    result.extra["round_trips_per_call_detail"] = {r: calls.detail(r) for r in ("client", "worker", "other")}
    result.extra["script_calls_sent_per_call"] = calls.script_calls()
    result.extra["round_trips_per_sequential_call_with_result"] = seq.round_trips()
    result.extra["round_trips_per_3step_workflow"] = flows.round_trips()
    result.extra["round_trips_per_3step_workflow_detail"] = {r: flows.detail(r) for r in ("client", "worker", "other")}
    result.extra["round_trips_per_local_step"] = (flows.round_trips() - calls.round_trips()) / 3
    result.extra["background_round_trips_per_call"] = idle_calls.round_trips()
    result.extra["background_round_trips_per_3step_workflow"] = idle_flows.round_trips()
    result.extra["background_detail"] = {r: idle_calls.detail(r) for r in ("worker", "other")}
    result.extra["commands_inside_scripts_per_call"] = calls.inner / n


def batch_row(system: VowSystem) -> SystemResult:
    row = SystemResult("vow-batch", version=system.version(),
                       notes="Scheduler.rpc_many: every create of a batch pipelined; same workers")
    if not hasattr(system.app, "rpc_many"):
        row.status, row.reason = "failed", "this Vow has no Scheduler.rpc_many"
        return row
    with system.kind(system.start_call, 1, batched=True):
        system.batch(min(200, system.settings.jobs), "bwarm")
        row.figures["enqueue_per_s"] = Figure([])
        row.figures["jobs_per_s"] = throughput(system, system.settings.runs, system.settings.jobs, "batch",
                                               row.figures["enqueue_per_s"])
    return row


def start_suspended(system: VowSystem, n: int, tag: str) -> None:
    """Start ``n`` seed workflows and wait until every one is suspended on its human promise."""
    app = system.app
    ids = [system.pid(tag, i) for i in range(n)]
    if hasattr(app, "rpc_many"):
        for k in range(0, n, 1000):
            app.rpc_many("seed_workflow", [(i, (i,)) for i in ids[k:k + 1000]])
    else:
        for i in ids:
            app.run(i, system.funcs.seed_workflow, i)
    wait_for(lambda: _created(system, system.funcs.confirmation_id(ids[-1])) and system.quiet(),
             timeout=max(120.0, n / 50), what="seed workflows not all suspended", interval=0.05,
             check=system.check_workers)


def _created(system: VowSystem, promise_id: str) -> bool:
    try:
        system.store.get(promise_id)
    except NotFound:
        return False
    return True


def hitl(system: VowSystem, probes: int, tag: str) -> dict[str, float]:
    """Resume latency: ``store.resolve`` returns -> the workflow's next step runs (its recorded
    wall-clock time), and -> ``Handle.result()`` returns in the producer; one workflow at a time."""
    step_ms: list[float] = []
    result_ms: list[float] = []
    for j in range(probes):
        key = system.pid(tag, j)
        handle = system.app.run(key, system.funcs.seed_workflow, key)
        confirmation = system.funcs.confirmation_id(key)

        def suspended(confirmation: str = confirmation) -> bool:
            return _created(system, confirmation) and system.quiet()

        wait_for(suspended, timeout=30, what="probe workflow not suspended", interval=0.001,
                 check=system.check_workers)
        system.store.resolve(confirmation, data=json.dumps(True))
        resolved_at, resolved_perf = time.time(), time.perf_counter()
        ran = float(handle.result(timeout=30))
        result_ms.append((time.perf_counter() - resolved_perf) * 1000)
        step_ms.append((ran - resolved_at) * 1000)
    return {"step_p50_ms": percentile(step_ms, 50), "step_p99_ms": percentile(step_ms, 99),
            "result_p50_ms": percentile(result_ms, 50), "result_p99_ms": percentile(result_ms, 99)}


def suspended_figures(system: VowSystem, result: SystemResult, worker_pids: list[int]) -> None:
    s = system.settings
    small, large = (100, 1000) if s.quick else (1000, 100_000)
    probes = 30 if s.quick else 200
    before = settled(system)
    start_suspended(system, small, "susp-a")
    mid = settled(system)
    result.extra["hitl_small_n"] = small
    result.extra["hitl_small"] = hitl(system, probes, "hitl-a")
    more = large - small
    start = settled(system)
    start_suspended(system, more, "susp-b")
    after = settled(system)
    # the probes of hitl() completed: only the suspended workflows are in these deltas
    result.extra["memory_per_suspended_seed_workflow_bytes"] = (after.used_memory - start.used_memory) / more
    result.extra["memory_per_suspended_seed_workflow_small_bytes"] = (mid.used_memory - before.used_memory) / small
    seconds = 1.0 if s.quick else 3.0
    meter = CpuMeter({"workers": descendants(worker_pids)})
    time.sleep(seconds)  # a measurement window, not synchronisation: CPU used while nothing happens
    reading = meter.stop()
    result.extra["worker_cpu_percent_while_suspended"] = 100 * reading.roles["workers"] / reading.seconds
    result.extra["worker_cpu_window_s"] = reading.seconds
    result.extra["hitl_large_n"] = large
    result.extra["hitl_large"] = hitl(system, probes, "hitl-b")
    result.extra["suspended_total"] = large


def vow_extras(system: VowSystem, result: SystemResult, rows: list[SystemResult],
               worker_pids: Callable[[], list[int]]) -> tuple[Callable[[list[str]], None], Callable[[list[str]], None]]:
    """The hooks around the protocol's runs that add Vow's own figures (and the batch row)."""
    profiler: list[Profiler] = []

    def before(names: list[str]) -> None:
        if system.settings.py_spy is not None:
            targets = [(f"vow-worker-{i + 1}", pid) for i, pid in enumerate(worker_pids())]
            targets.append(("vow-client", os.getpid()))
            profiler.append(Profiler(system.settings.py_spy, targets, system.settings.py_spy_rate))

    def after(names: list[str]) -> None:
        workflows(system, result, worker_pids())
        if profiler:
            result.extra["py_spy"] = profiler[0].stop()
        round_trips(system, result)
        rows.append(batch_row(system))
        suspended_figures(system, result, worker_pids())

    return before, after
