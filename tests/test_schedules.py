"""Cron schedules (``store.schedules``, ``coordinator/schedules.py``): one promise per tick, exactly once.

- exactly once across 4 real worker processes running the schedule pass every 50 ms;
- missed ticks: catch-up of one (hand-moved clock, and real workers all stopped across 5 ticks);
- two worker processes whose own clocks are an hour apart (the server's TIME decides);
- time zones and DST (pure ``next_tick``/``latest_tick``; and the pass across a fall-back);
- bad input refused with a ValidationError and nothing stored (real server and fakeredis);
- ``app.schedule(...)``: a tick's promise really runs its function (and re-declaring is idempotent);
- the 3-master cluster (schedules and their promises in different slots);
- the idle cost: 10,000 schedules due far in the future, one pass is one round trip.

Ticks of the 1-second schedules pass in real time; everything waits with ``wait_until``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from redis.connection import AbstractConnection

from tests import apps
from tests.conftest import Clock
from tests.harness import WorkerProcess, wait_until
from vow.coordinator import RedisStore, keys
from vow.coordinator.errors import ScheduleExists, ScheduleNotFound, ValidationError, VowError
from vow.coordinator.records import INVOKE_TAG, DurablePromise, State
from vow.coordinator.schedules import SCHEDULE_TAG, Schedule, latest_tick, next_tick, render
from vow.coordinator.tasks import decode_task, invoke_data
from vow.worker import Context, Handle, Scheduler, WorkerSettings

TEMPLATE = "{{.id}}.{{.timestamp}}"
EVERY_SECOND = "* * * * * *"
EVERY_MINUTE = "* * * * *"
#: seconds are the LAST of 6 fields (croniter): "*/2 * * * * *" would be every second of even minutes
EVERY_TWO_SECONDS = "* * * * * */2"
MINUTE = 60_000
#: the group of tests/apps.py's "ticks" app, which serves ``scheduled_tick``
TICKS_GROUP = apps.APPS["ticks"][0]
WORKER_FLAGS = ("--sweep-ms", "50", "--grace", "2")


# -- helpers ------------------------------------------------------------------------------------


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def local(tick: int, zone: str) -> datetime:
    return datetime.fromtimestamp(tick / 1000, ZoneInfo(zone))


def create_ticks_schedule(store: RedisStore, schedule_id: str, cron: str = EVERY_SECOND) -> Schedule:
    """A schedule whose every tick runs ``scheduled_tick`` in the ticks app's group."""
    return store.schedules.create(
        schedule_id, cron, TEMPLATE, MINUTE, promise_data=invoke_data("scheduled_tick"),
        promise_tags={INVOKE_TAG: f"poll://{TICKS_GROUP}"},
    )


def fired(store: RedisStore, schedule_id: str, template: str = TEMPLATE) -> dict[int, DurablePromise]:
    """Every promise tagged as created by the schedule, by tick; each id must be the template
    rendered with its tick (so one tick cannot hide under two ids)."""
    found: dict[int, DurablePromise] = {}
    cursor: str | None = None
    while True:
        page = store.search("*", tags={SCHEDULE_TAG: schedule_id}, limit=100, cursor=cursor)
        for promise in page.promises:
            tick = int(promise.id.rsplit(".", 1)[-1])
            assert promise.id == render(template, schedule_id, tick), promise.id
            assert tick not in found, promise.id
            found[tick] = promise
        cursor = page.cursor
        if cursor is None:
            return found


def runs(client: redis.Redis, promise_id: str) -> int:
    """How many times ``scheduled_tick`` ran for the promise (tests/apps.py counts each run)."""
    return int(client.get(f"{apps.COUNT_PREFIX}tick:{promise_id}") or 0)


def resolved(store: RedisStore, schedule_id: str, ticks: list[int]) -> bool:
    promises = fired(store, schedule_id)
    return all(t in promises and promises[t].state is State.RESOLVED for t in ticks)


