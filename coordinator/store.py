"""``RedisStore``: durable promises in Redis. The only module of the promise store that talks to Redis.

Every state change is one call of one single-slot Lua script (``coordinator/scripts``), so a
create is one round trip and a resolve is one round trip. Every script is idempotent under a
resend: each request carries a random request id that the record remembers.

The clock: by default every script reads the server's ``TIME`` (one clock for every worker,
whatever their own clocks say). A store built with ``clock=`` passes that time into every script
instead (tests use it to move time by hand).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import keys
from .connection import connect, redacted, resolve_url, translate_errors
from .errors import AlreadyCompleted, AlreadyExists, CorruptRecord, NotFound, StoreError, ValidationError
from .records import INVOKE_TAG, TIMER_TAG, DurablePromise, State, Value, decode_promise, pack_map
from .scripts import Scripts
from .search import SearchPage, search_promises
from .states import Status
from .tasks import TaskKind, TaskMessage, invoke_target, parse_invoke_data
from .validate import (
    MAX_DATA_BYTES,
    check_data,
    check_group,
    check_id,
    check_ikey,
    check_map,
    check_timeout,
)

__all__ = ["Callback", "Invoke", "RedisStore", "SearchPage"]

#: promises timed out per sweep script call (bounds one script's run time)
SWEEP_BATCH = 500
#: seconds between re-checks of a promise while waiting on its subscription (< socket timeout)
WAIT_RECHECK_S = 2.0


@dataclass(frozen=True, slots=True)
class Invoke:
    """A task message to queue on ``group``'s stream when the promise is created."""

    group: str
    message: bytes


@dataclass(frozen=True, slots=True)
class Callback:
    """Resume ``root_id`` in ``group`` (by queueing ``message``) when the promise completes."""

    root_id: str
    group: str
    message: bytes


@dataclass(frozen=True, slots=True)
class Step:
    """Write the promise already completed: a recorded step result."""

    state: State
    value: Value
    ikey: str | None


def _flag(value: bool) -> str:
    return "1" if value else "0"


def request_id() -> str:
    return os.urandom(12).hex()


