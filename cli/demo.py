"""``vow demo``: the seed's email-verification story, played end to end with real processes.

The demo starts an embedded server (AOF ``everysec``) in ``./.vow/demo/`` on a free port, the
email service (``vow worker start examples.email_verification.email_service:resonate``) and the
workflow service (the seed's Flask program), all with ``VOW_REDIS_URL`` pointing at that server.
It then starts a workflow for alice over HTTP, shows the email being sent, shows the workflow
suspended on the human's promise (``vow promises search --state pending``), resolves that promise
with the real ``vow promises resolve`` command, and shows the workflow finishing and its call
graph (``vow tree``). Every wait has a deadline; nothing sleeps to synchronise.

Every process it started is stopped when it ends, fails, or is interrupted (Ctrl-C or SIGTERM:
exit code 130). The server's data and each process's output stay in ``./.vow/demo/`` until the
next run, which starts from an empty directory. It needs the ``examples/`` directory of the Vow
source tree (the current directory's, else the one beside the installed ``cli`` package).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from vow.coordinator import RedisStore
from vow.coordinator import streams as task_streams
from vow.coordinator.errors import NotFound, VowError
from vow.processes import DeadlineExceeded, ManagedProcess, wait_until
from vow.server import ServerProcess, find_server_binary, free_port

from .errors import ExitCode, fail

__all__ = ["DEMO_DIR", "demo"]

EMAIL = "alice@example.com"
WORKFLOW_ID = f"workflow-{EMAIL}"
CONFIRM_ID = f"email-confirmed-{EMAIL}"
EMAIL_APP = "examples.email_verification.email_service:resonate"
WORKFLOW_MODULE = "examples.email_verification.workflow_service"
WORKFLOW_GROUP = "workflow-service"
#: where the server's data and the processes' output go (relative to the current directory)
DEMO_DIR = Path(".vow") / "demo"
#: seconds any one step may take before the demo gives up (each takes well under a second)
STEP_TIMEOUT_S = 15.0
#: seconds a stopped process gets to exit after SIGTERM before it is killed
STOP_GRACE_S = 5.0
#: seconds between two checks of a condition on the server (a deadline loop, not a synchronising sleep)
_POLL_S = 0.05
#: seconds a `vow` subcommand run by the demo may take
_COMMAND_TIMEOUT_S = 20.0


class DemoFailed(Exception):
    """A step did not happen within its deadline, or a process died."""


def say(text: str) -> None:
    click.echo(f"==> {text}")


def show(text: str, prefix: str = "    ") -> None:
    for line in text.rstrip("\n").splitlines():
        click.echo(f"{prefix}{line}")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT_S) -> None:
    """Poll ``predicate`` until it holds, or raise :class:`DemoFailed` after ``timeout`` seconds."""
    try:
        wait_until(predicate, timeout=timeout, what=what, interval=_POLL_S)
    except DeadlineExceeded as e:
        raise DemoFailed(str(e)) from None


def examples_root() -> Path:
    """The directory holding ``examples/email_verification``: the current one, else the source tree."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "examples" / "email_verification" / "workflow_service.py").is_file():
            return candidate
    raise fail("vow demo needs the examples/ directory of the Vow source tree: run it from the repository "
               "root (make demo)")


