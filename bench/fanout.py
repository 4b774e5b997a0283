"""Fan-out: N reminders to N distinct chats through the real OutboxSender + TelegramTransport.

The rows are queued with :func:`core.outbox.enqueue` into a fresh database;
:meth:`jobs.sender.OutboxSender.drain` delivers them through python-telegram-bot
to :class:`tests.fakes.telegram_api.FakeTelegram`, which enforces Telegram's
flood limits (30 messages in any second overall, 1 per chat) and answers 429
past them; it runs in its own process (:mod:`bench.fake_process`).  The achieved rate is measured on the fake's side: accepted sends
between the first and the last accepted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import DatabaseKind, bench_settings, create_database, stopwatch, telegram_env
from bench.data import FIRST_COUNTY
from bench.fake_process import start_fake
from bot.telegram_adapter import TelegramTransport, build_application
from core.outbox import About, Button, Message, enqueue
from core.runtime import open_runtime
from jobs.sender import Delivered, OutboxSender, OutgoingRow, Transport
from storage.db import upgrade

#: Telegram's overall limit, which the fake enforces and the rate is compared with.
TELEGRAM_LIMIT = 30.0
FIRST_CHAT = 20_000_000

_TEXT = (
    "【督办提醒】{unit}:\n"
    "「细化方案报送」将于2月29日18:00截止,贵单位尚有以下事项未报送:\n"
    "牵头任务\n· 县{task} 加快推进重点项目建设,确保全年完成固定资产投资目标(截止 2月29日)\n"
    "请回复本消息,或发送 /report 县{task} 报送进展。"
)


class _TimedTransport:
    """Delegates to the real transport and records how long each send took (seconds)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.limits = inner.limits
        self.seconds: list[float] = []

    async def send(self, row: OutgoingRow) -> Delivered:
        with stopwatch() as elapsed:
            try:
                return await self.inner.send(row)
            finally:
                self.seconds.append(elapsed())


class _TimedSender(OutboxSender):
    """The real sender; its two database steps per message are timed (they run in worker threads)."""

    claim_s: list[float]
    mark_s: list[float]

    def _claim(self, platform: str, blocked_chats: list[str]) -> OutgoingRow | None:
        with stopwatch() as elapsed:
            row = super()._claim(platform, blocked_chats)
        if row is not None:
            self.claim_s.append(elapsed())
        return row

    def _mark_sent(self, row: OutgoingRow, result: Delivered) -> None:
        with stopwatch() as elapsed:
            super()._mark_sent(row, result)
        self.mark_s.append(elapsed())


def _mean_ms(values: list[float]) -> float:
    return 1000 * sum(values) / len(values) if values else 0.0


@dataclass
class FanoutFigures:
    messages: int
    seconds: float
    rate: float  # accepted sends per second, first to last accepted send
    wall_rate: float  # messages / seconds of drain()
    ratio: float  # rate / 30
    count_429: int
    sender_rate_limited: int
    sent: int
    failed: int
    configured_rate: float
    claim_ms: float  # mean time of the sender's claim transaction per message
    send_ms: float  # mean time of one Bot API call through python-telegram-bot
    mark_ms: float  # mean time of the mark-sent transaction

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run(kind: DatabaseKind, workdir: Path, count: int, *, fake_in_process: bool = False) -> FanoutFigures:
    """Queue ``count`` reminders to distinct chats and deliver them all; see the module docstring."""
    database = create_database(kind, "fanout", workdir)
    fake = start_fake(fake_in_process, global_per_second=int(TELEGRAM_LIMIT), per_chat_per_second=1)
    application = None
    runtime = None
    try:
        settings = bench_settings(
            database,
            FIRST_COUNTY,
            **telegram_env(fake.base_url, fake.base_file_url, fake.token, fake.bot_username),
        )
        runtime = open_runtime(settings)
        upgrade(runtime.engine)
        now = datetime.now(UTC)
        with runtime.transaction() as session:
            for index in range(count):
                chat = FIRST_CHAT + index
                task = 1 + index % 76
                enqueue(
                    session,
                    platform="telegram",
                    chat_id=str(chat),
                    kind="reminder",
                    dedup_key=f"bench-fanout:{chat}",
                    message=Message(
                        text=_TEXT.format(unit=f"单位{index % 70:02d}", task=task),
                        buttons=[[Button(f"报送 县{task}", f"rt|{task}|1")]],
                    ),
                    now=now,
                    about=About(checkpoint_id=None, unit_id=None, task_ids=(), rung="-7d"),
                )
        application = build_application(settings)
        await application.initialize()
        transport = _TimedTransport(TelegramTransport(application, settings))
        sender = _TimedSender(runtime.sessions, [transport], worker="bench-fanout")
        sender.claim_s, sender.mark_s = [], []
        with stopwatch() as elapsed:
            await sender.drain(timeout=count / 10 + 120)
        seconds = elapsed()
        times = sorted(fake.sent_times())
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        return FanoutFigures(
            messages=count,
            seconds=seconds,
            rate=rate,
            wall_rate=count / seconds,
            ratio=rate / TELEGRAM_LIMIT,
            count_429=fake.count_429(),
            sender_rate_limited=sender.stats.rate_limited,
            sent=fake.sent_chats(),
            failed=sender.stats.failed,
            configured_rate=settings.telegram.messages_per_second or 0.0,
            claim_ms=_mean_ms(sender.claim_s),
            send_ms=_mean_ms(transport.seconds),
            mark_ms=_mean_ms(sender.mark_s),
        )
    finally:
        if application is not None:
            await application.shutdown()
        if runtime is not None:
            runtime.close()
        fake.stop()
        database.drop()
