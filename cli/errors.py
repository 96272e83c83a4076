"""Exit codes, and turning every error into one line on stderr.

:class:`VowGroup` is the root group's class: it runs the chosen command and translates what it
raises (Vow errors, click usage errors, Ctrl-C) into a click exception that prints one line on
stderr and exits with the documented code. ``vow --debug ...`` prints the traceback as well.
"""

from __future__ import annotations

import enum
import traceback
from typing import Any, ClassVar

import click

from vow.coordinator.errors import (
    AlreadyCompleted,
    AlreadyExists,
    DeadLetterNotFound,
    NotFound,
    StoreConnectionError,
    ValidationError,
    VowError,
)

__all__ = ["CommandError", "ExitCode", "VowGroup", "fail"]


class ExitCode(enum.IntEnum):
    """The exit codes of ``vow`` (the README's table lists the same)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    CONNECTION = 5
    WAIT_TIMEOUT = 6
    REJECTED = 7
    INTERRUPTED = 130


class CommandError(click.ClickException):
    """A failed command: ``Error: <message>`` on stderr and a non-zero exit code."""

    exit_code: ClassVar[int] = ExitCode.ERROR


class _UsageFailure(CommandError):
    exit_code: ClassVar[int] = ExitCode.USAGE


class _NotFoundFailure(CommandError):
    exit_code: ClassVar[int] = ExitCode.NOT_FOUND


class _ConflictFailure(CommandError):
    exit_code: ClassVar[int] = ExitCode.CONFLICT


class _ConnectionFailure(CommandError):
    exit_code: ClassVar[int] = ExitCode.CONNECTION


class _WaitTimeoutFailure(CommandError):
    exit_code: ClassVar[int] = ExitCode.WAIT_TIMEOUT


class _RejectedFailure(CommandError):
    exit_code: ClassVar[int] = ExitCode.REJECTED


class _Interrupted(CommandError):
    exit_code: ClassVar[int] = ExitCode.INTERRUPTED


_FAILURES: dict[ExitCode, type[CommandError]] = {
    ExitCode.ERROR: CommandError,
    ExitCode.USAGE: _UsageFailure,
    ExitCode.NOT_FOUND: _NotFoundFailure,
    ExitCode.CONFLICT: _ConflictFailure,
    ExitCode.CONNECTION: _ConnectionFailure,
    ExitCode.WAIT_TIMEOUT: _WaitTimeoutFailure,
    ExitCode.REJECTED: _RejectedFailure,
    ExitCode.INTERRUPTED: _Interrupted,
}


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> CommandError:
    """The exception to raise for a failure with this exit code."""
    return _FAILURES[code](message)


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line, with a pointer to the command's help."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=file is None)


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code of a Vow error (or of the timeout of a wait)."""
    if isinstance(error, NotFound | DeadLetterNotFound):
        return ExitCode.NOT_FOUND
    if isinstance(error, AlreadyExists | AlreadyCompleted):
        return ExitCode.CONFLICT
    if isinstance(error, StoreConnectionError):
        return ExitCode.CONNECTION
    if isinstance(error, ValidationError):
        return ExitCode.USAGE
    if isinstance(error, TimeoutError):
        return ExitCode.WAIT_TIMEOUT
    return ExitCode.ERROR


class VowGroup(click.Group):
    """The root group: every error of every command becomes one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if isinstance(e, _OneLineUsageError):
                raise
            raise _OneLineUsageError(e.format_message(), e.ctx) from e
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as e:
            raise fail("interrupted", ExitCode.INTERRUPTED) from e
        except (VowError, TimeoutError) as e:
            self._trace(ctx)
            raise fail(str(e), exit_code_for(e)) from e
        except Exception as e:  # the CLI boundary: a bug still ends in one line, not a traceback
            self._trace(ctx)
            message = f"unexpected {type(e).__name__}: {e} (run 'vow --debug ...' for the traceback)"
            raise fail(message) from e

    @staticmethod
    def _trace(ctx: click.Context) -> None:
        if ctx.params.get("debug"):
            click.echo(traceback.format_exc().rstrip(), err=True)
