"""A worker's commits: the group commits that settle finished executions, and the value a
finished execution commits.

Settles of one batch key (``TaskStore.batch_key``: all of them on a standalone server, one
partition's on a cluster) go through one :class:`~vow.worker.batching.GroupCommit`: executions
finishing while a settle is in flight are settled together in the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from vow.coordinator.errors import ValidationError
from vow.coordinator.executions import Settlement
from vow.coordinator.lua import Answer
from vow.coordinator.records import State
from vow.coordinator.store import RedisStore

from .batching import GroupCommit
from .codec import encode_error, encode_value
from .errors import EncodingError
from .executor import Completed, Errored

__all__ = ["Commits"]


class Commits:
    """The settles of one worker (``consumer`` of ``group``), in batches of at most ``limit``."""

    def __init__(self, store: RedisStore, group: str, consumer: str, limit: int) -> None:
        self.store = store
        self.group = group
        self.consumer = consumer
        self.limit = limit
        self._lock = threading.Lock()
        self._commits: dict[int, GroupCommit[Settlement, Answer]] = {}

    def settle(self, settlement: Settlement) -> Answer:
        """Settle one finished execution, in a batch with the others finishing meanwhile."""
        key = self.store.tasks.batch_key(settlement.promise_id)
        commit = self._commits.get(key)
        if commit is None:
            with self._lock:
                commit = self._commits.setdefault(key, GroupCommit(self._send, limit=self.limit))
        return commit.submit(settlement)

    def _send(self, batch: Sequence[Settlement]) -> list[Answer]:
        return self.store.tasks.settle_many(batch, group=self.group, consumer=self.consumer)

    def final_value(self, result: Completed | Errored) -> tuple[State, Any]:
        """The state and value an execution that came to ``result`` is settled with (a value that
        cannot be encoded, or is over the store's limit, rejects it with that error)."""
        if isinstance(result, Completed):
            try:
                value = encode_value(result.value)
            except EncodingError as e:
                return State.REJECTED, encode_error(e)
            limit = self.store.max_data_bytes
            if value.data is not None and len(value.data) > limit:
                too_big = ValidationError(f"the function returned {len(value.data)} bytes; the limit is {limit}")
                return State.REJECTED, encode_error(too_big)
            return State.RESOLVED, value
        return State.REJECTED, encode_error(result.error)
