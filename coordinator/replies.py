"""The typed parts of script calls (``coordinator/lua.py``): what a request carries besides keys
and plain arguments, what a reply comes back as, and the request id every call carries."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any

from .errors import CorruptRecord, NotConfirmed
from .records import DurablePromise, State, Value
from .states import Status

__all__ = [
    "Answer",
    "Callback",
    "Claim",
    "ClaimStatus",
    "Commit",
    "Completion",
    "CreateReply",
    "Durability",
    "Held",
    "Invoke",
    "request_id",
]


def request_id() -> str:
    """A fresh random request id (96 bits, hex)."""
    return os.urandom(12).hex()


@dataclass(frozen=True, slots=True)
class Durability:
    """Wait after every script call until ``replicas`` replicas have the change (``WAIT``), or,
    with ``local_fsync``, until this server and ``replicas`` replicas have written it to their
    AOF with fsync (``WAITAOF``); :class:`NotConfirmed` when they fall short in ``timeout_ms``."""

    replicas: int
    timeout_ms: int
    local_fsync: bool = False

    def command(self) -> tuple[Any, ...]:
        if self.local_fsync:
            return ("WAITAOF", 1, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, subject: str, reply: Any) -> None:
        if self.local_fsync:
            local, replicas = (int(n) for n in reply)
            if local < 1:
                raise NotConfirmed(subject, 1, local, self.timeout_ms, "local AOF fsyncs")
        else:
            replicas = int(reply)
        if replicas < self.replicas:
            raise NotConfirmed(subject, self.replicas, replicas, self.timeout_ms)


# -- request parts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoke:
    """A task message to queue on ``group``'s stream when the promise is created."""

    group: str
    message: bytes


@dataclass(frozen=True, slots=True)
class Callback:
    """Resume ``root_id`` in ``group`` (by queueing ``message``) when the promise completes."""

    root_id: str
    group: str
    message: bytes

    def encoded(self) -> bytes:
        """The value stored in the callbacks hash: ``<group>\\n<message>`` (see _lib.lua fire())."""
        return self.group.encode() + b"\n" + self.message


@dataclass(frozen=True, slots=True)
class Completion:
    """Write the promise already completed, in its create: a recorded step result."""

    state: State
    value: Value
    ikey: str | None


# -- replies ------------------------------------------------------------------------------------


class ClaimStatus(enum.StrEnum):
    OK = "ok"          # the lease is this consumer's, under the returned counter
    BUSY = "busy"      # another consumer holds a live lease; its holder will drive once more
    DONE = "done"      # the promise is completed: nothing to run
    GONE = "gone"      # no such promise


class Answer(enum.StrEnum):
    """What settle, suspend and release answer."""

    OK = "ok"
    WAKE = "wake"      # suspend: a resume arrived meanwhile; the lease is kept, drive again
    FENCED = "fenced"  # a newer claim took the execution: nothing was changed
    # settle of an execution run without a lease (counter 0) only:
    DONE = "done"      # the promise was completed meanwhile: result dropped, entry acknowledged
    GONE = "gone"      # no such promise: nothing was changed
    RETRY = "retry"    # the promise's param is not what ran: nothing was changed


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    counter: int
    promise: DurablePromise | None
    #: the record came back malformed (the lease was taken all the same); the others of a batch
    #: are not affected
    error: CorruptRecord | None = None

    def checked(self) -> Claim:
        """This claim, or raises its :attr:`error`."""
        if self.error is not None:
            raise self.error
        return self


@dataclass(frozen=True, slots=True)
class Commit:
    """One finished execution to settle: complete ``promise_id`` with ``state`` and ``value`` if
    the lease under ``counter`` is still held, and acknowledge + delete ``entry_id`` (None: the
    caller acknowledges it) from ``stream``, the task stream holding it. Counter 0: run without
    a lease, with the param data ``ran_with`` (see ``settle.lua``)."""

    promise_id: str
    counter: int
    state: State
    value: Value
    stream: str
    entry_id: str | None
    ran_with: bytes | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """A due promise the expiry pass keeps until its anchor (the workflow it is a step of) is read."""

    promise_id: str
    anchor: str
    retention: int | None


@dataclass(frozen=True, slots=True)
class CreateReply:
    """``promise`` is None when the script wrote the record exactly as asked (``fresh``): the
    caller has every field but ``created_on``."""

    status: Status
    promise: DurablePromise | None
    created_on: int | None
