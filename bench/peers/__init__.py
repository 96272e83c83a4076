"""The peers Vow is measured against, one module each (``bench.run.SYSTEMS`` names them).

Each module is both sides of its peer: at import it builds the library's app objects (broker,
queue, tasks) from ``BENCH_REDIS_URL`` (db 0) and ``BENCH_RESULT_URL`` (db 1, for result
backends), which is what the peer's own worker CLI imports in the worker processes; and it defines
the :class:`bench.system.System` the producer uses. Completion is read from the peer's own state
in Redis (its queue drained and acknowledged, or its results stored), never from anything the
no-op job writes itself.
"""

__all__: list[str] = []
