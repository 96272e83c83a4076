"""One measured system, and the protocol every system is measured with.

A :class:`System` knows how to start its worker processes (their command lines), how to enqueue
a no-op job from the producer, how many enqueued jobs are not finished yet (read from the
system's own state in Redis, never from anything the job itself writes), and how to make one call
and wait for its result. :func:`measure` runs the protocol on it:

1. start the workers (separate processes, each against the same server), wait until each holds
   a connection to the server, warm up (a small batch and a few sequential calls);
2. ``runs`` times: ``jobs`` no-op jobs enqueued one by one from this one producer process, timed
   from the first enqueue to the moment the system's state shows the last one finished
   (probed every 5 ms);
3. ``runs`` times: ``calls`` sequential calls, each enqueue -> result in the producer, p50/p99.

Each figure is reported as the median of the runs with its min and max, with how busy the
machine's *other* processes (not descendants of the benchmark) kept the CPUs meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .procs import Children, CpuMeter, connected_pids, descendants
from .redisstats import percentile

__all__ = ["AsyncSystem", "Figure", "Settings", "System", "SystemResult", "measure", "wait_for"]

T = TypeVar("T")
#: seconds between two completion probes
POLL_S = 0.005
#: seconds the workers get to connect to the server
START_TIMEOUT_S = 60.0
#: where ``bench/`` lives: the workers' working directory, so ``bench.*`` modules import
HOME = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = POLL_S,
             check: Callable[[], None] | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        value = predicate()
        if value:
            return value
        polls += 1
        if check is not None and polls % 50 == 0:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(interval)


@dataclass(frozen=True)
class Settings:
    url: str  # the server, db 0; systems may use db 1 for results
    port: int
    jobs: int
    runs: int
    calls: int  # sequential calls per latency run
    workers: int
    concurrency: int
    root_pid: int  # the benchmark's top process: its descendants are "ours"
    logdir: Path
    quick: bool = False
    py_spy: Path | None = None
    py_spy_rate: int = 200

    def url_db(self, db: int) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{db}"


@dataclass
class Figure:
    """One figure over several runs: the median, min and max, and the other processes' CPU share."""

    values: list[float]
    others_percent: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"median": statistics.median(self.values), "min": min(self.values), "max": max(self.values),
                "runs": self.values, "other_processes_cpu_percent": self.others_percent}


@dataclass
class SystemResult:
    name: str
    status: str = "ok"
    reason: str = ""
    version: str = ""
    notes: str = ""
    figures: dict[str, Figure] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "version": self.version,
                "notes": self.notes, "figures": {k: f.as_json() for k, f in self.figures.items()},
                "extra": self.extra}


