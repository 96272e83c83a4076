"""The soak run: many remote calls and three-step workflows through two worker processes with a
short retention; Redis memory and key count must come back to where they started.

``tests/test_soak.py`` runs it bounded (50,000 calls and 10,000 workflows); ``make soak`` runs it
at full size (``python -m tests.soak --calls 1000000``), sampling ``used_memory`` every 10 s and
plotting it to ``soak-results/memory.png`` (matplotlib, the ``soak`` extra).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.harness import WorkerProcess, wait_until
from vow import processes
from vow.coordinator import RedisStore, keys
from vow.coordinator.memory import used_memory
from vow.server import ServerProcess

GROUP = "soak"  # tests/apps.py "soak": noop(i), three_steps(i)
RETENTION = "1s"


@dataclass
class SoakResult:
    calls: int
    workflows: int
    seconds: float
    start_memory: int
    peak_memory: int
    end_memory: int
    start_keys: int
    end_keys: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def memory_change(self) -> float:
        return (self.end_memory - self.start_memory) / self.start_memory

    def summary(self) -> str:
        return (
            f"{self.calls:,} calls + {self.workflows:,} three-step workflows in {self.seconds:.0f} s "
            f"through 2 worker processes, retention {RETENTION}: used_memory {self.start_memory:,} B at the "
            f"start, {self.peak_memory:,} B at the peak, {self.end_memory:,} B after expiry "
            f"({self.memory_change:+.1%}); keys {self.start_keys} -> {self.end_keys}"
        )


def _pending(store: RedisStore) -> int:
    pipe = store.client.pipeline(transaction=False)
    for p in range(keys.PARTITIONS):
        pipe.zcard(keys.index(p, "pending"))
    return sum(pipe.execute())


def _expiring(store: RedisStore) -> int:
    pipe = store.client.pipeline(transaction=False)
    for p in range(keys.PARTITIONS):
        pipe.zcard(keys.expiry(p))
    return sum(pipe.execute())


def _keys(store: RedisStore) -> int:
    """Keys in the database, leaving out the sweep's short locks (they come and go each pass)."""
    return sum(1 for k in store.client.keys("*") if not k.endswith(b":sweep"))


def _enqueue(store: RedisStore, prefix: str, calls: int, workflows: int, threads: int = 8) -> None:
    deadline = store.now() + 3_600_000

    def one(i: int) -> None:
        if i < calls:
            store.invoke(f"{prefix}-call-{i}", "noop", [i], group=GROUP, timeout=deadline)
        else:
            store.invoke(f"{prefix}-wf-{i}", "three_steps", [i], group=GROUP, timeout=deadline)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, range(calls + workflows), chunksize=256):
            pass


def _drain(store: RedisStore, timeout: float, on_tick: Callable[[], None] = lambda: None) -> None:
    """Every promise completed and then expired, and nothing left in the streams."""
    def drained() -> bool:
        on_tick()
        return _pending(store) == 0 and _expiring(store) == 0
    wait_until(drained, timeout=timeout, interval=0.5, what="every promise to complete and expire")


def _settled_memory(store: RedisStore, start: int, tolerance: float = 0.05, timeout: float = 30.0) -> int:
    """used_memory once it is back within ``tolerance`` of ``start`` (client buffers of the producer's
    connections shrink a few seconds after their last use), or the last reading at the deadline."""
    readings: list[int] = []

    def settled() -> bool:
        readings.append(used_memory(store))
        return abs(readings[-1] - start) <= tolerance * start

    try:
        processes.wait_until(settled, timeout=timeout, interval=0.5, what="used_memory to settle")
    except processes.DeadlineExceeded:
        pass  # the caller's check reports the last reading
    return readings[-1]


def _steady_memory(store: RedisStore, timeout: float = 30.0) -> int:
    """used_memory once three readings in a row, half a second apart, agree within 0.5% (the
    buffers of connections just used shrink a few seconds later)."""
    readings: list[int] = []

    def steady() -> bool:
        readings.append(used_memory(store))
        last = readings[-3:]
        return len(last) == 3 and max(last) - min(last) <= 0.005 * max(last)

    processes.wait_until(steady, timeout=timeout, interval=0.5, what="used_memory to be steady")
    return readings[-1]


def run_soak(
    url: str, calls: int, workflows: int, timeout: float, sample_s: float = 10.0, workers: int = 2
) -> SoakResult:
    store = RedisStore(url, retention=RETENTION)
    procs = [
        WorkerProcess("soak", url, "--quiet", "--retention", RETENTION, "--concurrency", "16", "--sweep-ms", "200")
        for _ in range(workers)
    ]
    try:
        _enqueue(store, "warm", 200, 50)  # scripts loaded, groups and consumers made
        _drain(store, timeout=60)
        start_keys = _keys(store)
        start_memory = _steady_memory(store)
        samples: list[tuple[float, int]] = [(0.0, start_memory)]
        began = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(sample_s):
                samples.append((time.monotonic() - began, used_memory(store)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _enqueue(store, "soak", calls, workflows)
        _drain(store, timeout=timeout)
        seconds = time.monotonic() - began
        stop.set()
        sampler.join()
        wait_until(lambda: _keys(store) == start_keys, timeout=30, what="the key count to return")
        end_memory = _settled_memory(store, start_memory)
        samples.append((time.monotonic() - began, end_memory))
        return SoakResult(
            calls, workflows, seconds, start_memory, max(m for _, m in samples), end_memory, start_keys,
            _keys(store), samples,
        )
    finally:
        for proc in procs:
            proc.stop()
        store.close()


def plot(result: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in result.samples], [m / 1e6 for _, m in result.samples], marker=".")
    ax.set_xlabel("seconds")
    ax.set_ylabel("Redis used_memory (MB)")
    ax.set_title(f"{result.calls:,} calls + {result.workflows:,} workflows, retention {RETENTION}")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("soak-results"))
    args = parser.parse_args(list(argv) if argv is not None else None)
    args.out.mkdir(parents=True, exist_ok=True)
    with ServerProcess() as server:
        result = run_soak(server.url, args.calls, args.workflows, timeout=6 * 3600)
    print(result.summary())
    (args.out / "soak.json").write_text(json.dumps({**asdict(result), "memory_change": result.memory_change}))
    plot(result, args.out / "memory.png")
    print(f"samples and plot in {args.out}/ (soak.json, memory.png)")


if __name__ == "__main__":
    main()
