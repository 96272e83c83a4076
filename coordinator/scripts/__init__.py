"""Loads the Lua scripts once and registers them per client as redis-py ``Script`` objects.

Each script file starts with ``#!lua`` (so a cluster refuses any key outside the script's slot)
and a header stating its KEYS, ARGV and reply. ``_lib.lua`` holds helpers shared by the promise
scripts: it is placed right after each script's shebang line (it only defines locals). fakeredis's Lua rejects the
shebang line, so for a fakeredis client the line is dropped (only there).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

__all__ = ["SCRIPT_NAMES", "Scripts", "source"]

SCRIPT_NAMES = (
    # promises
    "create", "complete", "get", "register", "sweep",
    # task executions and streams
    "claim", "heartbeat", "touch", "settle", "suspend", "release", "ack", "requeue",
)
SHEBANG = "#!lua"


@cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _strip_shebang(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if not first.startswith(SHEBANG):
        raise RuntimeError(f"script does not start with {SHEBANG!r}: {first[:40]!r}")
    return first, rest


@cache
def source(name: str, *, shebang: bool = True) -> str:
    """The full text sent to the server for script ``name``."""
    first, body = _strip_shebang(_read(name))
    _, lib = _strip_shebang(_read("_lib"))
    body = lib + "\n" + body
    return f"{first}\n{body}" if shebang else body


def is_fakeredis(client: Any) -> bool:
    return type(client).__module__.split(".")[0] == "fakeredis"


class Scripts:
    """The registered scripts of one client, as attributes (``scripts.create(keys, args)``)."""

    def __init__(self, client: Any, names: tuple[str, ...] = SCRIPT_NAMES) -> None:
        shebang = not is_fakeredis(client)
        self._scripts = {name: client.register_script(source(name, shebang=shebang)) for name in names}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None
