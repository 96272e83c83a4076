"""Serving the console: waitress (a pure-Python production WSGI server) in the foreground.

Prints the address to open, samples throughput in a background thread, and stops cleanly on
Ctrl-C or SIGTERM (the listening socket, the sampler and the Redis client are all closed).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from urllib.parse import quote

import click
import waitress

from vow.coordinator import RedisStore

from .app import create_app
from .throughput import Throughput

__all__ = ["serve"]

#: requests served at once
THREADS = 8

log = logging.getLogger("vow.console")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def address(host: str, port: int, token: str | None) -> str:
    """The address a person opens (``?token=`` included when the console has one)."""
    shown = f"[{host}]" if ":" in host else host
    if shown in ("0.0.0.0", "[::]"):
        shown = "127.0.0.1" if shown == "0.0.0.0" else "[::1]"
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(url: str, host: str, port: int, token: str | None) -> None:
    """Serve the console on ``host:port`` until interrupted."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    store = RedisStore(url)
    throughput = Throughput()
    server = waitress.create_server(
        create_app(store, token=token, throughput=throughput), host=host, port=port, threads=THREADS,
        ident="vow-console", clear_untrusted_proxy_headers=True,
    )
    bound = int(server.effective_port)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    throughput.start(store)
    try:
        click.echo(f"vow console: open {address(host, bound, token)} (Redis {store.display_url}); Ctrl-C stops it")
        sys.stdout.flush()
        server.run()  # returns on KeyboardInterrupt (SIGINT, or SIGTERM by _interrupt)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        throughput.stop()
        store.close()
    click.echo("vow console: stopped")
