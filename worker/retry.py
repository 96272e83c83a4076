"""Retry policies for plain functions (in-process retries; the lease is heartbeated meanwhile).

The default for plain functions is ``Exponential()``; generator functions are not retried (their
steps are). ``non_retryable`` exception types fail at once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Constant", "Exponential", "Linear", "Never", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class Exponential:
    """Wait ``delay * factor**attempt`` seconds (capped at ``max_delay``), at most ``max_retries`` times."""

    delay: float = 1.0
    factor: float = 2.0
    max_retries: int = 5
    max_delay: float = 30.0

    def next_delay(self, attempt: int) -> float | None:
        if attempt >= self.max_retries:
            return None
        return min(self.delay * self.factor**attempt, self.max_delay)


@dataclass(frozen=True, slots=True)
class Linear:
    """Wait ``delay * (attempt + 1)`` seconds, at most ``max_retries`` times."""

    delay: float = 1.0
    max_retries: int = 5

    def next_delay(self, attempt: int) -> float | None:
        return None if attempt >= self.max_retries else self.delay * (attempt + 1)


@dataclass(frozen=True, slots=True)
class Constant:
    """Wait ``delay`` seconds between attempts, at most ``max_retries`` times."""

    delay: float = 1.0
    max_retries: int = 5

    def next_delay(self, attempt: int) -> float | None:
        return None if attempt >= self.max_retries else self.delay


@dataclass(frozen=True, slots=True)
class Never:
    """Do not retry."""

    def next_delay(self, attempt: int) -> float | None:
        return None


RetryPolicy = Exponential | Linear | Constant | Never