def wait_all_completed(store: RedisStore, schedule_id: str) -> dict[int, DurablePromise]:
    """The schedule's promises, once every one of them has completed (its function has run)."""

    def completed() -> dict[int, DurablePromise] | None:
        promises = fired(store, schedule_id)
        return promises if all(p.completed for p in promises.values()) else None

    promises = wait_until(completed, timeout=10, what=f"every promise of {schedule_id} completed")
    assert promises is not None
    return promises


def check_tick_promise(schedule_id: str, tick: int, promise: DurablePromise, timeout_ms: int = MINUTE) -> None:
    """The promise of one tick as the module docstring says, created no earlier than its tick."""
    assert promise.idempotency_key_for_create == f"schedule:{schedule_id}:{tick}"
    assert promise.tags[SCHEDULE_TAG] == schedule_id
    assert promise.timeout == tick + timeout_ms
    assert promise.created_on >= tick, (promise.id, promise.created_on)


def start_workers(started: list[WorkerProcess], url: str, flag_sets: list[tuple[str, ...]]) -> None:
    """Start worker processes of the ticks app side by side (each waits until it serves)."""
    with ThreadPoolExecutor(len(flag_sets)) as pool:
        futures = [pool.submit(WorkerProcess, "ticks", url, *flags) for flags in flag_sets]
    errors: list[BaseException] = []
    for future in futures:
        error = future.exception()
        if error is None:
            started.append(future.result())
        else:
            errors.append(error)
    if errors:
        raise errors[0]


def check_no_failures(started: list[WorkerProcess]) -> None:
    """No maintenance job (the schedule pass among them) failed in any worker, no task failed."""
    for w in started:
        failures = [line for line in w.output.splitlines() if "failed" in line or "Traceback" in line]
        assert failures == [], w.output


def stop_workers(started: list[WorkerProcess]) -> None:
    """SIGTERM every worker at once and wait for all of them (their graceful stops overlap)."""
    if started:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(lambda w: w.stop(), started))
        started.clear()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    stop_workers(started)


# -- exactly once, many processes ------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_every_tick_fires_exactly_once_across_four_worker_processes(
    real_store: RedisStore, workers: list[WorkerProcess]
) -> None:
    store, client = real_store, real_store.client
    start_workers(workers, store.url, [WORKER_FLAGS] * 4)
    schedule = create_ticks_schedule(store, "every-second")
    first = schedule.next_tick
    assert first % 1000 == 0 and first > schedule.created_on
    ten = [first + 1000 * n for n in range(10)]
    wait_until(lambda: resolved(store, "every-second", ten), timeout=40, interval=0.1, what="10 ticks resolved")
    store.schedules.delete("every-second")
    promises = wait_all_completed(store, "every-second")

    ticks = sorted(promises)
    check_no_failures(workers)
    assert ticks[:10] == ten  # nothing before the first tick, no tick skipped
    assert ticks == list(range(first, ticks[-1] + 1, 1000))  # (a tick fired before the delete too)
    for tick in ticks:
        check_tick_promise("every-second", tick, promises[tick])
        assert runs(client, promises[tick].id) == 1, promises[tick].id
    assert all(w.process.poll() is None for w in workers)


