"""The installed ``vow`` console script as a real process: ``vow dev`` start/stop, ``streams monitor``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.harness import wait_until
from vow.cli import ExitCode, cli
from vow.coordinator import keys
from vow.coordinator.tasks import TaskKind, TaskMessage
from vow.server import ServerProcess, free_port, port_is_taken

#: seconds a started ``vow dev`` may take to answer PING, or a stopped one to exit
DEADLINE_S = 20.0


def vow_binary() -> str:
    beside = Path(sys.executable).parent / "vow"
    found = str(beside) if beside.exists() else shutil.which("vow")
    if found is None:
        pytest.fail("the vow console script is not installed (pip install -e .)")
    return found


def wait_for(condition: Any, what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    wait_until(condition, timeout=timeout, what=what)


def answers_ping(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie not yet reaped by init counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_vow_dev_starts_serves_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [vow_binary(), "dev", "--port", str(port), "--dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    server_pid = None
    try:
        wait_for(lambda: answers_ping(port) or proc.poll() is not None, "vow dev to answer PING")
        assert proc.poll() is None, proc.communicate()
        client = redis.Redis(port=port)
        server_pid = int(client.info("server")["process_id"])
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        client.set("kept", "1")
        client.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"redis://127.0.0.1:{port}/0" in out and "stopped" in out
    wait_for(lambda: process_gone(server_pid), "the server process to exit")
    assert not port_is_taken(port)
    assert (data / "appendonlydir").is_dir()


def test_vow_dev_refuses_a_taken_port(redis_server: ServerProcess, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["dev", "--port", str(redis_server.port), "--dir", str(tmp_path)])
    assert result.exit_code == ExitCode.ERROR
    assert "already in use" in result.stderr and str(redis_server.port) in result.stderr
    assert not (tmp_path / "server.log").exists()


def test_streams_monitor_once_as_a_process_shows_the_pending_count(redis_url: str, raw_client: Any) -> None:
    stream = keys.task_stream(5, "email-service")
    raw_client.xadd(stream, {"m": TaskMessage(TaskKind.INVOKE, "job-7", "email-service", "send_email").encode()})
    raw_client.sadd(keys.groups(5), "email-service")
    raw_client.xgroup_create(stream, "email-service", id="0")
    raw_client.xreadgroup("email-service", "worker-a", {stream: ">"}, count=1)

    env = {k: v for k, v in os.environ.items() if k != "VOW_REDIS_URL"}
    text = subprocess.run([vow_binary(), "streams", "monitor", "--once", "--url", redis_url],
                          capture_output=True, text=True, timeout=DEADLINE_S, env=env)
    assert text.returncode == 0, text.stderr
    [row] = [line for line in text.stdout.splitlines() if line.startswith("email-service")]
    assert row.split()[2] == "1"  # the PENDING column
    assert "consumer worker-a  pending 1" in text.stdout

    as_json = subprocess.run([vow_binary(), "streams", "monitor", "--once", "--json"],
                             capture_output=True, text=True, timeout=DEADLINE_S,
                             env={**env, "VOW_REDIS_URL": redis_url})
    assert as_json.returncode == 0, as_json.stderr
    [group] = json.loads(as_json.stdout)["groups"]
    assert (group["group"], group["pending"]) == ("email-service", 1)


def test_an_error_in_a_process_is_one_line_and_an_exit_code() -> None:
    result = subprocess.run([vow_binary(), "promises", "get", "x", "--url", f"redis://127.0.0.1:{free_port()}/0"],
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == ExitCode.CONNECTION
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
