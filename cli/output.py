"""How the CLI prints: records, tables and trees that fit 80 columns, and their JSON forms.

Promise data is shown decoded: UTF-8 JSON as JSON; anything else as base64 with a marker
(``{"base64": "..."}`` in JSON output, ``base64:...`` in text).
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from vow.coordinator import DurablePromise, Schedule
from vow.coordinator.memory import MemoryRow
from vow.coordinator.streams import ENTRY_DELETED, DeadLetter, GroupStats, PendingEntry
from vow.coordinator.tasks import TaskMessage

from .tree import TreeNode

__all__ = [
    "WIDTH",
    "decode_data",
    "emit_json",
    "format_dead_letters",
    "format_duration",
    "format_group_table",
    "format_pending",
    "format_promise",
    "format_promise_table",
    "format_schedule",
    "format_schedule_table",
    "format_tree",
    "promise_json",
    "schedule_json",
]

#: columns every text output fits in
WIDTH = 80
_LABEL = 15


def emit_json(value: Any, *, one_line: bool = False) -> None:
    """``value`` as JSON on stdout (indented, or on one line for a stream of frames)."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=None if one_line else 2))


def decode_data(data: bytes | None) -> Any:
    """The JSON value of promise data, or ``{"base64": ...}`` when it is not UTF-8 JSON."""
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"base64": base64.b64encode(data).decode("ascii")}


