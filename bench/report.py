"""The printed report: the machine, the systems' table, Vow's own figures against the issue's goals.

Every figure comes from the results dict that is also written as JSON; the goals are evaluated
here (:func:`goals`) and written to the JSON too.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

__all__ = ["OTHER_CPU_WARN_PERCENT", "goals", "machine", "main", "print_report"]

#: above this share of the machine used by other processes during a measurement, say so
OTHER_CPU_WARN_PERCENT = 10.0
#: rows that are not peers of Vow
NOT_PEERS = {"vow", "vow-batch", "floor", "resonate"}


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0],
            "platform": platform.platform(), "load_average_at_start": load}


def _fig(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    fig: dict[str, Any] | None = row.get("figures", {}).get(name)
    return fig


def _range(fig: dict[str, Any] | None, fmt: str) -> str:
    if fig is None:
        return "-"
    if fig["min"] == fig["max"]:
        return format(fig["median"], fmt)
    return f"{format(fig['median'], fmt)} ({format(fig['min'], fmt)}-{format(fig['max'], fmt)})"


def _others(row: dict[str, Any]) -> float | None:
    shares = [p for fig in row.get("figures", {}).values() for p in fig.get("other_processes_cpu_percent", [])]
    return max(shares) if shares else None


def _row(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    for row in results["systems"]:
        if row["name"] == name:
            found: dict[str, Any] = row
            return found
    return None


def _ok(row: dict[str, Any] | None) -> bool:
    return row is not None and row["status"] == "ok"


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals with the measured figure, and whether each is met."""
    vow = _row(results, "vow")
    if not _ok(vow):
        return []
    assert vow is not None
    x = vow["extra"]
    peers = [r for r in results["systems"] if r["name"] not in NOT_PEERS and _ok(r)]
    out: list[dict[str, Any]] = []

    def add(goal: str, measured: str, met: bool | None) -> None:
        out.append({"goal": goal, "measured": measured, "met": met})

    rate = vow["figures"]["jobs_per_s"]["median"]
    if peers:
        best = max(peers, key=lambda r: r["figures"]["jobs_per_s"]["median"])
        b = best["figures"]["jobs_per_s"]["median"]
        add("remote no-op calls/s >= 2x the best peer", f"{rate:,.0f}/s vs {best['name']} {b:,.0f}/s = {rate / b:.2f}x",
            rate >= 2 * b)
        quick = min(peers, key=lambda r: r["figures"]["latency_p50_ms"]["median"])
        q = quick["figures"]["latency_p50_ms"]["median"]
        p50 = vow["figures"]["latency_p50_ms"]["median"]
        add("sequential latency p50 <= the best peer's p50", f"{p50:.2f} ms vs {quick['name']} {q:.2f} ms", p50 <= q)
    else:
        add("remote no-op calls/s >= 2x the best peer", f"{rate:,.0f}/s; no peer measured", None)
    p99 = vow["figures"]["latency_p99_ms"]["median"]
    add("sequential latency p99 <= 1.5 ms", f"{p99:.2f} ms", p99 <= 1.5)
    wf = vow["figures"]["workflows_per_s"]["median"]
    res = _row(results, "resonate")
    if _ok(res):
        assert res is not None
        r = res["figures"]["workflows_per_s"]["median"]
        add("3-step local workflows/s >= 2x Resonate in memory", f"{wf:,.0f}/s vs {r:,.0f}/s = {wf / r:.2f}x",
            wf >= 2 * r)
    else:
        add("3-step local workflows/s >= 2x Resonate in memory", f"{wf:,.0f}/s; Resonate not measured", None)
    small, large = x["hitl_small"], x["hitl_large"]
    add(f"HITL resume p50 <= 1 ms, p99 <= 5 ms ({x['hitl_small_n']:,} suspended)",
        f"p50 {small['step_p50_ms']:.2f} ms, p99 {small['step_p99_ms']:.2f} ms",
        small["step_p50_ms"] <= 1 and small["step_p99_ms"] <= 5)
    r50 = large["step_p50_ms"] / small["step_p50_ms"] if small["step_p50_ms"] > 0 else float("inf")
    r99 = large["step_p99_ms"] / small["step_p99_ms"] if small["step_p99_ms"] > 0 else float("inf")
    add(f"HITL resume with {x['hitl_large_n']:,} suspended <= 1.2x the {x['hitl_small_n']:,} figure (p50 and p99)",
        f"p50 {large['step_p50_ms']:.2f} ms ({r50:.2f}x), p99 {large['step_p99_ms']:.2f} ms ({r99:.2f}x)",
        r50 <= 1.2 and r99 <= 1.2)
    mem = x["memory_per_suspended_seed_workflow_bytes"]
    add("memory per suspended seed workflow <= 1 KiB", f"{mem:,.0f} B", mem <= 1024)
    step = x["memory_per_recorded_step_bytes"]
    add("memory per recorded step <= 400 B", f"{step:,.0f} B", step <= 400)
    cpu = x["worker_cpu_percent_while_suspended"]
    add(f"worker CPU while {x['suspended_total']:,} suspended ~0 %", f"{cpu:.1f} % of a core (both workers)",
        cpu < 1.0)
    rt = x["round_trips_per_call"]
    add("Redis round trips per remote call <= 2 (all processes)", f"{rt:.2f}", rt <= 2)
    lrt = x["round_trips_per_local_step"]
    add("Redis round trips per local step <= 1 (amortised)", f"{lrt:.2f}", lrt <= 1)
    return out


