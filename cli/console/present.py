"""What the console's pages show, computed without Flask: promise data as text, durations, a call
tree's timeline and a throughput chart as plain numbers the templates place in SVG.

Everything here returns data; the templates escape every string they print (Jinja2 autoescape), so
no function here builds HTML.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vow.coordinator import DurablePromise
from vow.coordinator.errors import ValidationError

from ..output import format_duration, relative, timestamp
from ..tree import TreeNode, function_name

__all__ = [
    "Bar",
    "Chart",
    "DataView",
    "chart",
    "data_view",
    "format_duration",
    "parse_tags",
    "preview",
    "relative",
    "timeline",
    "timestamp",
]

#: the content type the worker SDK writes on a value that is raw bytes (worker/codec.py)
_OCTET_STREAM = "application/octet-stream"
#: width of the timeline and chart drawings, in SVG user units
SVG_WIDTH = 600


@dataclass(frozen=True, slots=True)
class DataView:
    """Promise data as the page shows it: ``kind`` is json, text, base64 or none."""

    kind: str
    text: str

    @property
    def label(self) -> str:
        return {"json": "JSON", "text": "text (not JSON)", "base64": "bytes, base64", "none": "no data"}[self.kind]


def data_view(data: bytes | None, headers: Mapping[str, str] | None = None) -> DataView:
    """JSON pretty-printed; bytes (octet-stream, or not UTF-8) as base64; other text as it is."""
    if data is None:
        return DataView("none", "")
    if (headers or {}).get("content-type") != _OCTET_STREAM:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            try:
                return DataView("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True))
            except ValueError:
                return DataView("text", text)
    return DataView("base64", base64.b64encode(data).decode("ascii"))


def preview(data: bytes | None, width: int = 60) -> str:
    """Promise data on one line, cut to ``width`` characters."""
    view = data_view(data)
    if view.kind == "json":
        view = DataView("json", json.dumps(json.loads(view.text), ensure_ascii=False))
    text = " ".join(view.text.split()) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` strings (blank ones ignored) as a tag map, or :class:`ValidationError`."""
    tags: dict[str, str] = {}
    for pair in pairs:
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"tag {pair!r} is not of the form key=value")
        tags[key.strip()] = value.strip()
    return tags


# -- the timeline of a call tree ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One child of a call tree on the timeline: where its bar starts and how wide it is."""

    promise: DurablePromise
    func: str | None
    depth: int
    #: ms from the root's creation to this child's creation, and how long it took (or has waited)
    start_ms: int
    duration_ms: int
    x: float
    width: float
    y: int


#: height of one timeline row, in SVG user units
ROW = 22


def _descendants(node: TreeNode, depth: int = 1) -> list[tuple[TreeNode, int]]:
    out: list[tuple[TreeNode, int]] = []
    for child in node.children:
        out.append((child, depth))
        out += _descendants(child, depth + 1)
    return out


def timeline(root: TreeNode, now: int) -> list[Bar]:
    """Every descendant of ``root`` in creation order, as bars on one time axis from the root's
    creation to the last completion (or ``now`` while something is pending)."""
    nodes = sorted(_descendants(root), key=lambda pair: (pair[0].promise.created_on, pair[0].promise.id))
    if not nodes:
        return []
    start = root.promise.created_on
    ends = [n.promise.completed_on or now for n, _ in nodes] + [root.promise.completed_on or now]
    span = max(max(ends) - start, 1)
    bars: list[Bar] = []
    for i, (node, depth) in enumerate(nodes):
        p = node.promise
        begin = max(p.created_on - start, 0)
        length = max((p.completed_on or now) - p.created_on, 0)
        x = SVG_WIDTH * begin / span
        width = max(SVG_WIDTH * length / span, 2.0)
        bars.append(Bar(p, node.func or function_name(p), depth, begin, length, round(min(x, SVG_WIDTH - 2), 1),
                        round(min(width, SVG_WIDTH - x), 1) if x < SVG_WIDTH - 2 else 2.0, i * ROW))
    return bars


# -- throughput charts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chart:
    """A throughput line: SVG polyline points, the highest and the latest rate (tasks/s)."""

    points: str
    peak: float
    latest: float | None
    width: int
    height: int
    window_s: float


def chart(series: Sequence[tuple[float, float]], window_s: float, width: int = 240, height: int = 48) -> Chart:
    """``series`` of (seconds ago, tasks/s) drawn over the last ``window_s`` seconds, newest on
    the right; the vertical scale runs from 0 to the peak."""
    peak = max((rate for _, rate in series), default=0.0)
    scale = peak if peak > 0 else 1.0
    points = []
    for ago, rate in sorted(series, key=lambda s: -s[0]):
        x = width * (1 - min(max(ago, 0.0), window_s) / window_s)
        y = height - 2 - (height - 4) * rate / scale
        points.append(f"{x:.1f},{y:.1f}")
    latest = series[-1][1] if series else None
    return Chart(" ".join(points), round(peak, 2), None if latest is None else round(latest, 2), width, height,
                 window_s)
