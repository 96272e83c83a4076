"""What ``RedisStore(replicas=N)`` and ``local_fsync=True`` cost per call, measured side by side.

Starts a primary (AOF everysec) and one replica on loopback, then times sequential creates (one
script call each) with no wait, with ``WAIT 1`` (``replicas=1``), and with ``WAITAOF 1 0``
(``local_fsync=True``). Run with ``make bench`` or ``python bench/durability.py [--calls N]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from vow import RedisStore
from vow.processes import wait_until
from vow.server import ServerProcess

FAR_MS = 3_600_000


def _synced(replica: ServerProcess) -> bool:
    client = replica.client(socket_timeout=2)
    try:
        return client.info("replication").get("master_link_status") == "up"
    finally:
        client.close()


def measure(url: str, calls: int, **options: object) -> tuple[float, float, float]:
    """(calls/s, p50 ms, p99 ms) of sequential creates."""
    store = RedisStore(url, **options)  # type: ignore[arg-type]
    store.create(f"warm-up-{options}", store.now() + FAR_MS)
    latencies = []
    started = time.perf_counter()
    for n in range(calls):
        before = time.perf_counter()
        store.create(f"{options}-{n}", store.estimated_now() + FAR_MS)
        latencies.append((time.perf_counter() - before) * 1000)
    elapsed = time.perf_counter() - started
    store.close()
    latencies.sort()
    return calls / elapsed, statistics.median(latencies), latencies[int(len(latencies) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vow-bench-durability-"))
    primary = ServerProcess(directory=root / "primary", persistence=True).start()
    replica = ServerProcess(directory=root / "replica",
                            extra_args=["--replicaof", primary.host, str(primary.port)]).start()
    try:
        wait_until(lambda: _synced(replica), timeout=20, what="the replica to sync")
        print(f"sequential creates, {args.calls} each, primary (AOF everysec) + 1 replica on loopback")
        print(f"{'option':<34} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
        for label, options in (
            ("none", {}),
            ("replicas=1 (WAIT 1)", {"replicas": 1}),
            ("local_fsync=True (WAITAOF 1 0)", {"local_fsync": True}),
        ):
            rate, p50, p99 = measure(primary.url, args.calls, **options)
            print(f"{label:<34} {rate:>8,.0f} {p50:>7.2f} {p99:>7.2f}")
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)  # the servers' directories are ours, not theirs


if __name__ == "__main__":
    main()
