"""Log output of long-running commands (``vow worker start``): the level and the line format.

``--log-format text`` (the default) writes ``<time> <LEVEL> <logger> <message>`` lines;
``--log-format json`` writes one JSON object per line for log shippers:
``{"ts": "2026-01-01T00:00:00.123Z", "level": "INFO", "logger": "vow.worker", "message": "...",
...}`` — plus whatever the record carries as extras (the worker's task lines carry
``promise_id``, ``kind``, ``group``, ``function``, ``outcome`` and ``duration_ms``) and ``exc``
(the traceback text) for an exception. Every line is on stderr.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "configure_logging"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: attributes every LogRecord has: anything else on a record came in ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the record's extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in line:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _VowHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (and replaces when called again)."""


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the process's log records of ``level`` and above to stderr in format ``fmt``
    (handlers others installed are left alone)."""
    if level.upper() not in LOG_LEVELS or fmt not in LOG_FORMATS:
        raise ValueError(f"log level {level!r} or format {fmt!r} unknown")
    handler = _VowHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _VowHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