def vow_executable() -> str:
    """The installed ``vow`` script: beside this Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "vow"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("vow")
    if found:
        return found
    raise fail("the vow command is not installed beside this Python or on PATH: pip install -e '.[examples]'")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within this block SIGTERM raises KeyboardInterrupt, so it stops the demo the way Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Within this block Ctrl-C and SIGTERM are ignored, so a second one cannot cut the clean-up short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Demo:
    """One run of the story; every process it starts is stopped by :meth:`close`."""

    def __init__(self, directory: Path, root: Path, vow: str) -> None:
        self.directory = directory
        self.root = root
        self.vow = vow
        self.stack = ExitStack()
        self.server: ServerProcess | None = None
        self.env: dict[str, str] = {}
        self.store: RedisStore | None = None

    def close(self) -> None:
        self.stack.close()

    # -- processes -------------------------------------------------------------------------------

    def start_server(self) -> str:
        binary = find_server_binary()
        server = ServerProcess(port=free_port(), directory=self.directory / "server", persistence=True,
                               binary=binary)
        say(f"Starting a fresh embedded server ({Path(binary).name}, AOF everysec) in {DEMO_DIR / 'server'}/")
        self.stack.callback(server.stop)
        server.start()
        self.server = server
        pythonpath = os.pathsep.join(p for p in (str(self.root), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "VOW_REDIS_URL": server.url, "PYTHONUNBUFFERED": "1",
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": pythonpath}
        store = RedisStore(server.url)
        self.stack.callback(store.close)
        self.store = store
        show(f"listening on {server.url} (pid {server.process.pid if server.process else '?'}); "
             "every process below gets VOW_REDIS_URL set to it")
        return server.url

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> ManagedProcess:
        service = ManagedProcess(name, argv, env=env or self.env, cwd=self.root, log=self.directory / f"{name}.log")
        self.stack.callback(service.stop, STOP_GRACE_S)
        return service

    def run_vow(self, *args: str) -> str:
        """Run ``vow ARGS`` as a subprocess, showing the command line and its output."""
        show("$ vow " + " ".join(args))
        try:
            done = subprocess.run([self.vow, *args], env=self.env, cwd=self.root, capture_output=True, text=True,
                                  timeout=_COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise DemoFailed(f"vow {' '.join(args)} did not finish within {_COMMAND_TIMEOUT_S:.0f}s") from e
        show(done.stdout + done.stderr, prefix="    | ")
        if done.returncode != 0:
            raise DemoFailed(f"vow {' '.join(args)} exited with code {done.returncode}")
        return done.stdout

    # -- the story -------------------------------------------------------------------------------

    def play(self) -> None:
        self.start_server()

        say("Starting the email service (logic group email-service):")
        show(f"$ vow worker start {EMAIL_APP}")
        email = self.start("email-service", [self.vow, "worker", "start", EMAIL_APP])
        email.wait_for_line("serving group 'email-service'")
        show(f"serving send_email (pid {email.pid})")

        port = free_port()
        say(f"Starting the workflow service (the seed's Flask program, logic group {WORKFLOW_GROUP}) "
            f"on port {port}:")
        show(f"$ PORT={port} python -m {WORKFLOW_MODULE}")
        flow = self.start("workflow-service", [sys.executable, "-m", WORKFLOW_MODULE],
                          {**self.env, "PORT": str(port)})
        flow.wait_for_line(f"Running on http://127.0.0.1:{port}")
        show(f"serving POST /start on http://127.0.0.1:{port} (pid {flow.pid})")

        say(f"Starting the workflow for {EMAIL}: POST /start {{\"email\": \"{EMAIL}\"}}")
        status, body = post_json(f"http://127.0.0.1:{port}/start", {"email": EMAIL})
        show(f"HTTP {status} {body}")
        if status != 200:
            raise DemoFailed(f"POST /start answered HTTP {status}: {body}")

        say("Step 1: the workflow calls send_email in the email-service group, which sends the email:")
        show(email.wait_for_line(f"Email sent to {EMAIL}"), prefix="    email-service    | ")
        show(flow.wait_for_line(f"Email sent to {EMAIL}"), prefix="    workflow-service | ")

        say(f"Step 2: the workflow waits for {EMAIL} to click the link (promise {CONFIRM_ID}).")
        wait_for(lambda: self.suspended(flow, email), "the workflow to suspend on the human's promise")
        show("It is suspended: no thread, no lease, no task held by any worker; only data in Redis.")
        show("The pending promises, as the CLI lists them:")
        self.run_vow("promises", "search", "--state", "pending")

        say("Alice clicks the link: the confirmation resolves the promise with the value true:")
        self.run_vow("promises", "resolve", CONFIRM_ID, "--data", "true")

        say("The workflow service picks the workflow up again and it finishes:")
        finished = self.finished(flow)
        show(flow.wait_for_line(f"Email address {EMAIL} confirmed: True"), prefix="    workflow-service | ")
        show(flow.wait_for_line("Next step in the process"), prefix="    workflow-service | ")
        show(f"promise {WORKFLOW_ID} is {finished}")
        if flow.count(f"Email address {EMAIL} confirmed:") != 1:
            raise DemoFailed(f"the workflow printed its confirmation {flow.count('confirmed:')} times, not once")

        say("Its call graph:")
        self.run_vow("tree", WORKFLOW_ID)

    def suspended(self, *services: ManagedProcess) -> bool:
        """The human's promise is pending and no worker of the workflow group holds a task."""
        for service in services:
            service.check_alive()
        assert self.store is not None
        try:
            waiting = self.store.get(CONFIRM_ID).pending and self.store.get(WORKFLOW_ID).pending
        except NotFound:
            return False
        stats = task_streams.group_stats(self.store, [WORKFLOW_GROUP])
        return waiting and all(s.pending == 0 and not s.lag for s in stats)

    def finished(self, flow: ManagedProcess) -> str:
        assert self.store is not None
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            flow.check_alive()
            try:
                promise = self.store.wait(WORKFLOW_ID, timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
                return promise.state.value
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise DemoFailed(f"the workflow did not finish within {STEP_TIMEOUT_S:.0f}s") from None


def post_json(url: str, payload: dict[str, str]) -> tuple[int, str]:
    """POST ``payload`` as JSON; the status and the body as one line."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=STEP_TIMEOUT_S) as response:
            return int(response.status), response.read().decode().strip()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode().strip()
    except OSError as e:
        raise DemoFailed(f"POST {url} failed: {e}") from e


@click.command(epilog="\b\nExample:\n  vow demo        # or: make demo")
def demo() -> None:
    """Play the email-verification story (human in the loop) with real processes, then stop them.

    Starts an embedded server in ./.vow/demo/ (emptied first), the email-service worker and the
    workflow service; starts a workflow for alice@example.com; shows it suspended; resolves the
    human's promise with `vow promises resolve`; shows it finishing. Exit code 0 when the story
    completed, 1 when a step failed, 130 when interrupted (Ctrl-C or SIGTERM).
    """
    started = time.monotonic()
    root = examples_root()
    vow = vow_executable()
    directory = DEMO_DIR.resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    say("Vow demo: a workflow that waits for a human to confirm an email address")
    run = Demo(directory, root, vow)
    try:
        with sigterm_as_interrupt():
            try:
                run.play()
            finally:
                say("Stopping the workflow service, the email service and the server")
                with interrupts_ignored():
                    run.close()
    except KeyboardInterrupt:
        click.echo("==> Interrupted: every process the demo started is stopped", err=True)
        raise click.exceptions.Exit(ExitCode.INTERRUPTED) from None
    except (DemoFailed, VowError) as e:
        raise fail(f"the demo stopped: {e}. Process output: {DEMO_DIR}/") from e
    say(f"Done in {time.monotonic() - started:.1f}s: the workflow finished once. Server data and process output "
        f"are in {DEMO_DIR}/")
