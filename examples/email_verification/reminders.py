"""The seed's story, one step further: every morning at 9:00 (UTC), remind everyone who has not
confirmed their email address yet.

The people we wait on are exactly the pending ``email-confirmed-<email>`` promises the workflow
service's workflows are suspended on, so the reminder needs no table of its own: it searches the
store. ``app.schedule`` creates the schedule idempotently on every start; whichever worker of the
``reminders`` group is alive runs each tick, once. ``REMINDER_CRON`` overrides the cron (the test
uses one that ticks every second).
"""

import os

from vow import Context, RedisStore, Scheduler

store = RedisStore(url=os.environ.get("VOW_REDIS_URL", "redis://localhost:6379"))
resonate = Scheduler(store, logic_group="reminders")
PREFIX = "email-confirmed-"


def remind_unconfirmed(ctx: Context) -> int:
    """Send a reminder to every address whose confirmation is still pending; returns how many."""
    sent = 0
    cursor = None
    while True:
        page = store.search(PREFIX + "*", state="pending", limit=100, cursor=cursor)
        for promise in page.promises:
            print(f"Reminder sent to {promise.id[len(PREFIX):]}", flush=True)
            sent += 1
        cursor = page.cursor
        if cursor is None:
            return sent


resonate.register(remind_unconfirmed)
resonate.schedule("daily-reminders", os.environ.get("REMINDER_CRON", "0 9 * * *"), remind_unconfirmed)


def main() -> None:
    print("Reminder service started", flush=True)
    resonate.wait_for_ever()


if __name__ == "__main__":
    main()