class RedisStore:
    """Durable promises stored in Redis (standalone or cluster)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        clock: Callable[[], int] | None = None,
        max_data_bytes: int = MAX_DATA_BYTES,
    ) -> None:
        self.url = resolve_url(url)
        self.clock = clock
        self.max_data_bytes = max_data_bytes
        self._client = client
        self._scripts: Scripts | None = None
        self._lock = threading.RLock()  # `scripts` takes it and then asks for `client`

    # -- connection -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The redis-py client, connected on first use (so constructing a store never blocks)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = connect(self.url)
        return self._client

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            with self._lock:
                if self._scripts is None:
                    self._scripts = Scripts(self.client)
        return self._scripts

    @property
    def display_url(self) -> str:
        return redacted(self.url)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def now(self) -> int:
        """Current time in epoch ms by the store's clock (the server's TIME unless injected)."""
        if self.clock is not None:
            return self.clock()
        with translate_errors(self.url):
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _now_arg(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    def _run(self, name: str, key_list: list[str], args: list[Any]) -> Any:
        with translate_errors(self.url, key_list[0]):
            return getattr(self.scripts, name)(keys=key_list, args=args)

    @staticmethod
    def promise_keys(promise_id: str) -> list[str]:
        p = keys.partition_of(promise_id)
        return [
            keys.promise(promise_id),
            keys.callbacks(promise_id),
            keys.subscriptions(promise_id),
            keys.timeouts(p),
            keys.index(p),
            keys.index(p, "pending"),
            keys.index(p, "resolved"),
            keys.index(p, "rejected"),
        ]

    def _reply(self, promise_id: str, reply: Any) -> tuple[Status, DurablePromise | None]:
        key = keys.promise(promise_id)
        if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[0], bytes):
            raise StoreError(f"unexpected script reply for {key!r}")
        try:
            status = Status(reply[0].decode())
        except ValueError:
            return _special(reply[0].decode(errors="replace"), key), None
        fields = reply[1]
        if status is Status.NOT_FOUND or not fields:
            return status, None
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        return status, decode_promise(key, pairs)

    # -- promises ---------------------------------------------------------------------------

    def create(
        self,
        promise_id: str,
        timeout: int,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> DurablePromise:
        """Create a pending promise; an idempotent retry returns the stored one (see states.py)."""
        status, promise = self.create_ex(
            promise_id, timeout, ikey=ikey, strict=strict, headers=headers, data=data, tags=tags
        )
        if status is Status.ALREADY_EXISTS:
            raise AlreadyExists(promise_id, promise.state.value)
        return promise

    def create_ex(
        self,
        promise_id: str,
        timeout: int,
        *,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
        tags: Mapping[str, str] | None = None,
        invoke: Invoke | None = None,
        callback: Callback | None = None,
        listener: str | None = None,
        step: Step | None = None,
        adopt: bool = False,
        allow_past: bool = False,
    ) -> tuple[Status, DurablePromise]:
        """Create, and in the same script optionally queue an invoke task, register a callback or
        a subscription, or write the promise completed. Returns the status instead of raising
        ``AlreadyExists`` (the SDK uses it). ``allow_past`` creates a promise whose timeout has
        already passed as timed out, instead of refusing it."""
        check_id(promise_id)
        check_timeout(timeout)
        ikey = check_ikey(ikey)
        header_map = check_map(headers, "headers")
        tag_map = check_map(tags, "tags")
        payload = check_data(data, self.max_data_bytes)
        if invoke is None and INVOKE_TAG in tag_map and step is None:
            invoke = self.invoke_for(promise_id, tag_map[INVOKE_TAG], payload)
        partition = keys.partition_of(promise_id)
        key_list = self.promise_keys(promise_id) + [keys.groups(partition)]
        args: list[Any] = [
            self._now_arg(), request_id(), promise_id, str(timeout), ikey or "", _flag(strict),
            pack_map(header_map), _flag(payload is not None), payload or b"", pack_map(tag_map),
            _flag(tag_map.get(TIMER_TAG) == "true"),
        ]
        if step is not None:
            value_data = check_data(step.value.data, self.max_data_bytes, "value data")
            args += [
                step.state.value, pack_map(check_map(step.value.headers, "value headers")),
                _flag(value_data is not None), value_data or b"", check_ikey(step.ikey) or "",
            ]
        else:
            args += ["", b"", "0", b"", ""]
        if invoke is not None:
            key_list.append(keys.task_stream(partition, check_group(invoke.group)))
            args += [invoke.message, invoke.group]
        else:
            key_list.append(keys.task_stream(partition, "-"))
            args += ["", ""]
        if callback is not None:
            stream = keys.task_stream(partition, check_group(callback.group))
            args += [check_id(callback.root_id, "root id"), stream.encode() + b"\n" + callback.message]
        else:
            args += ["", ""]
        if listener is not None:
            args += [listener, keys.inbox(partition, listener)]
        else:
            args += ["", ""]
        args += [_flag(adopt), _flag(allow_past)]
        reply = self._run("create", key_list, args)
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == b"fresh":
            return Status.CREATED, _fresh(
                promise_id, timeout, ikey, header_map, payload, tag_map, step, int(reply[1])
            )
        status, promise = self._reply(promise_id, reply)
        if promise is None:
            raise StoreError(f"create of {promise_id!r} returned no record")
        return status, promise

    @staticmethod
    def invoke_for(promise_id: str, target: str, data: bytes | None) -> Invoke:
        """The invoke task that a promise tagged ``resonate:invoke=target`` queues on creation."""
        group = invoke_target(target)
        func, _, _ = parse_invoke_data(data)
        return Invoke(group, TaskMessage(TaskKind.INVOKE, promise_id, group, func).encode())

    def get(self, promise_id: str) -> DurablePromise:
        """The promise (its timeout applied if due), or ``NotFound``."""
        check_id(promise_id)
        _, promise = self._reply(
            promise_id, self._run("get", self.promise_keys(promise_id), [self._now_arg(), promise_id])
        )
        if promise is None:
            raise NotFound(promise_id)
        return promise

    def resolve(
        self,
        promise_id: str,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
    ) -> DurablePromise:
        return self.complete(promise_id, State.RESOLVED, ikey, strict, headers, data)

    def reject(
        self,
        promise_id: str,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
    ) -> DurablePromise:
        return self.complete(promise_id, State.REJECTED, ikey, strict, headers, data)

    def cancel(
        self,
        promise_id: str,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
    ) -> DurablePromise:
        return self.complete(promise_id, State.REJECTED_CANCELED, ikey, strict, headers, data)

    def complete(
        self,
        promise_id: str,
        state: State,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
    ) -> DurablePromise:
        """Move a pending promise to ``state`` (RESOLVED, REJECTED or REJECTED_CANCELED)."""
        status, promise = self.complete_ex(promise_id, state, ikey, strict, headers, data)
        if promise is None:
            raise NotFound(promise_id)
        if status is Status.ALREADY_COMPLETED:
            raise AlreadyCompleted(promise_id, promise.state.value)
        return promise

    def complete_ex(
        self,
        promise_id: str,
        state: State,
        ikey: str | None = None,
        strict: bool = False,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
    ) -> tuple[Status, DurablePromise | None]:
        check_id(promise_id)
        if state not in (State.RESOLVED, State.REJECTED, State.REJECTED_CANCELED):
            raise ValidationError(f"cannot complete a promise as {state}")
        ikey = check_ikey(ikey)
        payload = check_data(data, self.max_data_bytes)
        args = [
            self._now_arg(), request_id(), promise_id, state.value, ikey or "", _flag(strict),
            pack_map(check_map(headers, "headers")), _flag(payload is not None), payload or b"",
        ]
        return self._reply(promise_id, self._run("complete", self.promise_keys(promise_id), args))

    def register_callback(self, promise_id: str, callback: Callback) -> DurablePromise:
        """Register a callback unless the promise is completed; returns the promise as it is."""
        stream = keys.task_stream(keys.partition_of(promise_id), check_group(callback.group))
        value = stream.encode() + b"\n" + callback.message
        return self._register(promise_id, "cb", check_id(callback.root_id, "root id"), value)

    def subscribe(self, promise_id: str, listener: str) -> DurablePromise:
        """Notify ``listener``'s inbox when the promise completes (at once if it already is)."""
        inbox = keys.inbox(keys.partition_of(promise_id), listener)
        return self._register(promise_id, "sub", listener, inbox.encode())

    def _register(self, promise_id: str, kind: str, field: str, value: bytes) -> DurablePromise:
        check_id(promise_id)
        args = [self._now_arg(), promise_id, kind, field, value]
        _, promise = self._reply(promise_id, self._run("register", self.promise_keys(promise_id), args))
        if promise is None:
            raise NotFound(promise_id)
        return promise

    def wait(self, promise_id: str, timeout: float | None = None) -> DurablePromise:
        """Block until the promise is completed (a subscription, not polling); returns it.

        Three round trips when it completes while waiting: subscribe, ``BLPOP`` on the inbox,
        get. Raises ``TimeoutError`` after ``timeout`` seconds. Every ``WAIT_RECHECK_S`` without a
        notification the subscription is renewed, in case one was lost (e.g. a Redis restart
        without persistence).
        """
        listener = request_id()
        inbox = keys.inbox(keys.partition_of(promise_id), listener)
        deadline = None if timeout is None else time.monotonic() + timeout
        promise = self.subscribe(promise_id, listener)
        while not promise.completed:
            left = WAIT_RECHECK_S if deadline is None else min(WAIT_RECHECK_S, deadline - time.monotonic())
            if left <= 0:
                self._unsubscribe(promise_id, listener)
                raise TimeoutError(f"promise {promise_id!r} still pending after {timeout}s")
            with translate_errors(self.url, inbox):
                notified = self.client.blpop([inbox], timeout=max(left, 0.01))
            promise = self.get(promise_id) if notified else self.subscribe(promise_id, listener)
        return promise

    def _unsubscribe(self, promise_id: str, listener: str) -> None:
        with translate_errors(self.url, promise_id):
            self.client.hdel(keys.subscriptions(promise_id), listener)

    # -- search and timeouts ----------------------------------------------------------------

    def search(
        self,
        id_pattern: str = "*",
        state: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SearchPage:
        """Promises matching the id glob, state family and tags, newest first, one page."""
        with translate_errors(self.url):
            return search_promises(self, id_pattern, state, tags, limit, cursor)

    def sweep(self, limit: int | None = None, lock_ms: int = 0) -> int:
        """Time out every due pending promise (firing callbacks); returns how many timed out.

        O(due): reads only the due part of each partition's timeout index. ``lock_ms`` > 0 makes
        concurrent sweepers skip a partition swept less than ``lock_ms`` ago.
        """
        total = 0
        for partition in range(keys.PARTITIONS):
            key_list = [
                keys.timeouts(partition),
                keys.index(partition, "pending"),
                keys.index(partition, "resolved"),
                keys.index(partition, "rejected"),
                keys.sweep_lock(partition),
            ]
            lock = str(lock_ms)
            while True:
                batch = SWEEP_BATCH if limit is None else min(SWEEP_BATCH, limit - total)
                if batch <= 0:
                    return total
                args = [
                    self._now_arg(), str(batch), lock,
                    keys.promise_prefix(partition), keys.callbacks_prefix(partition),
                    keys.subscriptions_prefix(partition),
                ]
                count, more, _skipped = self._run("sweep", key_list, args)
                total += int(count)
                lock = "0"  # holding the lock for this pass: drain the partition
                if more != b"1":
                    break
        return total


def _fresh(
    promise_id: str,
    timeout: int,
    ikey: str | None,
    headers: dict[str, str],
    data: bytes | None,
    tags: dict[str, str],
    step: Step | None,
    created_on: int,
) -> DurablePromise:
    """The record ``create.lua`` has just written exactly as requested (it replies only the time)."""
    return DurablePromise(
        id=promise_id,
        state=step.state if step else State.PENDING,
        param=Value(headers, data),
        value=Value(dict(step.value.headers), step.value.data) if step else Value(),
        timeout=timeout,
        idempotency_key_for_create=ikey,
        idempotency_key_for_complete=step.ikey if step else None,
        tags=MappingProxyType(dict(tags)),
        created_on=created_on,
        completed_on=created_on if step else None,
    )


def _special(status: str, key: str) -> Status:
    if status == "past":
        raise ValidationError("timeout is not in the future") from None
    raise CorruptRecord(key, f"script answered unknown status {status!r}")
