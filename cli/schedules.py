"""``vow schedules``: create, read, list and delete cron schedules (``store.schedules``).

A schedule creates one durable promise per cron tick: the id is the ``--promise-id`` template with
``{{.id}}`` (the schedule id) and ``{{.timestamp}}`` (the tick, epoch ms) filled in. With
``--invoke FUNC`` each tick's promise also calls FUNC in the ``--target`` group, as ``vow invoke``
does. Validation (cron, template, time zone, group) is the store's: a refusal exits with code 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from vow.coordinator import Schedule
from vow.coordinator.records import INVOKE_TAG
from vow.coordinator.tasks import invoke_data

from .calls import DEFAULT_GROUP
from .options import DURATION, JSON_TEXT, JSON_VALUE, KEY_JSON, KEY_VALUE, json_option, open_store, url_option
from .output import emit_json, format_schedule, format_schedule_table, schedule_json

__all__ = ["DEFAULT_PROMISE_TIMEOUT", "schedules"]

#: how long each tick's promise may stay pending after its tick when ``--promise-timeout`` is not given
DEFAULT_PROMISE_TIMEOUT = "1h"


def show(schedule: Schedule, as_json: bool) -> None:
    if as_json:
        emit_json(schedule_json(schedule))
    else:
        click.echo(format_schedule(schedule))


def _usage(message: str) -> click.UsageError:
    return click.UsageError(message, ctx=click.get_current_context(silent=True))


def promise_data_and_tags(
    data: str | None, tags: Mapping[str, str], func: str | None, args: tuple[Any, ...],
    kwargs: tuple[tuple[str, Any], ...], target: str | None,
) -> tuple[str | None, dict[str, str]]:
    """The data and tags of each tick's promise: as given, or the invoke convention for ``--invoke``."""
    if func is None:
        if args or kwargs or target is not None:
            raise _usage("--arg, --kwarg and --target need --invoke FUNC")
        return data, dict(tags)
    if data is not None:
        raise _usage("--invoke and --data cannot be combined: --invoke builds the data from --arg and --kwarg")
    if INVOKE_TAG in tags:
        raise _usage(f"--invoke sets the tag {INVOKE_TAG} itself: name the group with --target")
    group = DEFAULT_GROUP if target is None else target
    return invoke_data(func, args, dict(kwargs)), {**tags, INVOKE_TAG: f"poll://{group}"}


@click.group()
def schedules() -> None:
    """Create, show, list and delete cron schedules: one durable promise per tick."""


@schedules.command(
    epilog="\b\nExamples:\n"
    "  vow schedules create daily-reminder --cron '0 9 * * *' \\\n"
    "      --timezone Europe/Berlin --promise-id 'reminder-{{.timestamp}}' \\\n"
    "      --invoke send_email --arg '\"a@b.c\"' --target email-service --ikey v1\n"
    "  vow schedules create nightly --cron '30 2 * * *' \\\n"
    "      --promise-id '{{.id}}.{{.timestamp}}' --promise-timeout 6h \\\n"
    "      --data '{\"report\": \"sales\"}' --tag owner=ops"
)
@click.argument("schedule_id", metavar="ID")
@click.option("--cron", required=True, help="Cron expression: 5 fields (minute hour day month weekday), "
              "or 6 with seconds last, e.g. '0 9 * * *'.")
@click.option("--promise-id", "promise_id", required=True, metavar="TEMPLATE",
              help="Id of each tick's promise; must contain {{.timestamp}} (the tick, epoch ms); "
              "{{.id}} is the schedule id.")
@click.option("--promise-timeout", "promise_timeout_ms", type=DURATION, default=DEFAULT_PROMISE_TIMEOUT,
              show_default=True, help="How long each tick's promise may stay pending after its tick: 30s, 5m, 1h.")
@click.option("--data", type=JSON_TEXT, help="Data of each tick's promise, as JSON text (stored as that text).")
@click.option("--header", "headers", type=KEY_VALUE, multiple=True,
              help="A header key=value of each tick's promise (repeatable).")
