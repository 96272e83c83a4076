"""Per-promise linearizability checking of concurrent store histories (a Wing & Gong search).

This module owns four things:

- the history format: :class:`Op` (one call: who, what, on which promise, with which
  :class:`OpArgs`, when it was invoked and returned, and what it answered: a
  :class:`PromiseView` or a :class:`Failure`);
- recording: :class:`HistoryRecorder` stamps calls made by many threads (``time.monotonic()``),
  :func:`observe` maps a store call's outcome to a result, :func:`perform` makes the call;
- the workload: :func:`run_workload` has 16 threads hammer a small set of promise ids through
  stores made by a factory (so a fault-injecting proxy can sit in between) and returns the history;
- the checker: :func:`check` splits a history per promise id (operations on different promises
  never interact, so each promise is checked alone: P-compositionality, Horn & Kroening) and, for
  each, searches for an order of its operations that respects real time (an operation may come
  next only if no other operation still to place returned before it was invoked) in which the
  sequential model, ``vow.coordinator.states``, answers what every operation answered. States
  already explored, (set of placed operations, model promise), are remembered and not explored
  again. An operation whose outcome is unknown (``Failure("unknown")``, e.g. a connection error)
  may be placed anywhere after its invocation or left out, and its answer is not compared.
  Operations that change nothing are placed greedily (see ``_Search.children``), so a search is
  cheap unless many operations of unknown outcome overlap; a step budget bounds it anyway.

The model is run with ``now`` = the invocation time in ms; histories use timeouts far in the
future, so no promise times out and ``created_on``/``completed_on`` are not compared.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol

import redis

from vow.coordinator import AlreadyCompleted, AlreadyExists, DurablePromise, NotFound, State, Value, VowError, states
from vow.coordinator.states import CompleteRequest, CreateRequest, Status, Transition

__all__ = [
    "FAR_FUTURE_MS",
    "UNKNOWN",
    "CheckResult",
    "Failure",
    "HistoryRecorder",
    "Kind",
    "Op",
    "OpArgs",
    "PromiseStore",
    "PromiseVerdict",
    "PromiseView",
    "Result",
    "SearchBudgetExceeded",
    "WorkloadError",
    "apply",
    "check",
    "check_promise",
    "matches",
    "observe",
    "perform",
    "run_workload",
]

Kind = Literal["create", "resolve", "reject", "cancel", "get"]
KINDS: tuple[Kind, ...] = ("create", "resolve", "reject", "cancel", "get")
COMPLETE_STATES: dict[str, State] = {
    "resolve": State.RESOLVED,
    "reject": State.REJECTED,
    "cancel": State.REJECTED_CANCELED,
}
#: a timeout no history reaches (2100-01-01T00:00:00Z, epoch ms)
FAR_FUTURE_MS = 4_102_444_800_000
#: model applications allowed per promise before the search gives up
DEFAULT_MAX_STEPS = 200_000


# -- the history format ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpArgs:
    """The request: ``timeout`` is used by create only; get uses none of these."""

    ikey: str | None = None
    strict: bool = False
    data: bytes | None = None
    timeout: int = FAR_FUTURE_MS

    def describe(self, kind: Kind) -> str:
        if kind == "get":
            return ""
        parts = [f"ikey={self.ikey!r}", f"data={self.data!r}"]
        if self.strict:
            parts.append("strict")
        if kind == "create":
            parts.append(f"timeout={self.timeout}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class PromiseView:
    """The parts of a returned promise that the checker compares (hashable)."""

    id: str
    state: State
    timeout: int = FAR_FUTURE_MS
    param_data: bytes | None = None
    value_data: bytes | None = None
    ikey_create: str | None = None
    ikey_complete: str | None = None

    @classmethod
    def of(cls, promise: DurablePromise) -> PromiseView:
        return cls(
            id=promise.id,
            state=promise.state,
            timeout=promise.timeout,
            param_data=promise.param.data,
            value_data=promise.value.data,
            ikey_create=promise.idempotency_key_for_create,
            ikey_complete=promise.idempotency_key_for_complete,
        )

    def describe(self) -> str:
        return (f"{self.state.value}(param={self.param_data!r}, value={self.value_data!r}, "
                f"ikc={self.ikey_create!r}, ikv={self.ikey_complete!r}, timeout={self.timeout})")


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer: ``NotFound``, ``AlreadyExists``, ``AlreadyCompleted`` or ``unknown``.

    ``state`` is the state the error named (AlreadyExists/AlreadyCompleted), when known; a
    recorded failure without one matches the model's failure of that kind in any state."""

    kind: str
    state: State | None = None

    def describe(self) -> str:
        return self.kind if self.state is None else f"{self.kind}({self.state.value})"