# -- missed ticks ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_missed_ticks_catch_up_one(store: RedisStore, clock: Clock) -> None:
    schedule = store.schedules.create("minutely", EVERY_MINUTE, TEMPLATE, MINUTE)
    t1 = schedule.next_tick
    assert t1 == clock.now + MINUTE  # the clock starts on a minute
    assert store.schedules.run_due() == 0  # nothing is due yet
    clock.now = t1
    assert store.schedules.run_due() == 1
    clock.now = t1 + MINUTE
    assert store.schedules.run_due() == 1
    assert sorted(fired(store, "minutely")) == [t1, t1 + MINUTE]

    # Nothing runs the pass across 5 ticks (t3..t7), then one pass half a minute after t7.
    t7 = t1 + 6 * MINUTE
    clock.now = t7 + 30_000
    assert store.schedules.run_due() == 1
    promises = fired(store, "minutely")
    assert sorted(promises) == [t1, t1 + MINUTE, t7]  # one, for the most recent missed tick
    check_tick_promise("minutely", t7, promises[t7])
    assert promises[t7].pending  # its timeout (t7 + 1 min) is still ahead
    after = store.schedules.get("minutely")
    assert (after.last_tick, after.last_promise_id) == (t7, render(TEMPLATE, "minutely", t7))
    assert after.next_tick == t7 + MINUTE == next_tick(EVERY_MINUTE, "UTC", clock.now)
    assert store.schedules.run_due() == 0  # the pass again, same instant: nothing more

    clock.now = t7 + MINUTE
    assert store.schedules.run_due() == 1
    assert sorted(fired(store, "minutely")) == [t1, t1 + MINUTE, t7, t7 + MINUTE]


def queued_invokes(store: RedisStore, group: str) -> list[str]:
    """Promise ids of the invoke tasks queued for ``group``, over every partition."""
    return sorted(
        decode_task(fields[b"m"]).id
        for p in range(keys.PARTITIONS)
        for _, fields in store.client.xrange(keys.task_stream(p, group))
    )


@pytest.mark.timeout(30)
def test_a_catch_up_later_than_the_promise_timeout_is_created_timed_out(store: RedisStore, clock: Clock) -> None:
    """As README.md says: the tick's promise times out ``promise_timeout`` after its tick, so a
    catch-up later than that is created timed out and queues no task (its function does not run)."""
    schedule = store.schedules.create(
        "late", EVERY_MINUTE, TEMPLATE, 10_000, promise_data=invoke_data("f"), promise_tags={INVOKE_TAG: "poll://g"},
    )
    t1 = schedule.next_tick
    clock.now = t1
    assert store.schedules.run_due() == 1
    assert store.get(render(TEMPLATE, "late", t1)).pending
    t4 = t1 + 3 * MINUTE
    clock.now = t4 + 30_000  # 2 ticks missed; the last one's timeout (t4 + 10 s) already passed
    assert store.schedules.run_due() == 1
    late = store.get(render(TEMPLATE, "late", t4))
    assert late.state is State.REJECTED_TIMEDOUT and late.timeout == t4 + 10_000
    assert queued_invokes(store, "g") == [render(TEMPLATE, "late", t1)]
    assert store.schedules.get("late").next_tick == t4 + MINUTE


@pytest.mark.timeout(90)
def test_workers_stopped_across_five_ticks_catch_up_one_then_tick_on(
    real_store: RedisStore, workers: list[WorkerProcess]
) -> None:
    store, client = real_store, real_store.client
    start_workers(workers, store.url, [WORKER_FLAGS] * 2)
    schedule = create_ticks_schedule(store, "outage")
    first = schedule.next_tick
    wait_until(lambda: resolved(store, "outage", [first, first + 1000]), timeout=20, what="2 ticks before the outage")
    check_no_failures(workers)
    stop_workers(workers)
    last = store.schedules.get("outage").last_tick  # nothing runs the pass from here on
    assert last is not None and last >= first + 1000
    wait_until(lambda: store.now() >= last + 5_500, timeout=15, interval=0.05, what="5 ticks to pass")
    assert max(fired(store, "outage")) == last  # nothing fired during the outage

    restart = store.now()
    start_workers(workers, store.url, [WORKER_FLAGS] * 2)

    def three_after_outage() -> bool:
        after = [t for t in fired(store, "outage") if t > last]
        return len(after) >= 3 and resolved(store, "outage", sorted(after)[:3])

    wait_until(three_after_outage, timeout=30, interval=0.1, what="3 ticks after the restart")
    check_no_failures(workers)
    store.schedules.delete("outage")
    promises = wait_all_completed(store, "outage")
    after = sorted(t for t in promises if t > last)
    catch_up = after[0]
    # one promise for the missed ticks: the most recent one at the first pass (>= last + 5 s)
    assert catch_up >= latest_tick(EVERY_SECOND, "UTC", restart) >= last + 5_000, (last, restart, after)
    assert [t for t in promises if last < t < catch_up] == []
    assert after == list(range(catch_up, after[-1] + 1, 1000))  # then every tick again
    assert sorted(t for t in promises if t <= last) == list(range(first, last + 1, 1000))
    for tick, promise in promises.items():
        check_tick_promise("outage", tick, promise)
        assert runs(client, promise.id) == 1, promise.id


