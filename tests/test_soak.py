"""The soak run, bounded (tests/soak.py; full size with ``make soak``): 50,000 remote calls and
10,000 three-step workflows through 2 worker processes with a 1 s retention leave Redis with the
keys it started with and its used_memory within 5% of the start."""

from __future__ import annotations

import os

import pytest

from tests.soak import run_soak
from vow.server import ServerProcess

CALLS = int(os.environ.get("VOW_SOAK_CALLS", "50000"))
WORKFLOWS = int(os.environ.get("VOW_SOAK_WORKFLOWS", "10000"))


@pytest.mark.timeout(400)
def test_memory_and_keys_return_to_the_start_after_a_soak(redis_server: ServerProcess) -> None:
    server = ServerProcess(binary=redis_server.binary)  # its own server: nothing else in its memory
    server.start()
    try:
        result = run_soak(server.url, CALLS, WORKFLOWS, timeout=300, sample_s=2.0)
    finally:
        server.stop()
    print(result.summary())
    assert result.end_keys == result.start_keys
    assert abs(result.memory_change) <= 0.05, result.summary()
    assert result.peak_memory > result.start_memory  # the run did hold records for a while