Result = PromiseView | Failure
#: the answer of an operation whose outcome is unknown (it may or may not have taken effect)
UNKNOWN = Failure("unknown")


@dataclass(frozen=True, slots=True)
class Op:
    """One call as seen by its caller. ``returned_at`` None: no answer came (outcome unknown)."""

    process: int
    kind: Kind
    promise_id: str
    args: OpArgs
    invoked_at: float
    returned_at: float | None
    result: Result

    @property
    def known(self) -> bool:
        """Whether the answer constrains the search (a known outcome must be linearized)."""
        return self.returned_at is not None and self.result != UNKNOWN

    @property
    def deadline(self) -> float:
        """When the operation returned, for real-time order (+inf when its outcome is unknown)."""
        return self.returned_at if self.known and self.returned_at is not None else math.inf

    def describe(self, origin: float = 0.0) -> str:
        end = "?" if self.deadline == math.inf else f"{(self.deadline - origin) * 1000:.3f}"
        return (f"p{self.process} {self.kind}({self.args.describe(self.kind)}) "
                f"[{(self.invoked_at - origin) * 1000:.3f}..{end} ms] -> {self.result.describe()}")


# -- the sequential model ----------------------------------------------------------------------

Model = DurablePromise | None

_ERROR_KINDS = {Status.ALREADY_EXISTS: "AlreadyExists", Status.ALREADY_COMPLETED: "AlreadyCompleted"}


def _answer(transition: Transition) -> Result:
    if transition.status is Status.NOT_FOUND or transition.promise is None:
        return Failure("NotFound")
    if transition.status in _ERROR_KINDS:
        return Failure(_ERROR_KINDS[transition.status], transition.promise.state)
    return PromiseView.of(transition.promise)


def apply(model: Model, op: Op) -> tuple[Model, Result]:
    """Run ``op`` on the model promise: the promise afterwards and the answer the model gives."""
    now = int(op.invoked_at * 1000)
    a = op.args
    if op.kind == "get":
        if model is None:
            return None, Failure("NotFound")
        current = states.apply_timeout(model, now)
        return current, PromiseView.of(current)
    if op.kind == "create":
        request = CreateRequest(op.promise_id, a.timeout, a.ikey, a.strict, Value(data=a.data))
        transition = states.create(model, request, now)
    else:
        done = CompleteRequest(op.promise_id, COMPLETE_STATES[op.kind], a.ikey, a.strict, Value(data=a.data))
        transition = states.complete(model, done, now)
    return (transition.promise if transition.promise is not None else model), _answer(transition)


def matches(recorded: Result, expected: Result) -> bool:
    """Whether a recorded answer is the model's answer (an unknown answer matches anything)."""
    if recorded == UNKNOWN:
        return True
    if isinstance(recorded, Failure):
        return (isinstance(expected, Failure) and recorded.kind == expected.kind
                and (recorded.state is None or recorded.state is expected.state))
    return recorded == expected


def _model_key(model: Model) -> Hashable:
    """What of the model promise can change later answers (not created_on/completed_on)."""
    if model is None:
        return None
    return PromiseView.of(model), tuple(sorted(model.tags.items()))


# -- the search --------------------------------------------------------------------------------


class SearchBudgetExceeded(RuntimeError):
    """The search for one promise took more steps than allowed: the history is too concurrent."""

    def __init__(self, promise_id: str, steps: int, ops: int, unknown: int) -> None:
        super().__init__(
            f"linearizability search for promise {promise_id!r} exceeded its budget of {steps} steps "
            f"({ops} operations, {unknown} with unknown outcome); shorten the history, use more promise "
            f"ids, or pass a larger max_steps"
        )
        self.promise_id = promise_id


