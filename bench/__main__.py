"""``python -m bench``: see bench/cli.py and bench/README.md."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