def print_report(results: dict[str, Any]) -> None:
    m, srv = results["machine"], results["server"]
    aof = srv["config"].get("appendonly") == "yes"
    persistence = f"AOF {srv['config'].get('appendfsync')}" if aof else "persistence off"
    label = f" [{results['label']}]" if results["label"] else ""
    s = results["settings"]
    print(f"\nVow benchmark{label} {results['started']} UTC: Valkey {srv['version']} ({persistence}); "
          f"{m['cpus']} CPUs {m['cpu_model']}; Python {m['python']}")
    print(f"protocol: {s['workers']} worker processes per system, {s['jobs']:,} no-op jobs enqueued one by one from "
          f"one producer (first enqueue -> last completion); {s['calls']} sequential calls per latency run; "
          f"median of {s['runs']} run(s) (min-max)\n")
    head = (f"{'system':<14} {'version':<13} {'no-op jobs/s':<24} {'enqueue alone/s':<16} {'seq p50 ms':<24} "
            f"{'seq p99 ms':<24} {'other CPU':>9}")
    print(head)
    print("-" * len(head))
    warned = []
    for row in results["systems"]:
        if row["name"] == "resonate":
            continue
        if row["status"] != "ok":
            print(f"{row['name']:<14} {row['version']:<13} FAILED: {row['reason']}")
            continue
        others = _others(row)
        if others is not None and others > OTHER_CPU_WARN_PERCENT:
            warned.append(row["name"])
        shown = "-" if others is None else f"{others:.0f} %"
        enq = _fig(row, "enqueue_per_s")
        print(f"{row['name']:<14} {row['version']:<13} {_range(_fig(row, 'jobs_per_s'), ',.0f'):<24} "
              f"{'-' if enq is None else format(enq['median'], ',.0f'):<16} "
              f"{_range(_fig(row, 'latency_p50_ms'), '.2f'):<24} {_range(_fig(row, 'latency_p99_ms'), '.2f'):<24} "
              f"{shown:>9}")
    print("(other CPU: the most the machine's other processes used of all its CPUs during any run of that row)")
    for row in results["systems"]:
        if row["status"] == "ok" and row["notes"]:
            print(f"  {row['name']}: {row['notes']}")
    print_vow(results)
    if warned:
        print(f"\nWARNING: other processes kept more than {OTHER_CPU_WARN_PERCENT:.0f} % of the CPUs busy while "
              f"measuring {', '.join(warned)}: those figures are low; run again on a quiet machine.")


