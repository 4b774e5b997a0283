"""Logging: one event per line, as JSON by default, with the domain fields an event carries.

Callers attach fields with ``extra={"unit": …, "task": …, "checkpoint": …}``;
they come out as keys of the JSON object.  ``[service] log_format = "text"``
gives plain lines for reading in a terminal.  (A small formatter rather than
structlog: the stdlib logger already carries the fields.)
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from core.config import Settings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.service.log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.service.log_level)
    for noisy in ("httpx", "apscheduler", "alembic.runtime.migration", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
