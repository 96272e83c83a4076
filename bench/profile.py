"""py-spy sampling of running processes, and the top functions of what it recorded.

``py-spy record --gil --format raw``: only the thread holding the GIL is sampled, i.e. Python CPU
time (py-spy's idle detection does not work on every VM, so plain samples would count blocked
threads too). Each target's collapsed stacks land in ``DIR/<name>.txt``; :func:`top_functions`
turns one into the functions with the largest self and inclusive shares of the samples.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["Profiler", "top_functions"]


def _py_spy() -> str | None:
    return shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))


class Profiler:
    """py-spy attached to each (name, pid) until :meth:`stop`, which returns the summaries."""

    def __init__(self, outdir: Path, targets: list[tuple[str, int]], rate: int) -> None:
        self.outdir = outdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.error = ""
        exe = _py_spy()
        if exe is None:
            self.error = "py-spy not found (it is in the bench extra)"
            return
        outdir.mkdir(parents=True, exist_ok=True)
        for name, pid in targets:
            cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--gil",
                   "--format", "raw", "--output", str(outdir / f"{name}.txt")]
            with open(outdir / f"{name}.log", "wb") as log:
                self.procs.append((name, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)))

    def stop(self) -> dict[str, Any]:
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        out: dict[str, Any] = {"error": self.error} if self.error else {}
        for name, p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            path = self.outdir / f"{name}.txt"
            if path.exists():
                out[name] = top_functions(path)
            else:
                log = (self.outdir / f"{name}.log").read_text(errors="replace")[-300:]
                out[name] = {"error": f"no profile written: {log.strip()}"}
        return out


def top_functions(path: Path, limit: int = 12) -> dict[str, Any]:
    """Self and inclusive shares of the samples of a py-spy raw (collapsed stacks) file."""
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
        return {"samples": 0}
    vow = [(k, v) for k, v in inclusive.most_common() if "vow/" in k or "(coordinator/" in k or "(worker/" in k]
    return {
        "samples": total,
        "self": [[k, round(v / total, 3)] for k, v in own.most_common(limit)],
        "inclusive_vow": [[k, round(v / total, 3)] for k, v in vow[:limit]],
        "inclusive_redis_py": round(inclusive["Redis.execute_command (redis/client.py)"] / total, 3),
    }