# -- clocks an hour apart -------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_worker_clocks_an_hour_apart_still_fire_each_tick_once(
    real_store: RedisStore, workers: list[WorkerProcess]
) -> None:
    store, client = real_store, real_store.client
    start_workers(workers, store.url, [WORKER_FLAGS, (*WORKER_FLAGS, "--clock-skew-s", "3600")])
    assert workers[1].first_line(lambda line: line.startswith("clock skew +3600s"))
    schedule = create_ticks_schedule(store, "skewed")
    first = schedule.next_tick
    assert first <= store.now() + 1000  # created by the server's clock, not a process's
    five = [first + 1000 * n for n in range(5)]
    wait_until(lambda: resolved(store, "skewed", five), timeout=30, interval=0.1, what="5 ticks resolved")
    store.schedules.delete("skewed")
    promises = wait_all_completed(store, "skewed")
    now = store.now()

    check_no_failures(workers)
    ticks = sorted(promises)
    assert ticks == list(range(first, ticks[-1] + 1, 1000)) and ticks[:5] == five
    assert ticks[-1] <= now  # nothing fired an hour early by the fast clock
    for tick in ticks:
        check_tick_promise("skewed", tick, promises[tick])
        assert runs(client, promises[tick].id) == 1, promises[tick].id
        value = json.loads(promises[tick].value.data or b"null")
        skew = value["local_ms"] - promises[tick].completed_on  # what the running process's clock said
        assert abs(skew) < 60_000 or abs(skew - 3_600_000) < 60_000, value


# -- time zones and DST (pure) --------------------------------------------------------------------


def ticks_from(cron: str, zone: str, after: datetime, n: int) -> list[int]:
    out, at = [], ms(after)
    for _ in range(n):
        at = next_tick(cron, zone, at)
        out.append(at)
    return out


@pytest.mark.timeout(10)
def test_six_fields_have_the_seconds_last() -> None:
    start = datetime(2026, 6, 1, 12, 1, 58, tzinfo=UTC)  # in an odd minute
    at = ms(start)
    assert [t - at for t in ticks_from(EVERY_SECOND, "UTC", start, 3)] == [1000, 2000, 3000]
    assert [t - at for t in ticks_from(EVERY_TWO_SECONDS, "UTC", start, 3)] == [2000, 4000, 6000]
    # the first field is the minute: every second, of even minutes only
    assert next_tick("*/2 * * * * *", "UTC", at) == ms(datetime(2026, 6, 1, 12, 2, tzinfo=UTC))
    assert next_tick("0 9 * * *", "UTC", at) == ms(datetime(2026, 6, 2, 9, tzinfo=UTC))  # 5 fields: no seconds


