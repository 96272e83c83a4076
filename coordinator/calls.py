"""Starting a function by hand and reading a call graph (``vow invoke``, ``vow tree``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .records import FUNC_TAG, INVOKE_TAG, PARENT_TAG, ROOT_TAG, DurablePromise
from .validate import check_group, check_id

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["DEFAULT_GROUP", "TreeNode", "call_tree", "escape_glob", "function_name", "invoke"]

#: the logic group ``vow invoke`` targets when none is named
DEFAULT_GROUP = "default"
#: promises read per search call while collecting a call tree (the store's maximum page)
_TREE_PAGE = 100

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def invoke(
    store: RedisStore,
    promise_id: str,
    func: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    group: str = DEFAULT_GROUP,
    timeout_ms: int,
) -> DurablePromise:
    """Create ``promise_id`` as a call of ``func`` in ``group`` (the seed's invoke convention).

    The data is ``{"func": ..., "args": [...], "kwargs": {...}}`` as JSON and the tag
    ``resonate:invoke=poll://<group>`` makes the store queue the invoke task in the same step.
    ``timeout_ms`` is relative to now by the store's clock.
    """
    if not func:
        raise ValidationError("function name must not be empty")
    data = json.dumps({"func": func, "args": list(args), "kwargs": dict(kwargs or {})})
    tags = {INVOKE_TAG: f"poll://{check_group(group)}"}
    return store.create(promise_id, store.now() + timeout_ms, data=data, tags=tags)


def function_name(promise: DurablePromise) -> str | None:
    """The function a promise runs: ``func`` of its invoke JSON data, else its ``vow:func`` tag."""
    data = promise.param.data
    if data is not None:
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("func"), str) and body["func"]:
            return str(body["func"])
    return promise.tags.get(FUNC_TAG)


def escape_glob(text: str) -> str:
    """``text`` with the search glob's metacharacters (``* ? [ ] \\``) escaped by a backslash."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


@dataclass
class TreeNode:
    """A promise in a call tree, with its function name and children (oldest first)."""

    promise: DurablePromise
    func: str | None
    children: list[TreeNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.promise.id,
            "state": self.promise.state.value,
            "func": self.func,
            "children": [c.to_dict() for c in self.children],
        }


def _search_all(store: RedisStore, pattern: str, tags: dict[str, str] | None = None) -> list[DurablePromise]:
    found: list[DurablePromise] = []
    cursor: str | None = None
    while True:
        page = store.search(pattern, tags=tags, limit=_TREE_PAGE, cursor=cursor)
        found += page.promises
        cursor = page.cursor
        if cursor is None:
            return found


def _collect(store: RedisStore, root_id: str) -> dict[str, DurablePromise]:
    """Every promise under ``root_id``: ``{id}.*`` by id, and children tagged with the root."""
    nodes: dict[str, DurablePromise] = {}
    searches: list[tuple[str, dict[str, str] | None]] = [
        (escape_glob(root_id) + ".*", None),
        ("*", {PARENT_TAG: root_id}),
        ("*", {ROOT_TAG: root_id}),
    ]
    globbed = {root_id}
    while searches:
        pattern, tags = searches.pop()
        for promise in _search_all(store, pattern, tags):
            nodes.setdefault(promise.id, promise)
        # A child with an explicit id has deterministic children of its own: {child}.n
        for promise_id in list(nodes):
            if promise_id not in globbed and not any(promise_id.startswith(g + ".") for g in globbed):
                globbed.add(promise_id)
                searches.append((escape_glob(promise_id) + ".*", None))
    nodes.pop(root_id, None)
    return nodes


def _parent_of(promise: DurablePromise, known: Iterable[str], root_id: str) -> str:
    ids = set(known)
    tagged = promise.tags.get(PARENT_TAG)
    if tagged is not None and tagged in ids and tagged != promise.id:
        return tagged
    prefix = promise.id
    while "." in prefix:
        prefix = prefix.rsplit(".", 1)[0]
        if prefix in ids:
            return prefix
    return root_id


def _child_order(node: TreeNode) -> tuple[int, int, int, str]:
    """Creation order; within one millisecond numbered children ``{parent}.n`` by n, then the rest."""
    head, _, last = node.promise.id.rpartition(".")
    numbered = bool(head) and last.isdigit()
    return node.promise.created_on, 0 if numbered else 1, int(last) if numbered else 0, node.promise.id


def call_tree(store: RedisStore, root_id: str) -> TreeNode:
    """The call graph under a root promise (``NotFound`` if the root does not exist)."""
    check_id(root_id)
    root = TreeNode(store.get(root_id), None)
    root.func = function_name(root.promise)
    found = _collect(store, root_id)
    nodes = {pid: TreeNode(p, function_name(p)) for pid, p in found.items()}
    nodes[root_id] = root
    parents = {pid: _parent_of(p, nodes, root_id) for pid, p in found.items()}
    reached = {root_id}
    stack = [root_id]
    children: dict[str, list[str]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while stack:  # link nodes reachable from the root; a tag cycle is attached to the root below
        current = stack.pop()
        for child in children.get(current, []):
            if child not in reached:
                reached.add(child)
                nodes[current].children.append(nodes[child])
                stack.append(child)
    root.children += [nodes[pid] for pid in found if pid not in reached]
    for node in nodes.values():
        node.children.sort(key=_child_order)
    return root
