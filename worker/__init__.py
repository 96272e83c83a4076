"""Vow's worker SDK (filled in by the worker issue)."""

from __future__ import annotations

__all__: list[str] = []