@pytest.mark.timeout(10)
def test_berlin_spring_forward_fires_at_the_end_of_the_gap() -> None:
    zone = "Europe/Berlin"
    ticks = ticks_from("30 2 * * *", zone, datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert [local(t, zone).isoformat() for t in ticks] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night: the end of the gap
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert ticks[1] == ms(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    # from inside the gap's hour (UTC 01:00 is 03:00 CEST) the next is the next day's
    assert next_tick("30 2 * * *", zone, ms(datetime(2026, 3, 29, 0, 59, tzinfo=UTC))) == ticks[1]
    assert next_tick("30 2 * * *", zone, ticks[1]) == ticks[2]
    assert latest_tick("30 2 * * *", zone, ticks[1]) == ticks[1]
    assert latest_tick("30 2 * * *", zone, ticks[1] - 1) == ticks[0]


@pytest.mark.timeout(10)
def test_berlin_fall_back_fires_at_both_instants_of_the_overlap() -> None:
    zone = "Europe/Berlin"
    ticks = ticks_from("30 2 * * *", zone, datetime(2026, 10, 23, 12, tzinfo=UTC), 5)
    assert [local(t, zone).isoformat() for t in ticks] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # 02:30 CEST ...
        "2026-10-25T02:30:00+01:00",  # ... and 02:30 CET, an hour later
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    assert ticks[1:3] == [ms(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)), ms(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))]
    between = ms(datetime(2026, 10, 25, 1, 0, tzinfo=UTC))  # 02:00 CET, between the two
    assert next_tick("30 2 * * *", zone, between) == ticks[2]
    assert latest_tick("30 2 * * *", zone, between) == ticks[1]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("after", "offsets"),
    [
        (datetime(2026, 3, 6, 12, tzinfo=UTC), [-5, -5, -4, -4, -4]),  # DST starts 2026-03-08
        (datetime(2026, 10, 30, 12, tzinfo=UTC), [-4, -4, -5, -5, -5]),  # DST ends 2026-11-01
    ],
    ids=["spring", "fall"],
)
def test_new_york_nine_oclock_stays_nine_oclock(after: datetime, offsets: list[int]) -> None:
    zone = "America/New_York"
    ticks = ticks_from("0 9 * * *", zone, after, 5)
    times = [local(t, zone) for t in ticks]
    assert [(t.hour, t.minute) for t in times] == [(9, 0)] * 5
    days = [t.date().toordinal() for t in times]
    assert days == list(range(days[0], days[0] + 5))  # one a day
    assert [int(t.utcoffset() // timedelta(hours=1)) for t in times] == offsets  # type: ignore[operator]
    assert [datetime.fromtimestamp(t / 1000, UTC).hour for t in ticks] == [9 - o for o in offsets]


@pytest.mark.timeout(10)
def test_utc_is_the_default_and_an_unknown_zone_is_refused(store: RedisStore, clock: Clock) -> None:
    at = ms(datetime(2026, 6, 1, 12, tzinfo=UTC))
    assert next_tick("0 9 * * *", "UTC", at) == ms(datetime(2026, 6, 2, 9, tzinfo=UTC))
    assert next_tick("0 9 * * *", "", at) == next_tick("0 9 * * *", "UTC", at)
    assert latest_tick("0 9 * * *", "UTC", at) == ms(datetime(2026, 6, 1, 9, tzinfo=UTC))
    schedule = store.schedules.create("daily", "0 9 * * *", TEMPLATE, MINUTE)
    assert schedule.timezone == "UTC"
    assert schedule.next_tick == next_tick("0 9 * * *", "UTC", clock.now) == clock.now + 9 * 3600_000
    for zone in ("Mars/Olympus_Mons", "Europe/Berlin/", "../etc/passwd"):
        with pytest.raises(ValidationError, match="time zone"):
            next_tick("0 9 * * *", zone, at)
        with pytest.raises(ValidationError, match="time zone"):
            latest_tick("0 9 * * *", zone, at)


@pytest.mark.timeout(20)
def test_the_pass_fires_both_instants_of_a_fall_back_overlap(store: RedisStore, clock: Clock) -> None:
    clock.now = ms(datetime(2026, 10, 24, 12, tzinfo=UTC))
    store.schedules.create("berlin", "30 2 * * *", TEMPLATE, MINUTE, timezone="Europe/Berlin")
    cest, cet = ms(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)), ms(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    assert store.schedules.get("berlin").next_tick == cest
    clock.now = cest + 5
    assert store.schedules.run_due() == 1
    assert store.schedules.get("berlin").next_tick == cet
    clock.now = cet + 5
    assert store.schedules.run_due() == 1
    assert sorted(fired(store, "berlin")) == [cest, cet]
    assert store.schedules.get("berlin").next_tick == ms(datetime(2026, 10, 26, 1, 30, tzinfo=UTC))


# -- bad input ------------------------------------------------------------------------------------


def _create(
    store: RedisStore,
    schedule_id: str = "bad",
    cron: Any = EVERY_MINUTE,
    promise_id_template: Any = TEMPLATE,
    promise_timeout_ms: Any = MINUTE,
    **options: Any,
) -> Schedule:
    """``store.schedules.create`` of a valid schedule, with the given arguments changed."""
    return store.schedules.create(schedule_id, cron, promise_id_template, promise_timeout_ms, **options)


BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"cron": "not a cron"}, "cron"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * *"}, "cron"),
    ({"cron": "*/0 * * * *"}, "cron"),
    ({"cron": ""}, "cron"),
    ({"cron": None}, "cron"),
    ({"cron": "0 0 31 2 *"}, "cron"),  # parses, but no day ever matches (Feb 31)
    ({"promise_id_template": "{{.id}}"}, "timestamp"),
    ({"promise_id_template": "fixed-id"}, "timestamp"),
    ({"promise_id_template": "{{.id}}.{{.timestamp}}.{{.x}}"}, "only"),
    ({"promise_id_template": "{{.ID}}.{{.timestamp}}"}, "only"),
    ({"promise_timeout_ms": 0}, "timeout"),
    ({"promise_timeout_ms": -1}, "timeout"),
    ({"promise_timeout_ms": 1.5}, "timeout"),
    ({"promise_timeout_ms": True}, "timeout"),
    ({"timezone": "Mars/Olympus_Mons"}, "time zone"),
    ({"timezone": "CEST"}, "time zone"),
    ({"schedule_id": ""}, "schedule id"),
    ({"promise_tags": {INVOKE_TAG: "poll://g"}}, "invoke data"),  # invoke tag, no function
    ({"promise_tags": {INVOKE_TAG: "poll://g"}, "promise_data": "not json"}, "invoke data"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("changes", "message"), BAD_INPUT, ids=[f"{i}-{next(iter(c))}" for i, (c, _) in
                                                                 enumerate(BAD_INPUT)])
def test_bad_input_is_refused_and_stores_nothing(store: RedisStore, changes: dict[str, Any], message: str) -> None:
    store.schedules.create("good", EVERY_MINUTE, TEMPLATE, MINUTE)
    with pytest.raises(ValidationError, match=message):
        _create(store, **changes)
    assert [s.id for s in store.schedules.search().schedules] == ["good"]
    with pytest.raises(ScheduleNotFound):
        store.schedules.get("bad")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "changes",
    [{"schedule_id": "s" * 1010}, {"promise_id_template": "p" * 1015 + "{{.timestamp}}"}],
    ids=["long-id-so-the-tick-ikey-is-too-long", "long-template-so-the-tick-id-is-too-long"],
)
def test_a_schedule_whose_tick_promises_cannot_exist_is_refused(
    store: RedisStore, clock: Clock, changes: dict[str, Any]
) -> None:
    """Every tick's promise id (the template with a 13-digit tick) and idempotency key
    (``schedule:<id>:<tick>``) must fit the 1024-character limit, or no tick can ever fire."""
    with pytest.raises(ValidationError):
        _create(store, **changes)
    assert store.schedules.search().schedules == []


