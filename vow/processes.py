"""Running and watching local subprocesses, and waiting on conditions with a deadline.

Used alike by ``vow demo`` (the story's services), the test suite (worker processes) and the
benchmarks: :class:`ManagedProcess` starts a subprocess in its own session, collects its output
line by line in a thread (so a pipe never fills), can wait for a line, and stops it with SIGTERM,
then SIGKILL after a grace period. :func:`wait_until` polls a condition until a deadline — the
one way Vow's tools wait, never a sleep that hopes something happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from vow.coordinator.errors import VowError

__all__ = ["DeadlineExceeded", "ManagedProcess", "ProcessFailed", "wait_until"]

T = TypeVar("T")

#: seconds a stopped process gets to exit after SIGTERM before it is killed
STOP_GRACE_S = 10.0


class DeadlineExceeded(VowError):
    """A condition did not hold before its deadline."""


class ProcessFailed(VowError):
    """A managed process exited, or did not print what was waited for in time."""


def wait_until(predicate: Callable[[], T], *, timeout: float, what: str = "", interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or raise
    :class:`DeadlineExceeded` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"timed out after {timeout:g}s waiting for {what or predicate}")
        pause.wait(interval)


class ManagedProcess:
    """A subprocess whose stdout and stderr are collected line by line (and copied to ``log``)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log: Path | None = None,
        new_session: bool = True,
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._log: IO[str] | None = log.open("w", encoding="utf-8") if log is not None else None
        self.process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=new_session,  # a Ctrl-C in the terminal is the caller's to forward
        )
        self._reader = threading.Thread(target=self._collect, name=f"output-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if self._log is not None:
                self._log.write(raw)
                self._log.flush()
            with self._changed:
                self.lines.append(raw.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def count(self, text: str) -> int:
        """Output lines containing ``text`` so far."""
        with self._changed:
            return sum(text in line for line in self.lines)

    def first_line(self, predicate: Callable[[str], bool]) -> str | None:
        with self._changed:
            return next((line for line in self.lines if predicate(line)), None)

    def wait_for_line(self, text: str, timeout: float = 15.0) -> str:
        """The first output line containing ``text``; :class:`ProcessFailed` at the deadline, or
        as soon as the process ends without printing it."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._changed:
            ended = self._changed.wait_for(lambda: found() is not None or not self._reader.is_alive(), timeout)
            line = found()
        if line is not None:
            return line
        state = f"exited with code {self.process.poll()}" if not self._reader.is_alive() else "is still running"
        raise ProcessFailed(f"the {self.name} {state} without printing {text!r}"
                            f"{'' if ended else f' within {timeout:g}s'}; last lines: {self.tail()}")

    def tail(self, n: int = 5) -> str:
        with self._changed:
            return " | ".join(self.lines[-n:]) or "(no output)"

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ProcessFailed(f"the {self.name} exited with code {code}; last lines: {self.tail()}")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a crash), then collect what it printed."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_GRACE_S)
        self._close()

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, SIGKILL after ``grace_s``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_GRACE_S)
        self._close()
        return self.process.returncode

    def _close(self) -> None:
        self._reader.join(STOP_GRACE_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