def print_vow(results: dict[str, Any]) -> None:
    vow = _row(results, "vow")
    if not _ok(vow):
        return
    assert vow is not None
    x = vow["extra"]
    res = _row(results, "resonate")
    print("\nVow's own figures")
    wf = _range(_fig(vow, "workflows_per_s"), ",.0f")
    if _ok(res):
        assert res is not None
        print(f"  3-step local workflows/s          {wf}   Resonate SDK {res['version']} in memory: "
              f"{_range(_fig(res, 'workflows_per_s'), ',.0f')}")
    else:
        print(f"  3-step local workflows/s          {wf}   Resonate: FAILED {res['reason'] if res else 'not run'}")
    for size in ("small", "large"):
        h = x[f"hitl_{size}"]
        print(f"  HITL resume, {x[f'hitl_{size}_n']:>7,} suspended   resolve -> next step runs "
              f"p50 {h['step_p50_ms']:.2f} ms, p99 {h['step_p99_ms']:.2f} ms;  "
              f"-> Handle.result() p50 {h['result_p50_ms']:.2f}, p99 {h['result_p99_ms']:.2f} ms")
    print(f"  Redis memory                      {x['memory_per_suspended_seed_workflow_bytes']:,.0f} B per suspended "
          f"seed workflow; {x['memory_per_recorded_step_bytes']:,.0f} B per recorded step; "
          f"{x['memory_per_completed_call_bytes']:,.0f} B per completed call")
    print(f"  worker CPU, {x['suspended_total']:,} suspended   {x['worker_cpu_percent_while_suspended']:.2f} % of one "
          f"core (both workers, {x['worker_cpu_window_s']:.1f} s)")
    detail = x["round_trips_per_call_detail"]
    print(f"  round trips per remote call       {x['round_trips_per_call']:.2f} sent by all processes "
          f"({x['script_calls_sent_per_call']:.2f} script calls); client: {detail['client']}; "
          f"workers: {detail['worker']}")
    if "background_round_trips_per_call" in x:
        print(f"    of which by the clock           {x['background_round_trips_per_call']:.2f} per call: what the "
              f"workers sent in an idle window as long ({x['background_detail']['worker'] or 'nothing'})")
    print(f"  round trips per 3-step workflow   {x['round_trips_per_3step_workflow']:.2f}; per local step "
          f"{x['round_trips_per_local_step']:.2f} (amortised: (workflow - call) / 3); sequential call + result "
          f"{x['round_trips_per_sequential_call_with_result']:.2f}")
    print(f"  commands executed (INFO)          {x['commands_executed_per_call']:.2f} per call "
          f"({x['script_calls_per_call']:.2f} script calls), {x['commands_executed_per_3step_workflow']:.2f} per "
          f"3-step workflow ({x['script_calls_per_3step_workflow']:.2f} script calls)")
    for unit in ("call", "3step_workflow"):
        cpu = x.get(f"cpu_us_per_{unit}")
        if cpu:
            print(f"  CPU per {unit.replace('3step_', '3-step '):<24}  "
                  + ", ".join(f"{role} {us:,.0f} µs" for role, us in cpu.items()))
    spy = x.get("py_spy")
    if spy:
        print("\npy-spy (--gil: Python CPU), top self time:")
        for name, prof in spy.items():
            if isinstance(prof, dict) and prof.get("samples"):
                print(f"  {name} ({prof['samples']} samples): "
                      + "; ".join(f"{share:.0%} {fn}" for fn, share in prof["self"][:8]))
                print("    Vow inclusive: " + "; ".join(f"{share:.0%} {fn}" for fn, share in prof["inclusive_vow"][:6])
                      + f"; redis-py execute_command {prof['inclusive_redis_py']:.0%}")
            else:
                print(f"  {name}: {prof}")
    print("\nGoals (issue 13)")
    for g in results.get("goals") or goals(results):
        met = {True: "met", False: "MISSED", None: "?"}[g["met"]]
        print(f"  {met:<7} {g['goal']}: {g['measured']}")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report PATH``: print a saved run again (its goals evaluated anew)."""
    import json
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.report PATH.json", file=sys.stderr)
        return 2
    results = json.loads(Path(args[0]).read_text())
    results["goals"] = goals(results)
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
