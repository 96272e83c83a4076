"""The operator's overview of a store: each logic group's streams, its suspended workflows and its
human waits — what ``vow metrics serve`` exports and the console shows.

Read with the store's public reads only: :func:`vow.coordinator.streams.group_stats` for the
streams, and the pending promises (``store.search(state="pending")``, paged) for the waits, read
against the SDK's tags (``worker/tags.py``):

- a *wait* is a pending promise a workflow created to wait on: tagged ``vow:parent`` (and
  ``vow:root``, its root workflow);
- a *human wait* is a pending promise that no function will complete — no ``resonate:invoke``
  tag (not a remote call), not a durable timer — that a live workflow waits on, by its
  ``vow:root`` tag or by a callback (the Inbox's rule, ``coordinator/waits.py``):
  ``ctx.promise(...)``, a bare ``ctx.rfc(CreateDurablePromiseReq(promise_id=...))``, or a promise
  created elsewhere that a workflow awaits;
- a *suspended workflow* is a pending root workflow with at least one wait pending.

A workflow's group is the one its root's ``resonate:invoke`` tag routes to (``""`` when the root
has none). The scan reads at most ``budget`` pending promises (newest first); past that the
figures cover the newest ones only and :attr:`Overview.complete` is False.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vow.coordinator.errors import ValidationError
from vow.coordinator.records import INVOKE_TAG, DurablePromise
from vow.coordinator.streams import GroupStats, group_stats
from vow.coordinator.tasks import invoke_target
from vow.coordinator.waits import is_human_wait_candidate, waiting_roots
from vow.worker.tags import PARENT_TAG, ROOT_TAG

if TYPE_CHECKING:
    from vow.coordinator.store import RedisStore

__all__ = ["SCAN_BUDGET", "HumanWait", "Overview", "WorkflowWaits", "overview", "workflow_waits"]

#: pending promises read at most by one overview
SCAN_BUDGET = 10_000
_PAGE = 100


@dataclass(frozen=True, slots=True)
class HumanWait:
    """A pending promise a workflow waits on that no function will complete."""

    promise: DurablePromise
    #: the root workflow waiting on it
    root: str
    #: the logic group of the root workflow (``""`` when its root has no invoke tag)
    group: str
    #: milliseconds since it was created
    waiting_ms: int


@dataclass(frozen=True, slots=True)
class WorkflowWaits:
    """The pending waits of workflows, from one scan of the pending promises."""

    #: human waits, newest first
    human: list[HumanWait]
    #: suspended root workflow ids by logic group
    suspended: dict[str, set[str]]
    #: pending promises read
    scanned: int
    #: False when the scan stopped at its budget (the figures cover the newest promises only)
    complete: bool


@dataclass(frozen=True, slots=True)
class Overview:
    """Every figure of ``vow metrics serve``, read at one moment."""

    groups: list[GroupStats]
    waits: WorkflowWaits
    #: the store's clock when read, epoch ms
    now: int
    by_group: dict[str, GroupStats] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_group", {g.group: g for g in self.groups})

    def group_names(self) -> list[str]:
        """Every group with streams, a suspended workflow or a human wait."""
        names = set(self.by_group) | set(self.waits.suspended) | {w.group for w in self.waits.human}
        return sorted(names)

    def human_waits(self, group: str) -> list[HumanWait]:
        return [w for w in self.waits.human if w.group == group]

    def oldest_human_wait_ms(self, group: str) -> int | None:
        """How long the oldest human wait of ``group`` has waited, or None when there is none."""
        waits = self.human_waits(group)
        return max(w.waiting_ms for w in waits) if waits else None


def _group_of(root: DurablePromise | None) -> str:
    tag = root.tags.get(INVOKE_TAG) if root is not None else None
    if tag is None:
        return ""
    try:
        return invoke_target(tag)
    except ValidationError:
        return ""


def _pending(store: RedisStore, budget: int) -> tuple[list[DurablePromise], bool]:
    found: list[DurablePromise] = []
    cursor: str | None = None
    while len(found) < budget:
        page = store.search("*", state="pending", limit=min(_PAGE, budget - len(found)), cursor=cursor)
        found += page.promises
        cursor = page.cursor
        if cursor is None:
            return found, True
    return found, False


def workflow_waits(store: RedisStore, budget: int = SCAN_BUDGET, now: int | None = None) -> WorkflowWaits:
    """Scan up to ``budget`` pending promises for workflows' waits (see the module docstring)."""
    now = store.now() if now is None else now
    pending, complete = _pending(store, budget)
    waits = [p for p in pending if PARENT_TAG in p.tags and p.tags.get(ROOT_TAG)]
    # The Inbox's rule (coordinator/waits.py): a human wait is a candidate some root waits on,
    # by its tag or by a callback (a promise created elsewhere that a workflow awaits).
    candidates = [p for p in pending if is_human_wait_candidate(p)]
    candidate_roots = waiting_roots(store, candidates)
    wanted = {p.tags[ROOT_TAG] for p in waits} | {r[0] for r in candidate_roots if r}
    roots = store.read_records(wanted) if wanted else {}
    live = {rid: r for rid, r in roots.items() if r is not None and r.pending}
    suspended: dict[str, set[str]] = {}
    for promise in waits:
        root_id = promise.tags[ROOT_TAG]
        if root_id in live:  # else its workflow completed meanwhile: nobody waits on it any more
            suspended.setdefault(_group_of(live[root_id]), set()).add(root_id)
    human: list[HumanWait] = []
    for promise, waiting in zip(candidates, candidate_roots, strict=True):
        if waiting and waiting[0] in live:
            group = _group_of(live[waiting[0]])
            suspended.setdefault(group, set()).add(waiting[0])
            human.append(HumanWait(promise, waiting[0], group, max(0, now - promise.created_on)))
    return WorkflowWaits(human=human, suspended=suspended, scanned=len(pending), complete=complete)


def overview(store: RedisStore, groups: Sequence[str] | None = None, budget: int = SCAN_BUDGET) -> Overview:
    """Streams of ``groups`` (every known group when None) and the workflows' waits."""
    now = store.now()
    return Overview(groups=group_stats(store, groups), waits=workflow_waits(store, budget, now), now=now)
