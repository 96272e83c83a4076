import os

from vow import Context, RedisStore, Scheduler

resonate = Scheduler(
    RedisStore(url=os.environ.get("VOW_REDIS_URL", "redis://localhost:6379")), logic_group="email-service"
)

def send_email(ctx: Context, email: str):
    print (f"Email sent to {email}")
    return

resonate.register(name="send_email", func=send_email)

def main():
    print("Email service started")
    resonate.wait_for_ever()

if __name__ == "__main__":
    main()
