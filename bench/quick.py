"""Quick benchmark of Vow on one machine: throughput, latency, round trips, memory.

Starts its own Redis-compatible server (``coordinator.server.ServerProcess``, persistence off like
the test server unless ``--aof``), two worker processes (``python -m bench.worker_app``) serving
logic group ``bench``, and drives them from this process:

0. calibration: the same machine's floor, a plain redis-py queue (client ``LPUSH``, two
   single-thread workers ``BRPOP`` + reply), so the figures below can be read against it;
1. remote no-op calls/s: N calls of ``noop`` enqueued with ``Scheduler.rpc`` (serve=False), timed
   from the first enqueue to the last promise completed;
2. sequential remote call latency: one ``rpc`` + ``Handle.result`` at a time;
3. three-step local workflows/s: N ``app.run(..., three_steps)``, each doing ``yield ctx.lfc(step)``
   three times;
4. Redis round trips per remote call and per workflow, from ``INFO commandstats`` deltas, and
   attributed per process and per script with ``MONITOR`` on a small separate run.

Measurements 1 and 3 run ``--repeat`` times (the median run is detailed). Each prints the CPU time
per unit of the client, the workers and Redis (from /proc), the Redis commands and server time per
unit (``INFO commandstats``), the Redis memory per unit (``used_memory`` delta / N), and how busy
the machine's other processes kept the CPUs meanwhile. Then the workers' RSS and CPU time.
Completion is detected by counting the completed-promise indexes (16 pipelined ``ZCARD``s every
10 ms); the benchmark's own commands (``INFO``, ``ZCARD``, ``PING``, ``ECHO``) are left out of every
count. ``--py-spy DIR`` samples the Python CPU (``py-spy --gil``) of the workers and the client
during measurements 1-3 and prints their top functions.

Every process started here is stopped on exit, Ctrl-C, SIGTERM or error; a watchdog child stops the
server (which runs in its own session) even if this process is killed with SIGKILL.

A benchmark, not a test: nothing is asserted. Usage::

    .venv/bin/python bench/quick.py                      # defaults: 5,000 calls, 2,000 workflows
    .venv/bin/python bench/quick.py --aof everysec       # the same with AOF on
    .venv/bin/python bench/quick.py --py-spy /tmp/prof   # also sample workers + client with py-spy
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import redis

from vow.coordinator import RedisStore, keys
from vow.coordinator.scripts import SCRIPT_NAMES, source
from vow.server import ServerProcess
from vow.worker import Handle, Scheduler

REPO = Path(__file__).resolve().parent.parent
GROUP = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: seconds between two completion probes
POLL_S = 0.01
#: seconds a worker gets to stop after SIGTERM before it is killed
WORKER_STOP_S = 15.0
#: commands the benchmark itself sends; never counted as Vow's
OWN_COMMANDS = frozenset({"info", "zcard", "ping", "echo", "client|list", "config|get", "monitor"})
#: commands only ever sent by clients (never run inside a Vow script)
ROUND_TRIP_COMMANDS = ("evalsha", "eval", "xreadgroup", "xautoclaim", "xpending", "blpop")
#: run by a child process: once the benchmark (pid argv[1]) is gone, SIGTERM the server (pid argv[2])
#: and remove the directories named after it
WATCHDOG = """
import os, shutil, signal, sys, time
parent, server, dirs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
signal.signal(signal.SIGINT, signal.SIG_IGN)
while os.getppid() == parent:
    time.sleep(0.5)
try:
    os.kill(server, signal.SIGTERM)
    for _ in range(100):
        time.sleep(0.1)
        os.kill(server, 0)
except ProcessLookupError:
    pass
for path in dirs:
    shutil.rmtree(path, ignore_errors=True)
