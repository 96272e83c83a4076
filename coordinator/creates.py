"""Creating promises: the checked request of ``create.lua``, the record it wrote, and creates
pipelined in batches (``RedisStore.invoke_many``, behind ``Scheduler.rpc_many``).

A create that writes the record exactly as asked replies only its time (``'fresh'``): the
caller builds the record from its own request (:func:`fresh`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import AlreadyExists, ValidationError, VowError
from .lua import Callback, Completion, CreateReply, Invoke
from .records import INVOKE_TAG, TIMER_TAG, DurablePromise, State, Value
from .states import Status
from .tasks import invoke_data, invoke_message
from .validate import check_data, check_group, check_id, check_ikey, check_map, check_timeout

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["CREATE_BATCH", "create_request", "created", "fresh", "invoke_many"]

#: creates pipelined in one round trip by invoke_many
CREATE_BATCH = 500


def create_request(
    store: RedisStore,
    promise_id: str,
    timeout: int,
    *,
    ikey: str | None,
    strict: bool,
    headers: Mapping[str, str] | None,
    data: str | bytes | None,
    tags: Mapping[str, str] | None,
    invoke: Invoke | None,
    callback: Callback | None,
    listener: str | None,
    completion: Completion | None,
    adopt: bool,
    allow_past: bool,
    retention: object,
) -> dict[str, Any]:
    """The checked arguments of ``Scripts.create`` (raises ``ValidationError``)."""
    check_id(promise_id)
    check_timeout(timeout)
    param = Value(check_map(headers, "headers"), check_data(data, store.max_data_bytes))
    tag_map = check_map(tags, "tags")
    if invoke is None and INVOKE_TAG in tag_map and completion is None:
        invoke = store.invoke_for(promise_id, tag_map[INVOKE_TAG], param.data)
    if invoke is not None:
        check_group(invoke.group)
    if callback is not None:
        check_group(callback.group)
        check_id(callback.root_id, "root id")
    if completion is not None:
        completion = Completion(
            completion.state,
            Value(check_map(completion.value.headers, "value headers"),
                  check_data(completion.value.data, store.max_data_bytes, "value data")),
            check_ikey(completion.ikey),
        )
    return {
        "timeout": timeout, "ikey": check_ikey(ikey), "strict": strict, "param": param, "tags": tag_map,
        "timer": tag_map.get(TIMER_TAG) == "true", "completion": completion, "invoke": invoke,
        "callback": callback, "listener": listener, "adopt": adopt, "allow_past": allow_past,
        "retention": store.retention_of(retention),
    }


def invoke_many(
    store: RedisStore,
    func: str,
    calls: Sequence[tuple[str, Sequence[Any], Mapping[str, Any]]],
    *,
    group: str,
    timeout: int,
    tags: Mapping[str, str] | None,
    retention: object,
) -> list[DurablePromise | VowError]:
    """See :meth:`RedisStore.invoke_many`."""
    if not func:
        raise ValidationError("function name must not be empty")
    check_group(group)
    all_tags = {**(tags or {}), INVOKE_TAG: f"poll://{group}"}
    out: list[DurablePromise | VowError] = []
    requests: list[tuple[str, dict[str, Any]]] = []
    slots: list[int] = []
    for promise_id, args, kwargs in calls:
        try:
            data = invoke_data(func, args, kwargs)
            message = invoke_message(promise_id, group, func, data.encode())
            requests.append((promise_id, create_request(
                store, promise_id, timeout, ikey=promise_id, strict=False, headers=None,
                data=data, tags=all_tags, invoke=Invoke(group, message),
                callback=None, listener=None, completion=None, adopt=False, allow_past=False,
                retention=retention,
            )))
            slots.append(len(out))
            out.append(ValidationError("not sent"))
        except VowError as e:
            out.append(e)
    pipelined = not store.is_cluster and store.durability is None
    for start in range(0, len(requests), CREATE_BATCH if pipelined else 1):
        chunk = requests[start : start + CREATE_BATCH] if pipelined else requests[start : start + 1]
        replies: list[Any] = (
            store.scripts.create_many(chunk) if pipelined
            else [store.scripts.create(chunk[0][0], **chunk[0][1])]
        )
        for (promise_id, request), reply, slot in zip(chunk, replies, slots[start:], strict=False):
            out[slot] = invoked(promise_id, request, reply)
    return out


def created(promise_id: str, request: dict[str, Any], reply: CreateReply) -> tuple[Status, DurablePromise]:
    """The status and record of a create's reply (built from the request when it was ``'fresh'``)."""
    if reply.promise is not None:
        return reply.status, reply.promise
    assert reply.created_on is not None
    return Status.CREATED, fresh(
        promise_id, request["timeout"], request["ikey"], request["param"], request["tags"], request["completion"],
        reply.created_on, request["retention"],
    )


def invoked(promise_id: str, request: dict[str, Any], reply: CreateReply | Exception) -> DurablePromise | VowError:
    """One result of :meth:`RedisStore.invoke_many`."""
    if isinstance(reply, VowError):
        return reply
    if isinstance(reply, Exception):
        raise reply  # a connection failure, or a bug: not one call's own error
    status, promise = created(promise_id, request, reply)
    if status is Status.ALREADY_EXISTS:
        return AlreadyExists(promise_id, promise.state.value)
    return promise


def fresh(
    promise_id: str,
    timeout: int,
    ikey: str | None,
    param: Value,
    tags: dict[str, str],
    completion: Completion | None,
    created_on: int,
    retention: int | None,
) -> DurablePromise:
    """The record ``create.lua`` has just written exactly as requested (it replies only the time)."""
    return DurablePromise(
        id=promise_id,
        state=completion.state if completion else State.PENDING,
        param=param,
        value=completion.value if completion else Value(),
        timeout=timeout,
        idempotency_key_for_create=ikey,
        idempotency_key_for_complete=completion.ikey if completion else None,
        tags=MappingProxyType(dict(tags)),
        created_on=created_on,
        completed_on=created_on if completion else None,
        retention=retention,
    )
