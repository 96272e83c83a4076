"""Real worker processes for tests, and waiting on conditions with a deadline (never sleeping).

Both build on ``vow.processes`` (the same helpers ``vow demo`` uses)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from vow import processes
from vow.processes import ManagedProcess

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "") -> T:
    """``vow.processes.wait_until`` as a test failure: an AssertionError at the deadline."""
    try:
        return processes.wait_until(predicate, timeout=timeout, what=what, interval=interval)
    except processes.DeadlineExceeded as e:
        raise AssertionError(str(e)) from None


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie answers signal 0 but counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


class WorkerProcess(ManagedProcess):
    """``python -m tests.apps APP`` in a subprocess; output collected line by line."""

    def __init__(self, app: str, url: str, *extra: str) -> None:
        super().__init__(
            f"worker {app}", [sys.executable, "-m", "tests.apps", app, "--url", url, *extra],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, new_session=False,
        )
        ready = wait_until(self._ready, timeout=30, what=f"worker {app} to be ready")
        self.consumer = ready.split()[1]

    def _ready(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited early ({self.process.returncode}): {self.output}")
        return self.first_line(lambda line: line.startswith("ready "))

    def stop(self, grace_s: float = 20) -> int:
        return super().stop(grace_s)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
