"""What every peer module needs: the URLs, the concurrency, the installed version."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

__all__ = ["CONCURRENCY", "RESULT_URL", "URL", "dist_version"]

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULT_URL = os.environ.get("BENCH_RESULT_URL", "redis://127.0.0.1:6379/1")
#: the Vow workers' concurrency, used where a peer's default would be much lower
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))


def dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"
