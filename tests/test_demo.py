"""``vow demo`` as a user runs it: the installed command in a subprocess, in a fresh directory.

The demo must tell the story's steps in order, end by itself well within 30 s, exit 0, leave
nothing outside ``./.vow/``, work twice in a row, and stop every process it started when
interrupted (exit code 130).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import process_alive

VOW = str(Path(sys.executable).parent / "vow")
#: seconds the demo may take (the contract); it takes well under 10 on a laptop
DEMO_LIMIT_S = 30

#: what the narration says, in this order
STEPS = [
    "==> Starting a fresh embedded server",
    "==> Starting the email service (logic group email-service)",
    "$ vow worker start examples.email_verification.email_service:resonate",
    "==> Starting the workflow service",
    "==> Starting the workflow for alice@example.com: POST /start",
    'HTTP 200 {"result":"workflow started"}',
    "email-service    | Email sent to alice@example.com",
    "==> Step 2: the workflow waits for alice@example.com",
    "It is suspended",
    "$ vow promises search --state pending",
    "workflow-alice@example.com      PENDING",
    "==> Alice clicks the link",
    "$ vow promises resolve email-confirmed-alice@example.com --data true",
    "state          RESOLVED",
    "workflow-service | Email address alice@example.com confirmed: True",
    "workflow-service | Next step in the process",
    "promise workflow-alice@example.com is RESOLVED",
    "$ vow tree workflow-alice@example.com",
    "workflow-alice@example.com  RESOLVED  workflow",
    "send-confirmation-email-alice@example.com  RESOLVED  send_email",
    "==> Stopping the workflow service, the email service and the server",
    "==> Done in",
]


def run_demo(cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([VOW, "demo"], cwd=cwd, capture_output=True, text=True, timeout=DEMO_LIMIT_S + 30,
                          stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


def assert_in_order(text: str, steps: list[str]) -> None:
    """Each step appears after the previous one; runs of spaces match any run of spaces."""
    position = 0
    for step in steps:
        pattern = re.compile(r" +".join(re.escape(part) for part in re.split(r" {2,}", step)))
        match = pattern.search(text, position)
        assert match is not None, f"missing (in order) {step!r} in:\n{text}"
        position = match.end()


def started_pids(text: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", text)]




def test_demo_tells_the_story_twice_in_a_row(tmp_path: Path) -> None:
    for _ in range(2):
        done, elapsed = run_demo(tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert elapsed < DEMO_LIMIT_S
        assert_in_order(done.stdout, STEPS)
        assert done.stdout.count("Email address alice@example.com confirmed: True") == 1
        pids = started_pids(done.stdout)
        assert len(pids) == 3  # the server, the email service, the workflow service
        assert not [pid for pid in pids if process_alive(pid)]
    assert [p.name for p in tmp_path.iterdir()] == [".vow"]
    assert sorted(p.name for p in (tmp_path / ".vow" / "demo").iterdir()) == [
        "email-service.log", "server", "workflow-service.log",
    ]


def test_demo_interrupted_stops_every_process(tmp_path: Path) -> None:
    # A shell runs background jobs with SIGINT ignored, and a child inherits that: give the demo the
    # default disposition, as a terminal would, so the Ctrl-C below reaches it wherever the suite runs.
    process = subprocess.Popen([VOW, "demo"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:  # ends when the demo exits: its deadlines bound this loop
            lines.append(line)
            if line.startswith("==> Step 2"):
                process.send_signal(signal.SIGINT)  # Ctrl-C while the workflow is suspended
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    text = "".join(lines)
    assert "==> Interrupted: every process the demo started is stopped" in text
    assert "==> Done" not in text
    pids = started_pids(text)
    assert len(pids) == 3
    assert not [pid for pid in pids if process_alive(pid)]
