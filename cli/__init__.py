"""The ``vow`` command line: thin click commands over ``coordinator`` (and, later, ``worker``)."""

from __future__ import annotations

from .errors import ExitCode
from .main import cli, main

__all__ = ["ExitCode", "cli", "main"]