@pytest.mark.timeout(20)
def test_a_schedule_that_cannot_fire_does_not_stop_the_pass_for_the_others(store: RedisStore, clock: Clock) -> None:
    """If such a schedule gets stored at all, the pass must still fire every other due schedule
    (the pass reads the partitions in order: the good one is in a later partition)."""
    poison = "s" * 1010
    good = next(f"good-{n}" for n in range(1000) if keys.partition_of(f"good-{n}") > keys.partition_of(poison))
    try:
        store.schedules.create(poison, EVERY_MINUTE, TEMPLATE, MINUTE)
    except ValidationError:
        return  # refused at create time: it can never reach the pass
    store.schedules.create(good, EVERY_MINUTE, TEMPLATE, MINUTE)
    clock.advance(MINUTE)
    error: VowError | None = None
    try:
        store.schedules.run_due()
    except VowError as e:
        error = e
    assert sorted(fired(store, good)) == [clock.now], f"the good schedule did not fire; the pass raised {error!r}"


@pytest.mark.timeout(20)
def test_duplicate_ids(store: RedisStore, clock: Clock) -> None:
    stored = store.schedules.create("dup", EVERY_MINUTE, TEMPLATE, MINUTE, ikey="a", description="first")
    clock.advance(1000)
    again = store.schedules.create("dup", "0 9 * * *", "other.{{.timestamp}}", 5, ikey="a")
    assert again == stored  # same ikey: the stored schedule, unchanged
    with pytest.raises(ScheduleExists):
        store.schedules.create("dup", EVERY_MINUTE, TEMPLATE, MINUTE, ikey="b")
    with pytest.raises(ScheduleExists):
        store.schedules.create("dup", EVERY_MINUTE, TEMPLATE, MINUTE)
    assert store.schedules.get("dup") == stored
    assert [s.id for s in store.schedules.search().schedules] == ["dup"]
    store.schedules.create("no-ikey", EVERY_MINUTE, TEMPLATE, MINUTE)
    with pytest.raises(ScheduleExists):
        store.schedules.create("no-ikey", EVERY_MINUTE, TEMPLATE, MINUTE)  # no ikey: never the same request