"""
REFERENCE = {
    "calls": "dramatiq 3,363 jobs/s, taskiq 3,027 jobs/s (2-core machine, 2 worker processes, 5,000 no-op jobs)",
    "latency": "taskiq 0.54 ms p50",
    "workflows": "Resonate's SDK 1,373 three-step workflows/s (in memory)",
}


# -- processes --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user / nice
    return (sum(fields) - idle - guest) / CLK_TCK


def load_average() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def named_url(url: str, name: str) -> str:
    """The URL with a client name, so MONITOR / CLIENT LIST tell the processes apart."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float = WORKER_STOP_S) -> None:
    """SIGTERM every process still running, SIGKILL the ones still there after the grace period."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def load_app() -> ModuleType:
    """``bench.worker_app`` (the functions the workers serve), whatever the current directory."""
    root = str(REPO)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("bench.worker_app")


# -- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    at: float
    calls: dict[str, int]  # INFO commandstats: calls per command (Lua-internal ones included)
    usec: dict[str, int]  # INFO commandstats: server time per command, µs (a script's includes its commands)
    used_memory: int
    cpu: dict[str, float]  # role -> CPU seconds; "machine": every process of the machine


@dataclass(frozen=True)
class Delta:
    seconds: float
    calls: Counter[str]
    usec: Counter[str]
    memory: int
    cpu: dict[str, float]

    def server_us(self) -> int:
        """Server time executing the round-trip commands (scripts include the commands they run)."""
        return sum(self.usec[name] for name in ROUND_TRIP_COMMANDS)

    @property
    def commands(self) -> int:
        return sum(self.calls.values())

    def round_trips(self) -> int:
        """Script calls and stream / blocking reads: the round trips INFO can tell apart (a few
        plain commands such as DEL or HGETALL are also run inside scripts, so they are not
        counted here; the MONITOR trace of measurement 4 counts every command sent exactly)."""
        return sum(self.calls[name] for name in ROUND_TRIP_COMMANDS)


def delta(a: Snapshot, b: Snapshot) -> Delta:
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    for name, count in b.calls.items():
        if name not in OWN_COMMANDS and count - a.calls.get(name, 0) > 0:
            calls[name] = count - a.calls.get(name, 0)
            usec[name] = b.usec.get(name, 0) - a.usec.get(name, 0)
    cpu = {role: b.cpu[role] - a.cpu.get(role, 0.0) for role in b.cpu}
    return Delta(b.at - a.at, calls, usec, b.used_memory - a.used_memory, cpu)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Trace:
    """Commands seen by MONITOR during one run, attributed to processes and scripts."""

    units: int
    top: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, command or script) -> count
    inner: dict[str, Counter[str]] = field(default_factory=dict)  # script -> commands run inside it
    #: (previous command, command) -> server-side seconds between them: where a sequential call's time goes
    gaps: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add_inner(self, parent: str, command: str) -> None:
        self.inner.setdefault(parent, Counter())[command] += 1


_MONITOR_LINE = re.compile(r'^([\d.]+) \[\d+ ([^\]]*)\] "([^"]*)"(?: "([^"]*)")?')
#: one command seen by MONITOR: (server time in s, client address or "lua", command, first argument)
Entry = tuple[float, str, str, str]


class Monitor:
    """``MONITOR`` in a thread, keeping (client, command, first argument) of every command."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(named_url(url, "bench-monitor"))
        self.entries: list[Entry] = []
        self.marker = f"vow-bench-end-{os.getpid()}-{time.monotonic_ns()}"
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished.wait(10)
        self.client.close()
        self.thread.join(5)

    def _run(self) -> None:
        try:
            with self.client.monitor() as mon:  # type: ignore[no-untyped-call]
                self.ready.set()
                while True:
                    raw = mon.connection.read_response()
                    line = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                    m = _MONITOR_LINE.match(line)
                    if m is None:
                        continue
                    who, command, arg = m.group(2), m.group(3), m.group(4) or ""
                    if command.upper() == "ECHO" and arg == self.marker:
                        return
                    self.entries.append((float(m.group(1)), who, command, arg))
        except BaseException as e:  # reported by the caller; the benchmark goes on
            self.error = e
        finally:
            self.ready.set()
            self.finished.set()

    def end(self, probe: redis.Redis) -> None:
        """Wait until every command sent so far has been seen."""
        probe.echo(self.marker)
        self.finished.wait(10)


def script_names() -> dict[str, str]:
    return {hashlib.sha1(source(name).encode()).hexdigest(): name for name in SCRIPT_NAMES}


def role_of(name: str) -> str | None:
    if name == "bench-client":
        return "client"
    if name.startswith("bench-worker"):
        return "worker"
    if name in ("bench-probe", "bench-monitor"):
        return None
    return "other"


