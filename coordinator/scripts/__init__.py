"""The Lua script library: reads each script once and assembles the text sent to the server.

Each script file starts with ``#!lua`` (so a cluster refuses any key outside the script's slot)
and a header stating its KEYS, ARGV, reply and how it answers a resend. ``_lib.lua`` holds the
fragments every script shares (clock, key derivation, completion write, ownership and fencing
checks): it is placed right after each script's shebang line (it only defines locals). The typed
wrappers that call the scripts live in ``coordinator/lua.py``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["SCRIPT_NAMES", "SHEBANG", "source"]

SCRIPT_NAMES = (
    # promises
    "create", "complete", "get", "register", "sweep", "expire", "purge",
    # task executions and streams
    "claim", "heartbeat", "touch", "settle", "suspend", "release", "ack", "requeue", "revive", "orphans",
    "consumers",
    # schedules
    "schedule_create", "schedule_delete", "schedule_advance",
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
    """The full text sent to the server for script ``name`` (without its first line when
    ``shebang`` is False, for a Lua that cannot parse it)."""
    first, body = _strip_shebang(_read(name))
    _, lib = _strip_shebang(_read("_lib"))
    body = lib + "\n" + body
    return f"{first}\n{body}" if shebang else body
