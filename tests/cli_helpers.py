"""The CLI test helpers: run ``vow`` in-process with click's CliRunner and read its output."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from vow.cli import ExitCode, cli
from vow.cli.output import WIDTH


def vow(*args: str, url: str | None = None) -> Result:
    argv = list(args) + (["--url", url] if url is not None else [])
    return CliRunner().invoke(cli, argv, prog_name="vow")


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Result, code: ExitCode) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def fits(text: str) -> bool:
    return all(len(line) <= WIDTH for line in text.splitlines())
