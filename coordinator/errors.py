"""Every error Vow raises: one root, families under it.

The store translates redis-py errors at its boundary (``raise ... from e``), so callers only ever
see these types. Each carries typed fields and a one-line ``str()`` fit for a CLI error line.
"""

from __future__ import annotations

__all__ = [
    "AlreadyCompleted",
    "AlreadyExists",
    "CorruptRecord",
    "DeadLetterNotFound",
    "EncodingError",
    "NotConfirmed",
    "NotFound",
    "OutcomeUnknown",
    "PromiseError",
    "ScheduleExists",
    "ScheduleNotFound",
    "ServerNotFound",
    "ServerStartError",
    "StoreConnectionError",
    "StoreError",
    "ValidationError",
    "VowError",
]


class VowError(Exception):
    """Root of every error raised by Vow."""


class PromiseError(VowError):
    """A promise operation was refused by the promise state machine."""

    def __init__(self, promise_id: str, message: str) -> None:
        super().__init__(message)
        self.promise_id = promise_id


class NotFound(PromiseError):
    """No promise has this id."""

    def __init__(self, promise_id: str) -> None:
        super().__init__(promise_id, f"promise {promise_id!r} not found")


class AlreadyExists(PromiseError):
    """A promise with this id exists and the create was not a deduplicated retry."""

    def __init__(self, promise_id: str, state: str) -> None:
        super().__init__(promise_id, f"promise {promise_id!r} already exists (state {state})")
        self.state = state


class AlreadyCompleted(PromiseError):
    """The promise is already completed and the request was not a deduplicated retry."""

    def __init__(self, promise_id: str, state: str) -> None:
        super().__init__(promise_id, f"promise {promise_id!r} is already completed (state {state})")
        self.state = state


class ScheduleNotFound(NotFound):
    """No schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        PromiseError.__init__(self, schedule_id, f"schedule {schedule_id!r} not found")


class ScheduleExists(AlreadyExists):
    """A schedule with this id exists and the create was not a deduplicated retry."""

    def __init__(self, schedule_id: str) -> None:
        PromiseError.__init__(
            self, schedule_id, f"schedule {schedule_id!r} already exists (with another idempotency key)"
        )
        self.state = "schedule"


class ValidationError(VowError, ValueError):
    """A request was refused before anything was written: bad id, tag, header, size or timeout."""


class EncodingError(ValidationError):
    """A value cannot be encoded as a promise value (not JSON-serialisable and not bytes)."""


class StoreError(VowError):
    """The store could not complete a request."""


class StoreConnectionError(StoreError):
    """Redis could not be reached, timed out, or refused the credentials."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Redis unreachable at {url}: {reason}")
        self.url = url
        self.reason = reason


class OutcomeUnknown(StoreConnectionError):
    """A change was sent but no reply came back (after redis-py's resends): it may or may not
    have taken effect. Retrying it is safe: creates and completions deduplicate by idempotency
    key, and every script recognises a resend of itself."""

    def __init__(self, url: str, reason: str, subject: str) -> None:
        super().__init__(url, reason)
        self.subject = subject

    def __str__(self) -> str:
        return f"outcome unknown for {self.subject}: Redis unreachable at {self.url}: {self.reason}"


class NotConfirmed(StoreError):
    """A change was applied on the primary but fewer replicas than asked (``RedisStore(replicas=
    N)``) confirmed it within the timeout: it may be lost if the primary fails over now."""

    def __init__(self, subject: str, wanted: int, confirmed: int, timeout_ms: int, what: str = "replicas") -> None:
        super().__init__(
            f"change to {subject} not confirmed by {wanted} {what} within {timeout_ms} ms ({confirmed} confirmed): "
            "it is applied on the primary but may be lost on a failover"
        )
        self.subject = subject
        self.wanted = wanted
        self.confirmed = confirmed


class CorruptRecord(StoreError):
    """A key in Redis holds something Vow did not write in the shape it expects."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"malformed record at {key!r}: {reason}")
        self.key = key
        self.reason = reason


class ServerNotFound(VowError):
    """No Redis-compatible server binary could be found to start."""


class ServerStartError(VowError):
    """A server binary was found but did not start or become ready."""


class DeadLetterNotFound(VowError):
    """No dead letter has this entry reference in this group."""

    def __init__(self, group: str, ref: str) -> None:
        super().__init__(f"no dead letter {ref} in group {group!r}")
        self.group = group
        self.ref = ref
