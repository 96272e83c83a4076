"""The ``vow console`` click command: parse, check the bind is safe, serve."""

from __future__ import annotations

import ipaddress

import click

from vow.coordinator.errors import ValidationError

from ..errors import ExitCode, fail
from ..options import url_option

__all__ = ["DEFAULT_PORT", "check_bind", "console", "is_loopback"]

DEFAULT_PORT = 7700
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (:class:`ValidationError`)."""
    if token is not None and not token.strip():
        raise ValidationError("--token must not be empty")
    if not is_loopback(host) and not token:
        raise ValidationError(
            f"--host {host} is not a loopback address: anyone who reaches it could resolve promises. "
            "Set --token (or VOW_CONSOLE_TOKEN) to serve it there, or keep the default --host 127.0.0.1"
        )


@click.command(
    epilog="\b\nExamples:\n  vow console\n  vow console --port 8080\n"
    "  VOW_CONSOLE_TOKEN=$(openssl rand -hex 16) vow console --host 0.0.0.0",
)
@url_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port; the address is printed).")
@click.option("--token", envvar="VOW_CONSOLE_TOKEN", show_envvar=True, metavar="TOKEN",
              help="Access token every request must carry (required on a non-loopback --host).")
def console(url: str, host: str, port: int, token: str | None) -> None:
    """Serve the web console: the inbox of human waits, promises, streams and schedules.

    Prints the address to open (with ?token=... when a token is set) and serves until Ctrl-C or
    SIGTERM. Needs the console extra: pip install 'vow[console]'.
    """
    try:
        check_bind(host, token)
    except ValidationError as e:
        raise click.UsageError(str(e)) from e
    try:
        from .server import serve
    except ImportError as e:
        raise fail(f"vow console needs the console extra ({e.name} is missing): pip install 'vow[console]'",
                   ExitCode.ERROR) from e
    serve(url, host, port, token)
