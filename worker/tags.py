"""The tags the worker SDK writes on the promises it creates (``vow:*``), so tools can read a
call graph back: ``vow tree`` and the operators' views.

The store gives no tag a meaning except ``resonate:invoke``, ``resonate:timeout`` and ``vow:root``
(its retention anchor, ``coordinator/records.py``); the others are conventions of the SDK alone.
"""

from __future__ import annotations

from vow.coordinator.records import ANCHOR_TAG

__all__ = ["FUNC_TAG", "PARENT_TAG", "ROOT_TAG"]

#: a child promise's parent id
PARENT_TAG = "vow:parent"
#: a child promise's root workflow id; the store's retention anchor (kept as long as the root)
ROOT_TAG = ANCHOR_TAG
#: the function a promise runs (or ran, for a recorded step)
FUNC_TAG = "vow:func"
