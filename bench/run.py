"""One system's measurement, run in its own process: ``python -m bench.run NAME SETTINGS OUT``.

The benchmark's main process starts one of these per system (so each system's client libraries,
event loop and failures stay in their own process) and reads the JSON it writes to ``OUT``: a list
of rows (Vow adds its batch row). A system whose package is missing, or that fails while it is
measured, is written as a failed row with the reason.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from .procs import Children
from .system import Settings, System, SystemResult, log, measure

__all__ = ["SYSTEMS", "load", "main", "settings_from_json", "settings_to_json"]

#: every system the benchmark knows: name -> module:class (relative to this package)
SYSTEMS = {
    "vow": "vowsystem:VowSystem",
    "floor": "floor:FloorSystem",
    "dramatiq": "peers.dramatiq_peer:DramatiqPeer",
    "taskiq-list": "peers.taskiq_peer:TaskiqListPeer",
    "taskiq-stream": "peers.taskiq_peer:TaskiqStreamPeer",
    "saq": "peers.saq_peer:SaqPeer",
    "streaq": "peers.streaq_peer:StreaqPeer",
    "docket": "peers.docket_peer:DocketPeer",
    "celery": "peers.celery_peer:CeleryPeer",
    "arq": "peers.arq_peer:ArqPeer",
    "rq": "peers.rq_peer:RqPeer",
}


def load(name: str) -> type[System]:
    module, _, attr = SYSTEMS[name].partition(":")
    cls: type[System] = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    return cls


def settings_to_json(s: Settings) -> str:
    d = dict(vars(s))
    d["logdir"] = str(s.logdir)
    d["py_spy"] = None if s.py_spy is None else str(s.py_spy)
    return json.dumps(d)


def settings_from_json(text: str) -> Settings:
    d: dict[str, Any] = json.loads(text)
    d["logdir"] = Path(d["logdir"])
    d["py_spy"] = None if d["py_spy"] is None else Path(d["py_spy"])
    return Settings(**d)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(name: str, settings: Settings) -> list[SystemResult]:
    result = SystemResult(name)
    rows = [result]
    # the peer modules read these at import, here (the producer) as in their workers
    os.environ.update(BENCH_REDIS_URL=settings.url_db(0), BENCH_RESULT_URL=settings.url_db(1),
                      BENCH_CONCURRENCY=str(settings.concurrency))
    try:
        system = load(name)(settings)
    except ImportError as e:
        result.status, result.reason = "failed", f"not installed: {e}"
        return rows
    result.version, result.notes = system.version(), system.notes
    children = Children(settings.logdir)
    try:
        if name == "vow":
            from .vowsystem import VowSystem, vow_extras

            assert isinstance(system, VowSystem)
            workers = [f"vow-worker-{i + 1}" for i in range(settings.workers)]
            before, after = vow_extras(system, result, rows, lambda: [children.procs[w].pid for w in workers])
            measure(system, children, result, before=before, after=after)
        else:
            measure(system, children, result)
    except Exception as e:  # any failure of the system under test is reported, not raised
        result.status, result.reason = "failed", f"{type(e).__name__}: {e}"[:400]
        log(f"{name}: failed\n{traceback.format_exc()}")
    finally:
        children.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    name, settings_json, out = (argv if argv is not None else sys.argv[1:])[:3]
    signal.signal(signal.SIGTERM, _raise_interrupt)
    settings = settings_from_json(settings_json)
    log(f"{name}: measuring (pid {os.getpid()})")
    try:
        rows = run(name, settings)
    except KeyboardInterrupt:  # stopped by the benchmark: its processes are stopped already
        log(f"{name}: interrupted")
        return 130
    Path(out).write_text(json.dumps([r.as_json() for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
