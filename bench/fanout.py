"""Fan-out: N reminders to N distinct chats through the real OutboxSender + TelegramTransport.

The sender and its transports are the ones :func:`bot.service.build_service`
builds (so on PostgreSQL it paces through the database, as the service does).
The rows are queued with :func:`core.outbox.enqueue` into a fresh database;
:meth:`jobs.sender.OutboxSender.run` (the service's delivery loop) sends them
through python-telegram-bot to :class:`tests.fakes.telegram_api.FakeTelegram`,
which enforces Telegram's
flood limits (30 messages in any second overall, 1 per chat) and answers 429
past them; it runs in its own process (:mod:`bench.fake_process`).  The
achieved rate is measured on the fake's side: accepted sends between the
first and the last accepted one.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import DatabaseKind, bench_settings, create_database, stopwatch, telegram_env
from bench.data import FIRST_COUNTY
from bench.fake_process import start_fake
from bot.service import build_service
from core.outbox import About, Button, Message, enqueue
from jobs.sender import Delivered, OutboxSender, OutgoingRow
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


class _Timings:
    """How long the sender's steps took per message (filled by :func:`_instrument`)."""

    def __init__(self) -> None:
        self.claim: list[float] = []
        self.reserve: list[float] = []
        self.send: list[float] = []
        self.mark: list[float] = []


def _instrument(sender: OutboxSender, transport: Any) -> _Timings:
    """Time the real sender's steps by wrapping them on these two instances (a measurement probe only).

    The database steps run in worker threads; the send is a coroutine.  A step
    the sender does not have (another version of it) is simply not timed.
    """
    timings = _Timings()

    def timed(name: str, into: list[float]) -> None:
        inner = getattr(sender, name, None)
        if inner is None:
            return

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with stopwatch() as elapsed:
                result = inner(*args, **kwargs)
            if name != "_claim" or result[0]:  # a claim that found rows (a block on PostgreSQL)
                into.append(elapsed())
            return result

        setattr(sender, name, wrapper)

    timed("_claim", timings.claim)
    timed("_reserve_slots", timings.reserve)
    timed("_mark_sent", timings.mark)
    send = transport.send

    async def timed_send(row: OutgoingRow) -> Delivered:
        with stopwatch() as elapsed:
            try:
                return await send(row)
            finally:
                timings.send.append(elapsed())

    transport.send = timed_send
    return timings


def _mean_ms(values: list[float]) -> float:
    return 1000 * sum(values) / len(values) if values else 0.0


@dataclass
class FanoutFigures:
    messages: int
    seconds: float
    rate: float  # accepted sends per second, first to last accepted send
    wall_rate: float  # messages / seconds of drain()
    ratio: float  # rate / 30
    paced_ratio: float  # rate / the configured rate (29/s, one under Telegram's 30)
    latency_ms: float  # the fake's answer latency
    peak_in_flight: int  # most Bot API calls awaiting answers at once
    count_429: int
    sender_rate_limited: int
    sent: int
    failed: int
    configured_rate: float
    shared: bool  # the sender paces through the database (the service does so on PostgreSQL)
    claim_ms: float  # mean time of the sender's claim transaction (one per block of rows)
    claims: int  # claim transactions that found rows
    reserve_ms: float  # mean time of a slot retaken alone after a missed one (PostgreSQL), 0 when none
    slots_missed: int  # slots given up because the send could not start in time
    send_ms: float  # mean time of one Bot API call through python-telegram-bot
    mark_ms: float  # mean time of the mark-sent transaction

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run(
    kind: DatabaseKind, workdir: Path, count: int, *, fake_in_process: bool = False, latency: float = 0.0
) -> FanoutFigures:
    """Queue ``count`` reminders to distinct chats and deliver them all; see the module docstring."""
    database = create_database(kind, "fanout", workdir)
    fake = start_fake(fake_in_process, global_per_second=int(TELEGRAM_LIMIT), per_chat_per_second=1, latency=latency)
    application = None
    service = None
    try:
        settings = bench_settings(
            database,
            FIRST_COUNTY,
            **telegram_env(fake.base_url, fake.base_file_url, fake.token, fake.bot_username),
        )
        # The sender and transport exactly as `duban run` builds them (pacing, sharing, leases).
        service = build_service(settings)
        runtime = service.runtime
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
                    about=About(rung="-7d"),
                )
        application = service.telegram
        assert application is not None
        await application.initialize()
        sender = service.sender
        transport = next(t for t in service.transports if t.platform == "telegram")
        timings = _instrument(sender, transport)
        stop = asyncio.Event()
        with stopwatch() as elapsed:
            # The service's own delivery loop (``drain`` is not used: see bench/README.md).
            delivery = asyncio.create_task(sender.run(stop))
            while sender.stats.sent + sender.stats.failed < count:
                if delivery.done() or elapsed() > count / 10 + 120:
                    raise TimeoutError(f"{sender.stats.sent} of {count} sent")
                await asyncio.sleep(0.05)
        seconds = elapsed()
        stop.set()
        await delivery
        times = sorted(fake.sent_times())
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        return FanoutFigures(
            messages=count,
            seconds=seconds,
            rate=rate,
            wall_rate=count / seconds,
            ratio=rate / TELEGRAM_LIMIT,
            paced_ratio=rate / (settings.telegram.messages_per_second or TELEGRAM_LIMIT),
            latency_ms=latency * 1000,
            peak_in_flight=fake.peak_open_calls(),
            count_429=fake.count_429(),
            sender_rate_limited=sender.stats.rate_limited,
            sent=fake.sent_chats(),
            failed=sender.stats.failed,
            configured_rate=settings.telegram.messages_per_second or 0.0,
            shared=bool(getattr(sender, "shared", False)),
            claim_ms=_mean_ms(timings.claim),
            claims=len(timings.claim),
            slots_missed=sender.stats.slots_missed,
            reserve_ms=_mean_ms(timings.reserve),
            send_ms=_mean_ms(timings.send),
            mark_ms=_mean_ms(timings.mark),
        )
    finally:
        if application is not None:
            await application.shutdown()
        if service is not None:
            service.runtime.close()
        fake.stop()
        database.drop()