@dataclass(frozen=True)
class PromiseVerdict:
    """The outcome for one promise: ``order`` is a linearization, or None when there is none."""

    promise_id: str
    ops: tuple[Op, ...]
    order: tuple[Op, ...] | None
    #: the longest linearizable prefix found (the whole order when linearizable)
    prefix: tuple[Op, ...]
    #: after that prefix: each operation that could come next but does not fit, and the model's answer
    misfits: tuple[tuple[Op, Result], ...]
    steps: int

    @property
    def ok(self) -> bool:
        return self.order is not None

    def explain(self, limit: int = 40) -> str:
        if self.ok:
            return f"promise {self.promise_id!r}: linearizable ({len(self.ops)} ops, {self.steps} steps)"
        origin = min(op.invoked_at for op in self.ops)
        placed = set(map(id, self.prefix))
        rest = [op for op in self.ops if id(op) not in placed and op.known]
        lines = [f"promise {self.promise_id!r}: NOT linearizable ({len(self.ops)} ops); "
                 f"longest linearizable prefix ({len(self.prefix)} ops):"]
        lines += [f"  {i:3d}. {op.describe(origin)}" for i, op in enumerate(self.prefix[-limit:])]
        lines.append("then no operation fits next:")
        lines += [f"  {op.describe(origin)}  -- model answers {want.describe()}" for op, want in self.misfits]
        lines.append(f"operations with known outcome left unplaced ({len(rest)}):")
        lines += [f"  {op.describe(origin)}" for op in rest[:limit]]
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckResult:
    verdicts: dict[str, PromiseVerdict]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts.values())

    @property
    def failures(self) -> list[PromiseVerdict]:
        return [v for v in self.verdicts.values() if not v.ok]

    @property
    def ops(self) -> int:
        return sum(len(v.ops) for v in self.verdicts.values())

    @property
    def unknown(self) -> int:
        return sum(1 for v in self.verdicts.values() for op in v.ops if not op.known)

    def report(self) -> str:
        head = (f"{len(self.verdicts)} promises, {self.ops} ops ({self.unknown} with unknown outcome): "
                + ("all linearizable" if self.ok else f"{len(self.failures)} NOT linearizable"))
        return "\n".join([head, *(v.explain() for v in self.failures)])


Node = tuple[int, Model, tuple[int, ...]]  # placed-ops bit mask, model promise, order placed


class _Search:
    def __init__(self, promise_id: str, ops: Iterable[Op], max_steps: int) -> None:
        self.promise_id = promise_id
        self.ops = sorted(ops, key=lambda op: (op.invoked_at, op.deadline))
        self.required = sum(1 << i for i, op in enumerate(self.ops) if op.known)
        self.max_steps = max_steps
        self.steps = 0
        self.seen: set[tuple[int, Hashable]] = set()
        self.best: tuple[tuple[int, ...], tuple[tuple[Op, Result], ...]] = ((), ())

    def candidates(self, mask: int) -> list[int]:
        """Unplaced ops invoked before every other unplaced op returned (ops sorted by invocation)."""
        open_ops = [i for i in range(len(self.ops)) if not mask >> i & 1]
        horizon = min((self.ops[i].deadline for i in open_ops), default=math.inf)
        return [i for i in open_ops if self.ops[i].invoked_at <= horizon]

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            unknown = sum(1 for op in self.ops if not op.known)
            raise SearchBudgetExceeded(self.promise_id, self.max_steps, len(self.ops), unknown)

    def children(self, node: Node) -> list[Node]:
        """The nodes one placed operation further, each new (mask, model) once.

        Two reductions (checked against a brute-force search in the tests):

        - a known operation that fits without changing the model is placed at once, with no
          alternative explored. Any linearization from here can be reordered to place it first:
          real time allows it (no unplaced op returned before it was invoked), and it changes
          nothing later either, because the model only ever moves forward (absent -> pending ->
          completed, a change being a create that creates, a completion or a timeout) and an op
          that answers the same thing in a later state cannot then be one of those changes (its
          ``now`` is its own invocation time wherever it is placed);
        - an unknown operation that would change nothing is not placed: leaving it unplaced
          allows everything placing it allows (it may still take effect later, or never)."""
        mask, model, order = node
        before = _model_key(model)
        kids: list[Node] = []
        misfits: list[tuple[Op, Result]] = []
        for i in self.candidates(mask):
            self.tick()
            op = self.ops[i]
            after, want = apply(model, op)
            if not matches(op.result, want):
                misfits.append((op, want))
                continue
            key = (mask | 1 << i, _model_key(after))
            if key[1] == before and not op.known:
                continue
            if key[1] == before:
                kids = [] if key in self.seen else [(key[0], after, (*order, i))]
                self.seen.add(key)
                break
            if key not in self.seen:
                self.seen.add(key)
                kids.append((key[0], after, (*order, i)))
        if len(order) >= len(self.best[0]):
            self.best = (order, tuple(misfits))
        return kids

    def run(self) -> PromiseVerdict:
        stack: list[Node] = [(0, None, ())]
        while stack:
            node = stack.pop()
            if node[0] & self.required == self.required:
                return self.verdict(node[2], ())
            stack.extend(reversed(self.children(node)))
        return self.verdict(None, self.best[1])

    def verdict(self, order: tuple[int, ...] | None, misfits: tuple[tuple[Op, Result], ...]) -> PromiseVerdict:
        prefix = self.best[0] if order is None else order
        placed = tuple(self.ops[i] for i in prefix)
        return PromiseVerdict(
            promise_id=self.promise_id,
            ops=tuple(self.ops),
            order=None if order is None else placed,
            prefix=placed,
            misfits=misfits,
            steps=self.steps,
        )