@click.option("--tag", "tags", type=KEY_VALUE, multiple=True,
              help="A tag key=value of each tick's promise (repeatable).")
@click.option("--invoke", "func", metavar="FUNC",
              help="Each tick calls the registered function FUNC (builds the data and the resonate:invoke tag; "
              "not with --data).")
@click.option("--arg", "args", type=JSON_VALUE, multiple=True,
              help="With --invoke: a positional argument as JSON (repeatable).")
@click.option("--kwarg", "kwargs", type=KEY_JSON, multiple=True,
              help="With --invoke: a keyword argument name=JSON (repeatable).")
@click.option("--target", metavar="GROUP",
              help=f"With --invoke: the logic group that runs FUNC.  [default: {DEFAULT_GROUP}]")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone the cron is read in.")
@click.option("--ikey", help="Idempotency key: a retry with the same key returns the stored schedule.")
@click.option("--description", default="", help="Free text shown with the schedule.")
@url_option
@json_option
def create(schedule_id: str, cron: str, promise_id: str, promise_timeout_ms: int, data: str | None,
           headers: tuple[tuple[str, str], ...], tags: tuple[tuple[str, str], ...], func: str | None,
           args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...], target: str | None, timezone: str,
           ikey: str | None, description: str, url: str, as_json: bool) -> None:
    """Create schedule ID and print it with its next tick.

    Exit code 2 for an invalid cron, template, time zone or group; 4 if the id is taken and this is
    not an idempotent retry (same --ikey).
    """
    promise_data, promise_tags = promise_data_and_tags(data, dict(tags), func, args, kwargs, target)
    schedule = open_store(url).schedules.create(
        schedule_id, cron, promise_id, promise_timeout_ms, promise_data=promise_data,
        promise_headers=dict(headers), promise_tags=promise_tags, ikey=ikey, description=description,
        timezone=timezone,
    )
    show(schedule, as_json)


@schedules.command(epilog="\b\nExample:\n  vow schedules get daily-reminder")
@click.argument("schedule_id", metavar="ID")
@url_option
@json_option
def get(schedule_id: str, url: str, as_json: bool) -> None:
    """Show one schedule (exit code 3 if no schedule has this id)."""
    show(open_store(url).schedules.get(schedule_id), as_json)


@schedules.command(
    name="ls",
    epilog="\b\nExamples:\n  vow schedules ls 'daily-*'\n"
    "  vow schedules ls --tag resonate:invoke=poll://email-service --limit 10",
)
@click.argument("pattern", default="*")
@click.option("--tag", "tags", type=KEY_VALUE, multiple=True,
              help="Only schedules whose promises get this tag (repeatable).")
@click.option("--limit", type=click.IntRange(1, 100), default=100, show_default=True, help="Schedules per page.")
@click.option("--cursor", help="Continue from the cursor a previous page printed.")
@url_option
@json_option
def list_schedules(pattern: str, tags: tuple[tuple[str, str], ...], limit: int, cursor: str | None, url: str,
                   as_json: bool) -> None:
    """List schedules whose id matches PATTERN (a glob: * ? [abc]), by id, one page."""
    page = open_store(url).schedules.search(pattern, tags=dict(tags), limit=limit, cursor=cursor)
    if as_json:
        emit_json({"schedules": [schedule_json(s) for s in page.schedules], "cursor": page.cursor})
        return
    click.echo(format_schedule_table(page.schedules) if page.schedules else "no schedules found")
    if page.cursor:
        click.echo(f"next page: --cursor {page.cursor}")


@schedules.command(epilog="\b\nExample:\n  vow schedules delete daily-reminder")
@click.argument("schedule_id", metavar="ID")
@url_option
@json_option
def delete(schedule_id: str, url: str, as_json: bool) -> None:
    """Delete a schedule; the promises it already created stay (exit code 3 if there is none)."""
    open_store(url).schedules.delete(schedule_id)
    if as_json:
        emit_json({"id": schedule_id, "deleted": True})
    else:
        click.echo(f"deleted schedule {schedule_id!r} (the promises it created stay)")
