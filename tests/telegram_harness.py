"""The real service (python-telegram-bot, scheduler, outbox sender) running against the fake Telegram server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bot.service import Service, build_service, run_service
from core.clock import ManualClock, SystemClock
from core.config import PersonRole, Settings, load_settings
from tests.conftest import local
from tests.fakes.telegram_api import FakeTelegram, SentMessage
from tests.support import invite


def telegram_settings(tmp_path: Path, fake: FakeTelegram, database_url: str | None = None, **extra: str) -> Settings:
    environ = {
        "DUBAN_DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'duban.sqlite3'}",
        "DUBAN_UPLOADS_DIR": str(tmp_path / "files"),
        "DUBAN_TELEGRAM_TOKEN": fake.token,
        "DUBAN_TELEGRAM_BASE_URL": fake.base_url,
        "DUBAN_TELEGRAM_BASE_FILE_URL": fake.base_file_url,
        "DUBAN_TELEGRAM_BOT_USERNAME": fake.bot_username,
        "DUBAN_TELEGRAM_REQUEST_TIMEOUT": "5s",
        "DUBAN_WEB_PORT": "0",
        "DUBAN_ESCALATION_RESOLUTION": "1h",  # the tests tick by hand
        "DUBAN_DIGEST_ENABLED": "false",
        "DUBAN_REPORT_FILE_WORKERS": "0",
        # Functional tests run the fake without flood control; the pacing tests turn it on.
        "DUBAN_TELEGRAM_PER_CHAT_INTERVAL": "0.01s",
        **extra,
    }
    return load_settings(environ=environ)


@dataclass
class Running:
    service: Service
    fake: FakeTelegram
    clock: ManualClock

    async def say(self, user: int, text: str, *, reply_to: int | None = None) -> SentMessage:
        """A user writes; returns the bot's next message to them."""
        before = len(self.fake.messages_to(user))
        self.fake.user_message(user, text, reply_to_message_id=reply_to)
        return await self.next_to(user, before)

    async def press(self, user: int, message: SentMessage, text: str) -> SentMessage:
        """A user presses the button labelled ``text`` on ``message``; returns the bot's next message."""
        before = len(self.fake.messages_to(user))
        data = next(
            button["callback_data"]
            for row in (message.reply_markup or {}).get("inline_keyboard", [])
            for button in row
            if button["text"] == text
        )
        self.fake.user_callback(user, message.message_id, data)
        return await self.next_to(user, before)

    async def next_to(self, user: int, before: int, timeout: float = 5.0) -> SentMessage:
        messages = await asyncio.wait_for(self._more(user, before), timeout)
        return messages

    async def _more(self, user: int, before: int) -> SentMessage:
        while len(self.fake.messages_to(user)) <= before:
            await asyncio.sleep(0.01)
        return self.fake.messages_to(user)[before]

    def invite(self, unit: str, role: PersonRole = PersonRole.LIAISON) -> str:
        return invite(self.service.runtime, unit, role)

    async def bind(self, user: int, unit: str, role: PersonRole = PersonRole.LIAISON) -> None:
        reply = await self.say(user, f"/start {self.invite(unit, role)}")
        assert "绑定成功" in (reply.text or ""), reply

    async def remind(self) -> int:
        return await asyncio.to_thread(self.service.remind_now)


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, fake: FakeTelegram, clock: ManualClock | None = None
) -> AsyncIterator[Running]:
    clock = clock or ManualClock(local(2024, 2, 22, 10))
    service = build_service(settings, clock=clock, sender_clock=SystemClock())
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(run_service(service, stop, on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        yield Running(service, fake, clock)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
