"""``vow schedules`` (create, get, ls, delete) through click's CliRunner, on the suite's own server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from click.testing import CliRunner

from tests.cli_helpers import as_json, fits, one_line_error, vow
from vow.cli import ExitCode, cli
from vow.cli.calls import DEFAULT_GROUP
from vow.cli.output import timestamp
from vow.coordinator import RedisStore, keys
from vow.coordinator import streams as task_streams
from vow.coordinator.records import INVOKE_TAG
from vow.coordinator.schedules import SCHEDULE_TAG, next_tick
from vow.coordinator.tasks import invoke_data

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
UNREACHABLE = "redis://127.0.0.1:1"
#: the minimal valid create, to which each test adds or changes options
BASE = ["--cron", "0 9 * * *", "--promise-id", "reminder-{{.timestamp}}"]


def stored(store: RedisStore) -> list[dict[str, Any]]:
    return [s.to_dict() for s in store.schedules.search().schedules]


def fire_yesterdays_tick(raw_client: Any, store: RedisStore, schedule_id: str) -> int:
    """Make a daily UTC schedule due at the tick before its next one, then run the schedule pass."""
    due = store.schedules.get(schedule_id).next_tick - DAY_MS
    raw_client.hset(keys.schedule(schedule_id), "nt", due)
    raw_client.zadd(keys.schedules_due(keys.partition_of(schedule_id)), {schedule_id: due})
    assert store.schedules.run_due() == 1
    return due


# -- create, get, ls, delete ----------------------------------------------------------------------


def test_create_get_ls_delete_round_trip(redis_url: str, real_store: RedisStore) -> None:
    created = as_json(vow("schedules", "create", "daily", *BASE, "--promise-timeout", "30m", "--data", '{"a": [1]}',
                          "--header", "h=v", "--tag", "owner=alice", "--ikey", "v1", "--description", "say hi",
                          "--json", url=redis_url))
    assert created["id"] == "daily" and created["cron"] == "0 9 * * *" and created["timezone"] == "UTC"
    assert created["promiseId"] == "reminder-{{.timestamp}}" and created["promiseTimeout"] == 30 * 60_000
    assert created["promiseData"] == {"a": [1]} and created["promiseHeaders"] == {"h": "v"}
    assert created["promiseTags"] == {"owner": "alice"} and created["idempotencyKey"] == "v1"
    assert created["description"] == "say hi" and created["lastRunTime"] is None
    now = real_store.now()
    assert now < created["nextRunTime"] <= now + DAY_MS
    assert created["nextRunTime"] == next_tick("0 9 * * *", "UTC", created["createdOn"])
    assert real_store.schedules.get("daily").promise_data == b'{"a": [1]}'  # stored as the JSON text given

    assert as_json(vow("schedules", "get", "daily", "--json", url=redis_url)) == created
    text = vow("schedules", "get", "daily", url=redis_url)
    assert text.exit_code == 0 and fits(text.stdout)
    assert "0 9 * * *" in text.stdout and "owner=alice" in text.stdout and "say hi" in text.stdout

    listed = as_json(vow("schedules", "ls", "--json", url=redis_url))
    assert listed == {"schedules": [created], "cursor": None}
    table = vow("schedules", "ls", url=redis_url)
    assert table.exit_code == 0 and fits(table.stdout)
    header, row = table.stdout.splitlines()
    assert header.split() == ["ID", "CRON", "TIME", "ZONE", "NEXT", "TICK", "LAST", "PROMISE"]
    assert row.startswith("daily ") and "0 9 * * *" in row and "UTC" in row and "in " in row

    assert as_json(vow("schedules", "delete", "daily", "--json", url=redis_url)) == {"id": "daily", "deleted": True}
    assert stored(real_store) == []
    one_line_error(vow("schedules", "get", "daily", url=redis_url), ExitCode.NOT_FOUND)
    assert vow("schedules", "ls", url=redis_url).stdout.strip() == "no schedules found"


def test_create_prints_the_next_tick_in_human_time_and_epoch_ms(redis_url: str) -> None:
    result = vow("schedules", "create", "berlin", *BASE, "--timezone", "Europe/Berlin", url=redis_url)
    assert result.exit_code == 0, result.output
    tick = next_tick("0 9 * * *", "Europe/Berlin", as_json(vow("schedules", "get", "berlin", "--json",
                                                               url=redis_url))["createdOn"])
    lines = {line[:15].strip(): line[15:] for line in result.stdout.splitlines()}
    assert lines["next tick"].startswith(f"{timestamp(tick)[:10]} 09:00:00 CE")  # CET or CEST: 09:00 in Berlin
    assert timestamp(tick) in lines["next tick"] and "(in " in lines["next tick"]
    assert lines["next tick ms"] == str(tick)
    assert lines["time zone"] == "Europe/Berlin" and lines["timeout"] == "1h after its tick"  # the default
    assert fits(result.stdout)
    utc = vow("schedules", "create", "utc", *BASE, url=redis_url)
    assert "09:00:00Z (in " in utc.stdout


def test_create_with_the_same_ikey_is_an_idempotent_retry(redis_url: str, real_store: RedisStore) -> None:
    first = as_json(vow("schedules", "create", "s1", *BASE, "--ikey", "k", "--json", url=redis_url))
    again = as_json(vow("schedules", "create", "s1", *BASE, "--ikey", "k", "--json", url=redis_url))
    assert again == first
    before = stored(real_store)
    line = one_line_error(vow("schedules", "create", "s1", "--cron", "*/5 * * * *", "--promise-id",
                              "other-{{.timestamp}}", "--ikey", "other", url=redis_url), ExitCode.CONFLICT)
    assert "'s1' already exists" in line
    one_line_error(vow("schedules", "create", "s1", *BASE, url=redis_url), ExitCode.CONFLICT)  # no ikey: no retry
    assert stored(real_store) == before


def test_data_that_is_not_json_prints_as_base64(redis_url: str, real_store: RedisStore) -> None:
    real_store.schedules.create("bin", "0 9 * * *", "bin-{{.timestamp}}", HOUR_MS, promise_data=b"\xff\x00raw")
    record = as_json(vow("schedules", "get", "bin", "--json", url=redis_url))
    assert record["promiseData"] == {"base64": base64.b64encode(b"\xff\x00raw").decode()}
    assert "base64:" in vow("schedules", "get", "bin", url=redis_url).stdout
    listed = as_json(vow("schedules", "ls", "--json", url=redis_url))
    assert listed["schedules"][0]["promiseData"] == record["promiseData"]


# -- --invoke -------------------------------------------------------------------------------------


def test_invoke_stores_the_invoke_data_and_tag(redis_url: str, real_store: RedisStore, raw_client: Any) -> None:
    # A timeout longer than a day: yesterday's tick is fired below, and its promise must still be pending.
    created = as_json(vow("schedules", "create", "mail", *BASE, "--promise-timeout", "3d",
                          "--invoke", "send_email", "--arg", '"a@b.c"',
                          "--kwarg", "urgent=true", "--target", "email-service", "--tag", "owner=ops", "--json",
                          url=redis_url))
    assert created["promiseData"] == {"func": "send_email", "args": ["a@b.c"], "kwargs": {"urgent": True}}
    assert created["promiseTags"] == {INVOKE_TAG: "poll://email-service", "owner": "ops"}
    schedule = real_store.schedules.get("mail")
    assert schedule.promise_data == invoke_data("send_email", ["a@b.c"], {"urgent": True}).encode()

    # The tick's promise is the call: it carries the data and tags, and its task is queued in the group.
    due = fire_yesterdays_tick(raw_client, real_store, "mail")
    promise = real_store.get(f"reminder-{due}")
    assert promise.param.data == schedule.promise_data
    assert promise.tags == {INVOKE_TAG: "poll://email-service", "owner": "ops", SCHEDULE_TAG: "mail"}
    [stats] = task_streams.group_stats(real_store)
    assert (stats.group, stats.length) == ("email-service", 1)


def test_invoke_targets_the_default_group_of_vow_invoke(redis_url: str) -> None:
    created = as_json(vow("schedules", "create", "tick", *BASE, "--invoke", "tick", "--json", url=redis_url))
    assert created["promiseTags"] == {INVOKE_TAG: f"poll://{DEFAULT_GROUP}"}
    assert created["promiseData"] == {"func": "tick", "args": [], "kwargs": {}}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--invoke", "f", "--data", "1"], "cannot be combined"),
        (["--arg", "1"], "need --invoke"),
        (["--kwarg", "n=1"], "need --invoke"),
        (["--target", "email-service"], "need --invoke"),
        (["--invoke", "f", "--tag", f"{INVOKE_TAG}=poll://g"], "--target"),
    ],
)
def test_invoke_options_that_do_not_go_together_are_usage_errors(
    redis_url: str, real_store: RedisStore, extra: list[str], fragment: str
) -> None:
    line = one_line_error(vow("schedules", "create", "x", *BASE, *extra, url=redis_url), ExitCode.USAGE)
    assert fragment in line and "vow schedules create --help" in line
    assert stored(real_store) == []


# -- refused creates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cron", "not a cron", "--promise-id", "r-{{.timestamp}}"], "invalid cron expression"),
        (["--cron", "61 * * * *", "--promise-id", "r-{{.timestamp}}"], "invalid cron expression"),
        (["--cron", "", "--promise-id", "r-{{.timestamp}}"], "cron must be"),
        (["--cron", "0 9 * * *", "--promise-id", "reminder"], "must contain {{.timestamp}}"),
        (["--cron", "0 9 * * *", "--promise-id", "{{.id}}"], "must contain {{.timestamp}}"),
        (["--cron", "0 9 * * *", "--promise-id", "r-{{.timestamp}}-{{.who}}"], "only {{.id}} and {{.timestamp}}"),
        ([*BASE, "--promise-timeout", "0"], "--promise-timeout"),
        ([*BASE, "--promise-timeout", "0s"], "--promise-timeout"),
        ([*BASE, "--promise-timeout", "10"], "--promise-timeout"),
        ([*BASE, "--promise-timeout", "1y"], "--promise-timeout"),
        ([*BASE, "--data", "{not json"], "not valid JSON"),
        ([*BASE, "--data", "hello"], "not valid JSON"),
        ([*BASE, "--invoke", "f", "--arg", "[1,"], "not valid JSON"),
        ([*BASE, "--invoke", "f", "--kwarg", "n={"], "not valid JSON"),
        ([*BASE, "--tag", "no-equals-sign"], "key=value"),
        ([*BASE, "--timezone", "Mars/Olympus_Mons"], "unknown time zone"),
        ([*BASE, "--timezone", "../etc/passwd"], "unknown time zone"),
        ([*BASE, "--invoke", "f", "--target", "bad group"], "logic group"),
    ],
)
def test_invalid_create_is_a_usage_error_and_stores_nothing(
    redis_url: str, real_store: RedisStore, args: list[str], fragment: str
) -> None:
    real_store.schedules.create("existing", "0 9 * * *", "e-{{.timestamp}}", HOUR_MS)
    before = stored(real_store)
    line = one_line_error(vow("schedules", "create", "new", *args, url=redis_url), ExitCode.USAGE)
    assert fragment in line, line
    assert stored(real_store) == before


# -- get, delete, ls ------------------------------------------------------------------------------


def test_unknown_schedule_is_not_found(redis_url: str, real_store: RedisStore) -> None:
    real_store.schedules.create("kept", "0 9 * * *", "k-{{.timestamp}}", HOUR_MS)
    before = stored(real_store)
    for command in ("get", "delete"):
        for extra in ([], ["--json"]):
            line = one_line_error(vow("schedules", command, "ghost", *extra, url=redis_url), ExitCode.NOT_FOUND)
            assert line == "Error: schedule 'ghost' not found"
    assert stored(real_store) == before


def test_delete_keeps_the_promises_the_schedule_created(redis_url: str, real_store: RedisStore,
                                                        raw_client: Any) -> None:
    real_store.schedules.create("daily", "0 9 * * *", "{{.id}}.{{.timestamp}}", HOUR_MS)
    due = fire_yesterdays_tick(raw_client, real_store, "daily")
    result = vow("schedules", "delete", "daily", url=redis_url)
    assert result.exit_code == 0 and result.stdout.strip() == "deleted schedule 'daily' (the promises it created stay)"
    assert real_store.get(f"daily.{due}").tags[SCHEDULE_TAG] == "daily"
    assert stored(real_store) == []


def test_last_tick_and_promise_are_shown_after_a_tick(redis_url: str, real_store: RedisStore,
                                                      raw_client: Any) -> None:
    real_store.schedules.create("daily", "0 9 * * *", "{{.id}}.{{.timestamp}}", HOUR_MS)
    due = fire_yesterdays_tick(raw_client, real_store, "daily")
    record = as_json(vow("schedules", "get", "daily", "--json", url=redis_url))
    assert record["lastRunTime"] == due and record["lastPromiseId"] == f"daily.{due}"
    assert record["nextRunTime"] == due + DAY_MS
    text = vow("schedules", "get", "daily", url=redis_url).stdout
    assert f"last promise   daily.{due}" in text and f"last tick      {timestamp(due)}" in text
    row = vow("schedules", "ls", url=redis_url).stdout.splitlines()[1]
    assert row.endswith(f"daily.{due}")


def test_ls_filters_by_pattern_and_tag_and_pages(redis_url: str, real_store: RedisStore) -> None:
    for n in range(3):
        real_store.schedules.create(f"job-{n}", "0 9 * * *", "j-{{.timestamp}}", HOUR_MS,
                                    promise_tags={"kind": "job"})
    real_store.schedules.create("other", "0 9 * * *", "o-{{.timestamp}}", HOUR_MS)
    first = as_json(vow("schedules", "ls", "job-*", "--limit", "2", "--json", url=redis_url))
    assert [s["id"] for s in first["schedules"]] == ["job-0", "job-1"] and first["cursor"]
    rest = as_json(vow("schedules", "ls", "job-*", "--limit", "2", "--cursor", first["cursor"], "--json",
                       url=redis_url))
    assert [s["id"] for s in rest["schedules"]] == ["job-2"] and rest["cursor"] is None
    tagged = as_json(vow("schedules", "ls", "--tag", "kind=job", "--json", url=redis_url))
    assert [s["id"] for s in tagged["schedules"]] == ["job-0", "job-1", "job-2"]
    table = vow("schedules", "ls", "--limit", "1", url=redis_url)
    assert table.exit_code == 0 and "CRON" in table.stdout and "next page: --cursor" in table.stdout
    empty = vow("schedules", "ls", "nothing-*", url=redis_url)
    assert empty.exit_code == 0 and empty.stdout.strip() == "no schedules found"
    one_line_error(vow("schedules", "ls", "--cursor", "garbage!", url=redis_url), ExitCode.USAGE)
    one_line_error(vow("schedules", "ls", "--limit", "0", url=redis_url), ExitCode.USAGE)


def test_long_values_fit_80_columns(redis_url: str, real_store: RedisStore, raw_client: Any) -> None:
    long_id = "very-long-schedule-" + "i" * 90
    real_store.schedules.create(long_id, "0 9 * * *", "{{.id}}.{{.timestamp}}", HOUR_MS,
                                promise_data=json.dumps({"text": "word " * 60}), description="d " * 80)
    real_store.schedules.create("zone", "*/5 9-17 * * mon-fri", "z-{{.timestamp}}", HOUR_MS,
                                timezone="America/Argentina/Buenos_Aires")
    fire_yesterdays_tick(raw_client, real_store, long_id)
    shown = vow("schedules", "get", long_id, url=redis_url)
    assert shown.exit_code == 0 and fits(shown.stdout)
    listed = vow("schedules", "ls", url=redis_url)
    assert listed.exit_code == 0 and fits(listed.stdout), listed.stdout
    assert len(listed.stdout.splitlines()) == 3 and "…" in listed.stdout


# -- errors and help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["create", "s", *BASE], ["get", "s"], ["ls"], ["delete", "s"], ["ls", "--json"], ["get", "s", "--json"]],
)
def test_unreachable_redis_exits_5(args: list[str]) -> None:
    line = one_line_error(vow("schedules", *args, url=UNREACHABLE), ExitCode.CONNECTION)
    assert "127.0.0.1:1" in line


def test_hostile_html_in_ids_is_printed_as_plain_text(redis_url: str, real_store: RedisStore) -> None:
    hostile = '<b>&amp;</b><script>"x"</script>'
    template = "<img src=x onerror=alert(1)>{{.timestamp}}"
    created = as_json(vow("schedules", "create", hostile, "--cron", "0 9 * * *", "--promise-id", template,
                          "--description", "<h1>hi</h1>", "--json", url=redis_url))
    assert created["id"] == hostile and created["promiseId"] == template
    for args in (["get", hostile], ["ls"]):
        result = vow("schedules", *args, url=redis_url)
        assert result.exit_code == 0
        assert hostile in result.stdout and "&lt;" not in result.stdout and "&quot;" not in result.stdout
    assert template in vow("schedules", "get", hostile, url=redis_url).stdout
    assert "<h1>hi</h1>" in vow("schedules", "get", hostile, url=redis_url).stdout
    deleted = vow("schedules", "delete", hostile, url=redis_url)
    assert deleted.exit_code == 0 and hostile in deleted.stdout
    line = one_line_error(vow("schedules", "get", hostile, url=redis_url), ExitCode.NOT_FOUND)
    assert hostile in line
    assert stored(real_store) == []


def test_usage_errors_are_one_line_with_a_help_pointer(redis_url: str) -> None:
    line = one_line_error(vow("schedules", "create", "x", "--cron", "0 9 * * *", url=redis_url), ExitCode.USAGE)
    assert "--promise-id" in line and "vow schedules create --help" in line
    one_line_error(vow("schedules", "get", url=redis_url), ExitCode.USAGE)
    one_line_error(vow("schedules", "frobnicate"), ExitCode.USAGE)


def test_every_schedules_command_has_help_with_an_example() -> None:
    for command in ("create", "get", "ls", "delete"):
        result = CliRunner().invoke(cli, ["schedules", command, "--help"], prog_name="vow")
        assert result.exit_code == 0, command
        assert "Example" in result.stdout and f"vow schedules {command}" in result.stdout, command
        assert "--url" in result.stdout and "--json" in result.stdout, command
    group = CliRunner().invoke(cli, ["--help"], prog_name="vow")
    assert "schedules" in group.stdout
