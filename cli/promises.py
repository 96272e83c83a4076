"""``vow promises``: read, search, create and complete durable promises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vow.coordinator import DurablePromise, State

from .options import DURATION, JSON_TEXT, KEY_VALUE, json_option, open_store, retention_option, url_option
from .output import emit_json, format_promise, format_promise_table, promise_json

__all__ = ["DEFAULT_TIMEOUT", "promises"]

#: timeout of ``vow promises create`` and ``vow invoke`` when ``--timeout`` is not given
DEFAULT_TIMEOUT = "24h"


def show(promise: DurablePromise, as_json: bool) -> None:
    if as_json:
        emit_json(promise_json(promise))
    else:
        click.echo(format_promise(promise))


@click.group()
def promises() -> None:
    """Read, search, create and complete durable promises."""


@promises.command(epilog="\b\nExample:\n  vow promises get email-confirmed-alice")
@click.argument("promise_id", metavar="ID")
@url_option
@json_option
def get(promise_id: str, url: str, as_json: bool) -> None:
    """Show one promise (exit code 3 if no promise has this id)."""
    show(open_store(url).get(promise_id), as_json)


@promises.command(
    epilog="\b\nExamples:\n  vow promises search 'workflow-*' --state pending\n"
    "  vow promises search --tag resonate:invoke=poll://email-service --limit 10"
)
@click.argument("pattern", default="*")
@click.option("--state", type=click.Choice(["pending", "resolved", "rejected"], case_sensitive=False),
              help="Only promises in this state (rejected includes canceled and timed out).")
@click.option("--tag", "tags", type=KEY_VALUE, multiple=True, help="Only promises with this tag (repeatable).")
@click.option("--limit", type=click.IntRange(1, 100), default=100, show_default=True,
              help="Promises per page.")
@click.option("--cursor", help="Continue from the cursor a previous page printed.")
@url_option
@json_option
def search(pattern: str, state: str | None, tags: tuple[tuple[str, str], ...], limit: int, cursor: str | None,
           url: str, as_json: bool) -> None:
    """List promises whose id matches PATTERN (a glob: * ? [abc]), newest first, one page."""
    page = open_store(url).search(pattern, state=state, tags=dict(tags), limit=limit, cursor=cursor)
    if as_json:
        emit_json({"promises": [promise_json(p) for p in page.promises], "cursor": page.cursor})
        return
    click.echo(format_promise_table(page.promises) if page.promises else "no promises found")
    if page.cursor:
        click.echo(f"next page: --cursor {page.cursor}")


def _data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--data", type=JSON_TEXT, help="The data, as JSON text (stored as that text)."),
        click.option("--header", "headers", type=KEY_VALUE, multiple=True, help="A header key=value (repeatable)."),
        click.option("--ikey", help="Idempotency key: a retry with the same key returns the stored promise."),
        click.option("--strict", is_flag=True, help="A retry matches only if the promise is in the state asked for."),
    ]):
        func = option(func)
    return func


@promises.command(
    epilog="\b\nExample:\n  vow promises create email-confirmed-alice --timeout 7d --ikey create-1 "
    "--tag owner=alice"
)
@click.argument("promise_id", metavar="ID")
@click.option("--timeout", "timeout_ms", type=DURATION, default=DEFAULT_TIMEOUT, show_default=True,
              help="How long from now the promise may stay pending: 30s, 5m, 1h, 7d.")
@_data_options
@click.option("--tag", "tags", type=KEY_VALUE, multiple=True, help="A tag key=value (repeatable).")
@retention_option
@url_option
@json_option
def create(promise_id: str, timeout_ms: int, data: str | None, headers: tuple[tuple[str, str], ...],
           ikey: str | None, strict: bool, tags: tuple[tuple[str, str], ...], retention: str | None, url: str,
           as_json: bool) -> None:
    """Create a pending promise (exit code 4 if the id is taken and this is not an idempotent retry)."""
    store = open_store(url)
    promise = store.create(promise_id, store.now() + timeout_ms, ikey=ikey, strict=strict,
                           headers=dict(headers), data=data, tags=dict(tags), retention=retention)
    show(promise, as_json)


def _completion(state: State, verb: str, example: str) -> click.Command:
    @click.command(name=verb, epilog=f"\b\nExample:\n  {example}")
    @click.argument("promise_id", metavar="ID")
    @_data_options
    @url_option
    @json_option
    def command(promise_id: str, data: str | None, headers: tuple[tuple[str, str], ...], ikey: str | None,
                strict: bool, url: str, as_json: bool) -> None:
        promise = open_store(url).complete(promise_id, state, ikey=ikey, strict=strict, headers=dict(headers),
                                           data=data)
        if promise.state is not state:
            click.echo(f"note: promise {promise_id!r} is {promise.state.value}: it was completed before "
                       "this request", err=True)
        show(promise, as_json)

    command.help = (
        f"{verb.capitalize()} a pending promise. Exit code 4 if it is already completed and this is not "
        "an idempotent retry (same --ikey); 3 if no promise has this id."
    )
    return command


promises.add_command(_completion(
    State.RESOLVED, "resolve", "vow promises resolve email-confirmed-alice --data true --ikey confirm-1"))
promises.add_command(_completion(
    State.REJECTED, "reject", "vow promises reject job-42 --data '{\"error\": \"card declined\"}'"))
promises.add_command(_completion(
    State.REJECTED_CANCELED, "cancel", "vow promises cancel email-confirmed-alice"))


@promises.command(
    epilog="\b\nExamples:\n  vow promises purge 'job-*' --state resolved --older-than 7d --dry-run\n"
    "  vow promises purge 'send-confirmation-email-*'"
)
@click.argument("pattern")
@click.option("--state", type=click.Choice(["resolved", "rejected"], case_sensitive=False),
              help="Only promises in this state (rejected includes canceled and timed out). Default: both.")
@click.option("--older-than", "older_than_ms", type=DURATION, help="Only promises completed longer ago than this.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@url_option
@json_option
def purge(pattern: str, state: str | None, older_than_ms: int | None, dry_run: bool, url: str, as_json: bool) -> None:
    """Remove completed promises whose id matches PATTERN now, with every index entry. Pending
    promises are never removed. (Completed promises also expire by themselves after their
    retention.)"""
    removed = open_store(url).purge(pattern, family=state, older_than_ms=older_than_ms, dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "promises": removed})
        return
    for promise_id in removed:
        click.echo(promise_id)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(removed)} completed promise(s)", err=True)
