"""``vow worker start MODULE:ATTR``: serve a logic group from a user's module.

The module is imported the way uvicorn and celery do it (the current directory first on
``sys.path``) inside ``Scheduler.deferred_serving()``, so its Scheduler only starts serving here,
with the settings given on the command line (see ``worker/scheduler.py``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from vow.coordinator.store import RedisStore
from vow.worker.metrics import require_prometheus
from vow.worker.scheduler import Scheduler

from .logs import LOG_FORMATS, LOG_LEVELS, configure_logging

__all__ = ["load_scheduler", "worker"]


class AppNotFound(click.UsageError):
    """MODULE:ATTR does not name a Scheduler."""


def load_scheduler(target: str) -> Scheduler:
    """Import ``module[:attr]`` and return its Scheduler (the only one, when ``attr`` is omitted)."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise AppNotFound(f"{target!r} is not MODULE:ATTR (for example app:scheduler)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        with Scheduler.deferred_serving():
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise AppNotFound(f"module {module_name!r} not found (looked in {os.getcwd()} and sys.path)") from e
        raise
    if attr:
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise AppNotFound(f"module {module_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if not isinstance(obj, Scheduler):
            raise AppNotFound(f"{target!r} is a {type(obj).__name__}, not a vow Scheduler")
        return obj
    found = [v for v in vars(module).values() if isinstance(v, Scheduler)]
    if len(found) != 1:
        raise AppNotFound(f"module {module_name!r} has {len(found)} Schedulers; name one as {module_name}:ATTR")
    return found[0]


@click.group()
def worker() -> None:
    """Run workers that serve a logic group."""


@worker.command(
    "start",
    epilog="Example: vow worker start email_service:resonate --concurrency 8 --metrics-port 9464",
)
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--group", help="Logic group to serve (default: the Scheduler's own).")
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Tasks run at once (default 16).")
@click.option("--url", envvar="VOW_REDIS_URL", help="Redis URL (default: the app's own store).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), envvar="VOW_METRICS_PORT", show_envvar=True,
              help="Serve Prometheus metrics on this port at /metrics (needs the metrics extra).")
@click.option("--metrics-host", help="Address the metrics port binds (default: the app's own, else 0.0.0.0).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True, envvar="VOW_LOG_LEVEL", show_envvar=True,
              help="Lowest level logged (WARNING drops the per-task INFO lines).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              envvar="VOW_LOG_FORMAT", show_envvar=True, help="Log lines as text, or one JSON object per line.")
def start(
    target: str, group: str | None, concurrency: int | None, url: str | None, metrics_port: int | None,
    metrics_host: str | None, log_level: str, log_format: str,
) -> None:
    """Serve the functions registered on the Scheduler MODULE:ATTR until SIGTERM or Ctrl-C."""
    if metrics_port is not None:
        require_prometheus()  # before anything starts: one clear line when the extra is missing
    app = load_scheduler(target)
    configure_logging(log_level, log_format)
    say = _announcer(log_format)
    store = RedisStore(url) if url else app.store
    served = group or app.group
    if metrics_host is not None:
        app.metrics_host = metrics_host
    say(f"vow worker: {target} registers {', '.join(app.registry.names()) or 'no functions'}; "
        f"group {served!r} at {store.display_url}")
    app.wait_for_ever(group=served, concurrency=concurrency, store=store, metrics_port=metrics_port)
    say("vow worker: stopped")


def _announcer(log_format: str) -> Callable[[str], None]:
    """How the command says what it does: a plain stderr line, or a log record in JSON mode (so
    every line on stderr parses)."""
    if log_format == "json":
        return logging.getLogger("vow.cli").info
    return functools.partial(click.echo, err=True)
