"""``vow worker start``: a real subprocess serving a logic group, and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.harness import ROOT, wait_until
from vow.cli import ExitCode, cli
from vow.coordinator import RedisStore

VOW = str(Path(sys.executable).parent / "vow")


def start_worker(url: str, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "VOW_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([VOW, "worker", "start", *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    import threading

    threading.Thread(target=collect, daemon=True).start()
    return process, lines


def test_worker_start_serves_the_group_logs_tasks_and_stops_on_sigterm(redis_url: str) -> None:
    process, lines = start_worker(redis_url, "examples.email_verification.email_service:resonate",
                                  "--concurrency", "2")
    try:
        wait_until(lambda: any("serving group 'email-service'" in line for line in lines), what="the worker")
        store = RedisStore(redis_url)
        done = CliRunner().invoke(cli, [
            "invoke", "job-1", "--func", "send_email", "--arg", json.dumps("bob@example.com"),
            "--target", "email-service", "--wait", "--wait-timeout", "20", "--json", "--url", redis_url,
        ])
        assert done.exit_code == 0, done.output
        assert store.get("job-1").completed
        wait_until(lambda: any("job-1" in line and "send_email" in line and "resolved" in line and " ms" in line
                               for line in lines), what="the task's log line")
        assert any("Email sent to bob@example.com" in line for line in lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert any("vow worker: stopped" in line for line in lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_worker_start_serves_another_group_when_asked(redis_url: str) -> None:
    process, lines = start_worker(redis_url, "examples.email_verification.email_service:resonate",
                                  "--group", "mail-canary")
    try:
        wait_until(lambda: any("serving group 'mail-canary'" in line for line in lines), what="the worker")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:app", "module 'no_such_module' not found"),
        ("examples.email_verification.email_service:nothing", "has no attribute 'nothing'"),
        ("examples.email_verification.email_service:send_email", "is a function, not a vow Scheduler"),
        (":app", "is not MODULE:ATTR"),
    ],
)
def test_worker_start_names_what_was_not_found(target: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["worker", "start", target])
    assert result.exit_code == ExitCode.USAGE
    assert message in result.output
    assert "Traceback" not in result.output