def check_promise(promise_id: str, ops: Iterable[Op], *, max_steps: int = DEFAULT_MAX_STEPS) -> PromiseVerdict:
    """Search for a linearization of the operations on one promise."""
    return _Search(promise_id, ops, max_steps).run()


def check(history: Iterable[Op], *, max_steps: int = DEFAULT_MAX_STEPS) -> CheckResult:
    """Check every promise of ``history``; raises :class:`SearchBudgetExceeded` rather than hang."""
    per_promise: dict[str, list[Op]] = {}
    for op in history:
        per_promise.setdefault(op.promise_id, []).append(op)
    return CheckResult({pid: check_promise(pid, ops, max_steps=max_steps) for pid, ops in per_promise.items()})


# -- recording ---------------------------------------------------------------------------------


class PromiseStore(Protocol):
    """The store methods the workload calls (``RedisStore`` has them)."""

    def create(self, promise_id: str, timeout: int, *, ikey: str | None = None, strict: bool = False,
               data: bytes | None = None) -> DurablePromise: ...

    def get(self, promise_id: str) -> DurablePromise: ...

    def resolve(self, promise_id: str, *, ikey: str | None = None, strict: bool = False,
                data: bytes | None = None) -> DurablePromise: ...

    def reject(self, promise_id: str, *, ikey: str | None = None, strict: bool = False,
               data: bytes | None = None) -> DurablePromise: ...

    def cancel(self, promise_id: str, *, ikey: str | None = None, strict: bool = False,
               data: bytes | None = None) -> DurablePromise: ...

    def close(self) -> None: ...


def perform(store: PromiseStore, kind: Kind, promise_id: str, args: OpArgs) -> DurablePromise:
    """Make the store call that ``kind``/``args`` describe."""
    if kind == "create":
        return store.create(promise_id, args.timeout, ikey=args.ikey, strict=args.strict, data=args.data)
    if kind == "get":
        return store.get(promise_id)
    method = {"resolve": store.resolve, "reject": store.reject, "cancel": store.cancel}[kind]
    return method(promise_id, ikey=args.ikey, strict=args.strict, data=args.data)


def _named_state(text: str) -> State | None:
    try:
        return State(text)
    except ValueError:
        return None


def observe(call: Callable[[], DurablePromise]) -> Result:
    """Make a store call and map its outcome to a result; any other Vow or connection error is unknown."""
    try:
        return PromiseView.of(call())
    except NotFound:
        return Failure("NotFound")
    except AlreadyExists as e:
        return Failure("AlreadyExists", _named_state(e.state))
    except AlreadyCompleted as e:
        return Failure("AlreadyCompleted", _named_state(e.state))
    except (VowError, redis.RedisError, OSError):
        return UNKNOWN


@dataclass(frozen=True, slots=True)
class _Invocation:
    process: int
    kind: Kind
    promise_id: str
    args: OpArgs
    invoked_at: float