def attribute(entries: list[Entry], names: dict[str, str], units: int) -> Trace:
    shas = script_names()
    trace = Trace(units)
    parent = "?"
    previous: tuple[float, str] | None = None
    for at, who, command, arg in entries:
        if who == "lua":
            trace.add_inner(parent, command.upper())
            continue
        role = role_of(names.get(who, ""))
        if role is None:
            parent = "?"
            continue
        label = command.upper()
        if label in ("EVALSHA", "EVAL"):
            label = f"script {shas.get(arg.lower(), arg[:8])}"
        parent = label
        step = f"{role} {label}"
        trace.top[(role, label)] += 1
        if previous is not None:
            trace.gaps.setdefault((previous[1], step), []).append(at - previous[0])
        previous = (at, step)
    return trace


# -- the benchmark --------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    n: int
    enqueue_s: float
    total_s: float
    delta: Delta
    failed: int


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = f"b{int(time.time())}"
        self.server: ServerProcess | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.raw_workers: list[subprocess.Popen[bytes]] = []
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.profilers: list[subprocess.Popen[bytes]] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="vow-bench-"))
        self.probe: redis.Redis | None = None
        self.store: RedisStore | None = None
        self.app: Scheduler | None = None
        self.funcs: ModuleType = load_app()
        self.baseline_rate: float | None = None

    # -- setup and teardown ----------------------------------------------------------------

    def start_server(self) -> None:
        extra: list[str] = []
        if self.args.aof == "always":
            extra = ["--appendfsync", "always"]
        self.server = ServerProcess(persistence=self.args.aof != "off", extra_args=extra)
        self.server.start()
        assert self.server.process is not None
        # The server runs in its own session (Ctrl-C does not reach it): if this process is killed
        # outright, the watchdog still stops it.
        watch = [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self.server.process.pid),
                 str(self.server.directory), str(self.logdir)]
        self.watchdog = subprocess.Popen(watch, stdin=subprocess.DEVNULL)
        url = self.server.url
        self.probe = redis.Redis.from_url(named_url(url, "bench-probe"))
        self.store = RedisStore(named_url(url, "bench-client"))
        self.app = Scheduler(self.store, GROUP, serve=False)
        self.app.register(self.funcs.three_steps)

    def start_workers(self) -> None:
        assert self.server is not None
        for i in range(self.args.workers):
            self.workers.append(self._spawn_worker(self.server.url, i + 1))
        self._wait_workers_ready()

    def _spawn_worker(self, url: str, index: int, *extra: str) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-m", "bench.worker_app", "--url", named_url(url, f"bench-worker-{index}"),
            "--group", GROUP, "--concurrency", str(self.args.concurrency),
            "--log-level", self.args.worker_log_level, "--parent-pid", str(os.getpid()), *extra,
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        with open(self.logdir / f"worker-{index}.log", "wb") as log:  # the child keeps its own copy
            return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _wait_workers_ready(self, timeout: float = 30.0) -> None:
        """Ready = every worker is a consumer of the group (it has issued its first XREADGROUP)."""
        assert self.probe is not None
        stream = keys.task_stream(0, GROUP)
        deadline = time.monotonic() + timeout
        while True:
            self._check_workers()
            try:
                if len(self.probe.xinfo_consumers(stream, GROUP)) >= len(self.workers):
                    return
            except redis.ResponseError:
                pass  # no group yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout}s (logs in {self.logdir})")
            time.sleep(0.05)

    def _check_workers(self) -> None:
        for i, w in enumerate(self.workers):
            if w.poll() is not None:
                tail = (self.logdir / f"worker-{i + 1}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {i + 1} exited with code {w.returncode}:\n{tail}")

    def stop(self) -> None:
        """Stop every process this benchmark started (profilers, workers, server)."""
        self.stop_profilers()
        stop_processes(self.raw_workers + self.workers)
        for client in (self.store, self.probe):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing is best effort
                    pass
        if self.server is not None:
            self.server.stop()
        if self.watchdog is not None:
            stop_processes([self.watchdog], grace_s=5)
        shutil.rmtree(self.logdir, ignore_errors=True)

    # -- profiling ----------------------------------------------------------------------------

    def start_profilers(self, outdir: Path) -> None:
        exe = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        if exe is None:
            print("py-spy not found (pip install py-spy); profiling skipped")
            return
        outdir.mkdir(parents=True, exist_ok=True)
        targets = [(f"worker-{i + 1}", w.pid) for i, w in enumerate(self.workers)] + [("client", os.getpid())]
        for name, pid in targets:
            # --gil: only the thread holding the GIL is sampled, i.e. Python CPU time (py-spy's idle
            # detection does not work on every VM, so plain samples would count blocked threads too)
            cmd = [exe, "record", "--pid", str(pid), "--rate", str(self.args.py_spy_rate), "--nonblocking",
                   "--gil", "--format", "raw", "--output", str(outdir / f"{name}.txt")]
            with open(outdir / f"{name}.log", "wb") as log:
                self.profilers.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        time.sleep(1.0)  # let py-spy attach before the measured phases

    def stop_profilers(self) -> None:
        for p in self.profilers:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for p in self.profilers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.profilers = []

    # -- probes -------------------------------------------------------------------------------

    def roles(self) -> dict[str, list[int]]:
        assert self.server is not None and self.server.process is not None
        return {"client": [os.getpid()], "workers": [w.pid for w in self.workers], "redis": [self.server.process.pid]}

    def snapshot(self) -> Snapshot:
        assert self.probe is not None
        stats = self.probe.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        usec = {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()}
        memory = int(self.probe.info("memory")["used_memory"])
        cpu = {role: sum(cpu_seconds(p) for p in pids) for role, pids in self.roles().items()}
        cpu["machine"] = machine_busy_seconds()
        return Snapshot(time.perf_counter(), calls, usec, memory, cpu)

    def completed(self) -> tuple[int, int]:
        """(resolved, rejected) promises in the whole keyspace."""
        assert self.probe is not None
        pipe = self.probe.pipeline(transaction=False)
        for p in range(keys.PARTITIONS):
            pipe.zcard(keys.index(p, "resolved"))
            pipe.zcard(keys.index(p, "rejected"))
        counts = pipe.execute()
        return sum(counts[0::2]), sum(counts[1::2])

    def wait_completed(self, target: int, timeout: float) -> tuple[float, int]:
        """Poll until ``target`` promises are completed; (the moment it was seen, rejected count)."""
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            resolved, rejected = self.completed()
            if resolved + rejected >= target:
                return time.perf_counter(), rejected
            polls += 1
            if polls % 100 == 0:
                self._check_workers()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{resolved + rejected} of {target} promises completed after {timeout}s")
            time.sleep(POLL_S)

    # -- phases -------------------------------------------------------------------------------

    def call(self, i: int, tag: str) -> Handle:
        assert self.app is not None
        return self.app.rpc(f"{self.run_id}-{tag}-{i}", "noop", target=GROUP)

    def workflow(self, i: int, tag: str) -> Handle:
        assert self.app is not None
        return self.app.run(f"{self.run_id}-{tag}-{i}", self.funcs.three_steps)

    @staticmethod
    def starter(start: Callable[[int, str], Handle], tag: str) -> Callable[[int], Handle]:
        """``start`` with its id tag fixed."""
        return lambda i: start(i, tag)

    def batch(self, n: int, start: Callable[[int], Handle], completions: int) -> tuple[list[Handle], float, float]:
        """Start n executions, wait until all are done: (handles, enqueue seconds, total seconds)."""
        resolved, rejected = self.completed()
        base = resolved + rejected
        t0 = time.perf_counter()
        handles = [start(i) for i in range(n)]
        t_enqueued = time.perf_counter()
        t_done, _ = self.wait_completed(base + n * completions, timeout=max(120.0, n / 50))
        return handles, t_enqueued - t0, t_done - t0

    def throughput(self, label: str, n: int, start: Callable[[int], Handle], completions: int,
                   expected: Any) -> Phase:
        _, rejected_before = self.completed()
        before = self.snapshot()
        handles, enqueue_s, total_s = self.batch(n, start, completions)
        after = self.snapshot()
        _, rejected_after = self.completed()
        for h in handles[-1:] + handles[:: max(1, n // 20)]:
            value = h.result(timeout=30)
            if value != expected:
                print(f"  unexpected result of {h.id}: {value!r}")
        return Phase(label, n, enqueue_s, total_s, delta(before, after), rejected_after - rejected_before)

    def latency(self, n: int) -> tuple[list[float], list[float], Delta]:
        assert self.probe is not None
        pings = []
        for _ in range(200):
            t = time.perf_counter()
            self.probe.ping()
            pings.append(time.perf_counter() - t)
        before = self.snapshot()
        lat = []
        for i in range(n):
            t = time.perf_counter()
            self.call(i, "seq").result(timeout=30)
            lat.append(time.perf_counter() - t)
        return lat, pings, delta(before, self.snapshot())

    def trace(self, n: int, run: Callable[[], None]) -> Trace:
        """Run with MONITOR: every command, attributed to processes and scripts, with server times."""
        assert self.server is not None and self.probe is not None
        with Monitor(self.server.url) as mon:
            run()
            names = {}
            for c in self.probe.client_list():
                names[c["addr"]] = c.get("name", "")
            mon.end(self.probe)
        if mon.error is not None:
            print(f"  (MONITOR failed: {mon.error!r})")
        return attribute(mon.entries, names, n)

    def baseline(self, n: int, sequential: int) -> tuple[float, dict[str, float], list[float]]:
        """Calibration with plain redis-py (see worker_app.raw_worker): jobs/s, CPU seconds per job by
        role, sequential latencies."""
        assert self.server is not None and self.server.process is not None and self.probe is not None
        key = f"{self.run_id}:raw"
        self.raw_workers = [self._spawn_worker(self.server.url, 100 + i, "--raw-queue", key)
                            for i in range(self.args.workers)]
        roles = {"client": [os.getpid()], "workers": [w.pid for w in self.raw_workers],
                 "redis": [self.server.process.pid]}
        client = redis.Redis.from_url(named_url(self.server.url, "bench-client"))
        try:
            for _ in range(100):  # warm up (and wait for the workers to be there)
                client.lpush(key, f"{key}:warm".encode())
                client.brpop([f"{key}:warm"], timeout=30)
            cpu0 = {role: sum(cpu_seconds(p) for p in pids) for role, pids in roles.items()}
            t0 = time.perf_counter()
            for _ in range(n):
                client.lpush(key, b"")
            while int(self.probe.get(f"{key}:done") or 0) < n:
                time.sleep(POLL_S)
            rate = n / (time.perf_counter() - t0)
            cpu = {role: (sum(cpu_seconds(p) for p in pids) - cpu0[role]) / n for role, pids in roles.items()}
            lat = []
            for _ in range(sequential):
                t = time.perf_counter()
                client.lpush(key, f"{key}:reply".encode())
                client.brpop([f"{key}:reply"], timeout=30)
                lat.append(time.perf_counter() - t)
            return rate, cpu, lat
        finally:
            client.close()
            stop_processes(self.raw_workers)
            self.raw_workers = []

    def warm_up(self) -> None:
        self.batch(200, lambda i: self.call(i, "warm"), 1)
        self.batch(50, lambda i: self.workflow(i, "warmwf"), 4)


# -- reporting ------------------------------------------------------------------------------


def summarize_stacks(path: Path, limit: int = 15) -> None:
    """Top functions of a py-spy raw (collapsed stacks) file: self and inclusive share of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    if total == 0:
        print(f"  {path.name}: no samples")
        return
    print(f"  {path.name}: {total} samples with the GIL held")
    rows = [(k, v) for k, v in own.most_common(limit)]
    print("    self: " + "; ".join(f"{v / total:.0%} {k}" for k, v in rows))
    ours = [(k, v) for k, v in inclusive.most_common() if "(coordinator/" in k or "(worker/" in k][:limit]
    print("    inclusive, Vow's functions: " + "; ".join(f"{v / total:.0%} {k}" for k, v in ours))
    parts = {name: inclusive[frame] for name, frame in (
        ("sending", "AbstractConnection.send_command (redis/connection.py)"),
        ("reading + parsing replies", "Redis.parse_response (redis/client.py)"),
        ("pool get/release", "ConnectionPool.get_connection (redis/connection.py)"))}
    print(f"    redis-py: {inclusive['Redis.execute_command (redis/client.py)'] / total:.0%} inclusive ("
          + ", ".join(f"{name} {v / total:.0%}" for name, v in parts.items()) + ")")


def per_unit_cpu(d: Delta, n: int) -> str:
    roles = ("client", "workers", "redis")
    parts = [f"{role} {d.cpu[role] / n * 1e6:.0f} µs" for role in roles]
    ours = sum(d.cpu[role] for role in roles)
    others = max(0.0, d.cpu.get("machine", ours) - ours)
    seconds = d.seconds if d.seconds > 0 else 1.0
    return ("CPU per unit: " + ", ".join(parts)
            + f"  (cores busy: ours {ours / seconds:.2f}, other processes {others / seconds:.2f})")


def top_commands(d: Delta, n: int, limit: int = 8) -> str:
    return ", ".join(f"{name} {count / n:.2f}" for name, count in d.calls.most_common(limit))


def report_phase(p: Phase, unit: str, reference: str) -> None:
    rate = p.n / p.total_s
    print(f"  {p.n:,} {unit} in {p.total_s:.3f} s  ->  {rate:,.0f} {unit}/s"
          f"   (enqueue alone {p.enqueue_s:.3f} s = {p.n / p.enqueue_s:,.0f}/s; rejected: {p.failed})")
    print(f"  reference: {reference}")
    print(f"  Redis commands per unit: {p.delta.commands / p.n:.2f} executed, "
          f"{p.delta.round_trips() / p.n:.2f} of them script calls + stream reads (the rest run inside scripts)")
    print(f"    by command: {top_commands(p.delta, p.n)}")
    evalsha = p.delta.usec["evalsha"] / max(1, p.delta.calls["evalsha"])
    print(f"  Redis server time (INFO commandstats usec, sockets excluded): {p.delta.server_us() / p.n:.0f} µs"
          f" per unit; {evalsha:.0f} µs per script call on average")
    print(f"  Redis memory: {p.delta.memory / p.n:,.0f} bytes per completed unit (used_memory delta / N)")
    print(f"  {per_unit_cpu(p.delta, p.n)}")


def report_latency(lat: list[float], pings: list[float], d: Delta) -> None:
    ms = [x * 1000 for x in lat]
    print(f"  {len(ms)} sequential calls: p50 {percentile(ms, 50):.2f} ms, p90 {percentile(ms, 90):.2f} ms, "
          f"p99 {percentile(ms, 99):.2f} ms, mean {statistics.fmean(ms):.2f} ms, max {max(ms):.2f} ms")
    print(f"  reference: {REFERENCE['latency']};  floor: Redis PING round trip p50 "
          f"{percentile([x * 1000 for x in pings], 50):.3f} ms")
    print(f"  Redis commands per call: {d.commands / len(lat):.2f} executed, {d.round_trips() / len(lat):.2f} script"
          f" calls + reads;  by command: {top_commands(d, len(lat))}")
    print(f"  {per_unit_cpu(d, len(lat))}")


def report_timeline(t: Trace, limit: int = 10) -> None:
    """Mean server-side time between consecutive commands (MONITOR timestamps): the latency path."""
    rows = sorted(t.gaps.items(), key=lambda kv: -sum(kv[1]))[:limit]
    total = sum(sum(v) for v in t.gaps.values())
    print(f"    time between consecutive commands (server clock), {total / t.units * 1000:.2f} ms per unit in all:")
    for (before, after), gaps in rows:
        print(f"      {sum(gaps) / t.units * 1000:6.3f} ms per unit  {before} -> {after}"
              f"  (x{len(gaps) / t.units:.2f}, mean {statistics.fmean(gaps) * 1000:.3f} ms)")


def report_trace(title: str, t: Trace) -> None:
    n = t.units
    print(f"  {title} (MONITOR, {n} units): commands sent per unit, by process (each one round trip: "
          "nothing is pipelined on these paths)")
    for role in ("client", "worker", "other"):
        rows = sorted(((k[1], v) for k, v in t.top.items() if k[0] == role), key=lambda kv: -kv[1])
        if rows:
            total = sum(v for _, v in rows)
            detail = ", ".join(f"{label} {v / n:.2f}" for label, v in rows)
            print(f"    {role:<6} {total / n:5.2f}: {detail}")
    inner_total = sum(sum(c.values()) for c in t.inner.values())
    print(f"    commands run inside scripts: {inner_total / n:.2f} per unit")
    for parent, c in sorted(t.inner.items(), key=lambda kv: -sum(kv[1].values())):
        calls = t.top[("client", parent)] + t.top[("worker", parent)] + t.top[("other", parent)]
        each = sum(c.values()) / max(1, calls)
        top = ", ".join(f"{k} {v / max(1, calls):.1f}" for k, v in c.most_common(6))
        print(f"      {parent}: {each:.1f} commands per call ({top})")


def report_processes(bench: Bench) -> None:
    print(f"\nProcesses at the end (load average {load_average()}):")
    for i, w in enumerate(bench.workers):
        mem = memory_kb(w.pid)
        print(f"  worker {i + 1} (pid {w.pid}): RSS {mem.get('VmRSS', 0) / 1024:.1f} MiB, "
              f"peak {mem.get('VmHWM', 0) / 1024:.1f} MiB, CPU {cpu_seconds(w.pid):.2f} s")
    me = os.getpid()
    mem = memory_kb(me)
    print(f"  client (pid {me}): RSS {mem.get('VmRSS', 0) / 1024:.1f} MiB, CPU {cpu_seconds(me):.2f} s")
    assert bench.server is not None and bench.server.process is not None and bench.probe is not None
    pid = bench.server.process.pid
    info = bench.probe.info("memory")
    print(f"  redis (pid {pid}): used_memory {int(info['used_memory']) / 1048576:.1f} MiB, "
          f"RSS {memory_kb(pid).get('VmRSS', 0) / 1024:.1f} MiB, CPU {cpu_seconds(pid):.2f} s")


def report_settings(bench: Bench) -> None:
    assert bench.server is not None and bench.probe is not None
    a = bench.args
    server = bench.probe.info("server")
    conf = {k: v for name in ("appendonly", "appendfsync", "save") for k, v in bench.probe.config_get(name).items()}
    version = server.get("valkey_version") or server.get("redis_version")
    print("Settings:")
    print(f"  server   {Path(bench.server.binary).name} {version} at {bench.server.url}; "
          + ", ".join(f"{k}={v!r}" for k, v in conf.items()))
    print(f"  workers  {a.workers} processes x concurrency {a.concurrency} (group {GROUP!r}, "
          f"worker log level {a.worker_log_level}); client: 1 process, 1 thread")
    print(f"  machine  {os.cpu_count()} CPUs, load average {load_average()} at start; Python {sys.version.split()[0]}; "
          f"N calls {a.calls:,}, N workflows {a.workflows:,}, sequential calls {a.latency_calls}, "
          f"traced units {a.trace}")
    if a.py_spy:
        print(f"  py-spy   sampling workers + client at {a.py_spy_rate} Hz into {a.py_spy} (figures are slowed)")


# -- main -----------------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/quick.py", description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--calls", type=positive, default=5000, help="remote no-op calls enqueued (measurement 1)")
    parser.add_argument("--latency-calls", type=positive, default=500, help="sequential calls (measurement 2)")
    parser.add_argument("--workflows", type=positive, default=2000, help="three-step workflows (measurement 3)")
    parser.add_argument("--trace", type=non_negative, default=200,
                        help="calls / workflows traced with MONITOR for round trips (measurement 4; 0: skip)")
    parser.add_argument("--repeat", type=positive, default=3,
                        help="runs of measurements 1 and 3 (the median is detailed)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="run the plain redis-py calibration queue first (measurement 0)")
    parser.add_argument("--workers", type=positive, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=positive, default=16, help="executor threads per worker")
    parser.add_argument("--aof", choices=("off", "everysec", "always"), default="off",
                        help="AOF persistence of the server (off: like the embedded test server)")
    parser.add_argument("--worker-log-level", default="WARNING", help="logging level in the workers")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                        help="sample workers and client with py-spy during measurements 1-3 (raw stacks in DIR)")
    parser.add_argument("--py-spy-rate", type=positive, default=200, help="py-spy samples per second")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def report_runs(runs: list[Phase], unit: str, reference: str, baseline: float | None = None) -> Phase:
    """One line per run, then the details of the median run (returned)."""
    if len(runs) > 1:
        for k, p in enumerate(runs, 1):
            print(f"  run {k}: {p.n / p.total_s:,.0f} {unit}/s  ({per_unit_cpu(p.delta, p.n)})")
    ordered = sorted(runs, key=lambda p: p.n / p.total_s)
    median = ordered[len(runs) // 2]
    if len(runs) > 1:
        best = ordered[-1]
        print(f"  best run: {best.n / best.total_s:,.0f} {unit}/s;  median of {len(runs)} runs:")
    report_phase(median, unit, reference)
    if baseline:
        print(f"  = {median.n / median.total_s / baseline:.0%} of the plain redis-py queue's rate measured above")
    return median


def measure_throughput(bench: Bench) -> tuple[Phase, Phase]:
    a = bench.args
    print(f"\n1. Remote no-op calls/s ({a.workers} workers x concurrency {a.concurrency}, N={a.calls:,})")
    runs = [bench.throughput("calls", a.calls, bench.starter(bench.call, f"noop{r}"), 1, None)
            for r in range(a.repeat)]
    p1 = report_runs(runs, "calls", REFERENCE["calls"], bench.baseline_rate)
    print(f"\n2. Sequential remote call latency (rpc + Handle.result, {a.latency_calls} calls)")
    report_latency(*bench.latency(a.latency_calls))
    print(f"\n3. Three-step local workflows/s ({a.workers} workers x concurrency {a.concurrency}, N={a.workflows:,})")
    runs = [bench.throughput("workflows", a.workflows, bench.starter(bench.workflow, f"wf{r}"), 4, 6)
            for r in range(a.repeat)]
    p3 = report_runs(runs, "workflows", REFERENCE["workflows"])
    return p1, p3


def measure_round_trips(bench: Bench, p1: Phase, p3: Phase) -> None:
    n = bench.args.trace
    seq = max(1, n // 4)
    print("\n4. Redis round trips")
    print(f"  INFO deltas (measurements 1 and 3): remote call {p1.delta.commands / p1.n:.2f} commands executed, "
          f"{p1.delta.round_trips() / p1.n:.2f} of them script calls + stream reads; 3-step workflow "
          f"{p3.delta.commands / p3.n:.2f} executed, {p3.delta.round_trips() / p3.n:.2f} script calls + reads")

    def calls() -> None:
        bench.batch(n, bench.starter(bench.call, "tr"), 1)

    def sequential() -> None:
        for i in range(seq):
            bench.call(i, "trseq").result(timeout=30)

    def workflows() -> None:
        bench.batch(n, bench.starter(bench.workflow, "trwf"), 4)

    report_trace("remote call, batch", bench.trace(n, calls))
    t2 = bench.trace(seq, sequential)
    report_trace("remote call + Handle.result, sequential", t2)
    report_timeline(t2)
    report_trace("3-step workflow, batch", bench.trace(n, workflows))


def measure(bench: Bench) -> None:
    a = bench.args
    bench.start_server()
    report_settings(bench)
    if a.baseline:
        rate, cpu, lat = bench.baseline(a.calls, a.latency_calls)
        bench.baseline_rate = rate
        ms = [x * 1000 for x in lat]
        print(f"\n0. Calibration, plain redis-py queue (client LPUSH, {a.workers} single-thread workers BRPOP + reply;"
              f" 3 round trips per job): the floor of any Python queue on Redis on this machine, now")
        print(f"  {a.calls:,} no-op jobs: {rate:,.0f} jobs/s;  sequential job latency p50 {percentile(ms, 50):.2f} ms,"
              f" p99 {percentile(ms, 99):.2f} ms")
        print("  CPU per job: " + ", ".join(f"{role} {v * 1e6:.0f} µs" for role, v in cpu.items()))
    bench.start_workers()
    bench.warm_up()
    if a.py_spy:
        bench.start_profilers(a.py_spy)
    p1, p3 = measure_throughput(bench)
    bench.stop_profilers()
    if a.py_spy:
        print(f"\nPython CPU profiles (py-spy --gil, measurements 1-3) in {a.py_spy}:")
        for path in sorted(a.py_spy.glob("*.txt")):
            summarize_stacks(path)
    if a.trace > 0:
        measure_round_trips(bench, p1, p3)
    report_processes(bench)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C raises KeyboardInterrupt even when started where SIGINT is ignored (a background job);
    # SIGTERM behaves the same: the cleanup in `finally` runs either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    bench = Bench(args)
    try:
        measure(bench)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
