"""Cron schedules (``store.schedules``): a durable promise per tick, exactly once.

A schedule is a cron expression (UTC, or an IANA time zone) and a promise template. At each tick
the schedule pass creates the promise ``promise_id`` with ``{{.id}}`` replaced by the schedule id
and ``{{.timestamp}}`` by the tick's time in epoch ms (Resonate's template syntax), tagged
``resonate:schedule=<id>``, timing out ``promise_timeout`` ms after the tick. Tagged
``resonate:invoke=poll://group`` (with invoke data), the promise also starts its function.

Record ``vow:{T}:sched:<id>`` (hash): ``id``, ``cron``, ``tz``, ``pid`` (template), ``pto``
(promise timeout, ms), ``ph``/``pd``/``pt`` (promise headers, data, tags), ``ik`` (idempotency
key), ``desc``, ``co`` (created on), ``nt`` (next tick), ``lt``/``lp`` (last tick fired and its
promise id), ``rq`` (request id of the create). ``vow:{T}:sched-due`` orders ids by next tick.

**Exactly one promise per tick**, however many processes run the pass and whatever their clocks
say: the server's ``TIME`` decides what is due; a tick's promise has one id (the template
rendered with the tick) and one idempotency key (``schedule:<id>:<tick>``), so every process that
fires the same tick creates the same promise once; then a compare-and-set on the tick that was
due moves the schedule on. (The tick's promise lives in the partition of its own id, generally
not the schedule's, so the two cannot be one single-slot script on a cluster; creating first and
advancing second, both idempotent, makes a crash between them harmless: the next pass creates
nothing new and advances.)

**Missed ticks** (nothing ran the pass across several ticks): one promise for the most recent
missed tick, then the schedule continues at the next tick after now — catch-up of one, so a
daily reminder whose deployment was down at 9:00 still goes out when it is back, and a week-long
outage does not send seven.

**Time zones**: ticks are computed by croniter on local time in the schedule's zone. A local
time that does not exist (the spring-forward gap) fires at the end of the gap; a local time that
occurs twice (the fall-back overlap) fires at both instants — schedule such jobs in UTC, or
outside 01:00–03:00, to avoid that.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from . import keys
from .connection import translate_errors
from .errors import CorruptRecord, ScheduleExists, ScheduleNotFound, ValidationError, VowError
from .records import INVOKE_TAG, pack_map, unpack_map
from .retention import due_partitions as partitions_due
from .search import Glob
from .states import Status
from .validate import check_data, check_id, check_ikey, check_map

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["SCHEDULE_TAG", "Schedule", "SchedulePage", "ScheduleStore", "latest_tick", "next_tick", "render"]

log = logging.getLogger("vow.schedules")

#: the tag every promise a schedule creates carries (Resonate's name)
SCHEDULE_TAG = "resonate:schedule"
#: due schedules fired per partition per pass at most (bounds one pass)
PASS_BATCH = 100
MAX_LIMIT = 100
_ID_FIELD, _TIME_FIELD = "{{.id}}", "{{.timestamp}}"


def _zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValidationError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from e


def check_cron(cron: object) -> str:
    """A cron expression croniter accepts (5 fields, or 6 with seconds last), else ValidationError."""
    if not isinstance(cron, str) or not cron.strip():
        raise ValidationError("cron must be a non-empty string such as '0 9 * * *'")
    try:
        croniter(cron, datetime(2026, 1, 1, tzinfo=UTC)).get_next(float)  # parses, and ever fires
    except (CroniterBadCronError, CroniterNotAlphaError, CroniterBadDateError, ValueError, KeyError) as e:
        raise ValidationError(f"invalid cron expression {cron!r}: {e}") from e
    return cron


def next_tick(cron: str, zone: str, after_ms: int) -> int:
    """The first tick strictly after ``after_ms`` (epoch ms)."""
    start = datetime.fromtimestamp(after_ms / 1000, _zone(zone))
    return int(round(croniter(cron, start).get_next(float) * 1000))


def latest_tick(cron: str, zone: str, at_ms: int) -> int:
    """The last tick at or before ``at_ms`` (epoch ms)."""
    start = datetime.fromtimestamp((at_ms + 1) / 1000, _zone(zone))
    return int(round(croniter(cron, start).get_prev(float) * 1000))


def render(template: str, schedule_id: str, tick_ms: int) -> str:
    """The promise id of a tick: the template with ``{{.id}}`` and ``{{.timestamp}}`` filled in."""
    return template.replace(_ID_FIELD, schedule_id).replace(_TIME_FIELD, str(tick_ms))


def check_template(template: object) -> str:
    if not isinstance(template, str) or _TIME_FIELD not in template:
        raise ValidationError(
            f"promise id template {template!r} must contain {_TIME_FIELD} (one promise per tick), "
            f"e.g. '{_ID_FIELD}.{_TIME_FIELD}'"
        )
    rest = template.replace(_ID_FIELD, "").replace(_TIME_FIELD, "")
    if "{{" in rest or "}}" in rest:
        raise ValidationError(f"promise id template {template!r}: only {_ID_FIELD} and {_TIME_FIELD} are known")
    return template


#: a tick as long as any will be (epoch ms, 13 digits until the year 2286)
_LONGEST_TICK = 9_999_999_999_999


def _check_ticks(schedule_id: str, template: str) -> None:
    """Every tick's promise id and idempotency key fit the store's limits (checked before the
    schedule exists, so no tick can fail on them later)."""
    check_id(render(template, schedule_id, _LONGEST_TICK), "promise id rendered from the template")
    check_id(_tick_ikey(schedule_id, _LONGEST_TICK), "tick idempotency key (schedule:<id>:<tick>)")


def _tick_ikey(schedule_id: str, tick: int) -> str:
    return f"schedule:{schedule_id}:{tick}"


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    cron: str
    timezone: str
    promise_id: str
    promise_timeout: int
    promise_headers: Mapping[str, str]
    promise_data: bytes | None
    promise_tags: Mapping[str, str]
    idempotency_key: str | None
    description: str
    created_on: int
    next_tick: int
    last_tick: int | None
    last_promise_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "cron": self.cron, "timezone": self.timezone, "promiseId": self.promise_id,
            "promiseTimeout": self.promise_timeout, "promiseHeaders": dict(self.promise_headers),
            "promiseData": self.promise_data, "promiseTags": dict(self.promise_tags),
            "idempotencyKey": self.idempotency_key, "description": self.description, "createdOn": self.created_on,
            "nextRunTime": self.next_tick, "lastRunTime": self.last_tick, "lastPromiseId": self.last_promise_id,
        }


def _text(key: str, fields: Mapping[bytes, bytes], name: str, default: str | None = None) -> str:
    raw = fields.get(name.encode())
    if raw is None:
        if default is not None:
            return default
        raise CorruptRecord(key, f"field {name!r} is missing")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptRecord(key, f"field {name!r} is not UTF-8") from e


def _int(key: str, fields: Mapping[bytes, bytes], name: str) -> int:
    text = _text(key, fields, name)
    try:
        return int(text)
    except ValueError as e:
        raise CorruptRecord(key, f"field {name!r} is not an integer") from e


def decode_schedule(key: str, fields: Mapping[bytes, bytes]) -> Schedule:
    """A :class:`Schedule` from its hash, or :class:`CorruptRecord`."""
    last = fields.get(b"lt")
    return Schedule(
        id=_text(key, fields, "id"), cron=_text(key, fields, "cron"), timezone=_text(key, fields, "tz", "UTC"),
        promise_id=_text(key, fields, "pid"), promise_timeout=_int(key, fields, "pto"),
        promise_headers=unpack_map(key, "ph", fields.get(b"ph")), promise_data=fields.get(b"pd"),
        promise_tags=unpack_map(key, "pt", fields.get(b"pt")),
        idempotency_key=_text(key, fields, "ik") if b"ik" in fields else None,
        description=_text(key, fields, "desc", ""), created_on=_int(key, fields, "co"),
        next_tick=_int(key, fields, "nt"), last_tick=None if last is None else _int(key, fields, "lt"),
        last_promise_id=_text(key, fields, "lp") if b"lp" in fields else None,
    )


@dataclass(frozen=True, slots=True)
class SchedulePage:
    schedules: list[Schedule]
    cursor: str | None


class ScheduleStore:
    """Create, read, delete and search schedules, and run the schedule pass."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    def create(
        self,
        schedule_id: str,
        cron: str,
        promise_id: str,
        promise_timeout: int,
        *,
        promise_data: str | bytes | None = None,
        promise_headers: Mapping[str, str] | None = None,
        promise_tags: Mapping[str, str] | None = None,
        ikey: str | None = None,
        description: str = "",
        timezone: str = "UTC",
    ) -> Schedule:
        """Create a schedule. An existing id returns the stored schedule when the ikeys match,
        else raises ``AlreadyExists``. ``promise_timeout`` is ms after each tick."""
        check_id(schedule_id, "schedule id")
        check_cron(cron)
        _zone(timezone)
        check_template(promise_id)
        _check_ticks(schedule_id, promise_id)
        if isinstance(promise_timeout, bool) or not isinstance(promise_timeout, int) or promise_timeout <= 0:
            raise ValidationError(f"promise timeout must be a positive number of ms, not {promise_timeout!r}")
        if not isinstance(description, str):
            raise ValidationError("description must be a string")
        data = check_data(promise_data, self._store.max_data_bytes, "promise data")
        tags = check_map(promise_tags, "promise tags")
        if INVOKE_TAG in tags:
            self._store.invoke_for(render(promise_id, schedule_id, 0), tags[INVOKE_TAG], data)  # checks both
        first = next_tick(cron, timezone, self._store.now())
        status, fields = self._store.scripts.schedule_create(
            schedule_id, cron=cron, timezone=timezone, promise_id=promise_id, promise_timeout=promise_timeout,
            promise_headers=check_map(promise_headers, "promise headers"), promise_data=data, promise_tags=tags,
            ikey=check_ikey(ikey), description=description, first_tick=first,
        )
        if status == "exists":
            raise ScheduleExists(schedule_id)
        return decode_schedule(keys.schedule(schedule_id), fields)

    def get(self, schedule_id: str) -> Schedule:
        check_id(schedule_id, "schedule id")
        key = keys.schedule(schedule_id)
        with translate_errors(self._store.url, key):
            fields = self._store.client.hgetall(key)
        if not fields:
            raise ScheduleNotFound(schedule_id)
        return decode_schedule(key, fields)

    def delete(self, schedule_id: str) -> None:
        """Delete a schedule (``NotFound`` if there is none); the promises it created stay."""
        check_id(schedule_id, "schedule id")
        if not self._store.scripts.schedule_delete(schedule_id):
            raise ScheduleNotFound(schedule_id)

    def search(
        self, id_pattern: str = "*", tags: Mapping[str, str] | None = None, limit: int = 100, cursor: str | None = None
    ) -> SchedulePage:
        """Schedules whose id matches the glob and whose promise tags include ``tags``, by id."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be an int from 1 to {MAX_LIMIT}, not {limit!r}")
        wanted = check_map(tags, "tags")
        after = _decode_cursor(cursor)
        matcher = Glob(id_pattern)
        with translate_errors(self._store.url):
            pipe = self._store.client.pipeline(transaction=False)
            for p in range(keys.PARTITIONS):
                pipe.zrange(keys.schedules_index(p), 0, -1)
            ids = sorted(i.decode() for ids in pipe.execute() for i in ids)
        ids = [i for i in ids if (after is None or i > after) and matcher.fullmatch(i)]
        found: list[Schedule] = []
        last = after
        while ids and len(found) < limit:
            batch, ids = ids[: limit - len(found)], ids[limit - len(found):]
            for schedule in self._read(batch):
                if all(schedule.promise_tags.get(k) == v for k, v in wanted.items()):
                    found.append(schedule)
            last = batch[-1]
        return SchedulePage(found, _encode_cursor(last) if ids and last is not None else None)

    def _read(self, ids: list[str]) -> list[Schedule]:
        with translate_errors(self._store.url):
            pipe = self._store.client.pipeline(transaction=False)
            for schedule_id in ids:
                pipe.hgetall(keys.schedule(schedule_id))
            replies = pipe.execute()
        return [decode_schedule(keys.schedule(i), f) for i, f in zip(ids, replies, strict=True) if f]

    # -- the schedule pass ----------------------------------------------------------------------

    def run_due(self) -> int:
        """Fire every due schedule; returns the promises created. When nothing is due this is one
        round trip: the earliest tick of each partition, and the server's TIME, in one pipeline."""
        now, due_partitions = partitions_due(self._store, keys.schedules_due)
        if not due_partitions:
            return 0
        client = self._store.client
        with translate_errors(self._store.url):
            pipe = client.pipeline(transaction=False)
            for p in due_partitions:
                pipe.zrangebyscore(keys.schedules_due(p), "-inf", now, start=0, num=PASS_BATCH, withscores=True)
            due = [(m.decode(), int(score)) for rows in pipe.execute() for m, score in rows]
        created = 0
        for schedule_id, tick in due:
            try:
                created += self._fire(schedule_id, tick, now)
            except VowError as e:  # one schedule that cannot fire must not stop the others
                log.warning("schedule %r could not fire its tick %d: %s", schedule_id, tick, e)
        return created

    def _fire(self, schedule_id: str, due: int, now: int) -> int:
        try:
            schedule = self.get(schedule_id)
        except ScheduleNotFound:
            return 0
        if schedule.next_tick != due:
            return 0  # moved on since the index was read
        fired = max(due, latest_tick(schedule.cron, schedule.timezone, now))  # catch up one missed tick
        promise_id = render(schedule.promise_id, schedule.id, fired)
        tags = {**schedule.promise_tags, SCHEDULE_TAG: schedule.id}
        status, _ = self._store.create_ex(
            promise_id, fired + schedule.promise_timeout, ikey=_tick_ikey(schedule.id, fired),
            headers=schedule.promise_headers, data=schedule.promise_data, tags=tags, allow_past=True,
        )
        upcoming = next_tick(schedule.cron, schedule.timezone, max(fired, now))
        self._store.scripts.schedule_advance(
            schedule.id, due=due, fired=fired, promise_id=promise_id, next_tick=upcoming
        )
        return 1 if status is Status.CREATED else 0


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(pack_map({"after": last_id})).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = unpack_map("cursor", "after", raw).get("after")
    except (binascii.Error, ValueError, CorruptRecord) as e:
        raise ValidationError(f"invalid schedule cursor {cursor[:40]!r}") from e
    if after is None:
        raise ValidationError(f"invalid schedule cursor {cursor[:40]!r}")
    return after