@dataclass
class HistoryRecorder:
    """Collects the operations of many threads; stamps with ``time.monotonic()``."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ops: list[Op] = field(default_factory=list)
    _pending: dict[int, _Invocation] = field(default_factory=dict)
    _tokens: int = 0

    def invoke(self, process: int, kind: Kind, promise_id: str, args: OpArgs) -> int:
        """Note an invocation (call right before the call); returns the token for :meth:`respond`."""
        invocation = _Invocation(process, kind, promise_id, args, time.monotonic())
        with self._lock:
            token = self._tokens
            self._tokens += 1
            self._pending[token] = invocation
        return token

    def respond(self, token: int, result: Result) -> Op:
        """Note the answer (call right after the call returned)."""
        returned_at = time.monotonic()
        with self._lock:
            i = self._pending.pop(token)
            op = Op(i.process, i.kind, i.promise_id, i.args, i.invoked_at, returned_at, result)
            self._ops.append(op)
        return op

    def record(self, process: int, kind: Kind, promise_id: str, args: OpArgs,
               call: Callable[[], DurablePromise]) -> Result:
        """Invoke ``call`` between an invocation and a response record."""
        token = self.invoke(process, kind, promise_id, args)
        result = observe(call)
        self.respond(token, result)
        return result

    def history(self) -> list[Op]:
        """Every operation so far; those still without an answer have an unknown outcome."""
        with self._lock:
            pending = [Op(i.process, i.kind, i.promise_id, i.args, i.invoked_at, None, UNKNOWN)
                       for i in self._pending.values()]
            return [*self._ops, *pending]


# -- the workload ------------------------------------------------------------------------------


class WorkloadError(AssertionError):
    """A workload thread failed or did not finish in time (the message names the seed)."""


PlanStep = tuple[Kind, str, OpArgs]
#: relative weights of create, resolve, reject, cancel, get
KIND_WEIGHTS = (3, 2, 1, 1, 3)
STRICT_RATE = 0.3


def default_promise_ids(seed: int, ops: int) -> list[str]:
    """About 25 operations per promise, ids distinct per seed."""
    return [f"lin-{seed}-{i}" for i in range(max(1, ops // 25))]


def _ikey(rng: random.Random, prefix: str, process: int, step: int) -> str | None:
    """None, one of two keys shared by every thread, or a key of this operation alone."""
    roll = rng.random()
    if roll < 1 / 3:
        return None
    if roll < 2 / 3:
        return f"{prefix}-shared-{rng.randrange(2)}"
    return f"{prefix}-{process}.{step}"


def _plan(rng: random.Random, process: int, count: int, ids: Sequence[str], base_timeout: int) -> list[PlanStep]:
    """One thread's program. The thread works on the ids near its progress, so all threads contend
    on the same few promises at the same time (while they are created and completed)."""
    plan: list[PlanStep] = []
    for step in range(count):
        phase = step * len(ids) // max(1, count) + rng.choice((-1, 0, 0, 1))
        promise_id = ids[min(len(ids) - 1, max(0, phase))]
        kind = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
        if kind == "get":
            plan.append((kind, promise_id, OpArgs()))
            continue
        create = kind == "create"
        args = OpArgs(
            ikey=_ikey(rng, "c" if create else "v", process, step),
            strict=rng.random() < STRICT_RATE,
            data=f"{'p' if create else 'v'}{process}.{step}".encode(),
            timeout=base_timeout + rng.randrange(1000) if create else FAR_FUTURE_MS,
        )
        plan.append((kind, promise_id, args))
    return plan


def _worker(process: int, plan: list[PlanStep], store_factory: Callable[[], PromiseStore],
            recorder: HistoryRecorder, start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        store = store_factory()
        try:
            start.wait()
            for kind, promise_id, args in plan:
                recorder.record(process, kind, promise_id, args, partial(perform, store, kind, promise_id, args))
        finally:
            store.close()
    except BaseException as e:  # reported by run_workload
        errors.append(e)
        start.abort()


def _run_threads(seed: int, plans: list[list[PlanStep]], store_factory: Callable[[], PromiseStore],
                 recorder: HistoryRecorder, deadline_s: float) -> None:
    start = threading.Barrier(len(plans), timeout=deadline_s)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_worker, args=(p, plan, store_factory, recorder, start, errors),
                         name=f"lin-{seed}-p{p}", daemon=True)
        for p, plan in enumerate(plans)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + deadline_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise WorkloadError(f"seed={seed}: threads {stuck} did not finish within {deadline_s}s")
    if errors:
        raise WorkloadError(f"seed={seed}: a workload thread failed: {errors[0]!r}") from errors[0]


def run_workload(
    store_factory: Callable[[], PromiseStore],
    *,
    seed: int,
    threads: int = 16,
    ops: int = 1000,
    promise_ids: Sequence[str] | None = None,
    timeout_ms: int = 3_600_000,
    deadline_s: float = 90.0,
) -> list[Op]:
    """Run ``ops`` calls in total from ``threads`` threads (each with its own ``store_factory()``
    store) over ``promise_ids`` and return the recorded history. The seed fixes every thread's
    program (not the interleaving); it is printed so a failing run can be replayed."""
    ids = list(promise_ids) if promise_ids is not None else default_promise_ids(seed, ops)
    print(f"run_workload: seed={seed} threads={threads} ops={ops} promises={len(ids)}")
    rng = random.Random(seed)
    base_timeout = int(time.time() * 1000) + timeout_ms
    plans = [
        _plan(random.Random(rng.getrandbits(64)), p, ops // threads + (p < ops % threads), ids, base_timeout)
        for p in range(threads)
    ]
    recorder = HistoryRecorder()
    _run_threads(seed, plans, store_factory, recorder, deadline_s)
    return recorder.history()
