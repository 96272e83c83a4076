"""Benchmarks of Vow against its peers (``python -m bench``; method and figures in bench/README.md).

A benchmark, not a test: nothing here is asserted. ``bench/durability.py`` measures what
``RedisStore(replicas=N)`` and ``local_fsync=True`` cost.
"""

__all__: list[str] = []
