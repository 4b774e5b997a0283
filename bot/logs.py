"""Logging: one event per line, as JSON by default, with the domain fields an event carries.

Callers attach fields with ``extra={"unit": …, "task": …, "checkpoint": …}``;
they come out as keys of the JSON object.  ``[service] log_format = "text"``
gives plain lines for reading in a terminal.  (A small formatter rather than
structlog: the stdlib logger already carries the fields.)

Every line passes :class:`Redactor` first, at every level and from every
library: python-telegram-bot's request URLs carry the bot token and its DEBUG
lines whole messages, so tokens, the configured secrets and binding codes are
replaced, and the texts of messages are cut short.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

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
        if record.exc_info or record.exc_text:
            event["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(event, ensure_ascii=False, default=str)


# A Telegram bot token (https://core.telegram.org/bots/features#botfather): "<bot id>:<35 characters>".
BOT_TOKEN = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}")
# Credentials in URLs: WeCom's access_token / corpsecret / robot key, any token= or secret=, and a
# Telegram deep link's binding code (start=).
URL_CREDENTIAL = re.compile(r"(?i)\b(access_token|corpsecret|secret|token|key|code|start)=([^&\s'\"]+)")
# A binding code after /start or 绑定 (the deep link's start= is covered above).
BINDING_CODE = re.compile(r"(/start(?:@\w+)?|绑定)(\s+)([A-Za-z0-9_-]{8,64})")
# The content of a message in a logged payload ("text": "…") or object repr (text='…').
MESSAGE_TEXT = re.compile(
    r"""((?:['"](?:text|caption|content|Content)['"]\s*:\s*)|(?:\b(?:text|caption|content|Content)=))"""
    r"""(['"])((?:\\.|(?!\2).)*)\2"""
)
KEPT_CHARS = 12


def _shorten(match: re.Match[str]) -> str:
    body = match.group(3)
    if len(body) <= KEPT_CHARS:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{body[:KEPT_CHARS]}…({len(body)}){match.group(2)}"


class Redactor(logging.Filter):
    """Replaces secrets and binding codes in a record and cuts message texts short; never drops a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[secret]")
        text = BOT_TOKEN.sub("[token]", text)
        text = URL_CREDENTIAL.sub(lambda m: f"{m.group(1)}=[secret]", text)
        text = BINDING_CODE.sub(lambda m: f"{m.group(1)}{m.group(2)}[code]", text)
        return MESSAGE_TEXT.sub(_shorten, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold, as text (for :class:`Redactor`)."""
    values = [
        settings.telegram.token,
        settings.telegram.webhook_secret,
        settings.wecom.secret,
        settings.wecom.callback_token,
        settings.wecom.encoding_aes_key,
        settings.web.dashboard_secret,
        *settings.wecom.robot_keys.values(),
    ]
    found = [v.get_secret_value() for v in values if v is not None]
    password = re.search(r"://[^:/@]+:([^@]+)@", settings.database_url)
    return found + ([password.group(1)] if password else [])


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(Redactor(configured_secrets(settings)))
    if settings.service.log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.service.log_level)
    for noisy in ("httpx", "apscheduler", "alembic.runtime.migration", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
