"""CLI conventions: ``vow --version``, ``vow worker start --log-level`` and ``--log-format json``
(real worker processes, their whole output read)."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import closing
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.harness import ROOT
from vow import RedisStore, Scheduler
from vow.cli import cli
from vow.cli.logs import JsonFormatter
from vow.processes import ManagedProcess

pytestmark = pytest.mark.timeout(90)

VOW = str(Path(sys.executable).parent / "vow")
GROUP = "metrics-test"


def test_version_comes_from_the_package_metadata() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"vow {version('vow')}\n"


def run_worker(url: str, *options: str, run: str = "1") -> str:
    """Start ``vow worker start tests.metrics_app:app OPTIONS``, run two tasks (``ok-RUN`` and
    ``boom-RUN``, which fails), stop it with SIGTERM; its whole output (stdout and stderr)."""
    worker = ManagedProcess(
        "worker", [VOW, "worker", "start", "tests.metrics_app:app", *options],
        env={**os.environ, "VOW_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, new_session=False,
    )
    try:
        worker.wait_for_line("metrics-test", timeout=30)  # the announcement (text) or the serving line
        with closing(RedisStore(url)) as store:
            client = Scheduler(store, GROUP, serve=False)
            assert client.rpc(f"ok-{run}", "ok", 1).result(timeout=20) == 1
            with pytest.raises(Exception, match="boom"):
                client.rpc(f"boom-{run}", "boom").result(timeout=20)
    finally:
        assert worker.stop(20) == 0, worker.output
    return worker.output


def test_log_level_warning_drops_the_per_task_info_lines(redis_url: str) -> None:
    output = run_worker(redis_url, "--log-level", "WARNING", "--concurrency", "2")
    assert " INFO " not in output and "task ok-1" not in output, output
    assert "vow worker: stopped" in output  # the command's own lines stay


def test_log_level_from_the_environment_and_default_info(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOW_LOG_LEVEL", "error")
    assert "task ok-1" not in run_worker(redis_url)
    monkeypatch.delenv("VOW_LOG_LEVEL")
    output = run_worker(redis_url, run="2")
    assert any(" INFO vow.worker task ok-2 invoke ok -> resolved in " in line for line in output.splitlines())


def test_log_format_json_writes_one_object_per_line(redis_url: str) -> None:
    output = run_worker(redis_url, "--log-format", "json")
    lines = [json.loads(line) for line in output.splitlines()]  # every line parses
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["ts"].endswith("Z") for line in lines)
    tasks = {line["promise_id"]: line for line in lines if line["logger"] == "vow.worker" and "promise_id" in line}
    assert tasks["ok-1"]["level"] == "INFO"
    assert {k: tasks["ok-1"][k] for k in ("group", "function", "outcome", "kind")} == {
        "group": GROUP, "function": "ok", "outcome": "resolved", "kind": "invoke"}
    assert tasks["boom-1"]["outcome"] == "rejected" and isinstance(tasks["boom-1"]["duration_ms"], float)
    messages = [line["message"] for line in lines]
    assert any("serving group 'metrics-test'" in m for m in messages)
    assert messages[-1] == "vow worker: stopped"


def test_json_formatter_carries_extras_and_the_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info(), extra={"promise_id": "p-1"})
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed x" and line["level"] == "ERROR" and line["promise_id"] == "p-1"
    assert "ValueError: bad" in line["exc"]


def test_log_options_are_checked() -> None:
    result = CliRunner().invoke(cli, ["worker", "start", "x:y", "--log-level", "LOUD"])
    assert result.exit_code == 2 and "LOUD" in result.stderr
    result = CliRunner().invoke(cli, ["worker", "start", "x:y", "--log-format", "xml"])
    assert result.exit_code == 2 and "xml" in result.stderr
