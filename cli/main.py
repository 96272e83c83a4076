"""Entry point of the ``vow`` command: the root group, its global options, its subcommands.

Every command lives in a module by concern (``promises``, ``calls``, ``streams``, ``dev``) and is
registered here with ``cli.add_command``. Errors are turned into one line on stderr and a
documented exit code by :class:`cli.errors.VowGroup`.
"""

from __future__ import annotations

import click

from .calls import invoke, tree
from .console import console
from .demo import demo
from .dev import dev
from .errors import VowGroup
from .metrics import metrics
from .promises import promises
from .schedules import schedules
from .streams import streams
from .worker import worker

__all__ = ["cli", "main"]


@click.group(
    cls=VowGroup,
    epilog="\b\nExamples:\n  vow dev\n  vow promises search --state pending\n"
    "  vow --debug promises get email-confirmed-alice",
)
@click.option("--debug", is_flag=True, help="On an error, print the traceback too.")
@click.version_option(package_name="vow", prog_name="vow", message="%(prog)s %(version)s")
def cli(debug: bool) -> None:
    """Vow: durable promises and distributed async/await on Redis.

    Every command takes --url (default: $VOW_REDIS_URL, else redis://localhost:6379/0).
    Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict, 5 Redis unreachable or
    refused the credentials, 6 wait timed out, 7 awaited promise rejected, 130 interrupted.
    """


cli.add_command(dev)
cli.add_command(promises)
cli.add_command(invoke)
cli.add_command(tree)
cli.add_command(streams)
cli.add_command(schedules)
cli.add_command(console)

cli.add_command(worker)
cli.add_command(metrics)
cli.add_command(demo)


def main() -> None:
    cli(prog_name="vow")
