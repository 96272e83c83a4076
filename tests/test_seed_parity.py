"""Seed parity: the seed's three programs (examples/email_verification) as real processes.

The email service, the confirm service and the workflow service run as ``python -m`` processes
against the real server, driven over HTTP exactly as the seed's article drives them (``POST
/start``, then ``POST /confirm``); once more with the confirmation done by the ``vow`` CLI; and
once with the workflow service killed (``kill -9``) while the workflow is suspended and started
again before the confirmation. Each run proves the workflow finished exactly once by counting the
lines the seed's workflow prints across every workflow-service process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, wait_until
from vow.coordinator import RedisStore, State
from vow.coordinator import streams as task_streams
from vow.coordinator.errors import NotFound
from vow.server import free_port

EMAIL = "alice@example.com"
WORKFLOW_ID = f"workflow-{EMAIL}"
CONFIRM_ID = f"email-confirmed-{EMAIL}"
CONFIRMED_LINE = f"Email address {EMAIL} confirmed: True"
STEP3_LINE = "Next step in the process"
VOW = str(Path(sys.executable).parent / "vow")


class Program:
    """``python -m examples.email_verification.NAME`` with VOW_REDIS_URL (and PORT) set."""

    def __init__(self, name: str, url: str, port: int | None = None) -> None:
        env = {**os.environ, "VOW_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
        if port is not None:
            env["PORT"] = str(port)
        self.name = name
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"examples.email_verification.{name}"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def wait_ready(self) -> Program:
        ready = f"Running on http://127.0.0.1:{self.port}" if self.port is not None else "Email service started"
        wait_until(lambda: self._has(ready), timeout=30, what=f"{self.name} to be ready")
        return self

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _has(self, text: str) -> bool:
        if self.process.poll() is not None and not self._reader.is_alive():
            raise AssertionError(f"{self.name} exited ({self.process.returncode}): {self.output}")
        return self.count(text) > 0

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def post(self, path: str, payload: dict[str, str]) -> tuple[int, dict[str, str]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Story:
    """The three programs of one run, every one stopped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = RedisStore(url)
        self.programs: list[Program] = []
        # Started together, then waited for: each takes about a second to import Flask and Vow.
        self.email = self.spawn("email_service")
        self.confirm = self.spawn("confirm_service", free_port())
        self.workflow = self.spawn("workflow_service", free_port())
        for program in self.programs:
            program.wait_ready()

    def spawn(self, name: str, port: int | None = None) -> Program:
        program = Program(name, self.url, port)
        self.programs.append(program)
        return program

    def close(self) -> None:
        for program in self.programs:
            program.stop()
        self.store.close()

    def workflow_outputs(self) -> list[Program]:
        return [p for p in self.programs if p.name == "workflow_service"]

    def count_in_workflow_services(self, text: str) -> int:
        return sum(p.count(text) for p in self.workflow_outputs())

    def start_workflow(self) -> None:
        assert self.workflow.post("/start", {"email": EMAIL}) == (200, {"result": "workflow started"})
        wait_until(lambda: self.email.count(f"Email sent to {EMAIL}") == 1, what="the email service to send")
        wait_until(self.suspended, what="the workflow to suspend on the human's promise")
        assert self.store.get(WORKFLOW_ID).pending

    def suspended(self) -> bool:
        try:
            if not self.store.get(CONFIRM_ID).pending:
                return False
        except NotFound:
            return False
        return all(s.pending == 0 and not s.lag for s in task_streams.group_stats(self.store, ["workflow-service"]))

    def assert_finished_once(self) -> None:
        promise = self.store.wait(WORKFLOW_ID, timeout=20)
        assert promise.state is State.RESOLVED
        wait_until(lambda: self.count_in_workflow_services(STEP3_LINE) >= 1, what="step 3 to print")
        assert self.count_in_workflow_services(CONFIRMED_LINE) == 1
        assert self.count_in_workflow_services(STEP3_LINE) == 1
        assert self.email.count(f"Email sent to {EMAIL}") == 1
        assert self.store.get(CONFIRM_ID).value.data == b"true"
        assert self.store.get(f"send-confirmation-email-{EMAIL}").state is State.RESOLVED
        stats = task_streams.group_stats(self.store, ["workflow-service", "email-service"])
        assert all(s.pending == 0 and s.dead == 0 for s in stats)


@pytest.fixture
def story(redis_url: str) -> Iterator[Story]:
    s = Story(redis_url)
    try:
        yield s
    finally:
        s.close()


def test_seed_programs_over_http(story: Story) -> None:
    story.start_workflow()
    assert story.count_in_workflow_services(CONFIRMED_LINE) == 0
    assert story.confirm.post("/confirm", {"email": EMAIL}) == (200, {"message": f"Email {EMAIL} confirmed."})
    story.assert_finished_once()


def test_seed_programs_confirmed_with_the_cli(story: Story) -> None:
    story.start_workflow()
    done = subprocess.run(
        [VOW, "promises", "resolve", CONFIRM_ID, "--data", "true"],
        env={**os.environ, "VOW_REDIS_URL": story.url}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "RESOLVED" in done.stdout
    story.assert_finished_once()


def test_workflow_service_killed_while_suspended_finishes_once(story: Story) -> None:
    story.start_workflow()
    story.workflow.kill()  # kill -9 while the workflow waits on the human
    assert story.store.get(WORKFLOW_ID).pending
    story.workflow = story.spawn("workflow_service", free_port()).wait_ready()
    assert story.confirm.post("/confirm", {"email": EMAIL})[0] == 200
    story.assert_finished_once()
    assert story.workflow_outputs()[0].count(CONFIRMED_LINE) == 0  # the killed process never resumed it


def test_seed_programs_answer_errors_as_the_seed_does(story: Story) -> None:
    assert story.workflow.post("/start", {"name": "alice"}) == (400, {"error": "email is required"})
    assert story.confirm.post("/confirm", {"name": "alice"}) == (400, {"error": "email param is required"})
    status, body = story.confirm.post("/confirm", {"email": "nobody@example.com"})
    assert status == 500 and "not found" in body["error"]


# -- the README's diff from the seed ------------------------------------------------------------------------


def readme_diff() -> dict[str, list[tuple[int, list[str]]]]:
    """The README's ```diff block: for each file, its hunks as (first line number, new-side lines)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```diff\n", readme.index("<!-- demo:start -->")) + len("```diff\n")
    lines = readme[start:readme.index("\n```", start)].splitlines()
    files: dict[str, list[tuple[int, list[str]]]] = {}
    hunks: list[tuple[int, list[str]]] = []
    for line in lines:
        if line.startswith("--- "):
            continue
        if line.startswith("+++ "):
            hunks = files.setdefault(line[4:], [])
        elif line.startswith("@@ "):
            new_start = int(re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", line)[1])  # type: ignore[index]
            hunks.append((new_start, []))
        elif line.startswith("-"):
            assert re.search(r"resonate|RemoteServer|import json|port=500[01]", line), f"not an allowed change: {line}"
        else:
            hunks[-1][1].append(line[1:])
    return files


def test_readme_diff_matches_the_examples() -> None:
    files = readme_diff()
    assert sorted(files) == [f"examples/email_verification/{name}.py"
                             for name in ("confirm_service", "email_service", "workflow_service")]
    for path, hunks in files.items():
        source = (ROOT / path).read_text().splitlines()
        for first, expected in hunks:
            assert source[first - 1:first - 1 + len(expected)] == expected, f"{path} line {first}"
