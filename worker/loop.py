"""The worker loop: reads a logic group's tasks from Redis and runs them on a thread pool.

Threads of one worker:

- a reader (one per partition on a cluster) blocked in ``XREADGROUP ... BLOCK`` — an idle worker
  makes no busy loop; it reads at most as many entries as it has free slots;
- ``concurrency`` executor threads, each running one task at a time;
- a maintenance thread (``worker/maintenance.py``): heartbeats, reclaim of entries idle past the
  lease, the timeout/schedule/expiry sweeps, the orphan sweep and consumer cleanup.

The path of a task: the reader reads a batch (``XREADGROUP``) and claims every runnable task of it
in one script call (one per partition on a cluster); an executor thread runs it; its settle goes
out in a group commit with the settles of the other threads that finished meanwhile
(``worker/commits.py``, ``worker/batching.py``). A plain function's first delivery whose task
message carries its call is not claimed: it runs at once and its settle is fenced against any
live lease (``WorkerSettings.lease_plain_calls`` turns that off).

On a graceful stop the worker removes its own consumer wherever it holds no entry.

Delivery: at least once. A task delivered more than ``max_deliveries`` times goes to the group's
dead-letter stream with the reason instead of running again.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vow.coordinator import keys
from vow.coordinator.errors import NotConfirmed, StoreConnectionError, VowError
from vow.coordinator.executions import Delivery, Settlement
from vow.coordinator.lua import Answer, Claim, ClaimStatus
from vow.coordinator.records import DurablePromise, State, Value
from vow.coordinator.store import RedisStore
from vow.coordinator.tasks import TaskKind, invoke_function

from .commits import Commits
from .consumer import READ_BLOCK_S, Consumer
from .executor import Abandoned, Completed, Errored, Execution, Missing, Suspended
from .maintenance import Maintenance
from .metrics import NO_METRICS, Metrics, TaskOutcome, function_label, queue_wait_s
from .registry import Registry
from .settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings"]

log = logging.getLogger("vow.worker")


@dataclass
class _Held:
    delivery: Delivery
    claim: Claim | None = None  # claimed by the reader with the rest of its batch
    unleased: bool = False  # a plain function's first delivery, run without a claim
    promise_id: str | None = None  # the lease held (claimed, not yet committed or released)
    counter: int | None = None
    state: str = "queued"  # queued -> running -> finished, or queued -> released
    finished: threading.Event = field(default_factory=threading.Event)


class Worker:
    """Serves one logic group of a registry until stopped."""

    def __init__(
        self,
        store: RedisStore,
        group: str,
        registry: Registry,
        dependencies: Mapping[str, Any],
        settings: WorkerSettings | None = None,
        consumer: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.group = group
        self.registry = registry
        self.dependencies = dependencies
        self.settings = settings or WorkerSettings()
        self.reader = Consumer(store, group, consumer)
        self.consumer = self.reader.name
        self.tasks = store.tasks
        self.stopping = threading.Event()  # no new reads; retry waits give up
        self._done = threading.Event()      # maintenance ends
        self._held: dict[tuple[int, str], _Held] = {}
        self._lock = threading.Condition()
        # Daemon threads, so a worker past its grace period exits at once instead of waiting for
        # a task it already released.
        self._tasks: queue.SimpleQueue[_Held | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: group commits of settles, one per batch key (TaskStore.batch_key)
        self.commits = Commits(store, group, self.reader.name, self.settings.read_batch)
        self.started = False
        self.tasks_done = 0
        self.metrics = metrics or NO_METRICS

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Worker:
        if self.started:
            return self
        self.started = True
        self._connect_with_backoff()
        readers: list[list[int] | None] = (
            [[p] for p in range(keys.PARTITIONS)] if self.store.is_cluster else [None]
        )
        for i in range(self.settings.concurrency):
            self._spawn(f"vow-task-{i}", self._task_loop)
        for i, partitions in enumerate(readers):
            self._spawn(f"vow-reader-{i}", functools.partial(self._read_loop, partitions))
        self._spawn("vow-maintenance", Maintenance(self, self._done).loop)
        self.metrics.watch(self)
        log.info("worker %s serving group %r (%d functions)", self.consumer, self.group, len(self.registry))
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _connect_with_backoff(self) -> None:
        delay = 0.1
        while True:
            try:
                self.tasks.ensure_group(self.group)
                self.store.estimated_now()  # measures the clock offset to the server once
                self._check_eviction()
                return
            except StoreConnectionError as e:
                log.warning("cannot reach Redis (%s); retrying in %.1fs", e, delay)
                if self.stopping.wait(delay):
                    return
                delay = min(delay * 2, 2.0)

    def _check_eviction(self) -> None:
        policy = self.store.eviction_policy()
        if policy is None:
            log.warning("cannot read maxmemory-policy (CONFIG refused); Vow needs noeviction")
        elif policy != "noeviction":
            log.warning("maxmemory-policy is %s: Redis may evict promises and tasks; set noeviction", policy)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop reading, let in-flight tasks finish within the grace period, release the rest."""
        if not self.started or self._done.is_set():
            return
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.stopping.set()
        self.reader.close()  # unblocks a reader blocked in XREADGROUP (it reads nothing more)
        with self._lock:
            self._lock.notify_all()
            held = list(self._held.values())
            queued = [h for h in held if h.state == "queued"]
            for h in queued:
                h.state = "released"
            running = [h for h in held if h.state == "running"]
        for h in queued:
            self._give_back(h, counted=False)
        deadline = time.monotonic() + grace
        for h in running:
            h.finished.wait(max(0.0, deadline - time.monotonic()))
        leftover = [h for h in running if not h.finished.is_set()]
        for h in leftover:
            self._give_back(h, counted=False)  # its thread may go on; its commit will be fenced
        self._done.set()
        for _ in range(self.settings.concurrency):
            self._tasks.put(None)
        # A reader that had not blocked yet when we closed it blocks at most one read more; an
        # entry it took meanwhile (even the ones we just requeued) is an orphan given back below.
        self.reader.close()
        for thread in self._threads:
            if thread.name == "vow-maintenance" or thread.name.startswith("vow-reader"):
                thread.join(timeout=READ_BLOCK_S + 3)
        self.reader.close()  # what a cut read reconnected meanwhile
        orphans = self._give_back_orphans()
        self._leave_group()
        log.info("worker %s stopped (%d released)", self.consumer, len(queued) + len(leftover) + orphans)

    def _leave_group(self) -> None:
        """Remove this consumer from its group wherever it holds no entry (a task it could not
        give back stays pending to it, and so does its name, until another worker reclaims it)."""
        try:
            self.tasks.remove_consumers(self.group, consumer=self.consumer)
        except VowError as e:
            log.warning("could not leave group %r: %s", self.group, e)

    def _give_back_orphans(self) -> int:
        """Requeue entries still pending to this consumer that no thread runs (a read whose reply
        was cut by the shutdown, say), so other workers get them now rather than after the lease."""
        try:
            orphans = self.tasks.own_pending(self.group, self.consumer)
        except VowError as e:
            log.warning("could not list this worker's pending entries: %s", e)
            return 0
        with self._lock:
            running = set(self._held)
        count = 0
        for delivery in orphans:
            if (delivery.partition, delivery.entry_id) in running:
                continue
            if delivery.message is None:
                continue  # malformed: leave it for the next worker to dead-letter
            self._give_back(_Held(delivery), counted=False)
            count += 1
        return count

    def _give_back(self, held: _Held, counted: bool) -> None:
        """Release the lease (if claimed) and put the entry back for another worker."""
        try:
            if held.promise_id is not None and held.counter is not None:
                self.tasks.release(held.promise_id, held.counter)
            message = held.delivery.message
            if message is not None:
                n = held.delivery.deliveries if counted else max(0, held.delivery.deliveries - 1)
                self._requeue(held.delivery, dataclasses.replace(message, deliveries=n).encode())
        except VowError as e:
            log.warning("could not give back %s: %s (it will be reclaimed after the lease)", held.delivery.entry_id, e)
        finally:
            self._forget(held.delivery)

    def gauges(self) -> tuple[int, int]:
        """Tasks running now and execution leases held now (the metrics read them when scraped)."""
        with self._lock:
            held = list(self._held.values())
        return sum(h.state == "running" for h in held), sum(h.counter is not None for h in held)

    # -- reading --------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.settings.concurrency - len(self._held)

    def _read_loop(self, partitions: list[int] | None) -> None:
        delay = 0.1
        while not self.stopping.is_set():
            with self._lock:
                while self._free_slots() <= 0 and not self.stopping.is_set():
                    self._lock.wait(1.0)
                free = self._free_slots()
            if self.stopping.is_set():
                return
            try:
                deliveries = self.reader.read(min(free, self.settings.read_batch), partitions=partitions)
                delay = 0.1
            except (VowError, OSError, ValueError) as e:  # ValueError: socket closed under a read by stop()
                if self.stopping.is_set():
                    return
                log.warning("reading tasks failed (%s); retrying in %.1fs", e, delay)
                if "NOGROUP" in str(e):
                    self._connect_with_backoff()
                if self.stopping.wait(delay):
                    return
                delay = min(delay * 2, 2.0)
                continue
            for held in self._claim_ahead(deliveries):
                if self.stopping.is_set():  # read while stopping: hand it straight back
                    self._give_back(held, counted=False)
                else:
                    self._submit(held)

    def _claim_ahead(self, deliveries: list[Delivery]) -> list[_Held]:
        """Claim the executions of a read's runnable tasks in one script call per batch key (one
        in all on a standalone server); a task whose batch could not be claimed claims for
        itself when it runs."""
        held = [_Held(d) for d in deliveries]
        batches: dict[int, list[_Held]] = {}
        for h in held:
            if h.delivery.message is not None and self._refusal(h.delivery) is None:
                if self._may_run_unleased(h.delivery):
                    h.unleased = True
                    continue
                batches.setdefault(self.tasks.batch_key(h.delivery.message.id), []).append(h)
        for batch in batches.values():
            tasks = [(h.delivery.message.id, h.delivery.message.func) for h in batch if h.delivery.message]
            try:
                claims = self.tasks.claim_many(
                    tasks, group=self.group, consumer=self.consumer, lease_ms=self.settings.lease_ms
                )
            except VowError as e:
                log.warning("claiming %d task(s) failed (%s); each claims for itself", len(batch), e)
                continue
            for h, (promise_id, _), claim in zip(batch, tasks, claims, strict=True):
                h.claim = claim
                if claim.status is ClaimStatus.OK:
                    h.promise_id, h.counter = promise_id, claim.counter
        return held

    def _may_run_unleased(self, delivery: Delivery) -> bool:
        """A plain function's first delivery that carries its call: it runs without a claim, and
        its commit is fenced against any worker that took the task over (``settle.lua``)."""
        m = delivery.message
        if (self.settings.lease_plain_calls or m is None or m.kind is not TaskKind.INVOKE or m.data is None
                or m.deliveries or delivery.deliveries != 1):
            return False
        entry = self.registry.get(m.func)
        return entry is not None and not entry.is_generator

    def _submit(self, held: _Held) -> None:
        delivery = held.delivery
        key = (delivery.partition, delivery.entry_id)
        with self._lock:
            if key in self._held:
                return  # already running here (a reclaim of our own entry)
            self._held[key] = held
        self._tasks.put(held)

    def _task_loop(self) -> None:
        while True:
            held = self._tasks.get()
            if held is None:
                return
            with self._lock:
                if held.state != "queued":
                    continue
                held.state = "running"
            try:
                self._process(held)
            finally:
                held.state = "finished"
                held.finished.set()

    def _forget(self, delivery: Delivery) -> None:
        with self._lock:
            self._held.pop((delivery.partition, delivery.entry_id), None)
            self._lock.notify_all()

    # -- processing -----------------------------------------------------------------------------

    def _process(self, held: _Held) -> None:
        delivery = held.delivery
        started = time.monotonic()
        outcome = "?"
        try:
            outcome = self._handle(held)
        except Abandoned:
            outcome = "released (stopping)"
            self._give_back(held, counted=False)
        except (StoreConnectionError, NotConfirmed) as e:
            outcome = f"interrupted ({e}); left for reclaim"
        except Exception as e:  # a bug in Vow itself: keep the worker alive, leave the entry pending
            outcome = f"internal error {type(e).__name__}: {e}"
            log.exception("task %s failed inside the worker", delivery.entry_id)
        finally:
            self._forget(delivery)
            self.tasks_done += 1
        message = delivery.message
        promise_id, kind = (message.id, message.kind.value) if message else (delivery.entry_id, "?")
        function, elapsed_ms = (message.func if message else "") or "-", (time.monotonic() - started) * 1000
        log.info(
            "task %s %s %s -> %s in %.1f ms", promise_id, kind, function, outcome, elapsed_ms,
            extra={"promise_id": promise_id, "kind": kind, "group": self.group, "function": function,
                   "outcome": outcome, "duration_ms": round(elapsed_ms, 1)},
        )

    def _refusal(self, delivery: Delivery) -> str | None:
        """Why this entry must go to the dead-letter stream without running, if it must."""
        message = delivery.message
        limit = self.settings.max_deliveries
        if message is None:
            return f"malformed task message: {delivery.malformed}"
        if message.group != self.group:
            return f"task for group {message.group!r} read by group {self.group!r}"
        if delivery.deliveries > limit:
            return f"delivered {delivery.deliveries} times without completing (limit {limit})"
        return None

    def _handle(self, held: _Held) -> str:
        delivery = held.delivery
        reason = self._refusal(delivery)
        if reason is not None:
            self._dead_letter(delivery, reason)
            return f"dead-lettered: {reason}"
        message = delivery.message
        assert message is not None
        if held.unleased:
            done = self._run_unleased(held)
            if done is not None:
                return done
        claim = (held.claim or self.tasks.claim(
            message.id, group=self.group, consumer=self.consumer, func=message.func, lease_ms=self.settings.lease_ms
        )).checked()
        if claim.status is ClaimStatus.GONE:
            self._dead_letter(delivery, f"promise {message.id!r} does not exist")
            return "dead-lettered (no promise)"
        if claim.status is ClaimStatus.DONE:
            self.tasks.ack(self.group, self.consumer, delivery)
            return "already completed"
        if claim.status is ClaimStatus.BUSY:
            if delivery.deliveries - message.deliveries <= 1:
                # The lease holder drives once more (wake flag); should it die first, the orphan
                # sweep re-queues its execution.
                self.tasks.ack(self.group, self.consumer, delivery)
            return "busy elsewhere"
        assert claim.promise is not None
        held.promise_id, held.counter = message.id, claim.counter
        promise = claim.promise
        function = self._started(delivery, lambda: invoke_function(promise.param.data) or message.func)
        began, outcome = time.monotonic(), TaskOutcome.RELEASED
        try:
            text, outcome = self._drive(held, claim.promise, claim.counter)
            return text
        finally:
            self.metrics.task_finished(self.group, function, outcome, time.monotonic() - began)

    def _drive(self, held: _Held, root: DurablePromise, counter: int) -> tuple[str, TaskOutcome]:
        """Run the claimed execution of ``root`` under ``counter`` and commit what it came to."""
        delivery = held.delivery
        message = delivery.message
        assert message is not None
        fresh = counter == 1
        while True:
            execution = Execution(
                store=self.store, registry=self.registry, group=self.group, dependencies=self.dependencies,
                root=root, fresh=fresh, stop=self.stopping, metrics=self.metrics,
            )
            result = execution.run()
            if isinstance(result, Missing):
                self.tasks.release(message.id, counter)
                held.promise_id = held.counter = None
                if delivery.deliveries >= self.settings.max_deliveries:
                    self._dead_letter(delivery, f"{result.error} (after {delivery.deliveries} deliveries)")
                    return "dead-lettered (unknown function)", TaskOutcome.RELEASED
                self._requeue(delivery, dataclasses.replace(message, deliveries=delivery.deliveries).encode())
                return f"requeued: {result.error}", TaskOutcome.RELEASED
            held.counter = None  # committing: the heartbeat leaves this execution alone
            if isinstance(result, Suspended):
                answer = self.tasks.suspend(
                    message.id, counter, group=self.group, consumer=self.consumer, delivery=delivery
                )
                if answer is Answer.WAKE:
                    held.counter, fresh = counter, False
                    continue
                if answer is Answer.OK:
                    return "suspended", TaskOutcome.SUSPENDED
                return "lost lease (fenced)", TaskOutcome.FENCED
            state, value = self.commits.final_value(result)
            answer = self.commits.settle(Settlement(message.id, counter, state, value, delivery))
            if answer is not Answer.OK:
                return "lost lease (fenced)", TaskOutcome.FENCED
            if state is State.RESOLVED:
                return "resolved", TaskOutcome.SUCCEEDED
            return "rejected", TaskOutcome.FAILED

    def _started(self, delivery: Delivery, name: Callable[[], str]) -> str:
        """Count a task's start; its ``function`` label, computed only when metrics are on (the
        label of a claimed call costs a JSON parse of its data)."""
        if not self.metrics.enabled:
            return ""
        function = function_label(self.registry, name())
        self.metrics.task_started(self.group, function, queue_wait_s(delivery.entry_id, self.store.estimated_now()))
        return function

    def _run_unleased(self, held: _Held) -> str | None:
        """Run a plain function's first delivery from the call its task message carries, and
        commit it fenced by any live lease (``settle.lua``, counter 0). None: the promise's
        param is not what the message carried; claim and run it the usual way."""
        message = held.delivery.message
        assert message is not None and message.data is not None
        root = DurablePromise(
            id=message.id, state=State.PENDING, param=Value(data=message.data), value=Value(), timeout=0,
            idempotency_key_for_create=None, idempotency_key_for_complete=None, tags={}, created_on=0,
            completed_on=None,
        )
        function = self._started(held.delivery, lambda: message.func)
        began, outcome = time.monotonic(), TaskOutcome.RELEASED
        try:
            result = Execution(
                store=self.store, registry=self.registry, group=self.group, dependencies=self.dependencies,
                root=root, fresh=True, stop=self.stopping, metrics=self.metrics,
            ).run()
            if not isinstance(result, (Completed, Errored)):
                return None  # (a plain function does not suspend; its registration is checked)
            state, value = self.commits.final_value(result)
            settlement = Settlement(message.id, 0, state, value, held.delivery, ran_with=message.data)
            answer = self.commits.settle(settlement)
            if answer is Answer.OK:
                outcome = TaskOutcome.SUCCEEDED if state is State.RESOLVED else TaskOutcome.FAILED
                return "resolved" if state is State.RESOLVED else "rejected"
            if answer is Answer.FENCED:
                outcome = TaskOutcome.FENCED
                return "taken over by another worker (fenced)"
            if answer is Answer.DONE:
                return "already completed (result dropped)"
            if answer is Answer.GONE:
                self._dead_letter(held.delivery, f"promise {message.id!r} does not exist")
                return "dead-lettered (no promise)"
            log.warning("task %s carried a call its promise does not have; claiming it", message.id)
            return None
        finally:
            self.metrics.task_finished(self.group, function, outcome, time.monotonic() - began)

    def _requeue(self, delivery: Delivery, message: bytes) -> None:
        self.tasks.requeue(self.group, self.consumer, delivery, message)

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.tasks.dead_letter(self.group, self.consumer, delivery, reason)
        self.metrics.task_dead_lettered(self.group, function_label(self.registry, delivery.message))

    # -- for the maintenance thread (worker/maintenance.py) ---------------------------------------

    def held_now(self) -> list[_Held]:
        with self._lock:
            return list(self._held.values())

    def free_slots(self) -> int:
        with self._lock:
            return self._free_slots()

    def submit_reclaimed(self, delivery: Delivery) -> None:
        self.metrics.task_reclaimed(self.group, function_label(self.registry, delivery.message))
        self._submit(_Held(delivery))
