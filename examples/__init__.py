"""Example programs that run on Vow (importable as ``examples.<name>`` from the repository root)."""

from __future__ import annotations

__all__: list[str] = []
