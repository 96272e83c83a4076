"""Reading a call graph back from the promises the worker SDK tagged (``vow tree``).

Built on the store's public search: the promises ``{root}.*`` by id, and those tagged with the
root as parent or root (``worker/tags.py``), recursively for children with explicit ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vow.coordinator.records import DurablePromise
from vow.coordinator.tasks import invoke_function
from vow.coordinator.validate import check_id
from vow.worker.tags import FUNC_TAG, PARENT_TAG, ROOT_TAG

if TYPE_CHECKING:
    from vow.coordinator.store import RedisStore

__all__ = ["TreeNode", "call_tree", "escape_glob", "function_name"]

#: promises read per search call while collecting a call tree (the store's maximum page)
_TREE_PAGE = 100

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def function_name(promise: DurablePromise) -> str | None:
    """The function a promise runs: ``func`` of its invoke JSON data, else its ``vow:func`` tag."""
    return invoke_function(promise.param.data) or promise.tags.get(FUNC_TAG)


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
