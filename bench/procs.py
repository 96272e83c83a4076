"""Processes of the benchmark: starting and stopping them, their CPU time, who is connected.

Every worker process runs in its own session (its own process group), receives SIGTERM when the
benchmark process dies (``PR_SET_PDEATHSIG``), and its process group is listed in a file that a
watchdog child reads: if the benchmark is killed outright, the watchdog stops every listed group
and the server. CPU time is read from ``/proc`` for a process and all its descendants (dramatiq's
and taskiq's CLIs fork their workers), and for the whole machine from ``/proc/stat``, so a
measurement can say how busy *other* processes kept the CPUs meanwhile.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLK_TCK", "Children", "CpuMeter", "CpuReading", "connected_pids", "cpu_seconds", "descendants",
    "machine_busy_seconds", "memory_kb",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: seconds a process group gets after SIGTERM before it is killed
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1
#: run by a child process: once the benchmark (pid argv[1]) is gone, SIGTERM every process group
#: listed in the file argv[2] and the server (pid argv[3]), SIGKILL what is left 5 s later, then
#: remove the directories argv[4:] (logs, the server's)
WATCHDOG = """
import os, shutil, signal, sys, time
parent, listing, server, dirs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while os.getppid() == parent:
    time.sleep(0.5)
def targets():
    try:
        groups = [int(x) for x in open(listing).read().split()]
    except OSError:
        groups = []
    return groups
for sig in (signal.SIGTERM, signal.SIGKILL):
    for g in targets():
        try:
            os.killpg(g, sig)
        except OSError:
            pass
    try:
        os.kill(server, sig)
    except OSError:
        pass
    time.sleep(5)
for path in dirs:
    shutil.rmtree(path, ignore_errors=True)
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def descendants(pids: Iterable[int]) -> list[int]:
    """The given processes and all their (living) descendants."""
    parents = _parents()
    found = [p for p in pids if p in parents]
    seen = set(found)
    i = 0
    while i < len(found):
        for child, parent in parents.items():
            if parent == found[i] and child not in seen:
                seen.add(child)
                found.append(child)
        i += 1
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user / nice
    return (sum(fields) - idle - guest) / CLK_TCK


def connected_pids(pids: Iterable[int], port: int) -> set[int]:
    """Which of ``pids`` hold a TCP connection to 127.0.0.1:``port`` (from /proc/net/tcp)."""
    inodes: set[str] = set()
    want = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[2].endswith(want) or cols[2].upper().endswith(f":{port:04X}"):
                        inodes.add(cols[9])
        except OSError:
            pass
    out: set[int] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    out.add(pid)
                    break
        except OSError:
            pass
    return out


@dataclass(frozen=True)
class CpuReading:
    """CPU used over one measurement: ours by role, and everything else on the machine."""

    seconds: float
    roles: dict[str, float]
    machine: float

    @property
    def ours(self) -> float:
        return sum(self.roles.values())

    @property
    def others_cores(self) -> float:
        """Cores kept busy by processes that are not ours (0-N)."""
        return max(0.0, self.machine - self.ours) / self.seconds if self.seconds > 0 else 0.0

    @property
    def others_percent(self) -> float:
        """Other processes' CPU as a share of the whole machine (all cores), in %."""
        return 100.0 * self.others_cores / (os.cpu_count() or 1)


class CpuMeter:
    """Start / stop CPU accounting of named groups of processes (each with its descendants)."""

    def __init__(self, roles: dict[str, Sequence[int]]) -> None:
        self.roles = {role: descendants(pids) for role, pids in roles.items()}
        self._start = self._read()

    def _read(self) -> tuple[float, dict[str, float], float]:
        return (time.perf_counter(), {r: sum(cpu_seconds(p) for p in pids) for r, pids in self.roles.items()},
                machine_busy_seconds())

    def stop(self) -> CpuReading:
        t1, r1, m1 = self._read()
        t0, r0, m0 = self._start
        return CpuReading(t1 - t0, {r: r1[r] - r0[r] for r in r1}, m1 - m0)


class Children:
    """The processes this benchmark starts, each in its own process group, all stopped by stop()."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.listing = logdir / "process-groups"
        self.listing.touch()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.watchdog: subprocess.Popen[bytes] | None = None

    def watch(self, server_pid: int, *dirs: Path) -> None:
        """Start the watchdog: it stops every listed process group and the server if we die, and
        removes ``dirs`` and the log directory."""
        cmd = [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self.listing), str(server_pid),
               str(self.logdir), *map(str, dirs)]
        self.watchdog = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)

    def spawn(self, name: str, cmd: Sequence[str], *, cwd: Path | None = None,
              env: dict[str, str] | None = None, inherit_stderr: bool = False) -> subprocess.Popen[bytes]:
        """Start a process in its own session; its output goes to ``<logdir>/<name>.log`` (with
        ``inherit_stderr``, its stderr stays ours: progress lines)."""
        with open(self.logdir / f"{name}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=None if inherit_stderr else subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        with open(self.listing, "a") as f:
            f.write(f"{proc.pid}\n")
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 1500) -> str:
        try:
            return (self.logdir / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self, names: Iterable[str]) -> None:
        """Raise if one of these processes has exited (with the end of its log)."""
        for name in names:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}: {self.log_tail(name, 600)}")

    def stop(self, names: Iterable[str] | None = None, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process groups, SIGKILL those still there after the grace period."""
        chosen = list(self.procs) if names is None else [n for n in names if n in self.procs]
        for name in chosen:
            _signal_group(self.procs[name], signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name in chosen:
            proc = self.procs.pop(name)
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            _signal_group(proc, signal.SIGKILL)  # children left in the group (forked workers)

    def close(self) -> None:
        self.stop()
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.kill()
            self.watchdog.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass
