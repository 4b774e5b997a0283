"""What the logs may hold: no tokens, secrets or binding codes at any level, no whole message texts."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logs import Redactor, configure_logging
from core.config import PersonRole
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram_harness import running_service, telegram_settings

LONG_NOTE = "按计划推进 本季度已完成可研报告编制并报送发改部门审查,用地预审同步推进"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.asyncio
async def test_debug_logs_of_a_running_bot_hold_no_token_code_or_whole_message(
    tmp_path: Path, db_backend: str, restore_logging: None
) -> None:
    with FakeTelegram(enforce_limits=False) as fake:
        settings = telegram_settings(
            tmp_path, fake, db_backend, DUBAN_SERVICE_LOG_LEVEL="DEBUG", DUBAN_SERVICE_LOG_FORMAT="text"
        )
        written = io.StringIO()
        configure_logging(settings, written)
        async with running_service(settings, fake) as bot:
            code = bot.invite("县发改局")
            office_code = bot.invite("县政府政务督查室", PersonRole.OFFICE)
            assert "绑定成功" in ((await bot.say(5001, f"/start {code}")).text or "")
            assert "绑定成功" in ((await bot.say(5009, f"绑定 {office_code}")).text or "")
            assert "已记录" in ((await bot.say(5001, f"/report 12 {LONG_NOTE}")).text or "")
        logs = written.getvalue()
    assert "Bot API" in logs or "getUpdates" in logs  # python-telegram-bot's DEBUG lines were there to check
    assert fake.token not in logs
    assert code not in logs and office_code not in logs
    assert LONG_NOTE not in logs and LONG_NOTE[3:30] not in logs


def test_secrets_in_urls_and_exceptions_are_redacted() -> None:
    redactor = Redactor(["s3cret-dashboard-pass"])
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "GET %s",
        ("https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=w&corpsecret=abcd",),
        None,
    )
    try:
        raise RuntimeError("login with s3cret-dashboard-pass at /bot1234567:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawx/getMe")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    redactor.filter(record)
    text = record.getMessage() + (record.exc_text or "")
    assert "abcd" not in text and "corpsecret=[secret]" in text
    assert "s3cret-dashboard-pass" not in text
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawx" not in text


def test_a_binding_code_in_a_deep_link_or_a_message_is_redacted() -> None:
    redactor = Redactor([])
    assert "Xy7_kQ2mN9pL4rT8vW1z" not in redactor.redact("invite https://t.me/duban_bot?start=Xy7_kQ2mN9pL4rT8vW1z")
    assert redactor.redact("got '绑定 Xy7_kQ2mN9pL4rT8vW1z'") == "got '绑定 [code]'"