def data_text(data: bytes | None) -> str:
    """Promise data as one line of text."""
    if data is None:
        return "-"
    try:
        return json.dumps(json.loads(data.decode("utf-8")), ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return "base64:" + base64.b64encode(data).decode("ascii")


def promise_json(promise: DurablePromise) -> dict[str, Any]:
    record = promise.to_dict()
    record["param"]["data"] = decode_data(promise.param.data)
    record["value"]["data"] = decode_data(promise.value.data)
    return record


def now_ms() -> int:
    return int(time.time() * 1000)


def format_duration(ms: int) -> str:
    """A short human duration: ``450ms``, ``12s``, ``5m 3s``, ``2h 5m``, ``3d 4h``."""
    ms = abs(ms)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    if seconds < 60:
        return f"{ms / 1000:.1f}s" if ms < 10_000 else f"{seconds}s"
    units = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if seconds >= size:
            parts.append(f"{seconds // size}{name}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def timestamp(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def relative(ms: int, now: int) -> str:
    return f"in {format_duration(ms - now)}" if ms > now else f"{format_duration(now - ms)} ago"


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``…`` when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _pairs(mapping: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items())) or "-"


def _line(label: str, text: str) -> str:
    indent = " " * _LABEL
    lines = textwrap.wrap(
        text, WIDTH, initial_indent=f"{label:<{_LABEL}}", subsequent_indent=indent,
        break_long_words=True, break_on_hyphens=False, drop_whitespace=False,
    )
    return "\n".join(line.rstrip() for line in lines) if text else label


def format_promise(promise: DurablePromise, now: int | None = None) -> str:
    """A promise as a labelled record."""
    now = now_ms() if now is None else now
    timeout = f"{timestamp(promise.timeout)}"
    if promise.pending:
        timeout += f" ({relative(promise.timeout, now)})"
    rows = [
        ("id", promise.id),
        ("state", promise.state.value),
        ("created", f"{timestamp(promise.created_on)} ({relative(promise.created_on, now)})"),
        ("timeout", timeout),
        ("completed", timestamp(promise.completed_on)),
        ("tags", _pairs(promise.tags)),
        ("param data", data_text(promise.param.data)),
        ("param headers", _pairs(promise.param.headers)),
        ("value data", data_text(promise.value.data)),
        ("value headers", _pairs(promise.value.headers)),
        ("create ikey", promise.idempotency_key_for_create or "-"),
        ("complete ikey", promise.idempotency_key_for_complete or "-"),
    ]
    return "\n".join(_line(label, text) for label, text in rows)


def _row(cells: Sequence[str], widths: Sequence[int], right: frozenset[int] = frozenset()) -> str:
    out = []
    for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        text = fit(cell, width)
        out.append(text.rjust(width) if i in right else text.ljust(width))
    return "  ".join(out).rstrip()


def _table(
    headers: Sequence[str], widths: Sequence[int], rows: Iterable[Sequence[str]], right: frozenset[int] = frozenset()
) -> str:
    return "\n".join([_row(headers, widths, right), *(_row(r, widths, right) for r in rows)])


def format_promise_table(promises: Sequence[DurablePromise], now: int | None = None) -> str:
    now = now_ms() if now is None else now
    rows = [
        (p.id, p.state.value, relative(p.created_on, now),
         relative(p.timeout, now) if p.pending else timestamp(p.completed_on)[:16])
        for p in promises
    ]
    headers = ("ID", "STATE", "CREATED", "TIMEOUT/DONE")
    # The last three columns take what they need; the id gets the rest of the 80 columns.
    tail = [max(len(headers[i]), *(len(r[i]) for r in rows)) for i in (1, 2, 3)]
    id_width = max(len(headers[0]), min(max((len(r[0]) for r in rows), default=2), WIDTH - sum(tail) - 6))
    return _table(headers, (id_width, *tail), rows)


def format_tree(root: TreeNode) -> str:
    lines: list[str] = []

    def label(node: TreeNode) -> str:
        func = f"  {node.func}" if node.func else ""
        return f"{node.promise.id}  {node.promise.state.value}{func}"

    def walk(node: TreeNode, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(fit(prefix + ("└── " if last else "├── ") + label(child), WIDTH))
            walk(child, prefix + ("    " if last else "│   "))

    lines.append(fit(label(root), WIDTH))
    walk(root, "")
    return "\n".join(lines)


def format_group_table(stats: Sequence[GroupStats], rates: Mapping[str, float | None] | None = None) -> str:
    """One row per group (and a line per consumer); a TASKS/S column when ``rates`` is given."""
    if not stats:
        return "no logic groups yet (a group appears when its first task is queued)"
    headers = ["GROUP", "LENGTH", "PENDING", "LAG", "DEAD", "CONSUMERS"]
    widths = [24, 8, 8, 8, 8, 9]
    if rates is not None:
        headers.append("TASKS/S")
        widths = [18, 8, 8, 8, 8, 9, 7]
    right = frozenset(range(1, len(headers)))
    lines = [_row(headers, widths, right)]
    for s in stats:
        cells = [s.group, str(s.length), str(s.pending), "?" if s.lag is None else str(s.lag), str(s.dead),
                 str(len(s.consumers))]
        if rates is not None:
            rate = rates.get(s.group)
            cells.append("-" if rate is None else f"{rate:.1f}")
        lines.append(_row(cells, widths, right))
        for c in s.consumers:
            lines.append(fit(f"    consumer {c.name}  pending {c.pending}  idle {format_duration(c.idle_ms)}", WIDTH))
    return "\n".join(lines)


def format_memory_table(rows: Sequence[MemoryRow], used: int) -> str:
    """Redis memory per kind of record (``~`` marks a total estimated from a sample)."""
    headers = ["RECORDS", "COUNT", "BYTES EACH", "BYTES"]
    widths = [32, 10, 11, 14]
    right = frozenset(range(1, 4))
    lines = [_row(headers, widths, right)]
    for r in rows:
        each = "-" if r.per_record is None else str(r.per_record)
        total = ("~" if r.sampled else "") + str(r.total)
        lines.append(_row([r.kind, str(r.count), each, total], widths, right))
    lines.append(f"Redis used_memory: {used} bytes")
    return "\n".join(lines)


def _function(task: TaskMessage | None, problem: str | None) -> str:
    if task is not None:
        return task.func or task.kind.value
    return "<deleted>" if problem == ENTRY_DELETED else "<malformed>"


def format_pending(entries: Sequence[PendingEntry]) -> str:
    if not entries:
        return "no pending entries"
    rows = [
        (e.ref, e.consumer, format_duration(e.idle_ms), str(e.deliveries), _function(e.task, e.problem),
         e.task.id if e.task else "-")
        for e in entries
    ]
    widths = (20, 12, 7, 9, 12, 8)
    return _table(("ENTRY", "CONSUMER", "IDLE", "DELIVERED", "FUNCTION", "PROMISE"), widths, rows, frozenset({3}))


def format_dead_letters(letters: Sequence[DeadLetter]) -> str:
    if not letters:
        return "no dead letters"
    widths = (20, 16, 9, 27)
    lines: list[str] = []
    group = None
    for d in letters:
        if d.group != group:
            if lines:
                lines.append("")
            group = d.group
            lines += [f"group {group}", _row(("ENTRY", "FUNCTION", "DELIVERED", "REASON"), widths)]
        deliveries = "?" if d.deliveries is None else str(d.deliveries)
        lines.append(_row((d.ref, _function(d.task, d.problem), deliveries, d.reason), widths, frozenset({2})))
    return "\n".join(lines)


# -- schedules ----------------------------------------------------------------------------------


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule's JSON form: its record, promise data decoded as :func:`promise_json` does."""
    record = schedule.to_dict()
    record["promiseData"] = decode_data(schedule.promise_data)
    return record


def _zone(name: str) -> tzinfo | None:
    if name in ("", "UTC"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _tick(ms: int | None, zone: tzinfo | None) -> str:
    """A tick in UTC, preceded by its local time when the schedule has a time zone."""
    if ms is None or zone is None:
        return timestamp(ms)
    local = datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{local} = {timestamp(ms)}"


def format_schedule(schedule: Schedule, now: int | None = None) -> str:
    """A schedule as a labelled record; the next tick in human time and in epoch ms."""
    now = now_ms() if now is None else now
    zone = _zone(schedule.timezone)
    rows = [
        ("id", schedule.id),
        ("description", schedule.description or "-"),
        ("cron", schedule.cron),
        ("time zone", schedule.timezone or "UTC"),
        ("next tick", f"{_tick(schedule.next_tick, zone)} ({relative(schedule.next_tick, now)})"),
        ("next tick ms", str(schedule.next_tick)),
        ("last tick", _tick(schedule.last_tick, zone)),
        ("last promise", schedule.last_promise_id or "-"),
        # what each tick's promise gets
        ("promise id", schedule.promise_id),
        ("timeout", f"{format_duration(schedule.promise_timeout)} after its tick"),
        ("tags", _pairs(schedule.promise_tags)),
        ("data", data_text(schedule.promise_data)),
        ("headers", _pairs(schedule.promise_headers)),
        ("created", f"{timestamp(schedule.created_on)} ({relative(schedule.created_on, now)})"),
        ("create ikey", schedule.idempotency_key or "-"),
    ]
    return "\n".join(_line(label, text) for label, text in rows)


def _split(available: int, first: int, second: int) -> tuple[int, int]:
    """Widths of two columns that want ``first`` and ``second`` and share ``available``."""
    if first + second <= available:
        return first, second
    half = available // 2
    if first <= half:
        return first, available - first
    if second <= available - half:
        return available - second, second
    return half, available - half


def format_schedule_table(schedules: Sequence[Schedule], now: int | None = None) -> str:
    """One row per schedule: id, cron, time zone, next tick (relative), last promise."""
    now = now_ms() if now is None else now
    rows = [
        (s.id, s.cron, s.timezone or "UTC", relative(s.next_tick, now), s.last_promise_id or "-") for s in schedules
    ]
    headers = ("ID", "CRON", "TIME ZONE", "NEXT TICK", "LAST PROMISE")
    # Cron, zone and next tick take what they need up to a cap; id and last promise share the rest.
    caps = {1: 20, 2: 16, 3: 12}
    middle = [min(cap, max([len(headers[i]), *(len(r[i]) for r in rows)])) for i, cap in caps.items()]
    wanted = [max([len(headers[i]), *(len(r[i]) for r in rows)]) for i in (0, 4)]
    id_width, last_width = _split(WIDTH - sum(middle) - 2 * (len(headers) - 1), *wanted)
    return _table(headers, (id_width, *middle, last_width), rows)