class System:
    """A system under test; subclasses fill in the producer side and the worker command."""

    name = ""
    #: how the system is set up, for the table's notes
    notes = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def version(self) -> str:
        return ""

    def env(self) -> dict[str, str]:
        s = self.settings
        return {**os.environ, "BENCH_REDIS_URL": s.url_db(0), "BENCH_RESULT_URL": s.url_db(1),
                "BENCH_CONCURRENCY": str(s.concurrency), "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(HOME), os.environ.get("PYTHONPATH")]))}

    def worker_command(self, index: int) -> list[str]:
        raise NotImplementedError

    def open(self) -> None:
        """Connect the producer."""

    def close(self) -> None:
        """Disconnect the producer."""

    def enqueue(self, n: int, tag: str) -> None:
        """Enqueue ``n`` no-op jobs one by one."""
        raise NotImplementedError

    def remaining(self) -> int:
        """Jobs enqueued and not finished yet (the system's own state)."""
        raise NotImplementedError

    def call(self, i: int, tag: str) -> None:
        """One job: enqueue it and wait for its result."""
        raise NotImplementedError

    def batch(self, n: int, tag: str) -> tuple[float, float]:
        """(seconds to enqueue, seconds to the last completion) of a batch of ``n`` jobs."""
        t0 = time.perf_counter()
        self.enqueue(n, tag)
        t1 = time.perf_counter()
        wait_for(lambda: self.remaining() <= 0, timeout=max(120.0, n / 20), what=f"{self.name}: jobs unfinished",
                 check=self.check_workers)
        return t1 - t0, time.perf_counter() - t0

    # set by measure(): raises if a worker died
    check_workers: Callable[[], None] = staticmethod(lambda: None)


class AsyncSystem(System):
    """A system whose producer API is asyncio: one event loop, run to completion per operation."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # one Runner: one event loop and one contextvars context for every call (streaq's
        # context manager must be left in the context it was entered in)
        self.runner = asyncio.Runner()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def open(self) -> None:
        self.run(self.aopen())

    def close(self) -> None:
        try:
            self.run(self.aclose())
        finally:
            self.runner.close()

    def enqueue(self, n: int, tag: str) -> None:
        self.run(self.aenqueue(n, tag))

    def remaining(self) -> int:
        return self.run(self.aremaining())

    def call(self, i: int, tag: str) -> None:
        self.run(self.acall(i, tag))

    async def aopen(self) -> None: ...

    async def aclose(self) -> None: ...

    async def aenqueue(self, n: int, tag: str) -> None:
        for i in range(n):
            await self.enqueue_one(i, tag)

    async def enqueue_one(self, i: int, tag: str) -> None:
        raise NotImplementedError

    async def aremaining(self) -> int:
        raise NotImplementedError

    async def acall(self, i: int, tag: str) -> None:
        raise NotImplementedError


def start_workers(system: System, children: Children) -> list[str]:
    """Start the system's worker processes; wait until each one is connected to the server."""
    s = system.settings
    names = []
    for i in range(s.workers):
        name = f"{system.name}-worker-{i + 1}"
        children.spawn(name, system.worker_command(i), cwd=HOME, env=system.env())
        names.append(name)

    def connected() -> bool:
        children.check(names)
        return all(connected_pids(descendants([children.procs[n].pid]), s.port) for n in names)

    wait_for(connected, timeout=START_TIMEOUT_S, what=f"{system.name}: workers not connected", interval=0.05)
    system.check_workers = lambda: children.check(names)
    return names


def ours(settings: Settings) -> list[int]:
    return descendants([settings.root_pid])


def throughput(system: System, runs: int, jobs: int, tag: str, enqueued: Figure | None = None) -> Figure:
    """Jobs per second over ``runs`` batches; the producer's enqueue rate alone into ``enqueued``."""
    fig = Figure([])
    for r in range(runs):
        meter = CpuMeter({"ours": ours(system.settings)})
        enqueue, total = system.batch(jobs, f"{tag}{r}")
        reading = meter.stop()
        fig.values.append(jobs / total)
        fig.others_percent.append(reading.others_percent)
        if enqueued is not None:
            enqueued.values.append(jobs / enqueue)
            enqueued.others_percent.append(reading.others_percent)
    return fig


def latency(system: System, runs: int, calls: int, tag: str) -> tuple[Figure, Figure]:
    p50, p99 = Figure([]), Figure([])
    for r in range(runs):
        meter = CpuMeter({"ours": ours(system.settings)})
        lat = []
        for i in range(calls):
            t = time.perf_counter()
            system.call(i, f"{tag}{r}")
            lat.append((time.perf_counter() - t) * 1000)
        reading = meter.stop()
        p50.values.append(percentile(lat, 50))
        p99.values.append(percentile(lat, 99))
        p50.others_percent.append(reading.others_percent)
        p99.others_percent.append(reading.others_percent)
    return p50, p99


Hook = Callable[[list[str]], None]


def measure(system: System, children: Children, result: SystemResult, *, before: Hook | None = None,
            after: Hook | None = None) -> None:
    """The protocol (module docstring) on one system, figures into ``result``; ``before`` and
    ``after`` run with the workers' names around the measured runs (Vow's extra figures)."""
    s = system.settings
    names = start_workers(system, children)
    system.open()
    try:
        system.batch(min(200, s.jobs), "warm")
        for i in range(10):
            system.call(i, "warmseq")
        if before is not None:
            before(names)
        result.figures["enqueue_per_s"] = Figure([])
        result.figures["jobs_per_s"] = throughput(system, s.runs, s.jobs, "tp", result.figures["enqueue_per_s"])
        result.figures["latency_p50_ms"], result.figures["latency_p99_ms"] = latency(system, s.runs, s.calls, "seq")
        if after is not None:
            after(names)
    finally:
        system.close()
        children.stop(names)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
