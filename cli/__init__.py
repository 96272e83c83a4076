"""The ``vow`` command line: thin click commands over ``coordinator`` and ``worker``.

The entry point is ``cli.main:main``; the root click group is ``cli.main.cli``.
"""

from __future__ import annotations

from .errors import ExitCode
from .main import cli

__all__ = ["ExitCode", "cli"]
