"""``vow dev``: the embedded Redis-compatible server in the foreground, for development.

The server runs with AOF persistence (``appendfsync everysec``) in ``./.vow/`` (``--dir``), so
promises survive a restart. Ctrl-C or SIGTERM stops it cleanly (the server flushes its AOF) and
the command exits 0.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from vow.server import ServerProcess, find_server_binary, port_is_taken

from .errors import fail

__all__ = ["DEFAULT_DIR", "DEFAULT_PORT", "dev"]

DEFAULT_PORT = 6379
DEFAULT_DIR = ".vow"
#: seconds between two checks that the server is still running while waiting for a signal
_WATCH_INTERVAL_S = 0.5


@click.command(epilog="\b\nExamples:\n  vow dev\n  vow dev --port 6380 --dir /tmp/vow-data")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (127.0.0.1 only).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, help="Directory for the data (AOF) and the server log.")
def dev(port: int, directory: Path) -> None:
    """Run the embedded Redis-compatible server in the foreground, with persistence on.

    Uses VOW_REDIS_SERVER, else redis-server or valkey-server on PATH, else the bundled Valkey.
    Stop it with Ctrl-C.
    """
    if port_is_taken(port):
        raise fail(f"port {port} on 127.0.0.1 is already in use: stop what listens there or pick another "
                   "with --port")
    server = ServerProcess(port=port, directory=directory, persistence=True, binary=find_server_binary())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        click.echo(f"Vow dev server on {server.url}  ({server.binary})")
        click.echo(f"data: {directory.resolve()} (AOF everysec), log: {directory / 'server.log'}")
        click.echo(f"use it: export VOW_REDIS_URL={server.url}")
        click.echo("press Ctrl-C to stop")
        process = server.process
        while not stop.wait(_WATCH_INTERVAL_S):
            if process is not None and process.poll() is not None:
                raise fail(f"the server exited by itself with code {process.returncode}; "
                           f"see {directory / 'server.log'}")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("server stopped")