# -- app.schedule: a scheduled invoke really runs -------------------------------------------------


@pytest.mark.timeout(60)
def test_app_schedule_runs_the_function_and_redeclaring_is_idempotent(real_store: RedisStore) -> None:
    store = real_store
    calls: list[str] = []

    def greet(ctx: Context, name: str) -> str:
        calls.append(ctx.id)
        return f"hello {name}"

    app = Scheduler(store, "g", settings=WorkerSettings(sweep_ms=50, concurrency=2, shutdown_grace_s=2))
    try:
        app.register(greet)
        schedule = app.schedule("tick", EVERY_SECOND, greet, "world", promise_timeout_s=30)
        assert schedule.promise_tags[INVOKE_TAG] == "poll://g"  # the tick's promise has a target

        promise_id = wait_until(lambda: store.schedules.get("tick").last_promise_id, timeout=10, what="a tick") or ""
        assert promise_id.startswith("tick.")
        assert Handle(store, promise_id).result(timeout=10) == "hello world"
        promise = store.get(promise_id)
        assert promise.state is State.RESOLVED and promise.tags[SCHEDULE_TAG] == "tick"
        assert promise_id in calls

        same = app.schedule("tick", EVERY_SECOND, greet, "world", promise_timeout_s=30)
        assert (same.created_on, same.idempotency_key) == (schedule.created_on, schedule.idempotency_key)
        assert len(store.schedules.search().schedules) == 1

        changed = app.schedule("tick", EVERY_TWO_SECONDS, greet, "world", promise_timeout_s=30)
        assert changed.cron == EVERY_TWO_SECONDS and changed.idempotency_key != schedule.idempotency_key
        assert changed.created_on >= schedule.created_on and changed.next_tick % 2000 == 0
        assert store.schedules.get("tick") == changed
        assert [s.cron for s in store.schedules.search().schedules] == [EVERY_TWO_SECONDS]
    finally:
        app.stop(grace_s=2)


# -- cluster --------------------------------------------------------------------------------------


