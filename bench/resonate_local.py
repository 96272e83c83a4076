"""Resonate's Python SDK in memory: three-step local workflows per second, for comparison.

``python -m bench.resonate_local --workflows N --runs R`` prints one JSON object. The workflow has
the shape of ``bench.vow_app.three_steps`` (three ``yield ctx.lfc(step, i)``); the store is
``resonate.stores.LocalStore`` (in this process, in memory, nothing durable). Each run starts N
workflows with ``run`` and waits for every result, timed from the first start to the last result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator
from importlib.metadata import version
from typing import Any

__all__ = ["main"]


def step(ctx: Any, i: int) -> int:
    return i


def three_steps(ctx: Any) -> Generator[Any, Any, int]:
    a = yield ctx.lfc(step, 1)
    b = yield ctx.lfc(step, 2)
    c = yield ctx.lfc(step, 3)
    return int(a) + int(b) + int(c)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resonate_local")
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    from resonate import Resonate
    from resonate.stores import LocalStore

    resonate = Resonate(store=LocalStore())
    workflow = resonate.register(three_steps)
    rates = []
    try:
        for h in [workflow.run(f"warm-{i}") for i in range(100)]:
            h.result()
        for r in range(args.runs):
            t0 = time.perf_counter()
            handles = [workflow.run(f"run{r}-{i}") for i in range(args.workflows)]
            values = [h.result() for h in handles]
            rates.append(args.workflows / (time.perf_counter() - t0))
            if any(v != 6 for v in values):
                raise RuntimeError("a workflow returned something else than 6")
    finally:
        resonate.stop()
    print(json.dumps({"version": version("resonate-sdk"), "workflows_per_s": rates}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
