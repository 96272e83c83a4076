"""``vow streams``: the logic groups' task streams, their pending entries and dead letters."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import click

from vow.coordinator import streams as task_streams
from vow.coordinator.memory import memory_report, used_memory
from vow.coordinator.streams import GroupStats

from .options import json_option, open_store, url_option
from .output import emit_json, format_dead_letters, format_group_table, format_memory_table, format_pending, timestamp

__all__ = ["streams"]

#: ANSI: cursor home, clear screen (a monitor frame replaces the previous one on a terminal)
_CLEAR = "\x1b[H\x1b[2J"


@click.group()
def streams() -> None:
    """Inspect task streams: groups, pending entries, dead letters; requeue dead letters.

    Entries are named <partition>-<entry id> (e.g. 3-1712345678901-0): each group has one task
    stream and one dead-letter stream in each of the 16 partitions.
    """


_groups_argument = click.argument("groups", nargs=-1, metavar="[GROUP]...")


@streams.command(
    name="ls",
    epilog="\b\nExamples:\n  vow streams ls\n  vow streams ls email-service --json\n  vow streams ls --memory",
)
@_groups_argument
@click.option("--memory", is_flag=True, help="Also show Redis memory per kind of record.")
@url_option
@json_option
def list_groups(groups: tuple[str, ...], memory: bool, url: str, as_json: bool) -> None:
    """One row per logic group: stream length, pending, lag, dead letters and consumers.

    Lists every group that ever had a task queued, or only the GROUPs named. With --memory, the
    bytes each kind of record takes (JSON: {"groups": [...], "memory": [...], "used_memory": N}).
    """
    store = open_store(url)
    stats = task_streams.group_stats(store, list(groups) or None)
    rows = memory_report(store) if memory else []
    if as_json:
        groups_json = [s.to_dict() for s in stats]
        if memory:
            emit_json({"groups": groups_json, "memory": [r.to_dict() for r in rows], "used_memory": used_memory(store)})
        else:
            emit_json(groups_json)
        return
    click.echo(format_group_table(stats))
    if memory:
        click.echo("")
        click.echo(format_memory_table(rows, used_memory(store)))


def _rates(
    stats: Sequence[GroupStats], previous: dict[str, int], elapsed: float | None
) -> dict[str, float | None]:
    """Tasks per second delivered to each group since the last frame (entries-read deltas)."""
    rates: dict[str, float | None] = {}
    for s in stats:
        before = previous.get(s.group)
        if elapsed is None or elapsed <= 0 or before is None:
            rates[s.group] = None
        else:
            rates[s.group] = max(s.entries_read - before, 0) / elapsed
        previous[s.group] = s.entries_read
    return rates


@streams.command(
    epilog="\b\nExamples:\n  vow streams monitor --interval 2\n  vow streams monitor --once --json"
)
@_groups_argument
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between two frames.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@url_option
@json_option
def monitor(groups: tuple[str, ...], interval: float, once: bool, url: str, as_json: bool) -> None:
    """The 'ls' table refreshed in place, with tasks per second since the previous frame.

    Ctrl-C exits (code 0). With --json, one JSON object per frame, one per line.
    """
    store = open_store(url)
    previous: dict[str, int] = {}
    last: float | None = None
    in_place = not as_json and not once and sys.stdout.isatty()
    try:
        while True:
            stats = task_streams.group_stats(store, list(groups) or None)
            now = time.monotonic()
            rates = _rates(stats, previous, None if last is None else now - last)
            last = now
            if as_json:
                frame = [dict(s.to_dict(), tasks_per_second=rates[s.group]) for s in stats]
                emit_json({"time": timestamp(int(time.time() * 1000)), "groups": frame}, one_line=True)
            else:
                header = f"vow streams monitor  {timestamp(int(time.time() * 1000))}  every {interval:g}s"
                click.echo((_CLEAR if in_place else "") + header + "\n" + format_group_table(stats, rates))
                if not in_place and not once:
                    click.echo()
            if once:
                return
            time.sleep(interval)  # pacing between frames, not synchronisation
    except KeyboardInterrupt:
        return


@streams.command(epilog="\b\nExample:\n  vow streams pending email-service --limit 20")
@click.argument("group")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Entries shown at most (longest idle first).")
@url_option
@json_option
def pending(group: str, limit: int, url: str, as_json: bool) -> None:
    """Who holds which task of GROUP, for how long, after how many deliveries."""
    entries = task_streams.pending_entries(open_store(url), group, limit)
    if as_json:
        emit_json([e.to_dict() for e in entries])
    else:
        click.echo(format_pending(entries))


@streams.command(epilog="\b\nExamples:\n  vow streams dead\n  vow streams dead email-service --json")
@click.argument("group", required=False)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Dead letters shown at most (oldest first).")
@url_option
@json_option
def dead(group: str | None, limit: int, url: str, as_json: bool) -> None:
    """The dead letters of GROUP (of every group if none is named), with the reason."""
    letters = task_streams.dead_letters(open_store(url), group, limit)
    if as_json:
        emit_json([d.to_dict() for d in letters])
    else:
        click.echo(format_dead_letters(letters))


@streams.command(epilog="\b\nExample:\n  vow streams requeue email-service 3-1712345678901-0 7-1712345679000-0")
@click.argument("group")
@click.argument("entries", nargs=-1, required=True, metavar="ENTRY...")
@url_option
@json_option
def requeue(group: str, entries: tuple[str, ...], url: str, as_json: bool) -> None:
    """Put dead letters of GROUP back on its task stream, delivery count reset.

    ENTRY is a dead letter as 'vow streams dead' prints it: <partition>-<entry id>.
    """
    for ref in entries:
        task_streams.parse_entry_ref(ref)  # every reference checked before anything moves
    store = open_store(url)
    moved: list[dict[str, str]] = []
    try:
        for ref in entries:
            new_ref = task_streams.requeue(store, group, ref)
            moved.append({"entry": ref, "requeued_as": new_ref})
            if not as_json:
                click.echo(f"requeued {ref} as {new_ref}")
    finally:  # on a failure, what did move is still reported before the error line
        if as_json:
            emit_json(moved)