def ids_in_every_partition(prefix: str) -> list[str]:
    by_partition: dict[int, str] = {}
    n = 0
    while len(by_partition) < keys.PARTITIONS:
        by_partition.setdefault(keys.partition_of(f"{prefix}-{n}"), f"{prefix}-{n}")
        n += 1
    return sorted(by_partition.values())


@pytest.mark.cluster
@pytest.mark.timeout(60)
def test_schedules_fire_on_a_cluster(cluster_url: str, clock: Clock) -> None:
    store = RedisStore(cluster_url, clock=clock)
    try:
        assert store.is_cluster
        ids = ids_in_every_partition("job")
        for schedule_id in ids:
            store.schedules.create(schedule_id, EVERY_MINUTE, TEMPLATE, MINUTE, promise_tags={"k": schedule_id})
        t1 = clock.now + MINUTE
        clock.now = t1
        assert store.schedules.run_due() == len(ids)
        clock.now = t1 + 5 * MINUTE + 1  # 4 ticks missed: one catch-up each
        assert store.schedules.run_due() == len(ids)
        slots = {keys.partition_of(render(TEMPLATE, i, t1)) != keys.partition_of(i) for i in ids}
        assert True in slots  # some promises live in another partition than their schedule
        for schedule_id in ids:
            for tick in (t1, t1 + 5 * MINUTE):
                promise = store.get(render(TEMPLATE, schedule_id, tick))
                check_tick_promise(schedule_id, tick, promise)
                assert promise.tags["k"] == schedule_id
            assert store.schedules.get(schedule_id).next_tick == t1 + 6 * MINUTE
        assert sorted(s.id for s in store.schedules.search().schedules) == ids
    finally:
        store.close()


# -- idle cost ------------------------------------------------------------------------------------


class RoundTrips:
    """Requests this process writes to Redis (except on the INFO connection), and the server's
    calls by command (``INFO commandstats``), around an action."""

    def __init__(self, info: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.info = info
        self.sent = 0
        own = info.connection_pool.get_connection()
        info.connection_pool.release(own)
        original = AbstractConnection.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            if conn is not own:
                self.sent += 1
            original(conn, command, check_health)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)

    def calls(self) -> dict[str, int]:
        return {name: int(v["calls"]) for name, v in self.info.info("commandstats").items()}

    def measure(self, action: Callable[[], object]) -> tuple[int, dict[str, int]]:
        before, sent = self.calls(), self.sent
        action()
        round_trips, after = self.sent - sent, self.calls()
        changed = {k: after[k] - before.get(k, 0) for k in after
                   if k != "cmdstat_info" and after[k] != before.get(k, 0)}
        return round_trips, changed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("injected_clock", [True, False], ids=["injected-clock", "server-clock"])
def test_an_idle_pass_over_10000_schedules_is_one_round_trip(
    real_store: RedisStore, raw_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, injected_clock: bool
) -> None:
    creator = RedisStore(real_store.url, clock=Clock(real_store.now()))
    for n in range(10_000):
        creator.schedules.create(f"yearly-{n}", "0 0 1 1 *", TEMPLATE, MINUTE)
    store = RedisStore(real_store.url, clock=Clock(real_store.now())) if injected_clock else real_store
    assert store.schedules.run_due() == 0  # warm: connected
    keys_before = raw_client.dbsize()

    counter = RoundTrips(raw_client, monkeypatch)
    round_trips, calls = counter.measure(lambda: store.schedules.run_due())
    assert round_trips == 1, calls
    # one read of each partition's due index (and the server's TIME); no record read, no script
    assert set(calls) <= {"cmdstat_zrange", "cmdstat_zrangebyscore", "cmdstat_time"}, calls
    assert calls.get("cmdstat_zrange", 0) + calls.get("cmdstat_zrangebyscore", 0) == keys.PARTITIONS, calls
    assert raw_client.dbsize() == keys_before
    assert store.search().promises == []
    creator.close()
