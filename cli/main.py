"""Entry point of the ``vow`` command (commands arrive with the CLI issue)."""

from __future__ import annotations

import click

__all__ = ["cli", "main"]


@click.group()
def cli() -> None:
    """Vow: durable promises and distributed async/await on Redis."""


def main() -> None:
    cli()
