"""Runs one claimed execution: a plain function, or a generator workflow replayed from the top.

Costs in Redis round trips: a local step that has not run yet is one (``create.lua`` writes the
child promise already completed); a remote call or a wait is one (create + invoke task + callback
in one script); a replay reads recorded children in pipelined windows of 16. A fresh execution
(first claim) skips the replay reads, since nothing can be recorded yet.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from vow.coordinator.errors import ValidationError
from vow.coordinator.lua import Callback, Completion
from vow.coordinator.records import INVOKE_TAG, TIMER_TAG, DurablePromise, State
from vow.coordinator.store import RedisStore
from vow.coordinator.tasks import TaskKind, TaskMessage, invoke_data, invoke_function, parse_invoke_data
from vow.coordinator.validate import FOREVER

from .codec import encode_error, encode_value, outcome_of
from .context import Context, LocalCall, Promise, RemoteCall
from .driver import Await, Done, Driver, Failed, Local, Remote, Timer, Wait
from .errors import EncodingError, ReplayDivergence, UnknownFunction
from .metrics import NO_METRICS, Metrics
from .registry import Registry, function_name
from .retry import Exponential, RetryPolicy
from .tags import FUNC_TAG, PARENT_TAG, ROOT_TAG

__all__ = ["Abandoned", "Completed", "Errored", "Execution", "Missing", "Suspended"]

#: recorded children read per replay round trip
REPLAY_WINDOW = 16


@dataclass(frozen=True, slots=True)
class Completed:
    value: Any


@dataclass(frozen=True, slots=True)
class Errored:
    error: BaseException


@dataclass(frozen=True, slots=True)
class Suspended:
    pass


@dataclass(frozen=True, slots=True)
class Missing:
    error: UnknownFunction


Result = Completed | Errored | Suspended | Missing


class Abandoned(Exception):
    """The worker is stopping while a retry waits: give the task back instead of finishing it."""


_SUSPEND = Suspended()
#: ``(True, value)`` or ``(False, exception)``: what a step or a call came to
Outcome = tuple[bool, Any]


class Execution:
    """One drive of the promise ``root`` under fencing counter ``counter``."""

    def __init__(
        self,
        *,
        store: RedisStore,
        registry: Registry,
        group: str,
        dependencies: Mapping[str, Any],
        root: DurablePromise,
        fresh: bool,
        stop: threading.Event,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.registry = registry
        self.group = group
        self.dependencies = dependencies
        self.root = root
        self.fresh = fresh
        self.stop = stop
        self.metrics = metrics
        self.clock_ms = store.estimated_now
        self.cache: dict[str, DurablePromise | None] = {}
        self.function = ""

    # -- entry --------------------------------------------------------------------------------

    def run(self) -> Result:
        try:
            name, args, kwargs = parse_invoke_data(self.root.param.data)
        except ValidationError as e:
            return Errored(e)
        self.function = name
        entry = self.registry.get(name)
        if entry is None:
            return Missing(UnknownFunction(name, self.group))
        ctx = self._context(self.root.id)
        if entry.is_generator:
            outcome = self.drive(self.root.id, entry.func(ctx, *args, **kwargs))
        else:
            outcome = self.call(entry.func, ctx, args, kwargs, entry.retry_policy, entry.non_retryable, name=name)
        if isinstance(outcome, Suspended):
            return outcome
        return Completed(outcome[1]) if outcome[0] else Errored(outcome[1])

    def _context(self, promise_id: str) -> Context:
        return Context(promise_id, self.root.id, self.dependencies, group=self.group)

    # -- plain functions ------------------------------------------------------------------------

    def call(
        self,
        func: Callable[..., Any],
        ctx: Context,
        args: tuple[Any, ...] | list[Any],
        kwargs: Mapping[str, Any],
        policy: RetryPolicy | None,
        non_retryable: tuple[type[BaseException], ...],
        name: str = "",
    ) -> Outcome:
        policy = policy or Exponential()
        attempt = 0
        while True:
            ctx.attempt = attempt
            try:
                return True, func(ctx, *args, **kwargs)
            except (Exception, SystemExit) as e:  # user code: record whatever it raised (sys.exit too)
                if non_retryable and isinstance(e, non_retryable):
                    return False, e
                delay = policy.next_delay(attempt)
                if delay is None:
                    return False, e
            attempt += 1
            if self.stop.wait(delay):
                raise Abandoned()
            self.metrics.task_retried(self.group, name or function_name(func))

    # -- generators -----------------------------------------------------------------------------

    def drive(self, node_id: str, generator: Generator[Any, Any, Any]) -> Outcome | Suspended:
        driver = Driver(node_id, generator)
        outcome: Outcome | None = None
        while True:
            step = driver.advance(outcome)
            if isinstance(step, Done):
                return True, step.value
            if isinstance(step, Failed):
                return False, step.error
            try:
                result = self._perform(node_id, step)
            except ReplayDivergence as e:
                generator.close()
                return False, e
            except ValidationError as e:  # e.g. arguments JSON cannot carry: raised at the yield
                result = (False, e)
            if isinstance(result, Suspended):
                generator.close()
                return result
            outcome = result

    def _perform(self, node_id: str, step: Local | Remote | Wait | Timer | Await) -> Outcome | Suspended:
        if isinstance(step, Local):
            return self._local(node_id, step.id, step.call)
        if isinstance(step, Remote):
            return self._remote(node_id, step.id, step.call)
        if isinstance(step, Wait):
            timeout = self._timeout(step.command.options.timeout)
            tags = {PARENT_TAG: node_id, ROOT_TAG: self.root.id}
            return self._wait(node_id, step.id, timeout, tags, self._retention(step.command.options.retention))
        if isinstance(step, Timer):
            due = self.clock_ms() + max(1, int(step.seconds * 1000))
            tags = {TIMER_TAG: "true", PARENT_TAG: node_id, ROOT_TAG: self.root.id}
            return self._wait(node_id, step.id, due, tags, self._retention(None))
        return self._await(step.id)

    def _retention(self, asked: object) -> object:
        """A step's retention: as asked, else its workflow's (so the steps go with it)."""
        if asked is not None:
            return asked
        return FOREVER if self.root.retention is None else self.root.retention / 1000

    def _timeout(self, seconds: float | None) -> int:
        if seconds is None:
            return self.root.timeout
        return self.clock_ms() + max(1, int(seconds * 1000))

    def _local(self, node_id: str, child_id: str, call: LocalCall) -> Outcome | Suspended:
        name = function_name(call.func)
        record = self._recorded(node_id, child_id)
        if record is not None:
            self._check_same(child_id, record, name)
        else:
            ctx = self._context(child_id)
            result: Outcome | Suspended
            if inspect.isgeneratorfunction(call.func):
                result = self.drive(child_id, call.func(ctx, *call.args, **call.kwargs))
                if isinstance(result, Suspended):
                    return result
            else:
                entry = self.registry.get(name)
                policy = call.options.retry_policy or (entry.retry_policy if entry else None)
                non_retryable = call.options.non_retryable or (entry.non_retryable if entry else ())
                result = self.call(call.func, ctx, call.args, call.kwargs, policy, non_retryable)
            record = self._record(node_id, child_id, name, result, self._retention(call.options.retention))
        if record.pending:  # created by someone else under this id: wait for it like a remote
            return self._await(child_id) if not call.handle else (True, Promise(child_id))
        if call.handle:
            return True, Promise(child_id)
        return outcome_of(record)

    def _record(self, node_id: str, child_id: str, name: str, result: Outcome, retention: object) -> DurablePromise:
        ok, value = result
        if ok:
            try:
                state, encoded = State.RESOLVED, encode_value(value)
            except EncodingError as e:
                state, encoded = State.REJECTED, encode_error(e)
        else:
            state, encoded = State.REJECTED, encode_error(value)
        _, record = self.store.create_ex(
            child_id, self.root.timeout, ikey=child_id,
            tags={PARENT_TAG: node_id, ROOT_TAG: self.root.id, FUNC_TAG: name},
            completion=Completion(state, encoded, child_id), retention=retention,
        )
        self.cache[child_id] = record
        return record

    def _remote(self, node_id: str, child_id: str, call: RemoteCall) -> Outcome | Suspended:
        tags = {PARENT_TAG: node_id, ROOT_TAG: self.root.id}
        request = call.request
        if request is not None:
            data = _json_data(request.data)
            tags.update(request.tags or {})
            name = invoke_function(data.encode() if isinstance(data, str) else data) if INVOKE_TAG in tags else None
            timeout = self._timeout(request.timeout)
            ikey, strict, headers = request.ikey or child_id, request.strict, request.headers
        else:
            group = call.options.target or self.group
            name = call.func or ""
            data = invoke_data(name, call.args, call.kwargs)
            tags[INVOKE_TAG] = f"poll://{group}"
            tags.update(call.options.tags or {})
            timeout, ikey, strict, headers = self._timeout(call.options.timeout), child_id, False, None
        if name:
            tags[FUNC_TAG] = name
        record = self._recorded(node_id, child_id)
        if record is None or record.pending:
            _, record = self.store.create_ex(
                child_id, timeout, ikey=ikey, strict=strict, headers=headers, data=data, tags=tags,
                callback=self._callback(child_id), adopt=True, allow_past=True,
                retention=self._retention(call.options.retention),
            )
            self.cache[child_id] = record
        if name and record.tags.get(PARENT_TAG) == node_id:
            self._check_same(child_id, record, name)
        if call.handle:
            return True, Promise(child_id)
        return outcome_of(record) if record.completed else _SUSPEND

    def _wait(
        self, node_id: str, child_id: str, timeout: int, tags: dict[str, str], retention: object
    ) -> Outcome | Suspended:
        record = self._recorded(node_id, child_id)
        if record is None or record.pending:
            _, record = self.store.create_ex(
                child_id, timeout, ikey=child_id, tags=tags, callback=self._callback(child_id), adopt=True,
                allow_past=True, retention=retention,
            )
            self.cache[child_id] = record
        return outcome_of(record) if record.completed else _SUSPEND

    def _await(self, promise_id: str) -> Outcome | Suspended:
        record = self.cache.get(promise_id)
        if record is None or record.pending:
            record = self.store.register_callback(promise_id, self._callback(promise_id))
            self.cache[promise_id] = record
        return outcome_of(record) if record.completed else _SUSPEND

    def _callback(self, awaited_id: str) -> Callback:
        message = TaskMessage(TaskKind.RESUME, self.root.id, self.group, self.function, awaited_id)
        return Callback(self.root.id, self.group, message.encode())

    # -- replay ---------------------------------------------------------------------------------

    def _recorded(self, node_id: str, child_id: str) -> DurablePromise | None:
        if child_id in self.cache:
            return self.cache[child_id]
        if self.fresh:
            return None
        ids = [child_id]
        prefix = node_id + "."
        if child_id.startswith(prefix) and child_id[len(prefix):].isdigit():
            n = int(child_id[len(prefix):])
            ids += [f"{prefix}{i}" for i in range(n + 1, n + REPLAY_WINDOW)]
        self.cache.update(self.store.read_records(ids))
        return self.cache[child_id]

    def _check_same(self, child_id: str, record: DurablePromise, name: str) -> None:
        recorded = record.tags.get(FUNC_TAG)
        if recorded is not None and recorded != name:
            raise ReplayDivergence(
                self.root.id,
                f"workflow {self.root.id!r} diverged on replay at step {child_id!r}: "
                f"recorded {recorded!r}, now {name!r}",
            )


def _json_data(data: Any) -> str | bytes | None:
    """A request's data as stored: text and bytes as they are, anything else as JSON."""
    if data is None or isinstance(data, str | bytes):
        return data
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise EncodingError(f"cannot encode call data as JSON: {e}") from e
