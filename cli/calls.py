"""``vow invoke`` (start a function in a logic group) and ``vow tree`` (the call graph under a root)."""

from __future__ import annotations

from typing import Any

import click

from vow.coordinator import State

from . import tree as call_graph
from .errors import ExitCode, fail
from .options import DURATION, JSON_VALUE, KEY_JSON, json_option, open_store, retention_option, url_option
from .output import data_text, emit_json, format_promise, format_tree, promise_json
from .promises import DEFAULT_TIMEOUT

__all__ = ["DEFAULT_GROUP", "invoke", "tree"]

#: the logic group ``vow invoke`` targets when none is named
DEFAULT_GROUP = "default"


@click.command(
    epilog="\b\nExamples:\n  vow invoke job-42 --func send_email --arg '\"bob@example.com\"' --target email-service\n"
    "  vow invoke sum-1 --func add --arg 1 --arg 2 --kwarg round=true --wait --wait-timeout 30"
)
@click.argument("promise_id", metavar="ID")
@click.option("--func", required=True, help="Name of the registered function to run.")
@click.option("--arg", "args", type=JSON_VALUE, multiple=True, help="A positional argument as JSON (repeatable).")
@click.option("--kwarg", "kwargs", type=KEY_JSON, multiple=True, help="A keyword argument name=JSON (repeatable).")
@click.option("--target", default=DEFAULT_GROUP, show_default=True, help="Logic group that runs the function.")
@click.option("--timeout", "timeout_ms", type=DURATION, default=DEFAULT_TIMEOUT, show_default=True,
              help="How long from now the call may take: 30s, 5m, 1h, 7d.")
@click.option("--wait", is_flag=True, help="Block until the call completes and print its value.")
@click.option("--wait-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="With --wait: give up after this many seconds (exit code 6). Default: wait for ever.")
@retention_option
@url_option
@json_option
def invoke(promise_id: str, func: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...], target: str,
           timeout_ms: int, wait: bool, wait_timeout: float | None, retention: str | None, url: str,
           as_json: bool) -> None:
    """Call FUNC in a logic group: create promise ID with the invoke data and tag, which queues the task.

    With --wait, the exit code is 7 when the call ends rejected, canceled or timed out.
    """
    if wait_timeout is not None and not wait:
        raise click.UsageError("--wait-timeout needs --wait")
    store = open_store(url)
    promise = store.invoke(promise_id, func, args, dict(kwargs), group=target, timeout=store.now() + timeout_ms,
                           retention=retention)
    if not wait:
        if as_json:
            emit_json(promise_json(promise))
        else:
            click.echo(f"invoked {func} in group {target!r} as promise {promise.id!r} ({promise.state.value})")
        return
    promise = store.wait(promise_id, timeout=wait_timeout)
    if as_json:
        emit_json(promise_json(promise))
    elif promise.state is State.RESOLVED:
        click.echo(data_text(promise.value.data))
    else:
        click.echo(format_promise(promise))
    if promise.state is not State.RESOLVED:
        raise fail(f"promise {promise_id!r} ended {promise.state.value}", ExitCode.REJECTED)


@click.command(epilog="\b\nExample:\n  vow tree workflow-alice --url redis://localhost:6379/0")
@click.argument("promise_id", metavar="ID")
@url_option
@json_option
def tree(promise_id: str, url: str, as_json: bool) -> None:
    """Show the call graph under root promise ID: each promise with its state and function.

    Children are the promises with ids ID.1, ID.2, ... (and theirs, ID.1.1, ...) and the promises
    tagged vow:parent=ID or vow:root=ID.
    """
    root = call_graph.call_tree(open_store(url), promise_id)
    if as_json:
        emit_json(root.to_dict())
    else:
        click.echo(format_tree(root))
