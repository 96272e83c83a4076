"""One typed wrapper per Lua script: named keys and arguments in, records and enums out.

The scripts (``coordinator/scripts/*.lua``) are registered per client as redis-py ``Script``
objects (EVALSHA; reloaded by redis-py after NOSCRIPT, as after a restart, a failover or
``SCRIPT FLUSH``). Every call goes through :meth:`Scripts._call`, which puts the two arguments
every script takes first — the clock (``''`` = the server's ``TIME``, else the injected time) and
a fresh request id — in front of the script's own, so no call site can forget the request id
that lets a script recognise its own resend (redis-py resends a command whose reply was lost).
It also translates redis-py errors. This is the only module that builds KEYS and ARGV lists or
unpacks a script's reply by position; each method's argument order is its script's header.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis

from . import keys
from .connection import translate_errors
from .errors import CorruptRecord, StoreError, ValidationError
from .keys import PromiseKeys
from .records import DurablePromise, State, Value, decode_promise, pack_map, reply_text
from .replies import (
    Answer,
    Callback,
    Claim,
    ClaimStatus,
    Commit,
    Completion,
    CreateReply,
    Durability,
    Held,
    Invoke,
    request_id,
)
from .scripts import SCRIPT_NAMES, source
from .states import Status

__all__ = [
    "Answer",
    "Durability",
    "Callback",
    "Claim",
    "ClaimStatus",
    "Commit",
    "Completion",
    "CreateReply",
    "Held",
    "Invoke",
    "Scripts",
    "request_id",
]

Arg = str | bytes


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _fields(raw: Any) -> dict[bytes, bytes]:
    if not isinstance(raw, list) or len(raw) % 2:
        raise StoreError("unexpected script reply: record fields are not a flat list of pairs")
    return dict(zip(raw[::2], raw[1::2], strict=True))


def _promise_reply(promise_id: str, reply: Any) -> tuple[Status, DurablePromise | None]:
    key = keys.promise(promise_id)
    if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[0], bytes):
        raise StoreError(f"unexpected script reply for {key!r}")
    word = reply[0].decode(errors="replace")
    try:
        status = Status(word)
    except ValueError:
        if word == "past":
            raise ValidationError("timeout is not in the future") from None
        raise CorruptRecord(key, f"script answered unknown status {word!r}") from None
    if status is Status.NOT_FOUND or not reply[1]:
        return status, None
    return status, decode_promise(key, _fields(reply[1]))


def _translated(url: str, key: str, error: Exception) -> Exception:
    """A redis-py error of one pipelined call as the Vow error ``translate_errors`` makes of it."""
    try:
        with translate_errors(url, key, change=True):
            raise error
    except Exception as e:
        return e
    return error  # pragma: no cover (the block always raises)


def _answer(raw: Any) -> Answer:
    word = reply_text(raw)
    try:
        return Answer(word)
    except ValueError:
        raise StoreError(f"unexpected script answer {word!r}") from None


class Scripts:
    """The registered scripts of one client, one typed method each."""

    def __init__(self, client: Any, *, url: str, shebang: bool = True,
                 clock: Callable[[], int] | None = None, durability: Durability | None = None) -> None:
        self._client = client
        self._url = url
        self._clock = clock
        self._durability = durability
        self._scripts = {name: client.register_script(source(name, shebang=shebang)) for name in SCRIPT_NAMES}
        # On a standalone server each thread calls scripts on a connection of its own, taken from
        # the client's pool once: checking a connection out of the pool per call costs a poll of
        # its socket and more (measured here: 65 µs a call pooled, 21 µs on a held connection).
        # It goes back to the pool when its thread ends, and closes with the client.
        self._per_thread = type(client) is redis.Redis
        self._local = threading.local()

    def sha(self, name: str) -> str:
        return str(self._scripts[name].sha)

    def _call(self, name: str, key_list: Sequence[str], args: Sequence[Arg]) -> Any:
        now = "" if self._clock is None else str(int(self._clock()))
        full = [now, request_id(), *args]
        with translate_errors(self._url, key_list[0], change=name != "get"):
            if self._durability is None:
                return self._scripts[name](keys=list(key_list), args=full, client=self.thread_client())
            return self._call_durably(name, list(key_list), full, self._durability)

    def thread_client(self) -> Any:
        """This thread's client holding one connection of the pool (the shared client where
        that does not apply: a cluster, an injected client)."""
        if not self._per_thread:
            return self._client
        held = getattr(self._local, "client", None)
        if held is None:
            held = redis.Redis(connection_pool=self._client.connection_pool, single_connection_client=True)
            self._local.client = held
        return held

    def _call_durably(self, name: str, key_list: list[str], args: list[Arg], durability: Durability) -> Any:
        """The script and the wait in one round trip on one connection (WAIT counts the writes of
        the connection it is sent on). After NOSCRIPT the script is loaded and the pair sent
        again: the same request id makes that a recognised resend."""
        script = self._scripts[name]
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", script.sha, len(key_list), *key_list, *args)
            pipe.execute_command(*durability.command())
            reply, waited = pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError):
                self._client.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(waited, Exception):
                raise waited
            durability.check(key_list[0], waited)
            return reply
        raise StoreError(f"script {name} could not be loaded")

    # -- promises -------------------------------------------------------------------------------

    def create(self, promise_id: str, **request: Any) -> CreateReply:
        """Create ``promise_id`` (the arguments of :meth:`create_call`)."""
        key_list, args = self.create_call(promise_id, **request)
        return self.create_reply(promise_id, self._call("create", key_list, args))

    def create_many(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[CreateReply | Exception]:
        """Several creates pipelined in one round trip (standalone server, no durability wait):
        each a reply, or the error of that create alone."""
        calls = [self.create_call(promise_id, **request) for promise_id, request in requests]
        replies = self.pipelined("create", calls)
        out: list[CreateReply | Exception] = []
        for (promise_id, _), reply in zip(requests, replies, strict=True):
            try:
                out.append(reply if isinstance(reply, Exception) else self.create_reply(promise_id, reply))
            except (StoreError, ValidationError) as e:
                out.append(e)
        return out

    @staticmethod
    def create_call(
        promise_id: str,
        *,
        timeout: int,
        ikey: str | None,
        strict: bool,
        param: Value,
        tags: dict[str, str],
        timer: bool,
        completion: Completion | None,
        invoke: Invoke | None,
        callback: Callback | None,
        listener: str | None,
        adopt: bool,
        allow_past: bool,
        retention: int | None,
    ) -> tuple[list[str], list[Arg]]:
        k = PromiseKeys.of(promise_id)
        value = completion.value if completion is not None else Value()
        args: list[Arg] = [
            promise_id, str(timeout), ikey or "", _flag(strict),
            pack_map(param.headers), _flag(param.data is not None), param.data or b"", str(len(tags)), _flag(timer),
            completion.state.value if completion is not None else "", pack_map(value.headers),
            _flag(value.data is not None), value.data or b"", (completion.ikey if completion else None) or "",
            invoke.group if invoke is not None else "", invoke.message if invoke is not None else b"",
            callback.root_id if callback is not None else "", callback.encoded() if callback is not None else b"",
            listener or "", _flag(adopt), _flag(allow_past), "" if retention is None else str(retention),
        ]
        for name, tag in tags.items():
            args += [name, tag]
        return [*k.as_list(), keys.groups(keys.partition_of(promise_id))], args

    @staticmethod
    def create_reply(promise_id: str, reply: Any) -> CreateReply:
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == b"fresh":
            return CreateReply(Status.CREATED, None, int(reply[1]))
        status, promise = _promise_reply(promise_id, reply)
        if promise is None:
            raise StoreError(f"create of {promise_id!r} returned no record")
        return CreateReply(status, promise, None)

    def pipelined(self, name: str, calls: Sequence[tuple[list[str], list[Arg]]]) -> list[Any]:
        """Calls of one script sent in one pipeline (one round trip; each its own request id): the
        replies, an error object for a call that failed. After NOSCRIPT the script is loaded and
        the calls that hit it sent again (their request ids make that a recognised resend). Not
        for a cluster (a pipeline there spans nodes) nor with a durability wait."""
        script = self._scripts[name]
        now = "" if self._clock is None else str(int(self._clock()))
        full = [(key_list, [now, request_id(), *args]) for key_list, args in calls]
        replies: list[Any] = [None] * len(full)
        todo = list(range(len(full)))
        with translate_errors(self._url, full[0][0][0] if full else None, change=True):
            for _ in range(2):
                pipe = self._client.pipeline(transaction=False)
                for i in todo:
                    key_list, args = full[i]
                    pipe.execute_command("EVALSHA", script.sha, len(key_list), *key_list, *args)
                answers = pipe.execute(raise_on_error=False)
                missing = []
                for i, answer in zip(todo, answers, strict=True):
                    if isinstance(answer, redis.exceptions.NoScriptError):
                        missing.append(i)
                    replies[i] = answer
                if not missing:
                    break
                self._client.script_load(script.script)
                todo = missing
        return [_translated(self._url, full[i][0][0], r) if isinstance(r, Exception) else r
                for i, r in enumerate(replies)]

    def complete(
        self, promise_id: str, *, state: State, ikey: str | None, strict: bool, value: Value
    ) -> tuple[Status, DurablePromise | None]:
        args: list[Arg] = [
            promise_id, state.value, ikey or "", _flag(strict),
            pack_map(value.headers), _flag(value.data is not None), value.data or b"",
        ]
        return _promise_reply(promise_id, self._call("complete", PromiseKeys.of(promise_id).as_list(), args))

    def get(self, promise_id: str) -> tuple[Status, DurablePromise | None]:
        return _promise_reply(promise_id, self._call("get", PromiseKeys.of(promise_id).as_list(), [promise_id]))

    def register_callback(self, promise_id: str, callback: Callback) -> tuple[Status, DurablePromise | None]:
        args: list[Arg] = [promise_id, "cb", callback.root_id, callback.encoded()]
        return _promise_reply(promise_id, self._call("register", PromiseKeys.of(promise_id).as_list(), args))

    def subscribe(self, promise_id: str, listener: str) -> tuple[Status, DurablePromise | None]:
        args: list[Arg] = [promise_id, "sub", listener, "1"]
        return _promise_reply(promise_id, self._call("register", PromiseKeys.of(promise_id).as_list(), args))

    def sweep(self, partition: int, *, limit: int, lock_ms: int) -> tuple[int, bool]:
        """Time out due promises of one partition: (how many, whether more are due)."""
        key_list = [
            keys.timeouts(partition), keys.index(partition, "pending"), keys.index(partition, "resolved"),
            keys.index(partition, "rejected"), keys.sweep_lock(partition),
        ]
        count, more, _skipped = self._call("sweep", key_list, [str(limit), str(lock_ms)])
        return int(count), more == b"1"

    def expire(
        self, partition: int, *, anchor_tag: str, limit: int, verdicts: Sequence[tuple[str, int]] = ()
    ) -> tuple[int, bool, list[Held], int]:
        """Remove the expired completed promises of one partition, first applying ``verdicts``
        (id, keep until ms | 0 remove now | -1 keep for ever) on promises it held back before:
        (how many removed, whether more are due, the anchored ones held back for a verdict, the
        script's clock)."""
        args: list[Arg] = [anchor_tag, str(limit)]
        for promise_id, keep in verdicts:
            args += [promise_id, str(keep)]
        reply = self._call("expire", [keys.expiry(partition)], args)
        if not isinstance(reply, list) or len(reply) != 4 or not isinstance(reply[2], list) or len(reply[2]) % 3:
            raise StoreError(f"unexpected expire reply for partition {partition}")
        removed, more, flat, now = reply
        held = []
        for i in range(0, len(flat), 3):
            retention = flat[i + 2]
            held.append(Held(reply_text(flat[i]), reply_text(flat[i + 1]),
                             int(retention) if retention.isdigit() else None))
        return int(removed), more == b"1", held, int(now)

    def purge(self, promise_id: str, *, family: str | None, completed_before: int | None) -> bool:
        """Remove one completed promise now (never a pending one); False when it did not match."""
        args: list[Arg] = [promise_id, family or "", "" if completed_before is None else str(completed_before)]
        return bool(self._call("purge", [keys.promise(promise_id)], args))

    # -- executions -----------------------------------------------------------------------------

    def claim(self, tasks: Sequence[tuple[str, bytes]], *, consumer: str, lease_ms: int, group: str) -> list[Claim]:
        """Claim the executions of ``tasks`` (promise id, the task message that drives it again if
        orphaned) in one call; on a cluster all in one partition."""
        key_list: list[str] = []
        args: list[Arg] = [consumer, str(lease_ms), group]
        for promise_id, message in tasks:
            key_list += [
                *PromiseKeys.of(promise_id).as_list(), keys.execution(promise_id),
                keys.leases(keys.partition_of(promise_id)),
            ]
            args += [promise_id, message]
        reply = self._call("claim", key_list, args)
        if not isinstance(reply, list) or len(reply) != 3 * len(tasks):
            raise StoreError(f"unexpected claim reply for {tasks[0][0]!r}")
        claims = []
        for (promise_id, _), i in zip(tasks, range(0, len(reply), 3), strict=True):
            word, counter, fields = reply[i : i + 3]
            try:
                status = ClaimStatus(reply_text(word))
            except ValueError:
                raise StoreError(f"unexpected claim status {reply_text(word)!r}") from None
            try:
                promise = decode_promise(keys.promise(promise_id), _fields(fields)) if fields else None
            except CorruptRecord as e:
                claims.append(Claim(status, int(counter), None, e))
                continue
            claims.append(Claim(status, int(counter), promise))
        return claims

    def heartbeat(self, promise_id: str, *, counter: int, lease_ms: int) -> bool:
        key_list = [keys.execution(promise_id), keys.leases(keys.partition_of(promise_id))]
        return bool(self._call("heartbeat", key_list, [promise_id, str(counter), str(lease_ms)]))

    def settle(self, commits: Sequence[Commit], *, group: str) -> list[Answer]:
        """Settle finished executions in one call (a group commit); on a cluster all in one
        partition."""
        key_list: list[str] = []
        args: list[Arg] = [group]
        for c in commits:
            key_list += [
                *PromiseKeys.of(c.promise_id).as_list(), keys.execution(c.promise_id),
                keys.leases(keys.partition_of(c.promise_id)), c.stream,
            ]
            args += [
                c.promise_id, str(c.counter), c.state.value, pack_map(c.value.headers),
                _flag(c.value.data is not None), c.value.data or b"", c.entry_id or "", c.ran_with or b"",
            ]
        reply = self._call("settle", key_list, args)
        if not isinstance(reply, list) or len(reply) != len(commits):
            raise StoreError(f"unexpected settle reply for {commits[0].promise_id!r}")
        return [_answer(word) for word in reply]

    def suspend(self, promise_id: str, *, counter: int, group: str, entry_id: str | None) -> Answer:
        partition = keys.partition_of(promise_id)
        key_list = [keys.execution(promise_id), keys.leases(partition), keys.task_stream(partition, group)]
        return _answer(self._call("suspend", key_list, [promise_id, str(counter), group, entry_id or ""]))

    def release(self, promise_id: str, *, counter: int) -> Answer:
        key_list = [keys.execution(promise_id), keys.leases(keys.partition_of(promise_id))]
        return _answer(self._call("release", key_list, [promise_id, str(counter)]))

    def orphans(self, partition: int, *, limit: int, grace_ms: int) -> tuple[int, bool]:
        """Re-queue lapsed executions of one partition: (how many, whether more are due)."""
        count, more = self._call("orphans", [keys.leases(partition)], [str(limit), str(grace_ms)])
        return int(count), more == b"1"

    def consumers(self, partition: int, *, group: str, consumer: str | None, min_idle_ms: int | None) -> int:
        """Remove consumers of ``group``'s stream that hold no entry: ``consumer`` itself, or every
        one idle ``min_idle_ms`` or more. Returns how many were removed."""
        args: list[Arg] = [group, consumer or "", "" if min_idle_ms is None else str(min_idle_ms)]
        return int(self._call("consumers", [keys.task_stream(partition, group)], args))

    # -- stream entries -------------------------------------------------------------------------

    def ack(self, partition: int, *, group: str, consumer: str, entry_ids: Sequence[str]) -> int:
        return int(self._call("ack", [keys.task_stream(partition, group)], [group, consumer, *entry_ids]))

    def touch(self, partition: int, *, group: str, consumer: str, entry_ids: Sequence[str]) -> int:
        return int(self._call("touch", [keys.task_stream(partition, group)], [group, consumer, *entry_ids]))

    def requeue(
        self, partition: int, *, group: str, consumer: str, entry_id: str, message: bytes,
        reason: str | None = None, deliveries: int = 0,
    ) -> str | None:
        """Move an owned entry to the back of its stream (reason None) or to the group's dead
        letters with the reason; the new entry id, or None when this consumer no longer owns it."""
        key_list = [keys.task_stream(partition, group), keys.dead_letters(partition, group)]
        where = "queue" if reason is None else "dead"
        args: list[Arg] = [group, consumer, entry_id, message, where, reason or "", str(deliveries)]
        return reply_text(self._call("requeue", key_list, args)) or None

    def revive(self, partition: int, *, group: str, entry_id: str, expected: bytes, message: bytes) -> str | None:
        """Move a dead letter (still holding ``expected``) back onto its task stream as ``message``;
        the new entry id, or None when the dead letter is gone."""
        key_list = [keys.dead_letters(partition, group), keys.task_stream(partition, group), keys.groups(partition)]
        args: list[Arg] = [group, entry_id, expected, message]
        return reply_text(self._call("revive", key_list, args)) or None

    # -- schedules ------------------------------------------------------------------------------

    def schedule_create(
        self, schedule_id: str, *, cron: str, timezone: str, promise_id: str, promise_timeout: int,
        promise_headers: dict[str, str], promise_data: bytes | None, promise_tags: dict[str, str],
        ikey: str | None, description: str, first_tick: int,
    ) -> tuple[str, dict[bytes, bytes]]:
        """Create a schedule: (created | dedup | exists, the stored record's fields)."""
        p = keys.partition_of(schedule_id)
        key_list = [keys.schedule(schedule_id), keys.schedules_due(p), keys.schedules_index(p)]
        args: list[Arg] = [
            schedule_id, cron, timezone, promise_id, str(promise_timeout), pack_map(promise_headers),
            _flag(promise_data is not None), promise_data or b"", pack_map(promise_tags), ikey or "", description,
            str(first_tick),
        ]
        word, fields = self._call("schedule_create", key_list, args)
        return reply_text(word), _fields(fields)

    def schedule_delete(self, schedule_id: str) -> bool:
        p = keys.partition_of(schedule_id)
        key_list = [keys.schedule(schedule_id), keys.schedules_due(p), keys.schedules_index(p)]
        return bool(self._call("schedule_delete", key_list, [schedule_id]))

    def schedule_advance(self, schedule_id: str, *, due: int, fired: int, promise_id: str, next_tick: int) -> bool:
        """Move the schedule from tick ``due`` to ``next_tick`` (recording ``fired``); False when
        another process moved it first."""
        key_list = [keys.schedule(schedule_id), keys.schedules_due(keys.partition_of(schedule_id))]
        args: list[Arg] = [schedule_id, str(due), str(fired), promise_id, str(next_tick)]
        return reply_text(self._call("schedule_advance", key_list, args)) == "advanced"
