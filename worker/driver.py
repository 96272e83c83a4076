"""The pure generator driver: turns what a workflow yields into steps, with no I/O.

The executor (``worker/executor.py``) asks :meth:`Driver.advance` for the next step, performs it
(reading the recorded result on replay, or running / creating it), and sends the outcome back.
The driver numbers child promises deterministically — ``{parent}.{n}`` for the n-th command
(1-based) that creates a child — so a replay meets the same ids and finds their recorded results.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .context import LocalCall, Promise, PromiseWait, RemoteCall, Sleep
from .errors import InvalidCommand

__all__ = ["Await", "Done", "Driver", "Failed", "Local", "Remote", "Step", "Timer", "Wait"]


@dataclass(frozen=True, slots=True)
class Local:
    id: str
    call: LocalCall


@dataclass(frozen=True, slots=True)
class Remote:
    id: str
    call: RemoteCall


@dataclass(frozen=True, slots=True)
class Wait:
    """A bare promise (``ctx.promise``) to create if missing and wait on."""

    id: str
    command: PromiseWait


@dataclass(frozen=True, slots=True)
class Timer:
    id: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Await:
    """Wait on a promise handle returned earlier by ``lfi``/``rfi``."""

    id: str


@dataclass(frozen=True, slots=True)
class Done:
    value: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


Step = Local | Remote | Wait | Timer | Await | Done | Failed

_COMMANDS = "ctx.lfc/lfi/rfc/rfi/promise/sleep or a promise from lfi/rfi"


class Driver:
    """Steps one generator. ``advance(None)`` starts it; then send ``(True, value)`` or
    ``(False, exception)`` for the outcome of the previous step."""

    def __init__(self, promise_id: str, generator: Generator[Any, Any, Any]) -> None:
        self.id = promise_id
        self.generator = generator
        self.count = 0

    def child_id(self, explicit: str | None) -> str:
        self.count += 1
        return explicit if explicit else f"{self.id}.{self.count}"

    def advance(self, outcome: tuple[bool, Any] | None) -> Step:
        try:
            if outcome is None:
                yielded = next(self.generator)
            elif outcome[0]:
                yielded = self.generator.send(outcome[1])
            else:
                yielded = self.generator.throw(outcome[1])
        except StopIteration as stop:
            return Done(stop.value)
        except (Exception, SystemExit) as e:  # the user's workflow raised (sys.exit too): it fails with it
            return Failed(e)
        return self._step(yielded)

    def _step(self, yielded: Any) -> Step:
        if isinstance(yielded, LocalCall):
            return Local(self.child_id(yielded.options.id), yielded)
        if isinstance(yielded, RemoteCall):
            explicit = yielded.request.promise_id if yielded.request is not None else yielded.options.id
            return Remote(self.child_id(explicit), yielded)
        if isinstance(yielded, PromiseWait):
            return Wait(self.child_id(yielded.options.id), yielded)
        if isinstance(yielded, Sleep):
            return Timer(self.child_id(yielded.options.id), yielded.seconds)
        if isinstance(yielded, Promise):
            return Await(yielded.id)
        self.generator.close()
        return Failed(
            InvalidCommand(
                self.id,
                f"workflow {self.id!r} yielded {yielded!r} ({type(yielded).__name__}) after step "
                f"{self.count}; a workflow may only yield {_COMMANDS}",
            )
        )
