"""The seed's story extended with a schedule: the reminder service reminds unconfirmed users.

``examples/email_verification/reminders.py`` runs as a real process with a cron that ticks every
second; a person whose ``email-confirmed-*`` promise is pending gets a reminder, one who
confirmed does not, and the tick's promise records how many were sent.
"""

from __future__ import annotations

import json
import os
import sys

from tests.harness import ROOT, wait_until
from vow import RedisStore, State
from vow.processes import ManagedProcess


def test_the_reminder_schedule_reminds_only_the_unconfirmed(redis_url: str) -> None:
    store = RedisStore(redis_url)
    far = store.now() + 3_600_000
    store.create("email-confirmed-bob@example.com", far)
    store.create("email-confirmed-carol@example.com", far)
    store.resolve("email-confirmed-carol@example.com", data="true")
    env = {**os.environ, "VOW_REDIS_URL": redis_url, "REMINDER_CRON": "* * * * * *", "PYTHONUNBUFFERED": "1"}
    service = ManagedProcess("reminder service", [sys.executable, "-m", "examples.email_verification.reminders"],
                             env=env, cwd=ROOT)
    try:
        service.wait_for_line("Reminder sent to bob@example.com", timeout=20)
        schedule = store.schedules.get("daily-reminders")
        assert schedule.cron == "* * * * * *"

        def a_tick_resolved() -> list[int]:
            done = store.search("daily-reminders.*", state="resolved").promises
            return [json.loads(p.value.data or b"0") for p in done]

        counts = wait_until(a_tick_resolved, timeout=20, what="a tick's promise to resolve")
        assert set(counts) == {1}  # bob, not carol
        assert service.count("carol@example.com") == 0
        ticks = store.search("daily-reminders.*").promises
        assert all(p.tags["resonate:schedule"] == "daily-reminders" for p in ticks)
        assert all(p.state in (State.PENDING, State.RESOLVED) for p in ticks)
    finally:
        assert service.stop() == 0, service.output
        store.close()
