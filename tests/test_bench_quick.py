"""``python -m bench --quick``: every Vow figure is produced, and a missing peer is reported.

Runs the benchmark as a subprocess, the way ``make bench`` does, with small sizes. Nothing about
speed is asserted (the machine is shared): only that each figure is there and is a number, and
that a system that cannot be measured is a failed row with a reason, never left out.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
#: a cheap peer, measured too when it happens to be installed (the test venv has none)
CHEAP_PEER = "rq"
VOW_FIGURES = ("jobs_per_s", "latency_p50_ms", "latency_p99_ms", "workflows_per_s")
VOW_EXTRAS = (
    "memory_per_recorded_step_bytes", "memory_per_completed_call_bytes", "memory_per_suspended_seed_workflow_bytes",
    "worker_cpu_percent_while_suspended", "round_trips_per_call", "round_trips_per_local_step",
    "round_trips_per_3step_workflow", "script_calls_sent_per_call", "commands_executed_per_call",
    "script_calls_per_call",
)
HITL = ("step_p50_ms", "step_p99_ms", "result_p50_ms", "result_p99_ms")


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.timeout(240)
def test_quick_bench_reports_every_vow_figure_and_failed_peers(tmp_path: Path) -> None:
    peer_installed = importlib.util.find_spec(CHEAP_PEER) is not None
    only = ["vow", "no-such-system"] + ([CHEAP_PEER] if peer_installed else [])
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", ",".join(only), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {row["name"]: row for row in results["systems"]}

    vow = rows["vow"]
    assert vow["status"] == "ok", vow["reason"]
    for name in VOW_FIGURES:
        figure = vow["figures"][name]
        assert all(number(figure[k]) for k in ("median", "min", "max")), (name, figure)
        assert figure["min"] <= figure["median"] <= figure["max"]
    for name in VOW_EXTRAS:
        assert number(vow["extra"][name]), (name, vow["extra"].get(name))
    for size in ("hitl_small", "hitl_large"):
        assert all(number(vow["extra"][size][k]) for k in HITL), vow["extra"][size]
    assert vow["extra"]["hitl_large_n"] > vow["extra"]["hitl_small_n"]
    assert "vow-batch" in rows  # measured, or failed because this Vow has no rpc_many: never dropped
    assert rows["vow-batch"]["status"] == "ok" or "rpc_many" in rows["vow-batch"]["reason"]

    # Resonate's SDK is a bench extra: measured when installed, else a failed row with the reason
    resonate = rows["resonate"]
    if resonate["status"] == "ok":
        assert number(resonate["figures"]["workflows_per_s"]["median"])
    else:
        assert resonate["reason"]

    bogus = rows["no-such-system"]
    assert bogus["status"] == "failed" and "unknown system" in bogus["reason"]
    assert "no-such-system" in done.stdout and "FAILED" in done.stdout
    if peer_installed:
        assert rows[CHEAP_PEER]["status"] == "ok", rows[CHEAP_PEER]["reason"]
    assert results["goals"], "the goals are evaluated"
    assert all(isinstance(g["measured"], str) for g in results["goals"])


def test_a_peer_that_is_not_installed_is_a_failed_row(tmp_path: Path) -> None:
    """bench.run with a peer whose package cannot be imported writes a failed row, not nothing
    (the package is made unimportable in the child, so this holds whatever is installed)."""
    code = (
        "import json, sys; from pathlib import Path; sys.modules['dramatiq'] = None;"
        "from bench.run import run; from bench.system import Settings;"
        "s = Settings(url='redis://127.0.0.1:1/0', port=1, jobs=1, runs=1, calls=1, workers=1, concurrency=1,"
        f" root_pid=1, logdir=Path({str(tmp_path)!r}));"
        "print(json.dumps([r.as_json() for r in run('dramatiq', s)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["name"] == "dramatiq" and row["status"] == "failed", row
    assert row["reason"].startswith("not installed"), row
