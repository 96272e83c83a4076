"""``RedisStore``: durable promises in Redis, and the entry to the task streams (``store.tasks``).

Every state change is one call of one single-slot Lua script, through the typed wrappers of
``coordinator/lua.py``, so a create is one round trip and a resolve is one round trip. Every
script recognises its own resend (each call carries a fresh request id; see ``scripts/_lib.lua``).

The clock: by default every script reads the server's ``TIME`` (one clock for every worker,
whatever their own clocks say). A store built with ``clock=`` passes that time into every script
instead (tests use it to move time by hand). :meth:`RedisStore.estimated_now` is the same clock
read locally: this machine's time corrected by an offset measured against ``TIME`` once a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis

from . import keys
from .connection import connect, redacted, resolve_url, translate_errors
from .creates import create_request, created, invoke_many
from .errors import AlreadyCompleted, AlreadyExists, NotFound, StoreError, ValidationError, VowError
from .executions import TaskStore
from .lua import Callback, Completion, Durability, Invoke, Scripts
from .notes import wait_for
from .records import INVOKE_TAG, DurablePromise, State, Value, decode_promise
from .retention import expire_due, purge_promises
from .schedules import ScheduleStore
from .search import SearchPage, search_promises
from .states import Status
from .tasks import invoke_data, invoke_message, invoke_target, parse_invoke_data
from .validate import (
    DEFAULT_RETENTION_MS,
    MAX_DATA_BYTES,
    check_data,
    check_group,
    check_id,
    check_ikey,
    check_map,
    check_retention,
)

__all__ = ["Callback", "Completion", "Invoke", "RedisStore", "SearchPage"]

#: promises timed out per sweep script call (bounds one script's run time)
SWEEP_BATCH = 500
#: seconds between two measurements of this machine's clock against the server's TIME
CLOCK_REFRESH_S = 60.0


class RedisStore:
    """Durable promises stored in Redis (standalone or cluster).

    ``client`` injects a ready redis-py client (tests use fakeredis); such a store opens no other
    connection. ``shebang=False`` sends the scripts without their ``#!lua`` line, for a client
    whose Lua cannot parse it (fakeredis's); a real server always gets it.

    ``replicas=N`` makes every state change wait until N replicas have it (``WAIT``, in the same
    round trip) and raise :class:`~vow.coordinator.errors.NotConfirmed` when they fall short
    within ``replica_timeout_ms``; with ``local_fsync=True`` it waits for the AOF fsync of this
    server and of N replicas instead (``WAITAOF``; Redis 7.2+ / Valkey, AOF on). Standalone
    servers only (a cluster refuses the option).

    ``retention`` is how long a completed promise is kept after its completion (seconds, a
    ``timedelta``, a duration such as ``"7d"``, or ``"forever"``; default one day), unless its
    create says otherwise; :meth:`expire` (every worker's maintenance loop) removes it then.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        clock: Callable[[], int] | None = None,
        max_data_bytes: int = MAX_DATA_BYTES,
        shebang: bool = True,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
        local_fsync: bool = False,
        retention: object = DEFAULT_RETENTION_MS / 1000,
    ) -> None:
        self.retention = check_retention(retention)
        if replicas < 0 or replica_timeout_ms < 0:
            raise ValidationError("replicas and replica_timeout_ms must not be negative")
        self.url = resolve_url(url)
        self.clock = clock
        self.max_data_bytes = max_data_bytes
        self.shebang = shebang
        self.durability = (
            Durability(replicas, replica_timeout_ms, local_fsync) if replicas or local_fsync else None
        )
        self._client = client
        self._injected = client is not None
        self._scripts: Scripts | None = None
        self._lock = threading.RLock()  # `scripts` takes it and then asks for `client`
        self._offset_ms = 0
        self._offset_measured = float("-inf")
        self.tasks = TaskStore(self)
        self.schedules = ScheduleStore(self)

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
        """The typed script wrappers (``coordinator/lua.py``) registered on this store's client."""
        if self._scripts is None:
            with self._lock:
                if self._scripts is None:
                    if self.durability is not None and isinstance(self.client, redis.RedisCluster):
                        raise ValidationError("replicas=/local_fsync= are not supported on a Redis Cluster yet")
                    self._scripts = Scripts(self.client, url=self.url, shebang=self.shebang, clock=self.clock,
                                            durability=self.durability)
        return self._scripts

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, redis.RedisCluster)

    @property
    def display_url(self) -> str:
        return redacted(self.url)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def dedicated_connection(self, socket_timeout: float) -> Any:
        """A client of its own for blocking reads (its socket timeout outlasts the block). A store
        on an injected client has no URL to connect to: it answers with that client."""
        if self._injected:
            return self.client
        return connect(self.url, socket_timeout=socket_timeout, single=True)

    def connection_id(self, connection: Any) -> int | None:
        """``CLIENT ID`` of a standalone dedicated connection (None on a cluster or an injected
        client, which cannot be unblocked one connection at a time)."""
        if self._injected or isinstance(connection, redis.RedisCluster):
            return None
        with translate_errors(self.url):
            return int(connection.client_id())

    def unblock(self, connection_id: int) -> None:
        """End a blocked command on another connection at once (``CLIENT UNBLOCK``)."""
        with translate_errors(self.url):
            self.client.client_unblock(connection_id)

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy`` (``None`` where CONFIG is not allowed)."""
        try:
            with translate_errors(self.url):
                reply = self.client.config_get("maxmemory-policy")
        except StoreError:
            return None
        if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
            reply = next(iter(reply.values()))  # a cluster answers per node
        value = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    # -- the clock --------------------------------------------------------------------------

    def now(self) -> int:
        """Current time in epoch ms by the store's clock (the server's TIME unless injected)."""
        if self.clock is not None:
            return self.clock()
        with translate_errors(self.url):
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def estimated_now(self) -> int:
        """The store's clock without a round trip: this machine's time corrected by the offset to
        the server's TIME (measured on first use and once every ``CLOCK_REFRESH_S``)."""
        if self.clock is not None:
            return self.clock()
        if time.monotonic() - self._offset_measured > CLOCK_REFRESH_S:
            before = time.time()
            server = self.now()
            after = time.time()
            self._offset_ms = server - int((before + after) * 500)
            self._offset_measured = time.monotonic()
        return int(time.time() * 1000) + self._offset_ms

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
        retention: object = None,
    ) -> DurablePromise:
        """Create a pending promise; an idempotent retry returns the stored one (see states.py).
        ``retention`` (None = the store's) is how long it is kept once completed."""
        status, promise = self.create_ex(
            promise_id, timeout, ikey=ikey, strict=strict, headers=headers, data=data, tags=tags,
            retention=retention,
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
        completion: Completion | None = None,
        adopt: bool = False,
        allow_past: bool = False,
        retention: object = None,
    ) -> tuple[Status, DurablePromise]:
        """Create, and in the same script optionally queue an invoke task, register a callback or
        a subscription, or write the promise completed. Returns the status instead of raising
        ``AlreadyExists`` (the SDK uses it). ``allow_past`` creates a promise whose timeout has
        already passed as timed out, instead of refusing it."""
        request = create_request(
            self, promise_id, timeout, ikey=ikey, strict=strict, headers=headers, data=data, tags=tags, invoke=invoke,
            callback=callback, listener=listener, completion=completion, adopt=adopt, allow_past=allow_past,
            retention=retention,
        )
        return created(promise_id, request, self.scripts.create(promise_id, **request))

    def retention_of(self, retention: object) -> int | None:
        """The retention in ms a create asks for (None: the store's; "forever": None)."""
        return self.retention if retention is None else check_retention(retention)

    @staticmethod
    def invoke_for(promise_id: str, target: str, data: bytes | None) -> Invoke:
        """The invoke task that a promise tagged ``resonate:invoke=target`` queues on creation."""
        group = invoke_target(target)
        func, _, _ = parse_invoke_data(data)
        return Invoke(group, invoke_message(promise_id, group, func, data))

    def invoke(
        self,
        promise_id: str,
        func: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        group: str,
        timeout: int,
        ikey: str | None = None,
        tags: Mapping[str, str] | None = None,
        retention: object = None,
        listener: str | None = None,
    ) -> DurablePromise:
        """Create ``promise_id`` as a call of ``func`` in ``group`` (the seed's wire convention:
        JSON data ``{"func", "args", "kwargs"}`` and the tag ``resonate:invoke=poll://<group>``);
        the invoke task is queued in the same step. ``timeout`` is absolute epoch ms. An existing
        id answers as :meth:`create` does (``AlreadyExists`` unless the ikeys match).
        ``listener``: subscribe it in the same step (for :meth:`wait` with that listener)."""
        if not func:
            raise ValidationError("function name must not be empty")
        check_group(group)
        data = invoke_data(func, args, kwargs)
        message = invoke_message(promise_id, group, func, data.encode())
        all_tags = {**(tags or {}), INVOKE_TAG: f"poll://{group}"}
        status, promise = self.create_ex(
            promise_id, timeout, ikey=ikey, data=data, tags=all_tags,
            invoke=Invoke(group, message), retention=retention, listener=listener,
        )
        if status is Status.ALREADY_EXISTS:
            raise AlreadyExists(promise_id, promise.state.value)
        return promise

    def invoke_many(
        self,
        func: str,
        calls: Sequence[tuple[str, Sequence[Any], Mapping[str, Any]]],
        *,
        group: str,
        timeout: int,
        tags: Mapping[str, str] | None = None,
        retention: object = None,
    ) -> list[DurablePromise | VowError]:
        """:meth:`invoke` of ``func`` for each call (promise id, args, kwargs), each with its id as
        its create idempotency key: pipelined, one round trip per ``CREATE_BATCH`` calls on a
        standalone server without a durability wait (else one round trip each). Each result is
        the promise, or the error of that call alone (``AlreadyExists``, ``ValidationError``, a
        store error); a connection failure raises (``coordinator/creates.py``)."""
        return invoke_many(self, func, calls, group=group, timeout=timeout, tags=tags, retention=retention)

    def get(self, promise_id: str) -> DurablePromise:
        """The promise (its timeout applied if due), or ``NotFound``."""
        check_id(promise_id)
        _, promise = self.scripts.get(promise_id)
        if promise is None:
            raise NotFound(promise_id)
        return promise

    def read_records(self, promise_ids: Iterable[str]) -> dict[str, DurablePromise | None]:
        """The records of several promises in one pipelined round trip, as stored (a due timeout
        is not applied: use :meth:`get` for that); None for an id that does not exist."""
        ids = [check_id(p) for p in promise_ids]
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for promise_id in ids:
                pipe.hgetall(keys.promise(promise_id))
            replies = pipe.execute()
        return {
            promise_id: decode_promise(keys.promise(promise_id), fields) if fields else None
            for promise_id, fields in zip(ids, replies, strict=True)
        }

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
        value = Value(check_map(headers, "headers"), check_data(data, self.max_data_bytes))
        return self.scripts.complete(promise_id, state=state, ikey=check_ikey(ikey), strict=strict, value=value)

    def register_callback(self, promise_id: str, callback: Callback) -> DurablePromise:
        """Register a callback unless the promise is completed; returns the promise as it is."""
        check_id(promise_id)
        check_group(callback.group)
        check_id(callback.root_id, "root id")
        _, promise = self.scripts.register_callback(promise_id, callback)
        if promise is None:
            raise NotFound(promise_id)
        return promise

    def subscribe(self, promise_id: str, listener: str) -> DurablePromise:
        """Notify ``listener``'s inbox when the promise completes (at once if it already is)."""
        check_id(promise_id)
        _, promise = self.scripts.subscribe(promise_id, listener)
        if promise is None:
            raise NotFound(promise_id)
        return promise

    def wait(self, promise_id: str, timeout: float | None = None, *, listener: str | None = None) -> DurablePromise:
        """Block until the promise is completed (a subscription, not polling); returns it.

        Two round trips when it completes while waiting (subscribe, ``BLPOP`` on the inbox: the
        notification carries the record); one when ``listener`` subscribed already in the
        promise's create. Raises ``TimeoutError`` after ``timeout`` seconds. See
        ``coordinator/notes.py``."""
        check_id(promise_id)
        return wait_for(self, promise_id, timeout, listener)

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

    def expire(self, limit: int | None = None) -> int:
        """Remove every completed promise whose retention has passed; returns how many (see
        ``coordinator/retention.py``). O(expired); cheap when nothing is due."""
        return expire_due(self, limit)

    def purge(
        self, id_pattern: str, family: str | None = None, older_than_ms: int | None = None, dry_run: bool = False
    ) -> list[str]:
        """Remove completed promises matching the id glob now (never pending ones); ``family``
        resolved | rejected; ``older_than_ms`` counts from completion. Returns the ids removed
        (with ``dry_run``: that would be removed)."""
        return purge_promises(self, id_pattern, family, older_than_ms, dry_run)

    def sweep(self, limit: int | None = None, lock_ms: int = 0) -> int:
        """Time out every due pending promise (firing callbacks); returns how many timed out.

        O(due): reads only the due part of each partition's timeout index. ``lock_ms`` > 0 makes
        concurrent sweepers skip a partition swept less than ``lock_ms`` ago.
        """
        total = 0
        for partition in range(keys.PARTITIONS):
            lock = lock_ms
            while True:
                batch = SWEEP_BATCH if limit is None else min(SWEEP_BATCH, limit - total)
                if batch <= 0:
                    return total
                count, more = self.scripts.sweep(partition, limit=batch, lock_ms=lock)
                total += count
                lock = 0  # holding the lock for this pass: drain the partition
                if not more:
                    break
        return total
