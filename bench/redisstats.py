"""What the server did: ``INFO commandstats`` deltas, and ``MONITOR`` traces attributed per process.

``INFO commandstats`` counts every command the server executed, including the ones a Lua script
runs inside itself (each script call is one ``evalsha`` plus its inner commands). The benchmark's
own commands (``INFO``, ``ZCARD``, ``XLEN``, ...) are left out. So from INFO one gets *commands
executed* and *script calls*, not *round trips*; the round trips (commands a client sent, each one
a network exchange) come from a ``MONITOR`` trace on a small separate run, where the server marks
the commands run inside a script as coming from ``lua`` and every client connection is named
after its process (``client_name=`` in the URL).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = ["Monitor", "ServerDelta", "ServerSnapshot", "Trace", "attribute", "named_url", "percentile", "snapshot"]

#: commands the benchmark itself sends; never counted as the measured system's
OWN_COMMANDS = frozenset({
    "info", "zcard", "xlen", "ping", "echo", "client|list", "client|setname", "client|setinfo", "config|get",
    "monitor", "flushall", "dbsize", "hello", "select", "xinfo|groups", "memory|usage", "memory|purge",
})
SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall")


def named_url(url: str, name: str) -> str:
    """The URL with a client name, so MONITOR / CLIENT LIST tell the processes apart."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass(frozen=True)
class ServerSnapshot:
    calls: dict[str, int]
    used_memory: int


@dataclass(frozen=True)
class ServerDelta:
    calls: Counter[str]
    memory: int

    @property
    def commands(self) -> int:
        """Commands executed, those run inside scripts included."""
        return sum(self.calls.values())

    @property
    def script_calls(self) -> int:
        return sum(self.calls[name] for name in SCRIPT_COMMANDS)

    def since(self, other: ServerDelta) -> ServerDelta:
        return ServerDelta(self.calls - other.calls, self.memory - other.memory)


def snapshot(client: redis.Redis) -> ServerSnapshot:
    stats: dict[str, Any] = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return ServerSnapshot(calls, int(client.info("memory")["used_memory"]))


def delta(a: ServerSnapshot, b: ServerSnapshot) -> ServerDelta:
    calls: Counter[str] = Counter()
    for name, count in b.calls.items():
        if name not in OWN_COMMANDS and count - a.calls.get(name, 0) > 0:
            calls[name] = count - a.calls.get(name, 0)
    return ServerDelta(calls, b.used_memory - a.used_memory)


@dataclass
class Trace:
    """Commands seen by MONITOR during one run, attributed to processes and scripts."""

    units: int
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, command or script) -> count
    inner: int = 0  # commands run inside scripts

    def round_trips(self, role: str | None = None) -> float:
        """Commands sent per unit (by one role, or by every process)."""
        return sum(v for (r, _), v in self.sent.items() if role is None or r == role) / max(1, self.units)

    def script_calls(self) -> float:
        return sum(v for (_, label), v in self.sent.items() if label.startswith("script ")) / max(1, self.units)

    def detail(self, role: str) -> str:
        rows = sorted(((label, v) for (r, label), v in self.sent.items() if r == role), key=lambda kv: -kv[1])
        return ", ".join(f"{label} {v / max(1, self.units):.2f}" for label, v in rows)


_MONITOR_LINE = re.compile(r'^([\d.]+) \[\d+ ([^\]]*)\] "([^"]*)"(?: "([^"]*)")?')
#: one command seen by MONITOR: (client address or "lua", command, first argument)
Entry = tuple[str, str, str]


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
                    self.entries.append((who, command, arg))
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
    """sha1 -> script name for Vow's scripts (empty if the layout changed)."""
    try:
        from vow.coordinator.scripts import SCRIPT_NAMES, source
    except ImportError:
        return {}
    out: dict[str, str] = {}
    for name in SCRIPT_NAMES:
        try:
            out[hashlib.sha1(source(name).encode()).hexdigest()] = name
        except Exception:  # a script renamed by a newer Vow: shown by its sha
            continue
    return out


def role_of(name: str) -> str | None:
    if name.startswith("bench-client"):
        return "client"
    if name.startswith("bench-worker"):
        return "worker"
    if name in ("bench-probe", "bench-monitor"):
        return None
    return "other"


def attribute(entries: list[Entry], names: dict[str, str], units: int) -> Trace:
    """Count what each role sent (``names``: client address -> client name)."""
    shas = script_names()
    trace = Trace(units)
    for who, command, arg in entries:
        if who == "lua":
            trace.inner += 1
            continue
        role = role_of(names.get(who, ""))
        if role is None:
            continue
        label = command.upper()
        if label in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"):
            label = f"script {shas.get(arg.lower(), arg[:8])}"
        trace.sent[(role, label)] += 1
    return trace
